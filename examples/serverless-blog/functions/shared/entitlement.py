"""Asks the Consign license agent whether a feature is entitled.

The agent answers on localhost (a Lambda extension or a sidecar): 200 when the feature is
entitled, 403 with a JSON reason when it is not. A function turns "not entitled" into 403 and a
license that has lapsed (expired, revoked, restricted) into 402, and refuses with 503 when it
cannot ask at all: it never serves a feature it could not check.
"""

import json
import os
import urllib.error
import urllib.parse
import urllib.request

AGENT_URL = os.environ.get("LICENSE_AGENT_URL", "http://127.0.0.1:8787")


def check(feature):
    """Returns None when `feature` is entitled, else an API Gateway response refusing the call."""
    url = f"{AGENT_URL}/v1/entitlements/{urllib.parse.quote(feature, safe='')}"
    try:
        with urllib.request.urlopen(url, timeout=2):
            return None
    except urllib.error.HTTPError as err:
        try:
            body = json.loads(err.read() or b"{}")
        except ValueError:
            body = {}
        reason = body.get("reason", f"the license agent answered {err.code}")
        status = 403 if body.get("code", "not_entitled") == "not_entitled" else 402
        return response(status, {"error": reason, "feature": feature})
    except (urllib.error.URLError, TimeoutError, OSError):
        return response(503, {"error": "the license agent is not reachable; try again shortly", "feature": feature})


def response(status, body):
    """An API Gateway proxy response with a JSON body."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", "Access-Control-Allow-Origin": "*"},
        "body": json.dumps(body),
    }
