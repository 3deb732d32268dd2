//! Integrators start from `/api/v1/openapi.json`, so the served document must be valid OpenAPI
//! and a client generated from it must work. `openapi-spec-validator` checks the document, and
//! `openapi-python-client` (a maintained generator) makes a Python client that lists apps,
//! issues a license and reads its signed status against a live portal. Both tools come pinned in
//! the tests' virtual environment (`scripts/test` installs them).
//!
//! This is about the document, not storage, so it runs on SQLite only.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::server::{Db, start};

/// A tool of the tests' virtual environment: beside `CONSIGN_MOTO_SERVER`, else in `.venv`.
fn venv_bin(name: &str) -> PathBuf {
    let bin = std::env::var_os("CONSIGN_MOTO_SERVER")
        .map(PathBuf::from)
        .and_then(|moto| moto.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin"));
    let tool = bin.join(name);
    assert!(
        tool.is_file(),
        "{} is missing: run scripts/test once to install the pinned test tools",
        tool.display()
    );
    tool
}

fn run(command: &mut Command) -> String {
    let out = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{command:?} failed:\n{text}");
    text
}

async fn served_document(portal: &common::server::TestPortal, dir: &Path) -> PathBuf {
    let reply = portal.get("/api/v1/openapi.json").await;
    assert_eq!(reply.status, 200);
    let path = dir.join("openapi.json");
    std::fs::write(&path, &reply.text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_document_is_valid_openapi() {
    let portal = start(Db::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let doc = served_document(&portal, dir.path()).await;
    let said = run(Command::new(venv_bin("openapi-spec-validator")).arg(&doc));
    assert!(said.contains("OK"), "the validator said: {said}");
    // Every operation has its own id, and no query parameter is declared in the path.
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&doc).unwrap()).unwrap();
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_default().to_owned();
            assert!(
                ids.insert(id.clone()),
                "operation id {id:?} is used twice ({method} {path})"
            );
            for param in op["parameters"].as_array().into_iter().flatten() {
                if param["in"] == "path" {
                    let name = param["name"].as_str().unwrap();
                    assert!(
                        path.contains(&format!("{{{name}}}")),
                        "{method} {path} declares {name:?} as a path parameter"
                    );
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_python_client_lists_apps_issues_a_license_and_reads_its_status() {
    let portal = start(Db::Sqlite).await;
    portal.seed_catalog(&portal.token).await;
    let dir = tempfile::tempdir().unwrap();
    let doc = served_document(&portal, dir.path()).await;
    run(Command::new(venv_bin("openapi-python-client"))
        .args(["generate", "--meta", "none", "--path"])
        .arg(&doc)
        .arg("--output-path")
        .arg(dir.path().join("consign_client"))
        .current_dir(dir.path()));
    let script = r#"
import sys, secrets
from consign_client import AuthenticatedClient, Client
from consign_client.api.apps import list_apps
from consign_client.api.licenses import issue_license
from consign_client.api.public import license_status
from consign_client.models import LicenseIssue

url, token = sys.argv[1], sys.argv[2]
vendor = AuthenticatedClient(base_url=url, token=token)
apps = list_apps.sync(client=vendor)
assert [a.slug for a in apps] == ["blog"], apps
issued = issue_license.sync(client=vendor, body=LicenseIssue(customer="globex", app="blog", plan="standard"))
assert issued.id.startswith("lic_"), issued
nonce = secrets.token_urlsafe(16)
status = license_status.sync(client=Client(base_url=url), vendor="acme", id=issued.id, nonce=nonce)
assert status.state == "active" and status.nonce == nonce and status.license_ == issued.id, status
print("client ok", issued.id, status.state, status.seq)
"#;
    let said = run(Command::new(venv_bin("python"))
        .args(["-c", script, &portal.url, &portal.token])
        .current_dir(dir.path()));
    assert!(said.contains("client ok lic_"), "{said}");
    assert!(said.contains(" active 1"), "{said}");
}
