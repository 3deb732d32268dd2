//! `vendor-portal release build|inspect|open` on the reference app and on broken app folders.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a broken fixture should fail the test loudly"
)]

mod common;

use common::copy_dir;

use common::{assert_fails_with, ok, portal};
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;

struct Fixture {
    tmp: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let blog = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/serverless-blog");
        copy_dir(&blog, &tmp.path().join("blog"));
        ok(portal(&[
            OsStr::new("keys"),
            OsStr::new("init"),
            OsStr::new("--out"),
            tmp.path().join("keys").as_os_str(),
        ]));
        Self { tmp }
    }

    fn p(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn build(&self, app: &str, out: &str, extra: &[&str]) -> Output {
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("--output"),
            OsStr::new("json"),
            OsStr::new("release"),
            OsStr::new("build"),
        ];
        let (app, keys, out) = (self.p(app), self.p("keys"), self.p(out));
        args.extend([
            app.as_os_str(),
            OsStr::new("--keys"),
            keys.as_os_str(),
            OsStr::new("-o"),
            out.as_os_str(),
        ]);
        args.extend(extra.iter().map(OsStr::new));
        portal(&args)
    }
}

fn digests(report: &serde_json::Value) -> Vec<(String, String)> {
    report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["path"].as_str().unwrap().to_owned(),
                o["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn build_reports_every_object_and_writes_keys_0600() {
    let f = Fixture::new();
    let report: serde_json::Value =
        serde_json::from_str(&ok(f.build("blog", "blog.bundle", &[]))).unwrap();
    let roles: Vec<&str> = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["template", "function", "function", "function", "asset"]
    );
    assert!(
        report["objects"][1]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let mode = std::fs::metadata(f.p("blog.bundle.keys"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!f.p("blog.bundle.partial").exists());
}

#[test]
fn the_same_folder_builds_the_same_function_zips_whatever_the_file_times_and_order() {
    let f = Fixture::new();
    let first: serde_json::Value =
        serde_json::from_str(&ok(f.build("blog", "a.bundle", &[]))).unwrap();
    // Recreate the function files in another order, with other times and another umask.
    for name in ["functions/posts/app.py", "functions/shared/entitlement.py"] {
        let path = f.p("blog").join(name);
        let data = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, data).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let second: serde_json::Value =
        serde_json::from_str(&ok(f.build("blog", "b.bundle", &[]))).unwrap();
    assert_eq!(digests(&first), digests(&second));
    // An executable bit is part of the content.
    let script = f.p("blog").join("functions/posts/app.py");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let third: serde_json::Value =
        serde_json::from_str(&ok(f.build("blog", "c.bundle", &[]))).unwrap();
    assert_ne!(digests(&first)[1], digests(&third)[1]);
}

#[test]
fn previous_keys_make_unchanged_objects_byte_identical() {
    let f = Fixture::new();
    let v1: serde_json::Value =
        serde_json::from_str(&ok(f.build("blog", "v1.bundle", &[]))).unwrap();
    let toml = f.p("blog/consign.toml");
    std::fs::write(
        &toml,
        std::fs::read_to_string(&toml)
            .unwrap()
            .replace("version = \"1.0.0\"", "version = \"1.1.0\""),
    )
    .unwrap();
    std::fs::write(
        f.p("blog/static/index.html"),
        "<!doctype html><title>v1.1</title>",
    )
    .unwrap();
    let previous = f.p("v1.bundle.keys");
    let v2: serde_json::Value = serde_json::from_str(&ok(f.build(
        "blog",
        "v2.bundle",
        &["--previous-keys", previous.to_str().unwrap()],
    )))
    .unwrap();
    assert_eq!(v2["reused_keys"], 4);
    let sealed = |r: &serde_json::Value, i: usize| r["objects"][i]["sealed_digest"].clone();
    assert_eq!(sealed(&v1, 1), sealed(&v2, 1));
    assert_ne!(sealed(&v1, 4), sealed(&v2, 4));
}

#[test]
fn inspect_shows_resources_and_iam_permissions() {
    let f = Fixture::new();
    ok(f.build("blog", "blog.bundle", &[]));
    let keyset = f.p("keys/keyset.json");
    let text = ok(portal(&[
        OsStr::new("release"),
        OsStr::new("inspect"),
        f.p("blog.bundle").as_os_str(),
        OsStr::new("--trust"),
        keyset.as_os_str(),
    ]));
    assert!(
        text.starts_with("VERIFIED: signed by release key rel-"),
        "{text}"
    );
    assert!(
        text.contains("PostsTable               AWS::DynamoDB::Table"),
        "{text}"
    );
    assert!(text.contains("dynamodb:Query"), "{text}");
    assert!(
        text.contains(
            "posts            source   python3.12 app.handler 256 MB 10 s, feature posts, "
        ),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(portal(&[
        OsStr::new("--output"),
        OsStr::new("json"),
        OsStr::new("release"),
        OsStr::new("inspect"),
        f.p("blog.bundle").as_os_str(),
        OsStr::new("--trust"),
        keyset.as_os_str(),
    ])))
    .unwrap();
    assert_eq!(
        json["iam_actions"],
        serde_json::json!([
            "dynamodb:DeleteItem",
            "dynamodb:PutItem",
            "dynamodb:Query",
            "dynamodb:Scan",
            "logs:CreateLogGroup",
            "logs:CreateLogStream",
            "logs:PutLogEvents",
            "s3:GetObject",
            "ssm:GetParameter"
        ])
    );
}

#[test]
fn open_decrypts_into_a_new_folder_and_a_tampered_bundle_writes_nothing() {
    let f = Fixture::new();
    ok(f.build("blog", "blog.bundle", &[]));
    let keys = f.p("blog.bundle.keys");
    let open = |bundle: &Path, out: &Path| {
        portal(&[
            OsStr::new("release"),
            OsStr::new("open"),
            bundle.as_os_str(),
            OsStr::new("--keys"),
            keys.as_os_str(),
            OsStr::new("-o"),
            out.as_os_str(),
        ])
    };
    ok(open(&f.p("blog.bundle"), &f.p("opened")));
    assert_eq!(
        std::fs::read(f.p("opened/assets/site/index.html")).unwrap(),
        std::fs::read(f.p("blog/static/index.html")).unwrap()
    );
    assert_eq!(
        std::fs::read(f.p("opened/template.json")).unwrap(),
        std::fs::read(f.p("blog/template.json")).unwrap()
    );
    // Refuses to write into a folder that already holds files.
    assert_fails_with(&open(&f.p("blog.bundle"), &f.p("opened")), "is not empty");
    // A byte flipped near the end (inside the last object): nothing at all is written.
    let mut bytes = std::fs::read(f.p("blog.bundle")).unwrap();
    let at = bytes.len() - 30;
    bytes[at] ^= 1;
    std::fs::write(f.p("tampered.bundle"), bytes).unwrap();
    assert_fails_with(
        &open(&f.p("tampered.bundle"), &f.p("out")),
        "nothing was written",
    );
    assert!(!f.p("out").exists());
    let leftovers: Vec<_> = std::fs::read_dir(f.tmp.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".consign-open-")
        })
        .collect();
    assert!(leftovers.is_empty(), "the staging folder is removed");
    // Another bundle's keys file.
    ok(f.build("blog", "other.bundle", &[]));
    let out = portal(&[
        OsStr::new("release"),
        OsStr::new("open"),
        f.p("blog.bundle").as_os_str(),
        OsStr::new("--keys"),
        f.p("other.bundle.keys").as_os_str(),
        OsStr::new("-o"),
        f.p("wrong").as_os_str(),
    ]);
    assert_fails_with(&out, "belongs to another bundle");
}

#[test]
fn broken_app_folders_are_refused_by_field_and_file() {
    let f = Fixture::new();
    let toml = f.p("blog/consign.toml");
    let original = std::fs::read_to_string(&toml).unwrap();
    let cases = [
        (
            original.replace("timeout = 10", "timeout = 10\ntimout = 3"),
            "unknown field `timout`",
        ),
        (
            original.replace(
                "code_parameter = \"PostsCodeKey\"",
                "code_parameter = \"PostCodeKey\"",
            ),
            "the template has no parameter \"PostCodeKey\"",
        ),
        (
            original.replace("runtime = \"python3.12\"", "runtime = \"python2.7\""),
            "is not a Lambda runtime",
        ),
        (
            original.replace(
                "bucket_output = \"SiteBucketName\"",
                "bucket_output = \"Nope\"",
            ),
            "the template has no output \"Nope\"",
        ),
        (
            original.replace(
                "code = \"functions/posts\"",
                "code = \"../../../../../../../../etc\"",
            ),
            "outside the app folder",
        ),
        (
            original.replace("version = \"1.0.0\"", "version = \"one\""),
            "line 7, column 11: unexpected character",
        ),
    ];
    for (text, says) in cases {
        std::fs::write(&toml, text).unwrap();
        assert_fails_with(&f.build("blog", "x.bundle", &[]), says);
        assert!(!f.p("x.bundle").exists());
    }
    // A build command: its progress line comes first, then exactly one error.
    let builds = [
        (
            original.replace(
                "code_parameter = \"PostsCodeKey\"",
                "code_parameter = \"PostsCodeKey\"\nbuild = { command = [] }",
            ),
            "functions.posts.build.command must be a program",
        ),
        (
            original.replace(
                "code_parameter = \"PostsCodeKey\"",
                "code_parameter = \"PostsCodeKey\"\nbuild = { command = [\"consign-no-such-compiler\"] }",
            ),
            "the build command's program \"consign-no-such-compiler\" is not installed",
        ),
        (
            original
                .replace(
                    "code = \"functions/posts\"",
                    "code = \"functions/posts/out\"",
                )
                .replace(
                    "code_parameter = \"PostsCodeKey\"",
                    "code_parameter = \"PostsCodeKey\"\nbuild = { command = [\"true\"] }",
                ),
            "its build command ran, but left nothing at code = \"functions/posts/out\"",
        ),
    ];
    for (text, says) in builds {
        std::fs::write(&toml, text).unwrap();
        let out = f.build("blog", "x.bundle", &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(errors.len(), 1, "{err}");
        assert!(errors[0].contains(says), "{err:?} does not say {says:?}");
        assert!(!f.p("x.bundle").exists());
    }
    std::fs::write(&toml, &original).unwrap();
    let template = f.p("blog/template.json");
    let t = std::fs::read_to_string(&template).unwrap();
    std::fs::write(&template, t.replace("\"AWSTemplateFormatVersion\": \"2010-09-09\",", "\"Transform\": \"AWS::Serverless-2016-10-31\", \"AWSTemplateFormatVersion\": \"2010-09-09\",")).unwrap();
    assert_fails_with(
        &f.build("blog", "x.bundle", &[]),
        "Consign deploys plain CloudFormation",
    );
    std::fs::write(&template, t).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", f.p("blog/static/passwd")).unwrap();
    assert_fails_with(&f.build("blog", "x.bundle", &[]), "is a symbolic link");
}

#[test]
fn rotating_the_release_key_keeps_published_bundles_verifying() {
    let f = Fixture::new();
    ok(f.build("blog", "old.bundle", &[]));
    let keys = f.p("keys");
    let report: serde_json::Value = serde_json::from_str(&ok(portal(&[
        OsStr::new("--output"),
        OsStr::new("json"),
        OsStr::new("keys"),
        OsStr::new("rotate"),
        OsStr::new("--keys"),
        keys.as_os_str(),
        OsStr::new("--release"),
    ])))
    .unwrap();
    assert_eq!(report["role"], "release");
    let new_kid = report["release_key"].as_str().unwrap().to_owned();
    let inspect = |bundle: &str| {
        portal(&[
            OsStr::new("release"),
            OsStr::new("inspect"),
            f.p(bundle).as_os_str(),
            OsStr::new("--trust"),
            keys.join("keyset.json").as_os_str(),
        ])
    };
    assert!(ok(inspect("old.bundle")).contains("VERIFIED"));
    ok(f.build("blog", "new.bundle", &[]));
    assert!(ok(inspect("new.bundle")).contains(&format!("signed by release key {new_kid}")));
    // Rotating again and retiring the replaced key at once: bundles it signed stop verifying.
    ok(portal(&[
        OsStr::new("keys"),
        OsStr::new("rotate"),
        OsStr::new("--keys"),
        keys.as_os_str(),
        OsStr::new("--release"),
        OsStr::new("--retire-after-days"),
        OsStr::new("0"),
    ]));
    assert_fails_with(
        &inspect("new.bundle"),
        "not a release key in the trusted keyset",
    );
}
