//! `installer verify`: an admin checks a bundle before anything touches their account.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a broken fixture should fail the test loudly"
)]

use std::ffi::OsStr;
use std::process::{Command, Output};

use bundles::{AppManifest, Builder, BundlePath};
use license::{KeyEntry, Keyset, SigningKey, UnixTime};

const TEMPLATE: &str = r#"{"AWSTemplateFormatVersion":"2010-09-09",
 "Parameters":{"ArtifactBucket":{"Type":"String"},"CodeKey":{"Type":"String"}},
 "Resources":{"Fn":{"Type":"AWS::Lambda::Function"},"Role":{"Type":"AWS::IAM::Role","Properties":{"Policies":[
   {"PolicyName":"p","PolicyDocument":{"Statement":[{"Effect":"Allow","Action":"sqs:SendMessage","Resource":"*"}]}}]}}}}"#;

const TOML: &str = r#"
[app]
slug = "mini"
name = "Mini"
version = "2.1.0"
template = "template.json"
min_installer_version = "0.1.0"
artifact_bucket_parameter = "ArtifactBucket"

[[functions]]
name = "fn"
runtime = "nodejs20.x"
handler = "index.handler"
code = "fn"
code_parameter = "CodeKey"
"#;

struct Fixture {
    dir: tempfile::TempDir,
    root: SigningKey,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let now = UnixTime::now();
    let root = SigningKey::generate().unwrap();
    let release = SigningKey::generate().unwrap();
    let signer = SigningKey::generate().unwrap();
    let entry = |k: &SigningKey, prefix| KeyEntry {
        kid: k.public_key().derive_kid(prefix),
        public_key: k.public_key(),
        not_before: now.minus(60),
        not_after: now.plus(86_400),
    };
    let keyset = Keyset {
        kind: license::KEYSET_TYPE.into(),
        issuer: None,
        seq: 1,
        issued_at: now,
        root: root.public_key(),
        license_keys: vec![entry(&signer, "lic")],
        release_keys: vec![entry(&release, "rel")],
    };
    std::fs::write(dir.path().join("keyset.json"), keyset.sign(&root).unwrap()).unwrap();
    let mut builder = Builder::new(
        AppManifest::parse(TOML).unwrap(),
        TEMPLATE.as_bytes().to_vec(),
    )
    .unwrap();
    let zip = bundles::zip::write_zip(vec![bundles::zip::ZipEntry {
        name: BundlePath::new("index.js").unwrap(),
        executable: false,
        data: b"exports.handler = async () => 'ok';\n".to_vec(),
    }])
    .unwrap();
    builder
        .add_function(
            "fn",
            bundles::build::in_memory(zip),
            bundles::manifest::FunctionKind::Source,
        )
        .unwrap();
    let mut out = Vec::new();
    builder
        .build(
            &release.public_key().derive_kid("rel"),
            &release,
            now,
            &mut out,
        )
        .unwrap();
    std::fs::write(dir.path().join("mini.bundle"), out).unwrap();
    Fixture { dir, root }
}

fn verify(f: &Fixture, bundle: &str, extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_installer"));
    cmd.arg("verify")
        .arg(f.dir.path().join(bundle))
        .arg("--trust")
        .arg(f.dir.path().join("keyset.json"));
    cmd.args(extra.iter().map(OsStr::new)).output().unwrap()
}

#[test]
fn verify_accepts_a_genuine_bundle_and_shows_what_it_would_create() {
    let f = fixture();
    let fp = f.root.public_key().fingerprint();
    let out = verify(&f, "mini.bundle", &["--trust-root", &fp]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("VERIFIED: signed by release key rel-"),
        "{text}"
    );
    assert!(text.contains("Mini (mini) version 2.1.0"), "{text}");
    assert!(text.contains("sqs:SendMessage"), "{text}");
    let out = verify(&f, "mini.bundle", &["--output", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["objects_checked"], 2);
    assert_eq!(doc["iam_actions"], serde_json::json!(["sqs:SendMessage"]));
}

#[test]
fn verify_refuses_tampering_a_foreign_root_and_garbage() {
    let f = fixture();
    let bytes = std::fs::read(f.dir.path().join("mini.bundle")).unwrap();
    let mut tampered = bytes.clone();
    let at = bytes.len() - 5; // a chunk tag of the last object
    tampered[at] ^= 1;
    std::fs::write(f.dir.path().join("tampered.bundle"), tampered).unwrap();
    let out = verify(&f, "tampered.bundle", &["--output", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not match the signed manifest"), "{err}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["code"], "object_mismatch");

    let out = verify(
        &f,
        "mini.bundle",
        &["--trust-root", &format!("sha256:{}", "1".repeat(64))],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not the pinned"));

    std::fs::write(
        f.dir.path().join("garbage.bundle"),
        b"PK\x03\x04 not a bundle",
    )
    .unwrap();
    let out = verify(&f, "garbage.bundle", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("this is not a .bundle file"));
    assert_eq!(verify(&f, "missing.bundle", &[]).status.code(), Some(1));
    assert_eq!(
        Command::new(env!("CARGO_BIN_EXE_installer"))
            .arg("verify")
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
}
