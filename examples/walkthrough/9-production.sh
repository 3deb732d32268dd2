# Two portal processes acting as one, on PostgreSQL and S3 (docs/production.md shows these
# commands). It runs only when the walk is given a PostgreSQL (CONSIGN_WALK_POSTGRES, a URL such
# as postgres://postgres@127.0.0.1:5432/test) and `aws` and `createdb` are on PATH; the S3 is
# the walk's moto.
if [ -n "${CONSIGN_WALK_POSTGRES:-}" ]; then
mkdir -p production && cd production
PGHOST=$(python3 -c 'import sys, urllib.parse as u; print(u.urlparse(sys.argv[1]).hostname)' "$CONSIGN_WALK_POSTGRES")
PGPORT=$(python3 -c 'import sys, urllib.parse as u; print(u.urlparse(sys.argv[1]).port or 5432)' "$CONSIGN_WALK_POSTGRES")
PGUSER=$(python3 -c 'import sys, urllib.parse as u; print(u.urlparse(sys.argv[1]).username)' "$CONSIGN_WALK_POSTGRES")
PORTAL_DB=consign_walk_$(date +%s)_$$
PORTAL_BUCKET=consign-walk-blobs-$$
PORTAL_DATABASE_URL=postgres://$PGUSER@$PGHOST:$PGPORT/$PORTAL_DB
PORT_A=$(free_port)
PORT_B=$(free_port)
createdb --host "$PGHOST" --port "$PGPORT" --username "$PGUSER" "$PORTAL_DB"
aws s3 mb "s3://$PORTAL_BUCKET"
head -c32 /dev/urandom | basenc --base64url > master.key
chmod 600 master.key
export CONSIGN_DATABASE_URL=$PORTAL_DATABASE_URL CONSIGN_BLOB_STORE=s3://$PORTAL_BUCKET
CONSIGN_MASTER_KEY=$(cat master.key)
export CONSIGN_MASTER_KEY
PORTAL_TOKEN=$(vendor-portal --output json admin create-vendor --slug acme --name "Acme Serverless" | jq -r .token)
export PORTAL_TOKEN
vendor-portal serve --bind "127.0.0.1:$PORT_A" > portal-a.log 2>&1 &
PID_A=$!
vendor-portal serve --bind "127.0.0.1:$PORT_B" > portal-b.log 2>&1 &
PID_B=$!
until curl -sf -o /dev/null "http://127.0.0.1:$PORT_A/readyz" && curl -sf -o /dev/null "http://127.0.0.1:$PORT_B/readyz"; do sleep 0.2; done
PORTAL_URL=http://127.0.0.1:$PORT_A vendor-portal customer create --slug globex --name "Globex Corporation" --aws-account 123456789012
PORTAL_URL=http://127.0.0.1:$PORT_B vendor-portal customer list
PORTAL_URL=http://127.0.0.1:$PORT_B vendor-portal audit verify
curl -sf -o /dev/null "http://127.0.0.1:$PORT_B/api/v1/vendors/acme/keyset"
# A process given another master key refuses to start, and says why.
if CONSIGN_MASTER_KEY=$(head -c32 /dev/urandom | basenc --base64url) vendor-portal serve --bind "127.0.0.1:$(free_port)"; then false; fi
kill "$PID_A" "$PID_B" && wait "$PID_A" "$PID_B" || true
dropdb --host "$PGHOST" --port "$PGPORT" --username "$PGUSER" "$PORTAL_DB"
unset CONSIGN_DATABASE_URL CONSIGN_BLOB_STORE CONSIGN_MASTER_KEY
cd ..
fi
