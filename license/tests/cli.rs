//! `license-agent inspect` and `verify` as an administrator runs them: exit codes, one-line
//! reasons, JSON output, and rollback protection through --state-dir.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a broken fixture should fail the test loudly"
)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use license::{KeyEntry, Keyset, LicenseRequest, SigningKey, UnixTime};

struct Fixture {
    dir: tempfile::TempDir,
    root: SigningKey,
    signer: SigningKey,
    keyset: Keyset,
}

impl Fixture {
    fn new() -> Self {
        let now = UnixTime::now();
        let root = SigningKey::generate().unwrap();
        let signer = SigningKey::generate().unwrap();
        let keyset = Keyset {
            kind: license::KEYSET_TYPE.into(),
            issuer: Some("acme".parse().unwrap()),
            seq: 2,
            issued_at: now,
            root: root.public_key(),
            license_keys: vec![KeyEntry {
                kid: signer.public_key().derive_kid("lic"),
                public_key: signer.public_key(),
                not_before: now.minus(86_400),
                not_after: now.plus(100 * 365 * 86_400),
            }],
            release_keys: vec![],
        };
        let fixture = Self {
            dir: tempfile::tempdir().unwrap(),
            root,
            signer,
            keyset,
        };
        fixture.write_keyset("keyset.json", 2);
        fixture
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write_keyset(&self, name: &str, seq: u64) -> PathBuf {
        let mut keyset = self.keyset.clone();
        keyset.seq = seq;
        let path = self.path(name);
        std::fs::write(&path, keyset.sign(&self.root).unwrap()).unwrap();
        path
    }

    fn write_license(&self, name: &str, request: &str) -> PathBuf {
        let claims = LicenseRequest::from_json(request.as_bytes())
            .unwrap()
            .into_claims(Some(&"acme".parse().unwrap()), UnixTime::now().minus(60))
            .unwrap();
        let kid = self.signer.public_key().derive_kid("lic");
        let path = self.path(name);
        std::fs::write(
            &path,
            license::sign_license(&claims, &kid, &self.signer).unwrap(),
        )
        .unwrap();
        path
    }
}

const REQUEST: &str = r#"{"sub":"globex","aud":"serverless-blog","exp":4000000000,"jti":"lic_cli","features":["posts","users"],"aws_accounts":["123456789012"]}"#;

fn agent<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_license-agent"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A failure: exit 1, one `error:` line on stderr saying `says`, nothing that looks like a crash.
fn assert_fails_with(out: &Output, says: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(
        err.starts_with("error: ") && err.trim_end().lines().count() == 1,
        "{err:?}"
    );
    assert!(err.contains(says), "{err:?} does not say {says:?}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

fn verify(f: &Fixture, license: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("verify"),
        OsStr::new("--license"),
        license.as_os_str(),
        OsStr::new("--trust"),
    ];
    let keyset = f.path("keyset.json");
    args.push(keyset.as_os_str());
    args.extend(extra.iter().map(OsStr::new));
    agent(&args)
}

#[test]
fn verify_accepts_a_genuine_license_and_lists_its_entitlements() {
    let f = Fixture::new();
    let lic = f.write_license("l.lic", REQUEST);
    let out = verify(&f, &lic, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("VALID license lic_cli (seq 1) for customer globex"),
        "{text}"
    );
    assert!(text.contains("features: posts, users"), "{text}");
    assert!(text.contains("AWS accounts: 123456789012"), "{text}");
}

#[test]
fn verify_output_json_carries_claims_and_state() {
    let f = Fixture::new();
    let lic = f.write_license("l.lic", REQUEST);
    let out = verify(&f, &lic, &["--output", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["valid"], true);
    assert_eq!(
        doc["claims"]["entitlements"]["features"],
        serde_json::json!(["posts", "users"])
    );
    assert_eq!(doc["state"]["state"], "ACTIVE");
    assert_eq!(doc["keyset_seq"], 2);
}

#[test]
fn verify_checks_the_account_and_region_when_asked() {
    let f = Fixture::new();
    let lic = f.write_license("l.lic", REQUEST);
    let here = ["--aws-account", "123456789012", "--region", "eu-west-1"];
    assert_eq!(verify(&f, &lic, &here).status.code(), Some(0));
    let elsewhere = ["--aws-account", "210987654321", "--region", "eu-west-1"];
    assert_fails_with(
        &verify(&f, &lic, &elsewhere),
        "may not run in account 210987654321, region eu-west-1: the license is bound to AWS accounts",
    );
    assert_eq!(
        verify(&f, &lic, &["--aws-account", "123456789012"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn verify_refuses_a_tampered_license_in_one_line() {
    let f = Fixture::new();
    let lic = f.write_license("l.lic", REQUEST);
    let text = std::fs::read_to_string(&lic).unwrap();
    // Flip one character in the middle of the payload.
    let mid = text.len() / 2;
    let c = text.as_bytes()[mid];
    let mut forged = text.clone();
    forged.replace_range(mid..mid + 1, if c == b'A' { "B" } else { "A" });
    std::fs::write(&lic, forged).unwrap();
    let out = verify(&f, &lic, &[]);
    assert_fails_with(&out, "the license");
    assert!(stdout(&out).is_empty());
}

#[test]
fn verify_reports_expiry_with_a_code_in_json() {
    let f = Fixture::new();
    let lic = f.write_license("l.lic", REQUEST);
    let out = verify(&f, &lic, &["--at", "2099-01-01", "--output", "json"]);
    assert_fails_with(&out, "the license expired at 2096-10-02T07:06:40Z");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (doc["valid"].as_bool(), doc["code"].as_str()),
        (Some(false), Some("expired"))
    );
}

#[test]
fn verify_refuses_a_keyset_that_is_not_from_the_pinned_root() {
    let f = Fixture::new();
    let lic = f.write_license("l.lic", REQUEST);
    let pin = format!("sha256:{}", "0".repeat(64));
    assert_fails_with(&verify(&f, &lic, &["--trust-root", &pin]), "not the pinned");
    let good = f.root.public_key().fingerprint();
    assert_eq!(
        verify(&f, &lic, &["--trust-root", &good]).status.code(),
        Some(0)
    );
}

#[test]
fn state_dir_refuses_older_license_revisions_and_keysets() {
    let f = Fixture::new();
    let state = f.path("state");
    let state_arg = state.to_str().unwrap();
    let newer = f.write_license("seq3.lic", &REQUEST.replace("\"jti\"", "\"seq\":3,\"jti\""));
    let older = f.write_license("seq2.lic", &REQUEST.replace("\"jti\"", "\"seq\":2,\"jti\""));
    assert_eq!(
        verify(&f, &newer, &["--state-dir", state_arg])
            .status
            .code(),
        Some(0)
    );
    assert_fails_with(
        &verify(&f, &older, &["--state-dir", state_arg]),
        "seq 2, older than seq 3",
    );
    // An older keyset (seq 1) after seq 2 was seen is a rollback too.
    let old_keyset = f.write_keyset("old-keyset.json", 1);
    let out = agent(&[
        OsStr::new("verify"),
        OsStr::new("--license"),
        newer.as_os_str(),
        OsStr::new("--trust"),
        old_keyset.as_os_str(),
        OsStr::new("--state-dir"),
        state.as_os_str(),
    ]);
    assert_fails_with(&out, "keyset has seq 1, older than seq 2");
    // Without the state directory there is no memory, by design.
    assert_eq!(verify(&f, &older, &[]).status.code(), Some(0));
}

#[test]
fn inspect_decodes_without_trusting_and_says_so() {
    let f = Fixture::new();
    let lic = f.write_license("l.lic", REQUEST);
    let out = agent(&[OsStr::new("inspect"), lic.as_os_str()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).starts_with("*** UNVERIFIED"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).starts_with("UNVERIFIED"));
    assert!(stdout(&out).contains("\"sub\": \"globex\""));
    let out = agent(&[
        OsStr::new("--output"),
        OsStr::new("json"),
        OsStr::new("inspect"),
        lic.as_os_str(),
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["verified"], false);
}

#[test]
fn bad_files_and_bad_usage_fail_cleanly() {
    let f = Fixture::new();
    assert_fails_with(&verify(&f, &f.path("nope.lic"), &[]), "nope.lic");
    let garbage = f.path("garbage.lic");
    std::fs::write(&garbage, [0xffu8, 0, 1, 2, 3]).unwrap();
    assert_fails_with(
        &agent(&[OsStr::new("inspect"), garbage.as_os_str()]),
        "is not text",
    );
    let huge = f.path("huge.lic");
    std::fs::write(&huge, vec![b'A'; 2 * 1024 * 1024]).unwrap();
    assert_fails_with(&verify(&f, &huge, &[]), "over 1048576 bytes");
    assert_fails_with(
        &verify(&f, &f.path("keyset.json"), &[]),
        "first line must be",
    );
    assert_eq!(agent(&["verify", "--license"]).status.code(), Some(2));
    assert_eq!(agent(&["frobnicate"]).status.code(), Some(2));
    let out = verify(
        &f,
        &f.write_license("l.lic", REQUEST),
        &["--at", "yesterday"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is not YYYY-MM-DD"));
}
