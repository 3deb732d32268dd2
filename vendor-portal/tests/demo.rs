//! `serve --demo` seeds a published release: the installer's TUF client loads the app's metadata
//! from the running portal over HTTP (pinned to the keyset's root key), reads the release's
//! manifest through it, and the demo license receives the release's data keys.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// A running `serve --demo` and what it printed before serving.
struct Demo {
    child: std::process::Child,
    url: String,
    token: String,
    printed: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `serve --demo` in `dir` and reads its output up to the last line it prints.
fn demo(dir: &std::path::Path) -> Demo {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vendor-portal"))
        .args(["serve", "--demo", "--bind", "127.0.0.1:0"])
        .current_dir(dir)
        .env_remove("CONSIGN_DATABASE_URL")
        .env_remove("RUST_LOG")
        .env_remove("CONSIGN_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut url, mut token, mut printed) = (None, None, String::new());
    for line in lines.by_ref() {
        let line = line.unwrap();
        printed.push_str(&line);
        printed.push('\n');
        if let Some(rest) = line.strip_prefix("Consign portal listening on ") {
            url = Some(rest.trim().to_owned());
        } else if let Some(rest) = line.trim().strip_prefix("export PORTAL_TOKEN=") {
            token = Some(rest.to_owned());
        } else if line.starts_with("The marketplace is ") {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    Demo {
        child,
        url: url.unwrap(),
        token: token.unwrap(),
        printed,
    }
}

/// The body at `url`.
async fn get_bytes(http: &reqwest::Client, url: &str) -> bytes::Bytes {
    http.get(url).send().await.unwrap().bytes().await.unwrap()
}

/// The root fingerprint of the demo vendor's keyset as the portal at `url` serves it.
async fn served_root(http: &reqwest::Client, url: &str) -> String {
    let keyset = get_bytes(http, &format!("{url}/api/v1/vendors/acme/keyset")).await;
    license::Keyset::verify(&keyset, &license::TrustPin::default())
        .unwrap()
        .root_fingerprint()
}

/// `vendor-portal ARGS` against the demo; (exit status, stdout, stderr).
fn vp(demo: &Demo, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vendor-portal"))
        .args(args)
        .env("PORTAL_URL", &demo.url)
        .env("PORTAL_TOKEN", &demo.token)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_publishes_a_release_installers_can_verify() {
    let dir = tempfile::tempdir().unwrap();
    let running = demo(dir.path());
    let (url, token) = (running.url.clone(), running.token.clone());
    assert!(
        running
            .printed
            .contains("released: serverless-blog 1.0.0 on stable"),
        "{}",
        running.printed
    );
    let http = reqwest::Client::new();

    // The installer's side: trust the keyset's root key, load TUF from the portal over HTTP.
    let pin = served_root(&http, &url).await;
    let base = format!("{url}/tuf/acme/serverless-blog/");
    let root = get_bytes(&http, &format!("{base}1.root.json")).await;
    installer::tuf::check_pinned_root(&root, &pin).unwrap();
    let datastore = dir.path().join("datastore");
    // Every root version, as the installer fetches them.
    let roots = |n: u64| {
        let (http, url) = (http.clone(), format!("{base}{n}.root.json"));
        async move {
            let response = http.get(url).send().await?;
            anyhow::ensure!(response.status().is_success(), "no {n}.root.json");
            Ok(response.bytes().await?.to_vec())
        }
    };
    assert_eq!(roots(1).await.unwrap(), root.to_vec());
    let repo = installer::tuf::load_over_http(&base, &pin, roots, &datastore)
        .await
        .unwrap();
    let releases = installer::tuf::releases(&repo).unwrap();
    assert_eq!(releases.len(), 1);
    assert_eq!(releases[0].version.to_string(), "1.0.0");
    assert!(releases[0].on_channel("stable"));
    let manifest = installer::tuf::read_manifest(&repo, &releases[0])
        .await
        .unwrap();
    assert_eq!(bundles::Digest::of(&manifest), releases[0].manifest);

    // The demo license is granted the keys.
    let vendor_get = |path: String| {
        let request = http.get(format!("{url}{path}")).bearer_auth(&token);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let licenses = vendor_get("/api/v1/licenses".into()).await;
    let license_id = licenses[0]["id"].as_str().unwrap().to_owned();
    let seeded = vendor_get(format!("/api/v1/licenses/{license_id}")).await;
    // The seeded license requires proofs of the account, and there is no STS here: a license
    // like it on which the vendor made proofs optional.
    let license: Value = http
        .post(format!("{url}/api/v1/licenses"))
        .bearer_auth(&token)
        .json(
            &json!({"customer": seeded["customer"], "app": "serverless-blog",
                      "plan": seeded["plan"], "account_proof": "optional"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = bundles::wrap::RecipientSecret::generate().unwrap();
    let grant = http
        .post(format!("{url}/api/v1/grants"))
        .json(
            &json!({"license": license["license"], "app": "serverless-blog", "version": "1.0.0",
                      "public_key": STANDARD.encode(key.public()), "aws_account": "123456789012"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(grant.status(), 200);
    let grant: Value = grant.json().await.unwrap();
    let wrapped = STANDARD
        .decode(grant["wrapped_keys"].as_str().unwrap())
        .unwrap();
    let keys = bundles::KeysFile::parse(&bundles::wrap::unwrap(&wrapped, &key).unwrap()).unwrap();
    keys.check_belongs_to(&manifest, "serverless-blog", &releases[0].version)
        .unwrap();

    // The vendor moves to its own keys and publishes 1.1.0: the app's metadata is re-anchored in
    // the vendor's root, 1.0.0 is carried over, and customers re-pin.
    let vp = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_vendor-portal"))
            .args(args)
            .env("PORTAL_URL", &url)
            .env("PORTAL_TOKEN", &token)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    vp(&["keys", "init", "--out", &p("own-keys"), "--issuer", "acme"]);
    vp(&["keys", "register", "--keys", &p("own-keys")]);
    tests::portal::copy_tree(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/serverless-blog"),
        &dir.path().join("blog"),
    );
    let toml = dir.path().join("blog/consign.toml");
    let text = std::fs::read_to_string(&toml).unwrap().replacen(
        "version = \"1.0.0\"",
        "version = \"1.1.0\"",
        1,
    );
    std::fs::write(&toml, text).unwrap();
    vp(&[
        "release",
        "build",
        &p("blog"),
        "--keys",
        &p("own-keys"),
        "-o",
        &p("blog.bundle"),
    ]);
    let pushed = vp(&[
        "release",
        "push",
        &p("blog.bundle"),
        "--keys",
        &p("own-keys"),
    ]);
    assert!(String::from_utf8_lossy(&pushed.stderr).contains("re-anchoring serverless-blog"));

    // A customer still pinned to the portal-held root is refused the new chain...
    let stale = installer::tuf::load_over_http(&base, &pin, roots, &datastore).await;
    assert!(stale.is_err());
    // ...and one that re-pins to the vendor's root sees both releases.
    let own_keyset = std::fs::read(dir.path().join("own-keys/keyset.json")).unwrap();
    let new_pin = license::Keyset::verify(&own_keyset, &license::TrustPin::default())
        .unwrap()
        .root_fingerprint();
    let root2 = get_bytes(&http, &format!("{base}2.root.json")).await;
    installer::tuf::check_pinned_root(&root2, &new_pin).unwrap();
    // A new customer pins the new root: the older, portal-held roots are skipped and the
    // first root rooted in the new pin is the anchor.
    installer::tuf::check_pinned_root(&root, &new_pin).unwrap_err();
    let repo = installer::tuf::load_over_http(
        &base,
        &new_pin,
        roots,
        &dir.path().join("datastore-repinned"),
    )
    .await
    .unwrap();
    let versions: Vec<String> = installer::tuf::releases(&repo)
        .unwrap()
        .iter()
        .map(|r| r.version.to_string())
        .collect();
    assert_eq!(versions, ["1.1.0", "1.0.0"]);
    drop(running);
}

/// The demo's last lines are what a newcomer needs: the console sign-in with the password, the
/// root fingerprint to pin (the one the served keyset has), the token and the next commands; a
/// request is not logged unless asked for. A vendor whose keys the portal holds promotes, yanks
/// and requires without a key folder: the portal signs, and says so. Restarted, the demo prints
/// no password but the command that sets one, and that command's password signs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_prints_what_to_do_next_and_the_portal_signs_for_its_held_keys() {
    let dir = tempfile::tempdir().unwrap();
    let running = demo(dir.path());
    let http = reqwest::Client::new();
    let root = served_root(&http, &running.url).await;
    let printed = &running.printed;
    let tail: String = printed
        .lines()
        .skip_while(|l| !l.starts_with("Demo vendor acme"))
        .collect::<Vec<_>>()
        .join("\n");
    for wanted in [
        root.as_str(),
        "password: ",
        "/console/login",
        "export PORTAL_TOKEN=cns_",
        "--trust-root",
        "vendor-portal release promote",
    ] {
        assert!(
            tail.contains(wanted),
            "the demo's last lines lack {wanted:?}:\n{printed}"
        );
    }
    assert!(
        !printed.contains("INFO"),
        "request logs on stdout:\n{printed}"
    );

    // Promote, yank and require, signed by the portal.
    let (ok, _, said) = vp(
        &running,
        &[
            "release",
            "promote",
            "serverless-blog",
            "1.0.0",
            "--channel",
            "beta",
        ],
    );
    assert!(ok, "{said}");
    assert!(said.contains("signed by the portal"), "{said}");
    let (ok, _, said) = vp(
        &running,
        &["release", "require", "serverless-blog", "1.0.0"],
    );
    assert!(ok, "{said}");
    let (ok, _, said) = vp(
        &running,
        &[
            "release",
            "yank",
            "serverless-blog",
            "1.0.0",
            "--reason",
            "try a yank",
        ],
    );
    assert!(ok, "{said}");
    let releases: Value = http
        .get(format!(
            "{}/api/v1/apps/serverless-blog/releases",
            running.url
        ))
        .bearer_auth(&running.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let release = &releases[0];
    assert_eq!(release["channels"], json!(["stable", "beta"]), "{release}");
    assert_eq!(release["required"], json!(true), "{release}");
    assert_eq!(release["yanked"], json!("try a yank"), "{release}");
    // An installer pinned to the demo's root follows the portal-signed targets.
    let base = format!("{}/tuf/acme/serverless-blog/", running.url);
    let roots = |n: u64| {
        let (http, url) = (http.clone(), format!("{base}{n}.root.json"));
        async move {
            let response = http.get(url).send().await?;
            anyhow::ensure!(response.status().is_success(), "no {n}.root.json");
            Ok(response.bytes().await?.to_vec())
        }
    };
    let repo = installer::tuf::load_over_http(&base, &root, roots, &dir.path().join("tuf"))
        .await
        .unwrap();
    let seen = installer::tuf::releases(&repo).unwrap();
    assert!(seen[0].on_channel("beta"));
    assert!(seen[0].yanked.is_some());
    drop(running);

    // Restarted: no password, but how to set one.
    let again = demo(dir.path());
    assert!(
        again.printed.contains(
            "vendor-portal admin reset-password --vendor acme --email owner@acme.example"
        ),
        "{}",
        again.printed
    );
    let reset = Command::new(env!("CARGO_BIN_EXE_vendor-portal"))
        .args([
            "--output",
            "json",
            "admin",
            "reset-password",
            "--vendor",
            "acme",
            "--email",
            "owner@acme.example",
        ])
        .current_dir(dir.path())
        .env_remove("CONSIGN_DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        reset.status.success(),
        "{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    let reset: Value = serde_json::from_slice(&reset.stdout).unwrap();
    let password = reset["password"].as_str().unwrap();
    let session = http
        .post(format!("{}/api/v1/session", again.url))
        .json(&json!({"vendor": "acme", "email": "owner@acme.example", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), 200);
    // The token the restarted demo printed still works: a reset ends sessions, not tokens.
    let (ok, _, said) = vp(&again, &["license", "list"]);
    assert!(ok, "{said}");
}

/// Attack: the portal signing release changes for a vendor that holds its own release key. Once
/// the vendor has registered its own keys the portal has forgotten its release key, and the
/// endpoint that signs for held keys refuses (409) before anything is signed; the targets
/// metadata stays the version it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_cannot_sign_release_changes_once_the_vendor_holds_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let running = demo(dir.path());
    let keys = dir.path().join("own-keys");
    let keys = keys.to_str().unwrap();
    assert!(
        vp(
            &running,
            &["keys", "init", "--out", keys, "--issuer", "acme"]
        )
        .0
    );
    assert!(vp(&running, &["keys", "register", "--keys", keys]).0);
    let http = reqwest::Client::new();
    let targets = |http: reqwest::Client, url: String| async move {
        let timestamp: Value = http
            .get(format!("{url}/tuf/acme/serverless-blog/timestamp.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        timestamp["signed"]["version"].clone()
    };
    let before = targets(http.clone(), running.url.clone()).await;
    let (ok, _, said) = vp(
        &running,
        &[
            "release",
            "promote",
            "serverless-blog",
            "1.0.0",
            "--channel",
            "beta",
        ],
    );
    assert!(!ok);
    assert!(
        said.contains("its own machine") && said.contains("--keys"),
        "{said}"
    );
    let answer = http
        .post(format!(
            "{}/api/v1/apps/serverless-blog/releases/1.0.0/change",
            running.url
        ))
        .bearer_auth(&running.token)
        .json(&json!({"yank": "forged by the portal"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 409);
    assert_eq!(targets(http.clone(), running.url.clone()).await, before);
}
