# The portal's operator creates a vendor (it prints the owner's password and an API token once;
# the walk keeps the token) and starts the portal, both on the walk's own data folder.
PORTAL_TOKEN=$(vendor-portal --output json admin create-vendor --slug acme --name "Acme Serverless" --data-dir portal-data | jq -r .token)
export PORTAL_TOKEN
vendor-portal serve --data-dir portal-data --bind "${PORTAL_URL#http://}" > portal.log 2>&1 &
until curl -sf -o /dev/null "$PORTAL_URL/readyz"; do sleep 0.2; done
