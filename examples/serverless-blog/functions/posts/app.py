"""GET /posts?user_id=U: the posts of one user, newest first."""

import os

import boto3
from boto3.dynamodb.conditions import Key

from entitlement import check, response

FEATURE = os.environ.get("FEATURE", "posts")
TABLE = boto3.resource("dynamodb").Table(os.environ["POSTS_TABLE"])


def handler(event, _context):
    refused = check(FEATURE)
    if refused:
        return refused
    user_id = ((event or {}).get("queryStringParameters") or {}).get("user_id")
    if not user_id:
        return response(400, {"error": "add ?user_id=… to say whose posts to list"})
    result = TABLE.query(KeyConditionExpression=Key("user_id").eq(user_id), ScanIndexForward=False, Limit=100)
    return response(200, {"user_id": user_id, "posts": result.get("Items", [])})
