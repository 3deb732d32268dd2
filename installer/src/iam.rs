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
        "AWS::IAM::Role" => (
            &[
                "iam:CreateRole",
                "iam:DeleteRole",
                "iam:GetRole",
                "iam:PassRole",
                "iam:TagRole",
                "iam:UntagRole",
                "iam:UpdateAssumeRolePolicy",
                "iam:PutRolePolicy",
                "iam:GetRolePolicy",
                "iam:DeleteRolePolicy",
                "iam:AttachRolePolicy",
                "iam:DetachRolePolicy",
            ],
            "arn:aws:iam::*:role/{stack}-*",
        ),
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

/// The policy for deploying `manifest` to `stack` (`None`: any stack), and the resource types
/// it has no mapping for (to be added by hand; the command says so).
pub fn policy(manifest: &BundleManifest, stack: Option<&str>) -> (Value, Vec<String>) {
    let stack = stack.unwrap_or("*");
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
    let mut by_resource: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut unmapped = Vec::new();
    for resource in &manifest.resources {
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
    (
        json!({"Version": "2012-10-17", "Statement": statements}),
        unmapped,
    )
}
