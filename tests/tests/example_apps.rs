//! The example apps: both build into bundles that verify, and their functions behave as their
//! docs say, run in Python against the moto server.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a broken fixture should fail the test loudly"
)]

use std::path::PathBuf;
use std::process::Command;

use tests::bin;
use tests::moto::{Moto, venv_python};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

#[test]
fn both_examples_build_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let run = |binary: &str, args: &[&std::ffi::OsStr]| {
        let out = Command::new(bin(binary)).args(args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{binary}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run(
        "vendor-portal",
        &[
            "keys".as_ref(),
            "init".as_ref(),
            "--out".as_ref(),
            keys.as_os_str(),
        ],
    );
    for app in ["serverless-blog", "queue-worker"] {
        let bundle = tmp.path().join(format!("{app}.bundle"));
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
    assert!(log.contains("Ran 7 tests"), "{log}");
}
