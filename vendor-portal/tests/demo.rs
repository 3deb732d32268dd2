//! `serve --demo` seeds a published release: the installer's TUF client loads the app's metadata
//! from the running portal over HTTP (pinned to the keyset's root key), reads the release's
//! manifest through it, and the demo license receives the release's data keys.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_publishes_a_release_installers_can_verify() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vendor-portal"))
        .args(["serve", "--demo", "--bind", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env_remove("CONSIGN_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut url, mut token, mut license_id, mut published) = (None, None, None, None);
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("Consign portal listening on ") {
            url = Some(rest.trim().to_owned());
        } else if let Some(rest) = line.trim().strip_prefix("export PORTAL_TOKEN=") {
            token = Some(rest.to_owned());
        } else if line.trim().starts_with("published:") {
            published = Some(line.clone());
        } else if let Some(rest) = line.trim().strip_prefix("license status: ") {
            license_id = rest
                .split("/licenses/")
                .nth(1)
                .and_then(|r| r.split('/').next())
                .map(str::to_owned);
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    let (url, token, license_id) = (url.unwrap(), token.unwrap(), license_id.unwrap());
    assert!(
        published
            .unwrap()
            .contains("serverless-blog 1.0.0 on stable")
    );
    let http = reqwest::Client::new();

    // The installer's side: trust the keyset's root key, load TUF from the portal over HTTP.
    let keyset = http
        .get(format!("{url}/api/v1/vendors/acme/keyset"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let pin = license::Keyset::verify(&keyset, &license::TrustPin::default())
        .unwrap()
        .root_fingerprint();
    let base = format!("{url}/tuf/acme/serverless-blog/");
    let root = http
        .get(format!("{base}1.root.json"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
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
    let license: Value = http
        .get(format!("{url}/api/v1/licenses/{license_id}"))
        .bearer_auth(&token)
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
    let root2 = http
        .get(format!("{base}2.root.json"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
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
    let _ = child.kill();
    let _ = child.wait();
}
