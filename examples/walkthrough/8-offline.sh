# Without a portal at all: the vendor signs licenses and builds bundles on its own machine, and
# the admin checks both offline. Everything in a folder of its own.
mkdir -p offline && cd offline
vendor-portal keys init --out acme-keys --issuer acme
cp acme-keys/keyset.json keyset.json
ROOT=$(vendor-portal keys fingerprint --keys acme-keys)
cat > globex.json <<CLAIMS
{
  "sub": "globex",
  "aud": "serverless-blog",
  "exp": $(($(date +%s) + 365 * 86400)),
  "features": ["posts", "users"],
  "aws_accounts": ["123456789012"],
  "limits": { "seats": { "max": 50, "overage": 10 } },
  "quotas": { "api-calls": { "amount": 1000000, "period": "month" } }
}
CLAIMS
vendor-portal license sign --keys acme-keys --claims globex.json -o globex.lic
license-agent inspect globex.lic
license-agent verify --license globex.lic --trust keyset.json --trust-root "$ROOT" --state-dir trust-state

# Rotating the license-signing key needs the root key back for a moment; no customer reinstalls,
# and a verifier that saw the new keyset refuses the old one.
vendor-portal keys rotate --keys acme-keys
license-agent verify --license globex.lic --trust acme-keys/keyset.json --trust-root "$ROOT" --state-dir trust-state
if license-agent verify --license globex.lic --trust keyset.json --trust-root "$ROOT" --state-dir trust-state; then false; fi

# A release as one signed, encrypted bundle; the admin checks it before it touches the account.
cp -R "$CONSIGN_REPO/examples/serverless-blog" blog
vendor-portal release build blog --keys acme-keys -o blog-1.0.0.bundle
vendor-portal release inspect blog-1.0.0.bundle --trust acme-keys/keyset.json
vendor-portal release open blog-1.0.0.bundle --keys blog-1.0.0.bundle.keys -o opened
installer verify blog-1.0.0.bundle --trust acme-keys/keyset.json --trust-root "$ROOT"
sed -i.bak 's/^version = "1.0.0"/version = "1.1.0"/' blog/consign.toml
vendor-portal release build blog --keys acme-keys -o blog-1.1.0.bundle --previous-keys blog-1.0.0.bundle.keys
installer verify blog-1.1.0.bundle --trust acme-keys/keyset.json --trust-root "$ROOT"
cd ..
