"""Deploys an opened bundle's template and function zips with CloudFormation on the moto server,
and checks that every resource the template declares was created.

    python deploy_on_moto.py ENDPOINT OPENED_BUNDLE_DIR STACK_NAME

Run by tests/tests/example_apps.rs after `vendor-portal release build` and `release open`, so what
is deployed is exactly what the bundle carries. (The installer does this for real.)
"""

import json
import os
import sys

import boto3


def main(endpoint, opened, stack):
    session = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    s3 = boto3.client("s3", **session)
    cfn = boto3.client("cloudformation", **session)
    manifest = json.load(open(os.path.join(opened, "manifest.json")))
    s3.create_bucket(Bucket="consign-artifacts")
    parameters = [{"ParameterKey": manifest["artifact_bucket_parameter"], "ParameterValue": "consign-artifacts"}]
    if manifest.get("version_parameter"):
        parameters.append({"ParameterKey": manifest["version_parameter"], "ParameterValue": manifest["version"]})
    for code in manifest["functions"] + manifest.get("layers", []):
        key = f"{code['name']}.zip"
        s3.upload_file(os.path.join(opened, code["object"]), "consign-artifacts", key)
        parameters.append({"ParameterKey": code["code_parameter"], "ParameterValue": key})
    template = open(os.path.join(opened, manifest["template"])).read()
    cfn.create_stack(StackName=stack, TemplateBody=template, Parameters=parameters, Capabilities=manifest["capabilities"])
    status = cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
    # moto lists a resource its conditions left out as one with an empty id.
    created = {r["LogicalResourceId"]: r["ResourceStatus"] for r in cfn.list_stack_resources(StackName=stack)["StackResourceSummaries"] if r["LogicalResourceId"]}
    # Resources under a condition (the license agent's layer, when the bundle has none) may be left out.
    conditional = {k for k, v in json.loads(template)["Resources"].items() if "Condition" in v}
    declared = {r["logical_id"] for r in manifest["resources"]} - conditional
    missing = sorted(declared - set(created))
    failed = sorted(k for k, v in created.items() if v != "CREATE_COMPLETE")
    print(json.dumps({"status": status, "resources": len(created), "missing": missing, "failed": failed}))
    lambda_client = boto3.client("lambda", **session)
    names = sorted(f["FunctionName"] for f in lambda_client.list_functions()["Functions"])
    print(json.dumps({"functions": names}))
    if status != "CREATE_COMPLETE" or missing or failed:
        sys.exit(1)


if __name__ == "__main__":
    main(*sys.argv[1:4])
