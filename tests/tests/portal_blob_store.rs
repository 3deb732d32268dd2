//! The portal on S3 (moto's): `serve --blob-store s3://bucket` with `AWS_ENDPOINT_URL` starts,
//! writes its readiness marker into the bucket and answers `/readyz`; a bucket that does not
//! exist stops it at start with one clear error instead of failing later.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::process::Command;

use tests::bin;
use tests::moto::Moto;
use tests::portal::PortalSetup;

fn s3_env(moto: &Moto) -> Vec<(String, String)> {
    vec![
        ("AWS_ENDPOINT_URL".into(), moto.endpoint()),
        ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
        ("AWS_REGION".into(), "us-east-1".into()),
        ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
    ]
}

#[test]
fn portal_keeps_blobs_in_s3() {
    let moto = Moto::start();
    let (status, body) = moto.request("PUT", "/consign-blobs", &[], "").unwrap();
    assert_eq!(status, 200, "{body}");
    let dir = tempfile::tempdir().unwrap();
    let mut setup = PortalSetup::new(dir.path(), false);
    setup.env = s3_env(&moto);
    setup.extra = vec!["--blob-store".into(), "s3://consign-blobs/portal".into()];
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
