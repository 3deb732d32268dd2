# The buyer, on the marketplace: sign up, start the trial, download the license. In a browser
# that is three forms; the walk posts the same forms with curl (cookies in buyer.cookies).
curl -sf -c buyer.cookies -o /dev/null "$PORTAL_URL/signup"
CSRF=$(awk '$6 == "__Host-consign_csrf" { print $7 }' buyer.cookies)
curl -sf -b buyer.cookies -c buyer.cookies -o /dev/null -H "Origin: $PORTAL_URL" -d "csrf=$CSRF" -d name=Hiro -d company=Initech -d email=hiro@initech.example -d password=correct-horse-battery -d aws_account=210987654321 "$PORTAL_URL/signup"
TRIAL_PAGE=$(curl -sf -b buyer.cookies -o /dev/null -w '%{redirect_url}' -H "Origin: $PORTAL_URL" -d "csrf=$CSRF" -d plan=trial "$PORTAL_URL/apps/acme/serverless-blog/trial")
curl -sf -b buyer.cookies -o trial.lic "${TRIAL_PAGE%%\?*}/file"
license-agent verify --license trial.lic --trust acme-keyset.json --trust-root "$ROOT"
