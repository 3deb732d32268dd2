# The customer's admin installs into their own AWS account. Credentials and region come from the
# usual chain (profiles, SSO, AWS_* variables); --profile, --region and --endpoint-url override it.
installer login --portal "$PORTAL_URL" --license globex.lic --trust-root "$ROOT"
installer versions
installer iam-policy --version 1.0.0 --stack blog > installer-policy.json
installer plan --stack blog --version 1.0.0 --param LicensePortalUrl="$PORTAL_URL"
installer install --stack blog --version 1.0.0 --param LicensePortalUrl="$PORTAL_URL" --yes
installer status --stack blog

# The license agent answers the functions on localhost. In Lambda it runs as the layer's
# extension; here it runs beside them, reading the license the installer stored in SSM.
license-agent serve --license-parameter /consign/blog/license --trust acme-keyset.json --trust-root "$ROOT" --portal "$PORTAL_URL" --stack blog --app-version 1.0.0 --listen "$AGENT" --checkin-interval 2 > agent.log 2>&1 &
AGENT_PID=$!
until curl -sf -o /dev/null "http://$AGENT/healthz"; do sleep 0.2; done
curl -s "http://$AGENT/v1/entitlements/posts"
curl -s "http://$AGENT/v1/entitlements/sso"
curl -s "http://$AGENT/v1/usage" -H 'content-type: application/json' -d '{"dimension":"api-calls","quantity":3,"id":"req-81f2"}'

# The vendor sees the installation, and the usage once the agent's next check-in brings it.
until vendor-portal usage show --license "$LICENSE" | grep -q api-calls; do sleep 1; done
vendor-portal usage show --license "$LICENSE"

installer upgrade --stack blog --version 1.1.0 --yes
installer rollback --stack blog --yes
kill "$AGENT_PID"
installer uninstall --stack blog --yes
