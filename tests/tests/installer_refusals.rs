//! Every refusal happens before the installer changes anything in the account: each test takes
//! the account's full state (stacks, buckets and keys, SSM parameters) before the refused run
//! and asserts it is identical after, and that the error says what was wrong.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use tests::install::World;

const STACK: &str = "blog";

/// Runs `args`, expecting a refusal that mentions `expected`, with the account unchanged.
fn refused(world: &World, args: &[&str], expected: &str) -> String {
    let before = world.account();
    let stderr = world.installer_err(args);
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in: {stderr}"
    );
    assert_eq!(
        world.account(),
        before,
        "the refused run changed the account"
    );
    stderr
}

#[test]
fn license_bound_to_another_account_is_refused() {
    let world = World::new();
    world.license("elsewhere.lic", &["--aws-account", "999999999999"]);
    // Logged in without AWS at hand, so that the installer's own check is what refuses.
    world.login_without_aws("elsewhere.lic");
    let stderr = refused(
        &world,
        &["install", "--stack", STACK, "--version", "1.0.0", "--yes"],
        "123456789012",
    );
    assert!(stderr.contains("999999999999"), "{stderr}");
    refused(
        &world,
        &["plan", "--stack", STACK, "--version", "1.0.0"],
        "does not allow this account",
    );
}

#[test]
fn revoked_license_is_refused() {
    let world = World::new();
    let id = world.license("globex.lic", &[]);
    world.login("globex.lic");
    world.vendor(&["license", "revoke", &id]);
    refused(
        &world,
        &["install", "--stack", STACK, "--version", "1.0.0", "--yes"],
        "revoked",
    );
}

#[test]
fn version_outside_the_license_window_is_refused() {
    let world = World::new();
    world.license("old-only.lic", &["--versions", "<1.1.0"]);
    world.login("old-only.lic");
    let versions = world.installer_json(&["versions"]);
    assert_eq!(versions["versions"][0]["version"], "1.1.0");
    assert_eq!(versions["versions"][0]["installable"], false, "{versions}");
    assert_eq!(versions["versions"][1]["installable"], true, "{versions}");
    refused(
        &world,
        &["install", "--stack", STACK, "--version", "1.1.0", "--yes"],
        "does not cover serverless-blog 1.1.0",
    );
}

#[test]
fn tampered_bundle_object_on_the_portal_is_refused() {
    let world = World::new();
    world.license("globex.lic", &[]);
    world.login("globex.lic");
    // A compromised portal (or its storage) alters the posts function's sealed object.
    let blob = world.stored_object("1.0.0", "functions/posts.zip");
    let mut bytes = std::fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&blob, bytes).unwrap();
    let stderr = refused(
        &world,
        &["install", "--stack", STACK, "--version", "1.0.0", "--yes"],
        "functions/posts.zip",
    );
    assert!(stderr.contains("refused"), "{stderr}");
}

#[test]
fn downgrade_without_the_flag_is_refused() {
    let world = World::new();
    world.license("globex.lic", &[]);
    world.login("globex.lic");
    world.installer_ok(&["install", "--stack", STACK, "--version", "1.1.0", "--yes"]);
    refused(
        &world,
        &["upgrade", "--stack", STACK, "--version", "1.0.0", "--yes"],
        "--allow-downgrade",
    );
    refused(
        &world,
        &["install", "--stack", STACK, "--version", "1.0.0", "--yes"],
        "installer upgrade",
    );
    let down = world.installer_json(&[
        "upgrade",
        "--stack",
        STACK,
        "--version",
        "1.0.0",
        "--yes",
        "--allow-downgrade",
    ]);
    assert_eq!(down["version"], "1.0.0", "{down}");
}

#[test]
fn skipping_a_required_release_is_refused() {
    let mut world = World::new();
    world.license("globex.lic", &[]);
    world.login("globex.lic");
    world.installer_ok(&["install", "--stack", STACK, "--version", "1.0.0", "--yes"]);
    let keys = world.p("keys");
    world.vendor(&[
        "release",
        "require",
        "serverless-blog",
        "1.1.0",
        "--keys",
        &keys,
    ]);
    world.publish("1.2.0", |_| {});
    let versions = world.installer_ok(&["versions"]);
    assert!(versions.contains("REQUIRED"), "{versions}");
    refused(
        &world,
        &["upgrade", "--stack", STACK, "--version", "1.2.0", "--yes"],
        "upgrade to 1.1.0 first",
    );
    world.installer_ok(&["upgrade", "--stack", STACK, "--version", "1.1.0", "--yes"]);
    world.installer_ok(&["upgrade", "--stack", STACK, "--version", "1.2.0", "--yes"]);
}

#[test]
fn release_needing_a_newer_installer_is_refused() {
    let mut world = World::new();
    world.license("globex.lic", &[]);
    world.publish("1.2.0", |app| {
        let manifest = app.join("consign.toml");
        let text = std::fs::read_to_string(&manifest).unwrap().replace(
            "min_installer_version = \"0.1.0\"",
            "min_installer_version = \"99.0.0\"",
        );
        std::fs::write(manifest, text).unwrap();
    });
    world.login("globex.lic");
    refused(
        &world,
        &["install", "--stack", STACK, "--version", "1.2.0", "--yes"],
        "update the installer",
    );
}

#[test]
fn unknown_parameter_and_foreign_stack_are_refused() {
    let world = World::new();
    world.license("globex.lic", &[]);
    world.login("globex.lic");
    refused(
        &world,
        &[
            "install",
            "--stack",
            STACK,
            "--version",
            "1.0.0",
            "--yes",
            "--param",
            "PostsCodeKey=evil.zip",
        ],
        "PostsCodeKey is not a parameter",
    );
    // A stack the installer did not create is left alone.
    let status = std::process::Command::new(tests::moto::venv_python())
        .args([
            "-c",
            "import boto3,sys; boto3.client('cloudformation', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='t', aws_secret_access_key='t').create_stack(StackName='theirs', TemplateBody='{\"AWSTemplateFormatVersion\":\"2010-09-09\",\"Resources\":{\"Q\":{\"Type\":\"AWS::SQS::Queue\"}}}')",
            &world.moto.endpoint(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    refused(
        &world,
        &[
            "install",
            "--stack",
            "theirs",
            "--version",
            "1.0.0",
            "--yes",
        ],
        "was not installed by Consign",
    );
    refused(
        &world,
        &["uninstall", "--stack", "theirs", "--yes"],
        "was not installed by Consign",
    );
}

#[test]
fn missing_permission_names_the_action_and_the_resource() {
    // The boundary is already there (an admin wrote it): the deploy goes on to the bucket.
    let world = World::checking_iam(true);
    let (id, secret) = world.iam_user("admin", "s3:CreateBucket", true);
    let out = world
        .installer_command(&["install", "--stack", STACK, "--version", "1.0.0", "--yes"])
        .env("AWS_ACCESS_KEY_ID", id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "AWS denied s3:CreateBucket on arn:aws:s3:::consign-artifacts-123456789012-us-east-1-"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("iam-policy"), "{stderr}");
}
