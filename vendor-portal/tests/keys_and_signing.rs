//! The vendor's offline commands: `keys init`, `keys fingerprint`, `keys rotate` and
//! `license sign`, checked by what they write and by verifying their output with the license
//! library as a customer would.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a broken fixture should fail the test loudly"
)]

mod common;

use common::{assert_fails_with, ok, portal};
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Output;

use license::{Keyset, TrustPin, UnixTime, VerifyOptions};

fn init(dir: &Path) -> serde_json::Value {
    let out = portal(&[
        OsStr::new("keys"),
        OsStr::new("init"),
        OsStr::new("--out"),
        dir.as_os_str(),
        OsStr::new("--issuer"),
        OsStr::new("acme"),
        OsStr::new("--output"),
        OsStr::new("json"),
    ]);
    serde_json::from_str(&ok(out)).unwrap()
}

fn sign(keys: &Path, claims: &str, out: &Path) -> Output {
    let claims_path = out.with_extension("json");
    std::fs::write(&claims_path, claims).unwrap();
    portal(&[
        OsStr::new("license"),
        OsStr::new("sign"),
        OsStr::new("--keys"),
        keys.as_os_str(),
        OsStr::new("--claims"),
        claims_path.as_os_str(),
        OsStr::new("-o"),
        out.as_os_str(),
    ])
}

fn keyset(dir: &Path) -> license::TrustedKeyset {
    Keyset::verify(
        &std::fs::read(dir.join("keyset.json")).unwrap(),
        &TrustPin::default(),
    )
    .unwrap()
}

const CLAIMS: &str = r#"{"sub":"globex","aud":"serverless-blog","exp":1900000000,"features":["posts"],"aws_accounts":["123456789012"],"seq":1}"#;

#[test]
fn keys_init_writes_private_keys_0600_and_a_signed_keyset() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let report = init(&dir);
    let mode = |name: &str| {
        std::fs::metadata(dir.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(""), 0o700);
    for key in ["root.key", "license-signing.key", "release.key"] {
        assert_eq!(mode(key), 0o600, "{key}");
        let pem = std::fs::read_to_string(dir.join(key)).unwrap();
        assert!(
            pem.starts_with("-----BEGIN PRIVATE KEY-----\n"),
            "{key} is PKCS#8 PEM"
        );
    }
    let trusted = keyset(&dir);
    assert_eq!(report["root_fingerprint"], trusted.root_fingerprint());
    assert_eq!(trusted.keyset().seq, 1);
    assert_eq!(trusted.keyset().issuer.as_ref().unwrap().as_str(), "acme");
    assert_eq!(trusted.keyset().release_keys.len(), 1);
    let fingerprint = ok(portal(&[
        OsStr::new("keys"),
        OsStr::new("fingerprint"),
        OsStr::new("--keys"),
        dir.as_os_str(),
    ]));
    assert_eq!(fingerprint.trim(), trusted.root_fingerprint());
}

#[test]
fn keys_init_refuses_to_replace_existing_keys() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path());
    let before = std::fs::read(tmp.path().join("root.key")).unwrap();
    let out = portal(&[
        OsStr::new("keys"),
        OsStr::new("init"),
        OsStr::new("--out"),
        tmp.path().as_os_str(),
    ]);
    assert_fails_with(&out, "refusing to replace existing keys");
    assert_eq!(std::fs::read(tmp.path().join("root.key")).unwrap(), before);
}

#[test]
fn license_sign_fills_sound_defaults_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path());
    let lic = tmp.path().join("globex.lic");
    ok(sign(tmp.path(), CLAIMS, &lic));
    let verified = keyset(tmp.path())
        .verify_license(
            &std::fs::read_to_string(&lic).unwrap(),
            &VerifyOptions::at(UnixTime::now()),
        )
        .unwrap();
    let c = verified.claims();
    assert_eq!(
        (c.iss.as_str(), c.sub.as_str(), c.aud.as_str(), c.seq),
        ("acme", "globex", "serverless-blog", 1)
    );
    assert!(c.jti.as_str().starts_with("lic_"));
    assert_eq!(c.plan.as_str(), "standard");
    assert_eq!(
        c.distribution
            .channels
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>(),
        ["stable"]
    );
    assert_eq!(c.term.end, c.exp);
    assert!(c.policy.checkin_required);
}

#[test]
fn license_sign_names_the_offending_field() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path());
    let lic = tmp.path().join("bad.lic");
    assert_fails_with(
        &sign(tmp.path(), &CLAIMS.replace("\"seq\"", "\"sequence\""), &lic),
        "unknown field `sequence`",
    );
    assert_fails_with(
        &sign(tmp.path(), &CLAIMS.replace("123456789012", "1234"), &lic),
        "\"1234\" is not an AWS account id",
    );
    assert_fails_with(
        &sign(
            tmp.path(),
            &CLAIMS.replace("1900000000", "\"2030-01-01\""),
            &lic,
        ),
        "is a string",
    );
    assert_fails_with(
        &sign(tmp.path(), r#"{"aud":"x","exp":1900000000}"#, &lic),
        "missing field `sub`",
    );
    assert_fails_with(
        &sign(
            tmp.path(),
            &CLAIMS.replace("1900000000", "1000000000"),
            &lic,
        ),
        "must be before exp",
    );
    assert!(!lic.exists(), "nothing is written when signing fails");
}

#[test]
fn license_sign_refuses_a_license_that_outlives_its_signing_key() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path());
    let out = sign(
        tmp.path(),
        &CLAIMS.replace("1900000000", "4000000000"),
        &tmp.path().join("long.lic"),
    );
    assert_fails_with(&out, "rotate keys");
}

#[test]
fn rotation_keeps_issued_licenses_valid_and_signs_new_ones_with_the_new_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init(dir);
    let before = keyset(dir);
    let old_keyset_file = std::fs::read(dir.join("keyset.json")).unwrap();
    let old_lic = dir.join("old.lic");
    ok(sign(dir, CLAIMS, &old_lic));
    let report: serde_json::Value = serde_json::from_str(&ok(portal(&[
        OsStr::new("keys"),
        OsStr::new("rotate"),
        OsStr::new("--keys"),
        dir.as_os_str(),
        OsStr::new("--output"),
        OsStr::new("json"),
    ])))
    .unwrap();
    let after = keyset(dir);
    assert_eq!(after.keyset().seq, 2);
    assert_eq!(
        after.root_fingerprint(),
        before.root_fingerprint(),
        "the root does not change"
    );
    assert_eq!(after.keyset().license_keys.len(), 2);
    assert!(
        dir.join("retired")
            .join(format!("{}.key", report["retired_key"].as_str().unwrap()))
            .is_file()
    );

    // A verifier that pinned the root and saw seq 1 accepts seq 2, and the old license.
    let pin = TrustPin {
        root_fingerprint: Some(before.root_fingerprint()),
        min_seq: 1,
    };
    let trusted = Keyset::verify(&std::fs::read(dir.join("keyset.json")).unwrap(), &pin).unwrap();
    let now = VerifyOptions::at(UnixTime::now());
    trusted
        .verify_license(&std::fs::read_to_string(&old_lic).unwrap(), &now)
        .unwrap();
    let new_lic = dir.join("new.lic");
    ok(sign(dir, CLAIMS, &new_lic));
    let verified = trusted
        .verify_license(&std::fs::read_to_string(&new_lic).unwrap(), &now)
        .unwrap();
    assert_eq!(verified.kid(), report["license_key"].as_str().unwrap());
    // The keyset from before the rotation is now a rollback for that verifier.
    let pin = TrustPin {
        root_fingerprint: Some(before.root_fingerprint()),
        min_seq: 2,
    };
    let err = Keyset::verify(&old_keyset_file, &pin).unwrap_err();
    assert_eq!(err.code(), "rollback", "{err}");
}

#[test]
fn rotation_can_retire_the_old_key_early() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init(dir);
    let old_lic = dir.join("old.lic");
    ok(sign(dir, CLAIMS, &old_lic));
    ok(portal(&[
        OsStr::new("keys"),
        OsStr::new("rotate"),
        OsStr::new("--keys"),
        dir.as_os_str(),
        OsStr::new("--retire-after-days"),
        OsStr::new("0"),
    ]));
    let now = VerifyOptions::at(UnixTime::now());
    let err = keyset(dir)
        .verify_license(&std::fs::read_to_string(&old_lic).unwrap(), &now)
        .unwrap_err();
    assert_eq!(err.code(), "unknown_key", "{err}");
}

#[test]
fn rotation_without_the_root_key_says_how_to_fix_it() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path());
    std::fs::remove_file(tmp.path().join("root.key")).unwrap();
    let out = portal(&[
        OsStr::new("keys"),
        OsStr::new("rotate"),
        OsStr::new("--keys"),
        tmp.path().as_os_str(),
    ]);
    assert_fails_with(&out, "bring root.key back");
}

/// A reader that goes away (`vendor-portal … | head -1`) ends the command quietly: no panic
/// message, no backtrace.
#[test]
fn closed_stdout_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vendor-portal"))
        .args(["keys", "init", "--out"])
        .arg(dir.path().join("keys"))
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.is_empty(), "{err}");
}
