"""GET /users: every user of the blog."""

import os

import boto3

from entitlement import check, response

FEATURE = os.environ.get("FEATURE", "users")
TABLE = boto3.resource("dynamodb").Table(os.environ["USERS_TABLE"])


def handler(_event, _context):
    refused = check(FEATURE)
    if refused:
        return refused
    result = TABLE.scan(Limit=1000)
    return response(200, {"users": result.get("Items", [])})
