"""GET /: the blog's static front page, read from the stack's private site bucket.

The bucket stays private (public access blocked); this function is the only reader. (An API
Gateway S3 integration could serve it directly, but moto's CloudFormation drops such an
integration's role, and a function behaves the same everywhere.)
"""

import os

import boto3

BUCKET = os.environ["SITE_BUCKET"]
S3 = boto3.client("s3")


def handler(_event, _context):
    try:
        page = S3.get_object(Bucket=BUCKET, Key="index.html")["Body"].read().decode("utf-8")
    except S3.exceptions.NoSuchKey:
        return {
            "statusCode": 503,
            "headers": {"Content-Type": "text/plain; charset=utf-8"},
            "body": "The site has not been uploaded yet: run the installer again to finish the install.",
        }
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "max-age=60"},
        "body": page,
    }
