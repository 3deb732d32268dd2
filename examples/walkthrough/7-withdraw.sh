# The vendor withdraws a bad release, makes 1.1.0 a step no upgrade may skip, and ends the
# contract. Installers see it in the signed metadata; agents learn the revocation at check-in.
vendor-portal release yank serverless-blog 1.0.0 --reason "data loss in posts" --keys acme-keys
vendor-portal release require serverless-blog 1.1.0 --keys acme-keys
installer versions
vendor-portal license revoke "$LICENSE" --reason "contract ended"
curl -sf "$PORTAL_URL/api/v1/vendors/acme/licenses/$LICENSE/status?nonce=$(head -c16 /dev/urandom | basenc --base64url)"
