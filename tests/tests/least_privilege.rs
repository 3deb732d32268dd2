//! Least privilege that is shown, not claimed: every role a release creates is bounded by the
//! actions its signed manifest declares, a template that holds more than it declares is refused
//! before anything changes, and the installer's own policy lets it create and change roles only
//! with that boundary attached. On moto; each test is named after what it attacks or proves.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::Path;

use serde_json::{Value, json};
use tests::install::{ACCOUNT, REGION, World};

/// Hides `iam:*` in the blog's PostsRole behind an `Fn::If` that is always true: CloudFormation
/// grants it, and a reader that takes only literal statements does not see it.
fn hide_iam_star(app: &Path) {
    let path = app.join("template.json");
    let mut template: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    template["Conditions"]["Always"] = json!({"Fn::Equals": ["yes", "yes"]});
    let statements = template["Resources"]["PostsRole"]["Properties"]["Policies"][0]
        ["PolicyDocument"]["Statement"]
        .as_array_mut()
        .unwrap();
    statements.push(json!({"Fn::If": ["Always",
        {"Effect": "Allow", "Action": "iam:*", "Resource": "*"},
        {"Ref": "AWS::NoValue"}]}));
    std::fs::write(&path, serde_json::to_vec_pretty(&template).unwrap()).unwrap();
}

#[test]
fn a_role_hiding_iam_star_from_its_manifest_is_refused_before_any_change() {
    let mut world = World::new();
    world.license("globex.lic", &[]);
    world.publish("1.2.0", hide_iam_star);
    world.login("globex.lic");
    // The vendor's signed manifest does not declare iam:* (its reader skips the hidden
    // statement); the plan, which reads the template as the install does, already refuses.
    let stderr = world.installer_err(&["plan", "--stack", "blog", "--version", "1.2.0"]);
    assert!(stderr.contains("iam:*"), "{stderr}");
    let before = world.account();
    let stderr =
        world.installer_err(&["install", "--stack", "blog", "--version", "1.2.0", "--yes"]);
    assert!(
        stderr.contains("iam:*") && stderr.contains("PostsRole"),
        "{stderr}"
    );
    assert_eq!(
        world.account(),
        before,
        "the refused run changed the account"
    );
    let roles = world.boto3(
        "print(json.dumps([r['RoleName'] for r in boto3.client('iam', **kw).list_roles()['Roles']]))",
    );
    assert!(
        !roles.to_string().contains("blog-"),
        "a role was created: {roles}"
    );
}

#[test]
fn every_role_of_a_release_carries_the_boundary_of_its_declared_actions() {
    let world = World::new();
    world.license("globex.lic", &[]);
    world.login("globex.lic");
    // The plan shows the boundary: every action any role of the release may ever hold.
    let plan: Value = serde_json::from_str(&world.installer_ok(&[
        "plan",
        "--stack",
        "blog",
        "--version",
        "1.0.0",
        "--output",
        "json",
    ]))
    .unwrap();
    let boundary = format!("arn:aws:iam::{ACCOUNT}:policy/consign/consign-{REGION}-blog-boundary");
    assert_eq!(plan["boundary"]["arn"], json!(boundary), "{plan}");
    world.installer_ok(&["install", "--stack", "blog", "--version", "1.0.0", "--yes"]);
    let seen = world.boto3(
        r#"
iam = boto3.client("iam", **kw)
roles = {}
for r in iam.list_roles()["Roles"]:
    if r["RoleName"].startswith("blog-"):
        got = iam.get_role(RoleName=r["RoleName"])["Role"]
        roles[r["RoleName"]] = got.get("PermissionsBoundary", {}).get("PermissionsBoundaryArn")
policies = {}
for p in iam.list_policies(Scope="Local", PathPrefix="/consign/")["Policies"]:
    v = iam.get_policy_version(PolicyArn=p["Arn"], VersionId=p["DefaultVersionId"])
    policies[p["Arn"]] = v["PolicyVersion"]["Document"]
print(json.dumps({"roles": roles, "policies": policies}))
"#,
    );
    let roles = seen["roles"].as_object().unwrap();
    assert_eq!(roles.len(), 3, "{seen}");
    for (role, arn) in roles {
        assert_eq!(arn, &json!(boundary), "role {role} is not bounded: {seen}");
    }
    let document = &seen["policies"][&boundary];
    let actions: Vec<&str> = document["Statement"][0]["Action"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(actions.contains(&"dynamodb:Query"), "{document}");
    assert!(!actions.iter().any(|a| a.starts_with("iam:")), "{document}");
    assert_eq!(
        plan["boundary"]["actions"].as_array().unwrap().len(),
        actions.len(),
        "{plan}"
    );
    // Uninstalling takes the boundary away with the stack.
    world.installer_ok(&["uninstall", "--stack", "blog", "--yes"]);
    let left = world.boto3(
        "print(json.dumps([p['Arn'] for p in boto3.client('iam', **kw).list_policies(Scope='Local')['Policies']]))",
    );
    assert!(!left.to_string().contains("blog-boundary"), "{left}");
}

#[test]
fn the_printed_policies_pass_parliament_and_every_escalation_path_is_accounted_for() {
    let world = World::new();
    world.license("globex.lic", &[]);
    world.login("globex.lic");
    tests::iam::lint_printed_policies(&world, "blog");
}

#[test]
fn credentials_missing_a_boundary_permission_stop_before_any_change_naming_the_action() {
    // (Denying the boundary's writes cannot be shown on moto: it refuses the SDK's signature on
    // a CreatePolicy carrying a document before it evaluates any policy. The read is denied
    // instead, which the printed deploy policy grants.)
    let world = World::checking_iam(false);
    let (id, secret) = world.iam_user("deployer", "iam:GetPolicy", false);
    let (id, secret) = (id.as_str(), secret.as_str());
    let out = world
        .installer_command(&["install", "--stack", "blog", "--version", "1.0.0", "--yes"])
        .env("AWS_ACCESS_KEY_ID", id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("AWS denied iam:GetPolicy on arn:aws:iam::123456789012:policy/consign/consign-us-east-1-blog-boundary")
            && stderr.contains("installer iam-policy"),
        "{stderr}"
    );
    // Nothing changed: no boundary, no bucket, no stack (read with the deployer's own keys:
    // moto now checks every request).
    let look = r#"
import boto3, json, sys
kw = dict(endpoint_url=sys.argv[1], region_name="us-east-1",
          aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3])
print(json.dumps({
    "policies": [p["Arn"] for p in boto3.client("iam", **kw).list_policies(Scope="Local")["Policies"]],
    "buckets": [b["Name"] for b in boto3.client("s3", **kw).list_buckets().get("Buckets", [])],
    "stacks": [s["StackName"] for s in boto3.client("cloudformation", **kw).list_stacks()["StackSummaries"]],
}))
"#;
    let out = std::process::Command::new(tests::moto::venv_python())
        .args(["-c", look, &world.moto.endpoint(), id, secret])
        .output()
        .unwrap();
    let seen: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(
        seen,
        json!({"policies": [], "buckets": [], "stacks": []}),
        "the refused run changed the account"
    );
}

#[test]
fn every_call_the_installer_makes_is_in_its_printed_policy_and_every_grant_is_used() {
    let mut world = World::new();
    world.license("globex.lic", &[]);
    world.login("globex.lic");
    let log = world.record_calls();
    for args in [
        &["plan", "--stack", "blog", "--version", "1.0.0"][..],
        &["install", "--stack", "blog", "--version", "1.0.0", "--yes"],
        &["status", "--stack", "blog"],
        &["upgrade", "--stack", "blog", "--version", "1.1.0", "--yes"],
        &["rollback", "--stack", "blog", "--yes"],
        &["uninstall", "--stack", "blog", "--yes", "--purge-artifacts"],
    ] {
        world.installer_ok(args);
    }
    tests::iam::check_run(
        &world,
        &log,
        "blog",
        &["1.0.0", "1.1.0"],
        tests::iam::UNREACHED,
    );
}

#[test]
fn with_a_deployment_role_the_caller_needs_only_the_stack_the_bucket_and_pass_role() {
    let mut world = World::new();
    world.license("globex.lic", &[]);
    world.login("globex.lic");
    let printed = world.installer_json(&[
        "iam-policy",
        "--version",
        "1.0.0",
        "--stack",
        "blog",
        "--deployment-role",
        "blog-deployer",
    ]);
    let caller = serde_json::to_string(&printed["caller"]).unwrap();
    assert!(
        !caller.contains("lambda:") && !caller.contains("dynamodb:"),
        "{caller}"
    );
    assert!(!caller.contains("iam:CreateRole"), "{caller}");
    // The admin makes the role as printed.
    let role = world.boto3(&format!(
        r#"
iam = boto3.client("iam", **kw)
r = iam.create_role(RoleName="blog-deployer", AssumeRolePolicyDocument=json.dumps({trust}))["Role"]
iam.put_role_policy(RoleName="blog-deployer", PolicyName="deploy", PolicyDocument=json.dumps({policy}))
print(json.dumps(r["Arn"]))
"#,
        trust = printed["role"]["trust"],
        policy = printed["role"]["policy"],
    ));
    let role = role.as_str().unwrap().to_owned();
    let log = world.record_calls();
    for args in [
        &[
            "plan",
            "--stack",
            "blog",
            "--version",
            "1.0.0",
            "--role-arn",
            &role,
        ][..],
        &[
            "install",
            "--stack",
            "blog",
            "--version",
            "1.0.0",
            "--yes",
            "--role-arn",
            &role,
        ],
        &[
            "upgrade",
            "--stack",
            "blog",
            "--version",
            "1.1.0",
            "--yes",
            "--role-arn",
            &role,
        ],
        &["rollback", "--stack", "blog", "--yes", "--role-arn", &role],
    ] {
        world.installer_ok(args);
    }
    let stack = world.boto3(
        "print(json.dumps(boto3.client('cloudformation', **kw).describe_stacks(StackName='blog')['Stacks'][0].get('RoleARN')))",
    );
    assert_eq!(
        stack,
        json!(role),
        "CloudFormation does not act through the role"
    );
    world.installer_ok(&[
        "uninstall",
        "--stack",
        "blog",
        "--yes",
        "--purge-artifacts",
        "--role-arn",
        &role,
    ]);
    tests::iam::check_run_with(
        &world,
        &log,
        ("blog", &["1.0.0", "1.1.0"]),
        tests::iam::UNREACHED,
        &["--deployment-role", "blog-deployer"],
        "/caller",
    );
    // Both printed policies pass the linters, and what cloudsplaining names is accounted for.
    for (name, policy) in [
        ("caller", &printed["caller"]),
        ("role", &printed["role"]["policy"]),
    ] {
        let file = world.dir.path().join(format!("{name}.json"));
        std::fs::write(&file, serde_json::to_vec(policy).unwrap()).unwrap();
        assert!(tests::iam::parliament(&file).is_empty(), "{name}: {policy}");
        for method in tests::iam::escalation_methods(&tests::iam::cloudsplaining(&file)) {
            assert!(
                tests::iam::EXPLAINED.iter().any(|(m, _)| *m == method),
                "{name}: cloudsplaining names {method}: {policy}"
            );
        }
    }
}

/// Sets the version in the app folder's `consign.toml`.
fn set_version(app: &Path, version: &str) {
    let path = app.join("consign.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("version = "))
        .unwrap()
        .to_owned();
    std::fs::write(
        &path,
        text.replacen(&line, &format!("version = \"{version}\""), 1),
    )
    .unwrap();
}

#[test]
fn the_queue_worker_runs_within_its_printed_policy_too() {
    const QUEUE: tests::install::Example = tests::install::Example {
        folder: "queue-worker",
        files: "queue",
    };
    let mut world = World::bare(tests::moto::Moto::start(), QUEUE);
    world.publish("1.0.0", |app| set_version(app, "1.0.0"));
    world.publish("1.1.0", |app| {
        set_version(app, "1.1.0");
        let worker = app.join("functions/worker/worker.py");
        let code = std::fs::read_to_string(&worker).unwrap();
        std::fs::write(&worker, format!("{code}\n# 1.1.0\n")).unwrap();
    });
    world.license("globex.lic", &[]);
    world.login("globex.lic");
    tests::iam::lint_printed_policies(&world, "jobs");
    let log = world.record_calls();
    for args in [
        &["plan", "--stack", "jobs", "--version", "1.0.0"][..],
        &["install", "--stack", "jobs", "--version", "1.0.0", "--yes"],
        &["upgrade", "--stack", "jobs", "--version", "1.1.0", "--yes"],
        &["rollback", "--stack", "jobs", "--yes"],
        &["uninstall", "--stack", "jobs", "--yes", "--purge-artifacts"],
    ] {
        world.installer_ok(args);
    }
    tests::iam::check_run(
        &world,
        &log,
        "jobs",
        &["1.0.0", "1.1.0"],
        tests::iam::UNREACHED,
    );
}
