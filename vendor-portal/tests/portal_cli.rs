//! The vendor's commands against a real `vendor-portal serve` process: admin creates the vendor,
//! the vendor builds its catalog, issues a license that `license-agent` verifies offline against
//! the keyset the portal serves, revokes it, and checks the audit log. Mistakes exit 1 with one
//! sentence; usage errors exit 2.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{assert_fails_with, ok};

struct Served {
    child: Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data: &Path) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vendor-portal"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env_remove("CONSIGN_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    reader.read_line(&mut line).unwrap();
    // Keep reading so the server's later lines have somewhere to go.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    Served { child, url }
}

fn vp(served: &Served, token: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vendor-portal"))
        .args(args)
        .env("PORTAL_URL", &served.url)
        .env("PORTAL_TOKEN", token)
        .output()
        .unwrap()
}

/// `admin create-vendor` for acme in `data`; the owner's API token.
fn create_vendor(data: &Path) -> String {
    let created = ok(common::portal(&[
        "admin",
        "create-vendor",
        "--slug",
        "acme",
        "--name",
        "Acme",
        "--output",
        "json",
        "--data-dir",
        data.to_str().unwrap(),
    ]));
    let created: serde_json::Value = serde_json::from_str(&created).unwrap();
    created["token"].as_str().unwrap().to_owned()
}

fn license_agent() -> std::path::PathBuf {
    // Built by the workspace: target/<profile>/license-agent beside vendor-portal.
    Path::new(env!("CARGO_BIN_EXE_vendor-portal")).with_file_name("license-agent")
}

/// `vendor-portal member ...`: an owner manages a member by email; every change ends the
/// member's token at once, and keeping the last owner is enforced.
#[test]
fn member_commands_end_access() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let owner = create_vendor(&data);
    let served = serve(&data);
    let json = |out: std::process::Output| -> serde_json::Value {
        serde_json::from_str(&ok(out)).unwrap()
    };
    json(vp(
        &served,
        &owner,
        &[
            "member",
            "add",
            "--email",
            "dev@acme.example",
            "--role",
            "publisher",
            "--output",
            "json",
        ],
    ));
    // The member's own token: given a fresh password, they sign in and make one.
    let reset = json(vp(
        &served,
        &owner,
        &[
            "member",
            "reset-password",
            "dev@acme.example",
            "--output",
            "json",
        ],
    ));
    let password = reset["password"].as_str().unwrap();
    assert!(password.len() >= 12, "{reset}");
    let member_token = || -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let http = ::reqwest::Client::new();
            let login = http
                .post(format!("{}/api/v1/session", served.url))
                .json(&serde_json::json!({"vendor": "acme", "email": "dev@acme.example", "password": password}))
                .send()
                .await
                .unwrap();
            let cookie = login.headers()["set-cookie"].to_str().unwrap();
            let session = cookie.split(';').next().unwrap().to_owned();
            let token: serde_json::Value = http
                .post(format!("{}/api/v1/tokens", served.url))
                .header("cookie", session)
                .header("origin", &served.url)
                .json(&serde_json::json!({"name": "laptop"}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            token["token"].as_str().unwrap().to_owned()
        })
    };
    for change in [
        vec!["member", "role", "dev@acme.example", "--role", "support"],
        vec!["member", "disable", "dev@acme.example"],
    ] {
        let token = member_token_or_enable(&served, &owner, &member_token);
        assert!(vp(&served, &token, &["app", "list"]).status.success());
        let said = ok(vp(&served, &owner, &change));
        assert!(said.contains("1 tokens revoked"), "{said}");
        assert_fails_with(&vp(&served, &token, &["app", "list"]), "not valid");
    }
    let listed = ok(vp(&served, &owner, &["member", "list"]));
    assert!(
        listed.contains("dev@acme.example") && listed.contains("true"),
        "{listed}"
    );
    ok(vp(
        &served,
        &owner,
        &["member", "remove", "dev@acme.example"],
    ));
    assert!(!ok(vp(&served, &owner, &["member", "list"])).contains("dev@acme.example"));
    // The only owner cannot disable themselves.
    let me = json(vp(&served, &owner, &["member", "list", "--output", "json"]));
    let mine = me[0]["id"].as_str().unwrap();
    assert_fails_with(&vp(&served, &owner, &["member", "disable", mine]), "owner");
    assert_fails_with(
        &vp(
            &served,
            &owner,
            &["member", "disable", "nobody@acme.example"],
        ),
        "is not a member",
    );
}

/// A fresh token of the member, enabling them first when disabled.
fn member_token_or_enable(served: &Served, owner: &str, token: &dyn Fn() -> String) -> String {
    let _ = vp(served, owner, &["member", "enable", "dev@acme.example"]);
    token()
}

#[test]
fn vendor_commands_drive_the_portal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The admin creates the vendor on the portal's machine, before or while it runs.
    let token = create_vendor(&data);
    assert!(token.starts_with("cns_"));
    let again = common::portal(&[
        "admin",
        "create-vendor",
        "--slug",
        "acme",
        "--name",
        "Acme",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_fails_with(&again, "exists already");

    let served = serve(&data);
    ok(vp(
        &served,
        &token,
        &[
            "app",
            "create",
            "--slug",
            "blog",
            "--name",
            "Blog",
            "--summary",
            "A blog",
            "--category",
            "web,content",
        ],
    ));
    ok(vp(
        &served,
        &token,
        &[
            "plan",
            "create",
            "--app",
            "blog",
            "--slug",
            "standard",
            "--name",
            "Standard",
            "--features",
            "posts,users",
            "--duration-days",
            "30",
        ],
    ));
    ok(vp(
        &served,
        &token,
        &[
            "customer",
            "create",
            "--slug",
            "globex",
            "--name",
            "Globex",
            "--aws-account",
            "123456789012",
        ],
    ));
    let updated = ok(vp(
        &served,
        &token,
        &["app", "update", "blog", "--summary", "A better blog"],
    ));
    assert!(updated.contains("A better blog"), "{updated}");
    ok(vp(
        &served,
        &token,
        &[
            "customer",
            "update",
            "globex",
            "--email",
            "it@globex.example",
        ],
    ));
    assert_fails_with(
        &vp(&served, &token, &["customer", "update", "globex"]),
        "nothing to change",
    );
    let lic = dir.path().join("globex.lic");
    let issued = ok(vp(
        &served,
        &token,
        &[
            "license",
            "issue",
            "--customer",
            "globex",
            "--app",
            "blog",
            "--plan",
            "standard",
            "-o",
            lic.to_str().unwrap(),
        ],
    ));
    assert!(issued.contains("Issued license lic_"), "{issued}");

    // The customer's side: verify offline against the published keyset.
    let keyset = dir.path().join("keyset.json");
    let body = reqwest::blocking_get(&format!("{}/api/v1/vendors/acme/keyset", served.url));
    std::fs::write(&keyset, body).unwrap();
    let verified = Command::new(license_agent())
        .args([
            "verify",
            "--license",
            lic.to_str().unwrap(),
            "--trust",
            keyset.to_str().unwrap(),
            "--aws-account",
            "123456789012",
            "--region",
            "eu-west-1",
        ])
        .output()
        .unwrap();
    let text = ok(verified);
    assert!(text.contains("globex"), "{text}");

    let listed = ok(vp(
        &served,
        &token,
        &["license", "list", "--output", "json"],
    ));
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    let table = ok(vp(&served, &token, &["license", "list"]));
    assert!(table.starts_with("ID") && table.contains(&id), "{table}");
    let revoked = ok(vp(
        &served,
        &token,
        &["license", "revoke", &id, "--reason", "test"],
    ));
    assert!(revoked.contains("revoked at seq 2"), "{revoked}");
    assert_fails_with(
        &vp(&served, &token, &["license", "revoke", &id]),
        "cannot become revoked",
    );
    let verified = ok(vp(&served, &token, &["audit", "verify"]));
    assert!(verified.contains("chain unbroken"), "{verified}");
    let keys = ok(vp(&served, &token, &["keys", "show"]));
    assert!(keys.contains("custody:          portal"), "{keys}");

    // Mistakes: one sentence, exit 1.
    assert_fails_with(&vp(&served, "cns_wrong", &["license", "list"]), "not valid");
    assert_fails_with(
        &vp(
            &served,
            &token,
            &["license", "show", "lic_000000000000000000000000"],
        ),
        "no license",
    );
    assert_fails_with(
        &vp(
            &served,
            &token,
            &[
                "license",
                "issue",
                "--customer",
                "nobody",
                "--app",
                "blog",
                "-o",
                "x.lic",
            ],
        ),
        "no customer",
    );
    let nowhere = Command::new(env!("CARGO_BIN_EXE_vendor-portal"))
        .args([
            "license",
            "list",
            "--portal",
            "http://127.0.0.1:9",
            "--token",
            "cns_x",
        ])
        .env_remove("PORTAL_URL")
        .output()
        .unwrap();
    assert_fails_with(&nowhere, "cannot reach the portal");
    let no_portal = Command::new(env!("CARGO_BIN_EXE_vendor-portal"))
        .args(["license", "list"])
        .env_remove("PORTAL_URL")
        .env_remove("PORTAL_TOKEN")
        .output()
        .unwrap();
    assert_fails_with(&no_portal, "PORTAL_URL");
    let usage = vp(
        &served,
        &token,
        &["license", "issue", "--customer", "globex"],
    );
    assert_eq!(usage.status.code(), Some(2));
}

mod reqwest {
    /// A tiny blocking GET over the async client, for a test that has no runtime of its own.
    pub fn blocking_get(url: &str) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { ::reqwest::get(url).await.unwrap().text().await.unwrap() })
    }
}

/// SIGTERM stops the portal cleanly (exit 0) after answering the request in flight: a login,
/// whose argon2 check keeps it busy while the signal arrives.
#[test]
fn sigterm_finishes_the_request_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve(&dir.path().join("data"));
    let url = served.url.clone();
    let login = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let started = std::time::Instant::now();
        let status = rt.block_on(async {
            ::reqwest::Client::new()
                .post(format!("{url}/api/v1/session"))
                .json(&serde_json::json!({"vendor": "acme", "email": "a@acme.example", "password": "not the password"}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
        (status, started.elapsed())
    });
    std::thread::sleep(std::time::Duration::from_millis(150));
    let pid = served.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let (answered, took) = login.join().unwrap();
    assert_eq!(
        answered.ok(),
        Some(401),
        "the request in flight got its answer"
    );
    // Two argon2 runs (the unknown member's dummy hash is made on first use) outlast the 150 ms
    // before the signal, so the signal did arrive mid-request.
    assert!(
        took > std::time::Duration::from_millis(150),
        "the login finished before the signal ({took:?})"
    );
    let status = served.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
