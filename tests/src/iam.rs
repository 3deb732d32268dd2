//! The field's IAM policy linters, run on the installer's printed policies: parliament (unknown
//! actions, resources that do not fit an action, malformed conditions) and cloudsplaining
//! (privilege escalation, data exfiltration, resource exposure), both from PyPI in the test venv.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::moto::moto_server_path;

fn tool(name: &str) -> Command {
    Command::new(moto_server_path().with_file_name(name))
}

/// parliament's findings on the policy in `file` (empty: none).
pub fn parliament(file: &Path) -> Vec<String> {
    let out = tool("parliament")
        .arg("--file")
        .arg(file)
        .arg("--json")
        .output()
        .expect("parliament runs (scripts/test installs it into .venv)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// cloudsplaining's `scan-policy-file --flag-all-risky-actions` on the policy in `file`: its
/// findings as JSON (privilege escalation methods, data exfiltration, resource exposure, ...).
pub fn cloudsplaining(file: &Path) -> Value {
    let out = tool("cloudsplaining")
        .args([
            "scan-policy-file",
            "--flag-all-risky-actions",
            "--input-file",
        ])
        .arg(file)
        .output()
        .expect("cloudsplaining runs (scripts/test installs it into .venv)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cloudsplaining failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.into_owned()))
}

/// The privilege-escalation methods cloudsplaining names in its text answer (`- Method: X`).
pub fn escalation_methods(findings: &Value) -> Vec<String> {
    let text = match findings {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("- Method: "))
        .map(|m| m.trim().to_owned())
        .collect()
}

/// Every escalation method cloudsplaining may name on the installer's deploy policy, and what
/// closes it. cloudsplaining reads actions and resources but not conditions, so it names a
/// method whenever its actions appear; a method not in this table fails the test.
pub const EXPLAINED: &[(&str, &str)] = &[
    (
        "PutRolePolicy",
        "iam:PutRolePolicy only on roles of the stack and only with the installation's permissions boundary attached (iam:PermissionsBoundary); the boundary allows only what the signed manifest declares, and this policy cannot write it",
    ),
    (
        "CreateRole",
        "iam:CreateRole only with the installation's permissions boundary (iam:PermissionsBoundary)",
    ),
    (
        "EditExistingLambdaFunctionWithRole",
        "lambda:UpdateFunctionCode only on the stack's functions, whose roles are held to the boundary: new code gets no more than the release declared",
    ),
    (
        "UpdateLambdaFunctionAndAddPermission",
        "the stack's functions only, whose roles are held to the boundary",
    ),
    (
        "PassExistingRoleToNewLambdaThenAddPermission",
        "iam:PassRole only for the stack's roles (all bounded), only to the services the release uses (iam:PassedToService)",
    ),
    (
        "PassExistingRoleToNewLambdaThenInvoke",
        "iam:PassRole only for the stack's roles (all bounded), only to the services the release uses",
    ),
    (
        "ExecuteCloudFormationChangeSet",
        "CloudFormation acts with the caller's own permissions (no role is passed to it), so a change set can do no more than this policy",
    ),
];

/// Methods the deploy policy must not allow at all: they widen a boundary or a role's trust.
pub const CLOSED: &[&str] = &[
    "CreateNewPolicyVersion",
    "SetExistingDefaultPolicyVersion",
    "UpdateRolePolicyToAssumeIt",
    "CreatePolicyVersionThenUpdateAssumeRolePolicy",
    "PutRolePolicyThenUpdateAssumeRolePolicy",
    "AttachRolePolicy",
    "AttachRolePolicyThenUpdateAssumeRolePolicy",
];
