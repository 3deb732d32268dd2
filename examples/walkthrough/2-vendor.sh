# The vendor makes its own keys (the root and release keys never reach the portal), an app with a
# standard and a trial plan, a customer and a license, and walks the license through its states.
vendor-portal keys init --out acme-keys --issuer acme
vendor-portal keys register --keys acme-keys
ROOT=$(vendor-portal keys fingerprint --keys acme-keys)
vendor-portal app create --slug serverless-blog --name "Serverless Blog" --summary "A blog in your own AWS account"
vendor-portal plan create --app serverless-blog --slug standard --name Standard --features posts,users --duration-days 365
vendor-portal plan create --app serverless-blog --slug trial --name Trial --features posts --duration-days 14 --trial
vendor-portal customer create --slug globex --name "Globex Corporation" --aws-account 123456789012
LICENSE=$(vendor-portal --output json license issue --customer globex --app serverless-blog --plan standard -o globex.lic | jq -r .license.id)
vendor-portal license suspend "$LICENSE" --reason "invoice overdue"
vendor-portal license reinstate "$LICENSE"
vendor-portal license renew "$LICENSE" -o globex.lic
vendor-portal audit verify

# The customer's admin checks the license offline against the vendor's keyset, pinned to the
# root fingerprint the vendor gave out of band, then asks for its signed status.
curl -sf "$PORTAL_URL/api/v1/vendors/acme/keyset" > acme-keyset.json
license-agent verify --license globex.lic --trust acme-keyset.json --trust-root "$ROOT" --aws-account 123456789012 --region eu-west-1
curl -sf "$PORTAL_URL/api/v1/vendors/acme/licenses/$LICENSE/status?nonce=$(head -c16 /dev/urandom | basenc --base64url)"
