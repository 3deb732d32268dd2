//! `installer iam-policy`: the least-privilege IAM policy the installer itself needs to deploy a
//! release, so a security team can grant exactly that. CloudFormation creates a stack's resources
//! with the caller's permissions, so the policy holds the installer's own calls (STS,
//! CloudFormation on the stack, the artifact bucket, the installation's SSM parameters) plus,
//! per resource type the release's template declares, the calls CloudFormation makes for it.

use std::collections::BTreeMap;

use bundles::BundleManifest;
use serde_json::{Value, json};

/// The calls CloudFormation makes to create, update and delete a resource of each type, and the
/// resource ARN pattern (`{stack}` is the stack name, or `*`).
fn resource_actions(kind: &str) -> Option<(&'static [&'static str], &'static str)> {
    Some(match kind {
        "AWS::Lambda::Function" => (
            &[
                "lambda:CreateFunction",
                "lambda:DeleteFunction",
                "lambda:GetFunction",
                "lambda:GetFunctionConfiguration",
                "lambda:UpdateFunctionCode",
                "lambda:UpdateFunctionConfiguration",
                "lambda:TagResource",
                "lambda:UntagResource",
                "lambda:ListTags",
            ],
            "arn:aws:lambda:*:*:function:{stack}-*",
        ),
        "AWS::Lambda::LayerVersion" => (
            &[
                "lambda:PublishLayerVersion",
                "lambda:DeleteLayerVersion",
                "lambda:GetLayerVersion",
            ],
            "arn:aws:lambda:*:*:layer:*",
        ),
        "AWS::Lambda::Permission" => (
            &["lambda:AddPermission", "lambda:RemovePermission"],
            "arn:aws:lambda:*:*:function:{stack}-*",
        ),
        "AWS::Lambda::EventSourceMapping" => (
            &[
                "lambda:CreateEventSourceMapping",
                "lambda:DeleteEventSourceMapping",
                "lambda:GetEventSourceMapping",
                "lambda:UpdateEventSourceMapping",
            ],
            "*",
        ),
        "AWS::DynamoDB::Table" => (
            &[
                "dynamodb:CreateTable",
                "dynamodb:DeleteTable",
                "dynamodb:DescribeTable",
                "dynamodb:UpdateTable",
                "dynamodb:TagResource",
                "dynamodb:UntagResource",
                "dynamodb:DescribeContinuousBackups",
                "dynamodb:UpdateContinuousBackups",
                "dynamodb:DescribeTimeToLive",
                "dynamodb:UpdateTimeToLive",
            ],
            "arn:aws:dynamodb:*:*:table/{stack}-*",
        ),
        "AWS::S3::Bucket" => (
            &[
                "s3:CreateBucket",
                "s3:DeleteBucket",
                "s3:GetBucketLocation",
                "s3:PutBucketTagging",
                "s3:PutEncryptionConfiguration",
                "s3:PutBucketPublicAccessBlock",
                "s3:PutBucketPolicy",
                "s3:DeleteBucketPolicy",
                "s3:ListBucket",
                "s3:GetObject",
                "s3:PutObject",
                "s3:DeleteObject",
            ],
            "arn:aws:s3:::{stack}-*",
        ),
        "AWS::SQS::Queue" => (
            &[
                "sqs:CreateQueue",
                "sqs:DeleteQueue",
                "sqs:GetQueueAttributes",
                "sqs:SetQueueAttributes",
                "sqs:TagQueue",
                "sqs:UntagQueue",
            ],
            "arn:aws:sqs:*:*:{stack}-*",
        ),
        "AWS::SNS::Topic" => (
            &[
                "sns:CreateTopic",
                "sns:DeleteTopic",
                "sns:GetTopicAttributes",
                "sns:SetTopicAttributes",
                "sns:TagResource",
            ],
            "arn:aws:sns:*:*:{stack}-*",
        ),
        // The state machine's own role is an AWS::IAM::Role of the stack: passing it to Step
        // Functions is the role statement's iam:PassRole.
        "AWS::StepFunctions::StateMachine" => (
            &[
                "states:CreateStateMachine",
                "states:DeleteStateMachine",
                "states:DescribeStateMachine",
                "states:UpdateStateMachine",
                "states:TagResource",
                "states:UntagResource",
                "states:ListTagsForResource",
            ],
            "arn:aws:states:*:*:stateMachine:{stack}-*",
        ),
        "AWS::SSM::Parameter" => (
            &[
                "ssm:PutParameter",
                "ssm:DeleteParameter",
                "ssm:GetParameters",
                "ssm:AddTagsToResource",
            ],
            "arn:aws:ssm:*:*:parameter/*",
        ),
        "AWS::Logs::LogGroup" => (
            &[
                "logs:CreateLogGroup",
                "logs:DeleteLogGroup",
                "logs:DescribeLogGroups",
                "logs:PutRetentionPolicy",
                "logs:TagResource",
            ],
            "arn:aws:logs:*:*:log-group:*",
        ),
        "AWS::Events::Rule" => (
            &[
                "events:PutRule",
                "events:DeleteRule",
                "events:DescribeRule",
                "events:PutTargets",
                "events:RemoveTargets",
            ],
            "arn:aws:events:*:*:rule/{stack}-*",
        ),
        kind if kind.starts_with("AWS::ApiGateway::") => (
            &[
                "apigateway:GET",
                "apigateway:POST",
                "apigateway:PUT",
                "apigateway:PATCH",
                "apigateway:DELETE",
            ],
            "arn:aws:apigateway:*::/restapis*",
        ),
        _ => return None,
    })
}

/// The services the release's roles are passed to, by the resource types that take a role.
fn passed_to(manifest: &BundleManifest) -> Vec<&'static str> {
    let mut services: Vec<&'static str> = manifest
        .resources
        .iter()
        .filter_map(|r| match r.kind.as_str() {
            "AWS::Lambda::Function" => Some("lambda.amazonaws.com"),
            "AWS::StepFunctions::StateMachine" => Some("states.amazonaws.com"),
            "AWS::Events::Rule" => Some("events.amazonaws.com"),
            kind if kind.starts_with("AWS::ApiGateway::") => Some("apigateway.amazonaws.com"),
            _ => None,
        })
        .collect();
    services.sort_unstable();
    services.dedup();
    services
}

/// The statements for the release's roles: CloudFormation creates and changes them with the
/// caller's permissions, so the caller may do it only with the installation's permissions
/// boundary attached (`iam:PermissionsBoundary`), may pass them only to the services the
/// release uses, and may read the boundary but not write it ([`boundary_admin_policy`] does). A
/// role without the boundary cannot be created or given a policy; the boundary cannot be taken
/// off (no `iam:DeleteRolePermissionsBoundary`); managed policies cannot be attached; a role's
/// trust cannot be changed (no `iam:UpdateAssumeRolePolicy`: a release that changes a role's
/// trust policy replaces the role). Whoever holds this policy can give a role no more than the
/// boundary an admin wrote.
fn role_statements(manifest: &BundleManifest, stack: &str) -> Vec<Value> {
    let roles = format!("arn:aws:iam::*:role/{stack}-*");
    let boundary = boundary_pattern(stack);
    vec![
        json!({"Sid": "RolesOnlyWithTheBoundary", "Effect": "Allow", "Action": [
            "iam:CreateRole", "iam:DeleteRolePolicy", "iam:PutRolePermissionsBoundary", "iam:PutRolePolicy"],
            "Resource": roles,
            "Condition": {"StringLike": {"iam:PermissionsBoundary": boundary}}}),
        json!({"Sid": "Roles", "Effect": "Allow", "Action": [
            "iam:DeleteRole", "iam:GetRole", "iam:GetRolePolicy", "iam:TagRole", "iam:UntagRole"],
            "Resource": roles}),
        json!({"Sid": "PassRolesOfTheStack", "Effect": "Allow", "Action": ["iam:PassRole"],
            "Resource": roles,
            "Condition": {"StringEquals": {"iam:PassedToService": passed_to(manifest)}}}),
    ]
}

/// The boundary's ARN pattern for `stack` (any account and region).
fn boundary_pattern(stack: &str) -> String {
    format!(
        "arn:aws:iam::*:policy{}{}",
        crate::boundary::PATH,
        crate::boundary::name("*", stack)
    )
}

/// What writing the installation's permissions boundary takes besides the deploy policy
/// (`installer iam-policy --boundary-admin`): for an admin who approves what the release's
/// roles may do, since
/// whoever may write the boundary may widen it. The installer writes it at install and at any
/// upgrade that declares other actions, when its credentials carry this policy; otherwise it
/// stops before any change and says so.
pub fn boundary_admin_policy(stack: Option<&str>) -> Value {
    let stack = stack.unwrap_or("*");
    json!({"Version": "2012-10-17", "Statement": [
        json!({"Sid": "WriteThePermissionsBoundary", "Effect": "Allow", "Action": [
            "iam:CreatePolicy", "iam:CreatePolicyVersion", "iam:DeletePolicy", "iam:DeletePolicyVersion"],
            "Resource": boundary_pattern(stack)}),
    ]})
}

/// The policy for deploying `manifest` to `stack` (`None`: any stack), and the resource types
/// it has no mapping for (to be added by hand; the command says so).
pub fn policy(manifest: &BundleManifest, stack: Option<&str>) -> (Value, Vec<String>) {
    let stack = stack.unwrap_or("*");
    let mut statements = own_statements(manifest, stack);
    let (resources, unmapped) = resource_statements(manifest, stack);
    statements.extend(resources);
    (
        json!({"Version": "2012-10-17", "Statement": statements}),
        unmapped,
    )
}

/// `--deployment-role NAME`: a role CloudFormation acts through (it creates, changes and
/// deletes the stack's resources, and reads the artifacts Lambda and the template need), and
/// the caller's policy beside it: the installer's own calls and `iam:PassRole` on that role to
/// CloudFormation only. The resource types without a mapping, as for [`policy`].
pub fn deployment_role(
    manifest: &BundleManifest,
    stack: Option<&str>,
    name: &str,
) -> (Value, Vec<String>) {
    let stack = stack.unwrap_or("*");
    let role = format!("arn:aws:iam::*:role/{name}");
    let mut caller = own_statements(manifest, stack);
    caller.push(
        json!({"Sid": "PassTheDeploymentRole", "Effect": "Allow", "Action": ["iam:PassRole"],
        "Resource": role,
        "Condition": {"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}}}),
    );
    let (mut statements, unmapped) = resource_statements(manifest, stack);
    statements.push(
        json!({"Sid": "ReadArtifacts", "Effect": "Allow", "Action": ["s3:GetObject"],
        "Resource": "arn:aws:s3:::consign-artifacts-*/*"}),
    );
    (
        json!({
            "role": {
                "name": name,
                "trust": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                    "Principal": {"Service": "cloudformation.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
                "policy": {"Version": "2012-10-17", "Statement": statements},
            },
            "caller": {"Version": "2012-10-17", "Statement": caller},
        }),
        unmapped,
    )
}

/// The installer's own calls: who it is, the stack, the artifact bucket, the installation's
/// record, static assets, and reading the permissions boundary.
fn own_statements(manifest: &BundleManifest, stack: &str) -> Vec<Value> {
    let mut statements = vec![
        json!({"Sid": "WhoAmI", "Effect": "Allow", "Action": ["sts:GetCallerIdentity"], "Resource": "*"}),
        json!({"Sid": "Stack", "Effect": "Allow", "Action": [
            "cloudformation:CreateChangeSet", "cloudformation:DescribeChangeSet",
            "cloudformation:ExecuteChangeSet", "cloudformation:DeleteChangeSet",
            "cloudformation:DescribeStacks", "cloudformation:DescribeStackEvents",
            "cloudformation:DescribeStackResource", "cloudformation:ListStackResources", "cloudformation:GetTemplate",
            "cloudformation:DeleteStack"],
            "Resource": format!("arn:aws:cloudformation:*:*:stack/{stack}/*")}),
        json!({"Sid": "ArtifactBucketOwner", "Effect": "Allow", "Action": ["s3:ListAllMyBuckets"],
            "Resource": "*"}),
        json!({"Sid": "ArtifactBucket", "Effect": "Allow", "Action": [
            "s3:CreateBucket", "s3:PutBucketPublicAccessBlock", "s3:PutEncryptionConfiguration",
            "s3:ListBucket", "s3:DeleteBucket"],
            "Resource": "arn:aws:s3:::consign-artifacts-*"}),
        json!({"Sid": "Artifacts", "Effect": "Allow", "Action": [
            "s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            "Resource": "arn:aws:s3:::consign-artifacts-*/*"}),
        json!({"Sid": "InstallationRecord", "Effect": "Allow", "Action": [
            "ssm:GetParameter", "ssm:PutParameter", "ssm:DeleteParameter", "ssm:GetParametersByPath"],
            "Resource": ["arn:aws:ssm:*:*:parameter/consign/*", "arn:aws:ssm:*:*:parameter/consign"]}),
    ];
    if !manifest.assets.is_empty() {
        statements.push(json!({"Sid": "StaticAssets", "Effect": "Allow", "Action": [
            "s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            "Resource": [format!("arn:aws:s3:::{}-*", stack.to_lowercase()),
                         format!("arn:aws:s3:::{}-*/*", stack.to_lowercase())]}));
    }
    if manifest
        .resources
        .iter()
        .any(|r| r.kind == "AWS::IAM::Role")
    {
        statements.push(
            json!({"Sid": "ReadThePermissionsBoundary", "Effect": "Allow", "Action": [
            "iam:GetPolicy", "iam:GetPolicyVersion", "iam:ListPolicyVersions"],
            "Resource": boundary_pattern(stack)}),
        );
    }
    statements
}

/// The calls CloudFormation makes for the template's resources (with the caller's credentials,
/// or the deployment role's), and the resource types it has no mapping for.
fn resource_statements(manifest: &BundleManifest, stack: &str) -> (Vec<Value>, Vec<String>) {
    let mut statements = Vec::new();
    if manifest
        .resources
        .iter()
        .any(|r| r.kind == "AWS::IAM::Role")
    {
        statements.extend(role_statements(manifest, stack));
    }
    let mut by_resource: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut unmapped = Vec::new();
    for resource in manifest
        .resources
        .iter()
        .filter(|r| r.kind != "AWS::IAM::Role")
    {
        match resource_actions(&resource.kind) {
            Some((actions, arn)) => {
                let arn = arn.replace("{stack}", stack);
                let list = by_resource.entry(arn).or_default();
                for action in actions {
                    if !list.contains(action) {
                        list.push(action);
                    }
                }
            }
            None => {
                if !unmapped.contains(&resource.kind) {
                    unmapped.push(resource.kind.clone());
                }
            }
        }
    }
    for (i, (arn, mut actions)) in by_resource.into_iter().enumerate() {
        actions.sort_unstable();
        statements.push(
            json!({"Sid": format!("StackResources{}", i + 1), "Effect": "Allow",
            "Action": actions, "Resource": arn}),
        );
    }
    (statements, unmapped)
}
