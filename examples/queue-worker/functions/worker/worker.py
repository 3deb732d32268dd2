"""Processes a batch of jobs from SQS and reports how many it did to the license agent, which
meters usage per hour without losing or doubling a record."""

import json
import os
import urllib.request

AGENT_URL = os.environ.get("LICENSE_AGENT_URL", "http://127.0.0.1:8787")


def report_usage(quantity):
    request = urllib.request.Request(
        f"{AGENT_URL}/v1/usage",
        data=json.dumps({"dimension": "jobs", "quantity": quantity}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request, timeout=2).close()


def handler(event, _context):
    failed = []
    done = 0
    for record in event.get("Records", []):
        try:
            job = json.loads(record["body"])
            print(json.dumps({"processed": job.get("id"), "kind": job.get("kind")}))
            done += 1
        except (KeyError, ValueError):
            failed.append({"itemIdentifier": record.get("messageId")})
    if done:
        report_usage(done)
    # Partial batch response: only the failed messages return to the queue.
    return {"batchItemFailures": failed}
