//! The field's IAM policy linters, run on the installer's printed policies: parliament (unknown
//! actions, resources that do not fit an action, malformed conditions) and cloudsplaining
//! (privilege escalation, data exfiltration, resource exposure), both from PyPI in the test venv.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::install::World;
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
        "PassExistingRoleToNewLambdaThenTriggerWithExistingDynamo",
        "iam:PassRole only for the stack's roles (all bounded), only to the services the release uses; the new function runs with no more than the boundary",
    ),
    (
        "PassExistingRoleToNewLambdaThenTriggerWithNewDynamo",
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

/// One AWS call the installer made (`CONSIGN_AWS_CALL_LOG`).
#[derive(Clone, Debug)]
pub struct Call {
    /// The SDK operation.
    pub operation: String,
    /// The IAM action it needs.
    pub action: String,
    /// The resource ARN it acts on.
    pub resource: String,
}

/// The calls recorded in `path`.
pub fn read_calls(path: &Path) -> Vec<Call> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| Call {
            operation: v["operation"].as_str().unwrap_or_default().to_owned(),
            action: v["action"].as_str().unwrap_or_default().to_owned(),
            resource: v["resource"].as_str().unwrap_or_default().to_owned(),
        })
        .collect()
}

/// IAM's wildcard match: `*` any run of characters, `?` one.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn list(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The Sid of the first Allow statement of `policy` that lists `call`'s action (actions match
/// case-insensitively) on a resource pattern that matches its resource. Conditions are not
/// evaluated: they only narrow a statement.
pub fn allowing(policy: &Value, call: &Call) -> Option<String> {
    policy["Statement"].as_array()?.iter().find_map(|s| {
        let action = list(&s["Action"])
            .iter()
            .any(|a| glob(&a.to_lowercase(), &call.action.to_lowercase()));
        let resource = list(&s["Resource"]).iter().any(|r| glob(r, &call.resource));
        (s["Effect"] == "Allow" && action && resource)
            .then(|| s["Sid"].as_str().unwrap_or_default().to_owned())
    })
}

/// Statements for the calls CloudFormation makes, with the caller's credentials, to create the
/// template's resources, and for the role passed to it: the installer's recorder cannot see
/// those calls, and each statement is explained by the resource type it is printed for (or by
/// `--role-arn`).
pub fn made_by_cloudformation(sid: &str) -> bool {
    sid.starts_with("StackResources")
        || matches!(
            sid,
            "RolesOnlyWithTheBoundary" | "Roles" | "PassRolesOfTheStack" | "PassTheDeploymentRole"
        )
}

/// Checks recorded `calls` against `policy` both ways: every call is allowed by a statement
/// that matches its action and resource, and every action of the installer's own statements
/// is used by a call, or is in `unused` with the reason this run does not reach it. The
/// problems found, one per line (empty: none).
pub fn check_calls(policy: &Value, calls: &[Call], unused: &[(&str, &str)]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut used: Vec<(String, String)> = Vec::new();
    for call in calls {
        match allowing(policy, call) {
            Some(sid) => used.push((sid, call.action.to_lowercase())),
            None => problems.push(format!(
                "{} ({}) on {} is allowed by no statement",
                call.action, call.operation, call.resource
            )),
        }
    }
    for s in policy["Statement"].as_array().into_iter().flatten() {
        let sid = s["Sid"].as_str().unwrap_or_default();
        if made_by_cloudformation(sid) {
            continue;
        }
        for action in list(&s["Action"]) {
            let hit = used
                .iter()
                .any(|(u, a)| u == sid && glob(&action.to_lowercase(), a));
            if !hit && !unused.iter().any(|(a, _)| *a == action) {
                problems.push(format!(
                    "statement {sid} allows {action}, which no recorded call used and nothing explains"
                ));
            }
        }
    }
    problems
}

/// Lints the policy `installer iam-policy` prints for `world`'s release: parliament finds
/// nothing, and every privilege-escalation method cloudsplaining names is accounted for.
pub fn lint_printed_policies(world: &World, stack: &str) {
    let policy = world.installer_json(&["iam-policy", "--version", "1.0.0", "--stack", stack]);
    let file = world.dir.path().join("policy.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&policy).unwrap()).unwrap();
    let findings = parliament(&file);
    assert!(findings.is_empty(), "parliament: {findings:?}\n{policy}");
    let methods = escalation_methods(&cloudsplaining(&file));
    for method in &methods {
        assert!(
            !CLOSED.contains(&method.as_str()),
            "the deploy policy allows {method}: {policy}"
        );
        assert!(
            EXPLAINED.iter().any(|(m, _)| m == method),
            "cloudsplaining names {method}, which nothing here accounts for: {policy}"
        );
    }
    // The boundary admin's policy is the one that may widen a boundary: it says so, and only
    // that.
    let admin = world.installer_json(&[
        "iam-policy",
        "--version",
        "1.0.0",
        "--stack",
        stack,
        "--boundary-admin",
    ]);
    let file = world.dir.path().join("boundary-admin.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&admin).unwrap()).unwrap();
    assert!(parliament(&file).is_empty());
    let methods = escalation_methods(&cloudsplaining(&file));
    assert_eq!(methods, ["CreateNewPolicyVersion"], "{admin}");
}

/// Checks the calls recorded in `log` (a run on `stack`) against the policy `installer
/// iam-policy` prints for each of `versions`, with the boundary admin's statements added (the
/// run's credentials wrote the boundary too); `unused` explains what the run does not reach.
pub fn check_run(
    world: &World,
    log: &Path,
    stack: &str,
    versions: &[&str],
    unused: &[(&str, &str)],
) {
    check_run_with(world, log, (stack, versions), unused, &[], "");
}

/// [`check_run`] with `extra` arguments to `iam-policy` and the policy at `pointer` in what it
/// prints (`/caller` with `--deployment-role`).
pub fn check_run_with(
    world: &World,
    log: &Path,
    (stack, versions): (&str, &[&str]),
    unused: &[(&str, &str)],
    extra: &[&str],
    pointer: &str,
) {
    let calls = read_calls(log);
    assert!(calls.len() > 20, "{} calls recorded", calls.len());
    let admin = world.installer_json(&[
        "iam-policy",
        "--version",
        versions[0],
        "--stack",
        stack,
        "--boundary-admin",
    ]);
    for version in versions {
        let args = [
            &["iam-policy", "--version", version, "--stack", stack][..],
            extra,
        ]
        .concat();
        let mut policy = world
            .installer_json(&args)
            .pointer(pointer)
            .cloned()
            .unwrap_or_default();
        if let Some(statements) = policy["Statement"].as_array_mut() {
            statements.extend(admin["Statement"].as_array().into_iter().flatten().cloned());
        }
        let problems = check_calls(&policy, &calls, unused);
        let made: std::collections::BTreeSet<&str> =
            calls.iter().map(|c| c.operation.as_str()).collect();
        assert!(
            problems.is_empty(),
            "{}\nrecorded: {made:?}\n{policy}",
            problems.join("\n")
        );
    }
}

/// Actions of the installer's own statements that the tests' runs (install, upgrade, rollback,
/// uninstall with purge) do not reach, and why they are granted.
pub const UNREACHED: &[(&str, &str)] = &[
    (
        "cloudformation:DescribeStackResource",
        "only when an execution fails: it finds the resource that failed, to name it",
    ),
    (
        "iam:CreatePolicyVersion",
        "an upgrade whose release declares other actions writes a new version of the boundary",
    ),
    (
        "iam:DeletePolicyVersion",
        "when the boundary has IAM's five versions, and at uninstall when it has more than one",
    ),
];
