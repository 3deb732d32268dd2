//! The example apps: both build into bundles that verify, and their functions behave as their
//! docs say, run in Python against the moto server.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a broken fixture should fail the test loudly"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use tests::bin;

use tests::moto::{Moto, venv_python};

/// Runs a workspace binary, asserts success and returns stdout.
fn run(binary: &str, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(bin(binary)).args(args).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{binary}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Builds example `app` into `dir/APP.bundle` with the CLI, creating `dir/keys` on first use.
fn build_example(dir: &Path, app: &str) -> PathBuf {
    let keys = dir.join("keys");
    if !keys.exists() {
        run(
            "vendor-portal",
            &[
                "keys".as_ref(),
                "init".as_ref(),
                "--out".as_ref(),
                keys.as_os_str(),
            ],
        );
    }
    let bundle = dir.join(format!("{app}.bundle"));
    run(
        "vendor-portal",
        &[
            "release".as_ref(),
            "build".as_ref(),
            examples().join(app).as_os_str(),
            "--keys".as_ref(),
            keys.as_os_str(),
            "-o".as_ref(),
            bundle.as_os_str(),
        ],
    );
    bundle
}

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

#[test]
fn both_examples_build_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    for app in ["serverless-blog", "queue-worker"] {
        let bundle = build_example(tmp.path(), app);
        let text = run(
            "installer",
            &[
                "verify".as_ref(),
                bundle.as_os_str(),
                "--trust".as_ref(),
                keys.join("keyset.json").as_os_str(),
            ],
        );
        assert!(text.starts_with("VERIFIED"), "{text}");
        assert!(text.contains("AWS::Lambda::Function"), "{text}");
    }
}

/// Builds `app` with the CLI, opens the bundle, writes the manifest beside the objects, and
/// deploys it on moto with CloudFormation.
fn deploy_on_moto(app: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let bundle = build_example(tmp.path(), app);
    let opened = tmp.path().join("opened");
    run(
        "vendor-portal",
        &[
            "release".as_ref(),
            "open".as_ref(),
            bundle.as_os_str(),
            "--keys".as_ref(),
            tmp.path().join(format!("{app}.bundle.keys")).as_os_str(),
            "-o".as_ref(),
            opened.as_os_str(),
        ],
    );
    let inspect = run(
        "vendor-portal",
        &[
            "--output".as_ref(),
            "json".as_ref(),
            "release".as_ref(),
            "inspect".as_ref(),
            bundle.as_os_str(),
            "--trust".as_ref(),
            keys.join("keyset.json").as_os_str(),
        ],
    );
    let doc: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    std::fs::write(opened.join("manifest.json"), doc["manifest"].to_string()).unwrap();
    let moto = Moto::start();
    moto.request(
        "POST",
        "/moto-api/config",
        &[("Content-Type", "application/json")],
        r#"{"lambda":{"use_docker":false}}"#,
    )
    .unwrap();
    let out = Command::new(venv_python())
        .arg(examples().join("tests/deploy_on_moto.py"))
        .arg(moto.endpoint())
        .arg(&opened)
        .arg(format!("{app}-test"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_reference_blog_deploys_with_cloudformation_on_moto() {
    let report = deploy_on_moto("serverless-blog");
    assert!(
        report.contains(
            r#""status": "CREATE_COMPLETE", "resources": 20, "missing": [], "failed": []"#
        ),
        "{report}"
    );
    assert!(report.contains(r#""functions": ["serverless-blog-test-posts", "serverless-blog-test-site", "serverless-blog-test-users"]"#), "{report}");
}

#[test]
fn the_queue_worker_deploys_with_cloudformation_on_moto() {
    let report = deploy_on_moto("queue-worker");
    assert!(
        report.contains(r#""missing": [], "failed": []"#),
        "{report}"
    );
    assert!(report.contains("queue-worker-test-worker"), "{report}");
}

#[test]
fn example_functions_answer_as_documented() {
    let moto = Moto::start();
    let out = Command::new(venv_python())
        .args(["-m", "unittest", "-v", "test_functions"])
        .current_dir(examples().join("tests"))
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("Ran 11 tests"), "{log}");
}

#[test]
fn the_order_workflow_intake_answers_as_documented() {
    let out = Command::new("node")
        .args(["--test", "test_intake.mjs"])
        .current_dir(examples().join("tests"))
        .output()
        .expect("node is missing: scripts/test installs Debian's nodejs where there is none");
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{log}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(log.contains("# pass 3"), "{log}");
}
