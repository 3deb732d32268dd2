//! The whole offline license flow across the binaries, as a vendor and a customer's admin run it:
//! the vendor creates keys and signs a license; the admin pins the root fingerprint (received out
//! of band) and verifies; the vendor rotates keys; the admin's verifier follows the new keyset
//! and refuses the old one.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a broken fixture should fail the test loudly"
)]

use std::path::Path;
use std::process::{Command, Output};

use tests::bin;

fn run(binary: &str, args: &[&str], cwd: &Path) -> Output {
    Command::new(bin(binary))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn vendor_signs_customer_verifies_through_a_key_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    ok(run(
        "vendor-portal",
        &["keys", "init", "--out", "keys", "--issuer", "acme"],
        cwd,
    ));
    let fingerprint = ok(run(
        "vendor-portal",
        &["keys", "fingerprint", "--keys", "keys"],
        cwd,
    ))
    .trim()
    .to_owned();
    std::fs::write(
        cwd.join("claims.json"),
        r#"{"sub":"globex","aud":"serverless-blog","exp":1900000000,"features":["posts","users"],"aws_accounts":["123456789012"],"seq":1}"#,
    )
    .unwrap();
    ok(run(
        "vendor-portal",
        &[
            "license",
            "sign",
            "--keys",
            "keys",
            "--claims",
            "claims.json",
            "-o",
            "globex.lic",
        ],
        cwd,
    ));

    // The admin keeps a copy of the keyset as received, and verifies with the pinned root.
    std::fs::copy(cwd.join("keys/keyset.json"), cwd.join("keyset-v1.json")).unwrap();
    let verify = |keyset: &str| {
        run(
            "license-agent",
            &[
                "verify",
                "--license",
                "globex.lic",
                "--trust",
                keyset,
                "--trust-root",
                &fingerprint,
                "--state-dir",
                "state",
            ],
            cwd,
        )
    };
    let text = ok(verify("keyset-v1.json"));
    assert!(text.contains("features: posts, users"), "{text}");

    // Rotation: the same license verifies against the new keyset; the old keyset is then refused.
    ok(run(
        "vendor-portal",
        &["keys", "rotate", "--keys", "keys"],
        cwd,
    ));
    ok(verify("keys/keyset.json"));
    let out = verify("keyset-v1.json");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("older than seq 2"));

    // A keyset from another vendor is refused against the pinned root.
    ok(run(
        "vendor-portal",
        &["keys", "init", "--out", "impostor"],
        cwd,
    ));
    let out = verify("impostor/keyset.json");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not the pinned"));
}
