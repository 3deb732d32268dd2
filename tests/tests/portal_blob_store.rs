//! The portal on S3 (moto's): `serve --blob-store s3://bucket` with `AWS_ENDPOINT_URL` starts,
//! writes its readiness marker into the bucket and answers `/readyz`; a bucket that does not
//! exist stops it at start with one clear error instead of failing later.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::process::Command;

use tests::bin;
use tests::moto::Moto;
use tests::portal::{PortalSetup, publish_big_release};

fn s3_env(moto: &Moto) -> Vec<(String, String)> {
    vec![
        ("AWS_ENDPOINT_URL".into(), moto.endpoint()),
        ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
        ("AWS_REGION".into(), "us-east-1".into()),
        ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
    ]
}

/// A portal setup whose blobs go to a new bucket on `moto`, under `portal/`.
fn s3_portal(moto: &Moto, dir: &std::path::Path) -> PortalSetup {
    let (status, body) = moto.request("PUT", "/consign-blobs", &[], "").unwrap();
    assert_eq!(status, 200, "{body}");
    let mut setup = PortalSetup::new(dir, false);
    setup.env = s3_env(moto);
    setup.extra = vec!["--blob-store".into(), "s3://consign-blobs/portal".into()];
    setup
}

#[test]
fn portal_keeps_blobs_in_s3() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let setup = s3_portal(&moto, dir.path());
    let portal = setup.start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ready = rt.block_on(async {
        reqwest::get(format!("{}/readyz", portal.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert!(ready.contains("\"blobs\":\"ok\""), "{ready}");
    let (status, listing) = moto
        .request("GET", "/consign-blobs?list-type=2", &[], "")
        .unwrap();
    assert_eq!(status, 200);
    assert!(listing.contains("portal/consign/ready"), "{listing}");
    assert!(
        !dir.path().join("data/blobs").exists(),
        "nothing went to local disk"
    );
}

#[test]
fn missing_bucket_stops_the_portal_at_start() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin("vendor-portal"))
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--blob-store",
            "s3://no-such-bucket",
            "--data-dir",
        ])
        .arg(dir.path())
        .envs(s3_env(&moto))
        .env_remove("CONSIGN_DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("s3://no-such-bucket") && err.contains("not writable"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn releases_on_s3_download_through_a_presigned_redirect() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let setup = s3_portal(&moto, dir.path());
    let token = setup.create_vendor("acme");
    let portal = setup.start();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    // Over 10 MiB, so the upload takes the multipart path.
    let release = publish_big_release(&setup, &portal.url, &token, &work, 12 << 20);
    assert!(release.blob.is_none(), "nothing went to local disk");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let no_redirects = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let object = format!(
            "{}/api/v1/vendors/acme/objects/{}",
            portal.url, release.digest
        );
        let answer = no_redirects
            .get(&object)
            .header("authorization", format!("License {}", release.license))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 307);
        let location = answer.headers()["location"].to_str().unwrap().to_owned();
        assert!(location.starts_with(&moto.endpoint()), "{location}");
        assert!(location.contains("X-Amz-Expires=300"), "{location}");
        let bytes = reqwest::get(&location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(bytes.len() as u64, release.size);
        let mut digester = bundles::seal::SealedDigester::new();
        digester.update(&bytes).unwrap();
        assert_eq!(
            digester.finish().unwrap().sealed_digest.to_string(),
            release.digest
        );
        // Without a license there is no redirect to follow.
        let refused = no_redirects.get(&object).send().await.unwrap();
        assert_eq!(refused.status(), 401);
    });
}
