//! Release distribution end to end, on SQLite and PostgreSQL: `release push` uploads only what
//! changed, publishing goes through TUF targets the vendor signs, key grants refuse every
//! license that is not entitled (and wrap nothing for it), downloads need a license for the app,
//! and `kit export` produces a kit the installer verifies offline.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use common::copy_dir;

use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bundles::wrap::RecipientSecret;
use common::server::{Db, TestPortal, start};
use common::{assert_fails_with, ok};
use reqwest::Method;
use serde_json::{Value, json};

struct Fixture {
    portal: TestPortal,
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn new(db: Db) -> Self {
        let portal = start(db).await;
        let dir = tempfile::tempdir().unwrap();
        let fx = Self { portal, dir };
        let keys = fx.p("keys");
        ok(fx
            .vp(&["keys", "init", "--out", keys.to_str().unwrap()])
            .await);
        ok(fx
            .vp(&["keys", "register", "--keys", keys.to_str().unwrap()])
            .await);
        ok(fx
            .vp(&[
                "app",
                "create",
                "--slug",
                "serverless-blog",
                "--name",
                "Serverless Blog",
            ])
            .await);
        ok(fx
            .vp(&[
                "customer",
                "create",
                "--slug",
                "globex",
                "--name",
                "Globex",
                "--aws-account",
                "123456789012",
            ])
            .await);
        let blog = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/serverless-blog");
        copy_dir(&blog, &fx.p("blog"));
        fx
    }

    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs the vendor's CLI against the portal, off the runtime's threads.
    async fn vp(&self, args: &[&str]) -> Output {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let (url, token) = (self.portal.url.clone(), self.portal.token.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_vendor-portal"))
                .args(&args)
                .env("PORTAL_URL", url)
                .env("PORTAL_TOKEN", token)
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    }

    async fn build(&self, version: &str, previous: Option<&str>) -> PathBuf {
        let toml = self.p("blog/consign.toml");
        let text = std::fs::read_to_string(&toml).unwrap();
        let text = text.replacen(
            &text[text.find("version = ").unwrap()..]
                .lines()
                .next()
                .unwrap()
                .to_owned(),
            &format!("version = \"{version}\""),
            1,
        );
        std::fs::write(&toml, text).unwrap();
        let out = self.p(&format!("blog-{version}.bundle"));
        let mut args = vec![
            "release".to_owned(),
            "build".into(),
            self.p("blog").to_str().unwrap().into(),
            "--keys".into(),
            self.p("keys").to_str().unwrap().into(),
            "-o".into(),
            out.to_str().unwrap().into(),
        ];
        if let Some(previous) = previous {
            args.push("--previous-keys".into());
            args.push(format!(
                "{}.keys",
                self.p(&format!("blog-{previous}.bundle")).display()
            ));
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(self.vp(&refs).await);
        out
    }

    async fn push(&self, bundle: &Path, channel: &str) -> Value {
        let out = self
            .vp(&[
                "--output",
                "json",
                "release",
                "push",
                bundle.to_str().unwrap(),
                "--keys",
                self.p("keys").to_str().unwrap(),
                "--channel",
                channel,
            ])
            .await;
        serde_json::from_str(&ok(out)).unwrap()
    }

    async fn issue(&self, extra: Value) -> Value {
        // Grants here report the account (no STS to prove it to): the vendor made proofs optional.
        let mut body =
            json!({"customer": "globex", "app": "serverless-blog", "account_proof": "optional"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        self.portal
            .call(
                Method::POST,
                "/api/v1/licenses",
                Some(&self.portal.token),
                Some(body),
            )
            .await
            .expect(201)
    }

    async fn grant(
        &self,
        license: &str,
        app: &str,
        version: &str,
        key: &[u8; 32],
        account: &str,
    ) -> (u16, Value) {
        let reply = self
            .portal
            .call(
                Method::POST,
                "/api/v1/grants",
                None,
                Some(json!({"license": license, "app": app, "version": version,
                            "public_key": STANDARD.encode(key), "aws_account": account})),
            )
            .await;
        (reply.status.as_u16(), reply.json())
    }
}

/// The sealed objects of a bundle: (ciphertext digest, sealed size).
fn sealed_objects(bundle: &Path) -> Vec<(String, u64)> {
    let mut file = std::io::BufReader::new(std::fs::File::open(bundle).unwrap());
    let head = bundles::container::read_head(&mut file, &bundles::Limits::default()).unwrap();
    let manifest: bundles::BundleManifest = serde_json::from_slice(&head.manifest_bytes).unwrap();
    manifest
        .objects
        .iter()
        .map(|o| (o.sealed_digest.to_string(), o.sealed_size))
        .collect()
}

async fn distribution(db: Db) {
    let fx = Fixture::new(db).await;
    let http = &fx.portal.http;
    let url = &fx.portal.url;

    // 1.0.0: every object goes up.
    let v1 = fx.build("1.0.0", None).await;
    let pushed = fx.push(&v1, "stable").await;
    let mut unique = sealed_objects(&v1);
    unique.sort();
    unique.dedup();
    assert_eq!(pushed["objects_uploaded"], unique.len(), "{pushed}");
    assert_eq!(pushed["objects_skipped"], 0);
    assert_eq!(
        pushed["bytes_sent"],
        unique.iter().map(|o| o.1).sum::<u64>()
    );

    // 1.1.0 changes one function: exactly that object goes up.
    let app_py = fx.p("blog/functions/users/app.py");
    let mut code = std::fs::read_to_string(&app_py).unwrap();
    code.push_str("\n# 1.1.0: a comment that changes the function's zip\n");
    std::fs::write(&app_py, code).unwrap();
    let v11 = fx.build("1.1.0", Some("1.0.0")).await;
    let new_objects: Vec<(String, u64)> = sealed_objects(&v11)
        .into_iter()
        .filter(|o| !unique.contains(o))
        .collect();
    assert_eq!(new_objects.len(), 1, "{new_objects:?}");
    let pushed = fx.push(&v11, "beta").await;
    assert_eq!(pushed["objects_uploaded"], 1, "{pushed}");
    assert_eq!(pushed["objects_skipped"], unique.len() - 1);
    assert_eq!(pushed["bytes_sent"], new_objects[0].1);

    // Versions are immutable.
    let again = fx
        .vp(&[
            "release",
            "push",
            v11.to_str().unwrap(),
            "--keys",
            fx.p("keys").to_str().unwrap(),
        ])
        .await;
    assert_fails_with(&again, "published already");

    // The public TUF repository names both; the targets are the vendor's signed manifests.
    let timestamp: Value = http
        .get(format!("{url}/tuf/acme/serverless-blog/timestamp.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(timestamp["signed"]["_type"], "timestamp");
    let listed = fx
        .vp(&["--output", "json", "release", "list", "serverless-blog"])
        .await;
    let listed: Value = serde_json::from_str(&ok(listed)).unwrap();
    assert_eq!(listed[0]["version"], "1.1.0");
    assert_eq!(listed[0]["channels"], json!(["beta"]));
    assert_eq!(listed[1]["state"], "published");

    // An interrupted push (staged, never signed into targets) is invisible to installers.
    let v12 = fx.build("1.2.0", Some("1.1.0")).await;
    let mut bundle = std::io::BufReader::new(std::fs::File::open(&v12).unwrap());
    let head = bundles::container::read_head(&mut bundle, &bundles::Limits::default()).unwrap();
    let staged = fx
        .portal
        .call(
            Method::PUT,
            "/api/v1/apps/serverless-blog/releases/1.2.0",
            Some(&fx.portal.token),
            Some(json!({
                "manifest": String::from_utf8(head.manifest_bytes.clone()).unwrap(),
                "signature": {"kid": head.signature.kid, "signature": STANDARD.encode(head.signature.signature)},
                "keys": std::fs::read_to_string(format!("{}.keys", v12.display())).unwrap(),
            })),
        )
        .await;
    // Every object but the unchanged ones is missing, so staging is refused outright.
    assert_eq!(staged.status.as_u16(), 201, "{:?}", staged.json());
    let digest = bundles::Digest::of(&head.manifest_bytes).hex();
    let hidden = http
        .get(format!(
            "{url}/tuf/acme/serverless-blog/targets/{digest}.serverless-blog-1.2.0.manifest.json"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(hidden.status(), 404);

    // Grants: a license in good standing gets the keys, wrapped to its fresh key.
    let good = fx.issue(json!({})).await;
    let good_license = good["license"].as_str().unwrap().to_owned();
    let installer_key = RecipientSecret::generate().unwrap();
    let (status, granted) = fx
        .grant(
            &good_license,
            "serverless-blog",
            "1.0.0",
            &installer_key.public(),
            "123456789012",
        )
        .await;
    assert_eq!(status, 200, "{granted}");
    let wrapped = STANDARD
        .decode(granted["wrapped_keys"].as_str().unwrap())
        .unwrap();
    let keys = bundles::KeysFile::parse(&bundles::wrap::unwrap(&wrapped, &installer_key).unwrap())
        .unwrap();
    assert_eq!(keys.version.to_string(), "1.0.0");

    // The refusal matrix: each refused with its reason, and nothing wrapped.
    let fresh = || RecipientSecret::generate().unwrap().public();
    let refused = |(status, body): (u16, Value), code: &str| {
        assert_eq!(status, 403, "{code}: {body}");
        assert_eq!(body["code"], code, "{body}");
        assert!(body.get("wrapped_keys").is_none());
    };
    refused(
        fx.grant(
            &good_license,
            "serverless-blog",
            "1.0.0",
            &installer_key.public(),
            "123456789012",
        )
        .await,
        "replayed",
    );
    refused(
        fx.grant(
            &good_license,
            "serverless-blog",
            "1.0.0",
            &fresh(),
            "999999999999",
        )
        .await,
        "wrong_account",
    );
    refused(
        fx.grant(
            &good_license,
            "other-app",
            "1.0.0",
            &fresh(),
            "123456789012",
        )
        .await,
        "wrong_app",
    );
    refused(
        fx.grant(
            &good_license,
            "serverless-blog",
            "1.1.0",
            &fresh(),
            "123456789012",
        )
        .await,
        "wrong_channel",
    );
    let narrow = fx.issue(json!({"versions": ">=2.0.0"})).await;
    refused(
        fx.grant(
            narrow["license"].as_str().unwrap(),
            "serverless-blog",
            "1.0.0",
            &fresh(),
            "123456789012",
        )
        .await,
        "version_outside_window",
    );
    let old_only = fx.issue(json!({"published_before": 1_000_000_000})).await;
    refused(
        fx.grant(
            old_only["license"].as_str().unwrap(),
            "serverless-blog",
            "1.0.0",
            &fresh(),
            "123456789012",
        )
        .await,
        "version_outside_window",
    );
    // Revoked, suspended, and superseded by a renewal: each refused by the license's standing.
    let mut changed = Vec::new();
    for (action, code) in [
        ("revoke", "revoked"),
        ("suspend", "suspended"),
        ("renew", "superseded"),
    ] {
        let license = fx.issue(json!({})).await;
        let id = license["id"].as_str().unwrap();
        fx.portal
            .call(
                Method::POST,
                &format!("/api/v1/licenses/{id}/{action}"),
                Some(&fx.portal.token),
                Some(json!({})),
            )
            .await
            .expect(200);
        refused(
            fx.grant(
                license["license"].as_str().unwrap(),
                "serverless-blog",
                "1.0.0",
                &fresh(),
                "123456789012",
            )
            .await,
            code,
        );
        changed.push(license);
    }
    let revoked = &changed[0];
    // An expired revision, validly signed with the vendor's license key.
    let keydir = vendor_portal::keydir::KeyDir::open(&fx.p("keys")).unwrap();
    let signing = keydir.read_key(vendor_portal::keydir::LICENSE_KEY).unwrap();
    let kid = good["kid"].as_str().unwrap();
    let mut claims: license::Claims = serde_json::from_value(good["claims"].clone()).unwrap();
    let past = license::UnixTime::now().minus(86_400);
    let earlier = past.minus(86_400);
    (claims.iat, claims.nbf, claims.term.start) = (earlier, earlier, earlier);
    claims.exp = past;
    claims.term.end = past;
    let expired = license::verify::sign_license(&claims, kid, &signing).unwrap();
    refused(
        fx.grant(
            &expired,
            "serverless-blog",
            "1.0.0",
            &fresh(),
            "123456789012",
        )
        .await,
        "expired",
    );
    // A tampered license does not verify at all.
    let mut tampered = tests::compact(&good_license);
    let mid = tampered.len() / 2;
    let flipped = if &tampered[mid..=mid] == "A" {
        "B"
    } else {
        "A"
    };
    tampered.replace_range(mid..=mid, flipped);
    let (status, body) = fx
        .grant(
            &tampered,
            "serverless-blog",
            "1.0.0",
            &fresh(),
            "123456789012",
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "bad_license");

    // Only the one good grant is in the audit log; every refusal of a license that verified is
    // there with its reason.
    let audit = fx
        .portal
        .call(
            Method::GET,
            "/api/v1/audit?limit=500",
            Some(&fx.portal.token),
            None,
        )
        .await
        .expect(200);
    let entries = audit["entries"].as_array().unwrap();
    let count = |action: &str| entries.iter().filter(|e| e["action"] == action).count();
    assert_eq!(count("grant.issue"), 1, "{audit}");
    let reasons: Vec<String> = entries
        .iter()
        .filter(|e| e["action"] == "grant.refuse")
        .map(|e| {
            let entry: Value = serde_json::from_str(e["entry"].as_str().unwrap()).unwrap();
            entry["detail"]["code"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        reasons,
        [
            "replayed",
            "wrong_account",
            "wrong_app",
            "wrong_channel",
            "version_outside_window",
            "version_outside_window",
            "revoked",
            "suspended",
            "superseded",
        ],
        "{audit}"
    );

    // Downloads: a license for the app reads its objects, ranges work, others get nothing.
    let (digest, size) = unique[0].clone();
    let object_url = format!("{url}/api/v1/vendors/acme/objects/{digest}");
    let compact = tests::compact(&good_license);
    let whole = http
        .get(&object_url)
        .header("authorization", format!("License {compact}"))
        .send()
        .await
        .unwrap();
    assert_eq!(whole.status(), 200);
    let body = whole.bytes().await.unwrap();
    assert_eq!(body.len() as u64, size);
    let mut digester = bundles::seal::SealedDigester::new();
    digester.update(&body).unwrap();
    assert_eq!(digester.finish().unwrap().sealed_digest.to_string(), digest);
    let part = http
        .get(&object_url)
        .header("authorization", format!("License {compact}"))
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"].to_str().unwrap(),
        format!("bytes 10-19/{size}")
    );
    assert_eq!(&part.bytes().await.unwrap()[..], &body[10..20]);
    let anonymous = http.get(&object_url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let revoked_download = http
        .get(&object_url)
        .header(
            "authorization",
            format!(
                "License {}",
                tests::compact(revoked["license"].as_str().unwrap())
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(revoked_download.status(), 403);
    // The staged (unpublished) release's new object is not downloadable with a license.
    let staged_only = sealed_objects(&v12)
        .into_iter()
        .find(|o| !unique.contains(o) && !new_objects.contains(o));
    if let Some((staged_digest, _)) = staged_only {
        let hidden = http
            .get(format!("{url}/api/v1/vendors/acme/objects/{staged_digest}"))
            .header("authorization", format!("License {compact}"))
            .send()
            .await
            .unwrap();
        assert_eq!(hidden.status(), 404);
    }

    // An air-gapped kit: wrapped to the customer's static install key, verified offline.
    let keygen = tokio::task::spawn_blocking({
        let dir = fx.p("install-key");
        move || {
            std::process::Command::new(tests::bin("installer"))
                .args(["keygen", "-o", dir.to_str().unwrap()])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let public = ok(keygen).trim().to_owned();
    std::fs::write(fx.p("good.lic"), &good_license).unwrap();
    let kit = fx.p("blog.kit");
    ok(fx
        .vp(&[
            "kit",
            "export",
            "--license",
            fx.p("good.lic").to_str().unwrap(),
            "--version",
            "1.0.0",
            "--recipient",
            &public,
            "-o",
            kit.to_str().unwrap(),
        ])
        .await);
    let install_key = installer::keys::read(&fx.p("install-key")).unwrap();
    let fingerprint = keydir.read_keyset().unwrap().root_fingerprint();
    let opened = installer::kit::open(&kit, &install_key, &fingerprint, &fx.p("datastore"))
        .await
        .unwrap();
    assert_eq!(opened.release.version.to_string(), "1.0.0");
    assert_eq!(opened.keys.version.to_string(), "1.0.0");
    // Someone else's install key opens nothing; nor does another vendor's root.
    let stranger = RecipientSecret::generate().unwrap();
    assert!(
        installer::kit::open(&kit, &stranger, &fingerprint, &fx.p("ds2"))
            .await
            .is_err()
    );
    let wrong_root = installer::kit::open(&kit, &install_key, "sha256:00", &fx.p("ds3"))
        .await
        .err()
        .unwrap();
    assert!(
        format!("{wrong_root:#}").contains("not rooted"),
        "{wrong_root:#}"
    );

    // Yanking is signed by the vendor too, and stops grants.
    ok(fx
        .vp(&[
            "release",
            "yank",
            "serverless-blog",
            "1.0.0",
            "--reason",
            "data loss bug",
            "--keys",
            fx.p("keys").to_str().unwrap(),
        ])
        .await);
    refused(
        fx.grant(
            &good_license,
            "serverless-blog",
            "1.0.0",
            &fresh(),
            "123456789012",
        )
        .await,
        "yanked",
    );
    // Promote 1.1.0 to stable: the good license may now receive it.
    ok(fx
        .vp(&[
            "release",
            "promote",
            "serverless-blog",
            "1.1.0",
            "--channel",
            "stable",
            "--keys",
            fx.p("keys").to_str().unwrap(),
        ])
        .await);
    let (status, body) = fx
        .grant(
            &good_license,
            "serverless-blog",
            "1.1.0",
            &fresh(),
            "123456789012",
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Release-key rotation: an installer that already trusts the app follows the new root and
    // accepts targets signed by the new key.
    let base = format!("{url}/tuf/acme/serverless-blog/");
    let root1 = http
        .get(format!("{base}1.root.json"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let load = |datastore: PathBuf| {
        let (root1, base, pin) = (root1.clone(), base.clone(), fingerprint.clone());
        async move {
            let first = |n: u64| {
                let root = (n == 1)
                    .then(|| root1.to_vec())
                    .ok_or_else(|| anyhow::anyhow!("only 1.root.json here"));
                std::future::ready(root)
            };
            let repo = installer::tuf::load_over_http(&base, &pin, first, &datastore).await?;
            installer::tuf::releases(&repo)
        }
    };
    let seen = load(fx.p("installer-datastore")).await.unwrap();
    assert_eq!(seen.len(), 2, "1.0.0 and 1.1.0");
    let keys = fx.p("keys");
    ok(fx
        .vp(&[
            "keys",
            "rotate",
            "--keys",
            keys.to_str().unwrap(),
            "--release",
        ])
        .await);
    ok(fx
        .vp(&[
            "keys",
            "register",
            "--keys",
            keys.to_str().unwrap(),
            "--keyset-only",
        ])
        .await);
    let v13 = fx.build("1.3.0", Some("1.1.0")).await;
    fx.push(&v13, "stable").await;
    let seen = load(fx.p("installer-datastore")).await.unwrap();
    assert_eq!(seen[0].version.to_string(), "1.3.0");

    // A large object goes up in parts; an interrupted push resumes inside it.
    std::fs::write(
        fx.p("blog/static/big.bin"),
        tests::bundle::noise(5 << 20, 7),
    )
    .unwrap();
    let v14 = fx.build("1.4.0", Some("1.3.0")).await;
    let keys_file =
        bundles::KeysFile::parse(&std::fs::read(format!("{}.keys", v14.display())).unwrap())
            .unwrap();
    let mut reader = bundles::BundleReader::open_pinned(
        std::io::BufReader::new(std::fs::File::open(&v14).unwrap()),
        &keys_file.manifest,
        &bundles::Limits::default(),
    )
    .unwrap();
    let (big, sealed) = loop {
        let (entry, mut data) = reader.next_object().unwrap().unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut data, &mut bytes).unwrap();
        if entry.path.as_str().ends_with("big.bin") {
            break (entry, bytes);
        }
    };
    let parts_url = format!("{url}/api/v1/objects/{}", big.sealed_digest);
    let put_part = |n: usize, bytes: Vec<u8>| {
        let (http, url, token) = (
            http.clone(),
            format!("{parts_url}/parts/{n}"),
            fx.portal.token.clone(),
        );
        async move {
            http.put(url)
                .bearer_auth(token)
                .body(bytes)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    const MIB: usize = 1 << 20;
    // Parts that do not make up the object are refused at completion and discarded.
    assert_eq!(put_part(0, vec![0; MIB]).await, 201);
    let wrong = http
        .post(format!("{parts_url}/complete"))
        .bearer_auth(&fx.portal.token)
        .json(&json!({"parts": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 422);
    // The first two parts arrive, then the push is "interrupted".
    assert_eq!(put_part(0, sealed[..MIB].to_vec()).await, 201);
    assert_eq!(put_part(1, sealed[MIB..2 * MIB].to_vec()).await, 201);
    let out = fx
        .vp(&[
            "--output",
            "json",
            "release",
            "push",
            v14.to_str().unwrap(),
            "--keys",
            fx.p("keys").to_str().unwrap(),
            "--part-size-mib",
            "1",
        ])
        .await;
    let pushed: Value = serde_json::from_str(&ok(out)).unwrap();
    assert_eq!(pushed["objects_uploaded"], 1, "{pushed}");
    assert_eq!(
        pushed["bytes_sent"],
        big.sealed_size - 2 * MIB as u64,
        "{pushed}"
    );
    let left: Value = http
        .get(format!("{parts_url}/parts"))
        .bearer_auth(&fx.portal.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(left, json!({"complete": true, "parts": []}));
    let downloaded = http
        .get(format!(
            "{url}/api/v1/vendors/acme/objects/{}",
            big.sealed_digest
        ))
        .header("authorization", format!("License {compact}"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&downloaded[..], &sealed[..]);
    // A part nobody completes is swept once it is old enough.
    assert_eq!(put_part(3, vec![1; MIB]).await, 201);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let swept = fx
        .portal
        .state
        .blobs
        .delete_older_than("uploads", std::time::Duration::ZERO)
        .await
        .unwrap();
    assert!(swept >= 1);
    let left: Value = http
        .get(format!("{parts_url}/parts"))
        .bearer_auth(&fx.portal.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(left["parts"], json!([]));
    std::fs::remove_file(fx.p("blog/static/big.bin")).unwrap();

    // The portal re-signs the timestamp before it expires (and the snapshot when that is due),
    // and installers keep loading.
    let version_of = |file: &'static str| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let doc: Value = http
                .get(format!("{base}{file}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            doc["signed"]["version"].as_u64().unwrap()
        }
    };
    let ts = version_of("timestamp.json").await;
    let snapshot_named = || {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let doc: Value = http
                .get(format!("{base}timestamp.json"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            doc["signed"]["meta"]["snapshot.json"]["version"]
                .as_u64()
                .unwrap()
        }
    };
    let snapshot = snapshot_named().await;
    let now = license::UnixTime::now().as_secs() as i64;
    let state = &fx.portal.state;
    let refreshed = vendor_portal::server::domain::tuf::refresh_at(state, now + 20 * 3600)
        .await
        .unwrap();
    assert_eq!(refreshed, 1);
    assert_eq!(version_of("timestamp.json").await, ts + 1);
    assert_eq!(
        snapshot_named().await,
        snapshot,
        "only the timestamp was due"
    );
    vendor_portal::server::domain::tuf::refresh_at(state, now + 5 * 86_400)
        .await
        .unwrap();
    assert_eq!(version_of("timestamp.json").await, ts + 2);
    assert_eq!(
        snapshot_named().await,
        snapshot + 1,
        "the snapshot was due too"
    );
    let seen = load(fx.p("installer-datastore")).await.unwrap();
    assert_eq!(seen[0].version.to_string(), "1.4.0");
    // Nothing is due now: nothing is re-signed.
    assert_eq!(
        vendor_portal::server::domain::tuf::refresh(state)
            .await
            .unwrap(),
        0
    );

    // An address that keeps getting refused is stopped (60 refusals a minute; a window boundary
    // may split them, hence up to twice that many tries).
    let mut limited = false;
    for _ in 0..130 {
        let (status, body) = fx
            .grant(
                &tampered,
                "serverless-blog",
                "1.0.0",
                &fresh(),
                "123456789012",
            )
            .await;
        if status == 429 {
            assert!(
                body["detail"]
                    .as_str()
                    .unwrap()
                    .contains("refused key grants"),
                "{body}"
            );
            limited = true;
            break;
        }
        assert_eq!(status, 401, "{body}");
    }
    assert!(limited, "refusals were never rate-limited");
}

on_both_databases!(distribution);
