//! A program driving the installer (`--output json`) learns why it refused from a stable code, not
//! only from a sentence: the installer's own refusals (`installer::error::Code`), the portal's,
//! and a bundle check's. Before the installer had its own error type, every refusal of its own
//! reported `"code": "error"`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use serde_json::Value;
use tests::install::World;

const STACK: &str = "blog";

/// Runs `args` with `--output json`, expecting a refusal; returns its JSON answer.
fn refusal(world: &World, args: &[&str]) -> Value {
    let out = world
        .installer_command(&[args, &["--output", "json"]].concat())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?} was not refused");
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: stdout is not one JSON document ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(answer["ok"], false, "{answer}");
    assert!(
        answer["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{answer}"
    );
    answer
}

#[test]
fn installer_refusals_report_their_codes_in_json() {
    let world = World::new();
    world.license("elsewhere.lic", &["--aws-account", "999999999999"]);
    world.login_without_aws("elsewhere.lic");
    let install = ["install", "--stack", STACK, "--version", "1.0.0", "--yes"];
    assert_eq!(refusal(&world, &install)["code"], "wrong_account");

    world.license("old-only.lic", &["--versions", "<1.1.0"]);
    world.login("old-only.lic");
    let newer = ["install", "--stack", STACK, "--version", "1.1.0", "--yes"];
    assert_eq!(refusal(&world, &newer)["code"], "not_entitled");
    let unknown_param = [&install[..], &["--param", "PostsCodeKey=evil.zip"]].concat();
    assert_eq!(refusal(&world, &unknown_param)["code"], "bad_parameter");

    world.license("globex.lic", &[]);
    world.login("globex.lic");
    world.installer_ok(&["install", "--stack", STACK, "--version", "1.1.0", "--yes"]);
    let down = ["upgrade", "--stack", STACK, "--version", "1.0.0", "--yes"];
    assert_eq!(refusal(&world, &down)["code"], "downgrade");
    assert_eq!(refusal(&world, &install)["code"], "already_installed");
    let other = ["upgrade", "--stack", "other", "--version", "1.1.0", "--yes"];
    assert_eq!(refusal(&world, &other)["code"], "not_installed");
}

#[test]
fn portal_refusals_keep_the_portals_code() {
    let world = World::new();
    let id = world.license("globex.lic", &[]);
    world.login("globex.lic");
    world.vendor(&["license", "revoke", &id]);
    let install = ["install", "--stack", STACK, "--version", "1.0.0", "--yes"];
    assert_eq!(refusal(&world, &install)["code"], "revoked");
}
