//! A 1 GiB object through a real `vendor-portal serve` process: pushed by the vendor's CLI and
//! downloaded with a license, while the portal's peak memory (`VmHWM`) stays far below the
//! object's size. Uploads and downloads stream; neither buffers an object.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use futures_util::StreamExt as _;
use tests::portal::{PortalSetup, memory, publish_big_release};

const GIB: u64 = 1 << 30;
/// What the portal may hold at its peak, whatever the object's size.
const BOUND: u64 = 256 << 20;

#[test]
fn a_one_gib_object_moves_through_the_portal_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let setup = PortalSetup::new(dir.path(), false);
    let token = setup.create_vendor("acme");
    let portal = setup.start();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let release = publish_big_release(&setup, &portal.url, &token, &work, GIB);
    let (_, after_push) = memory(portal.pid());
    assert!(release.size > GIB);
    assert!(
        after_push < BOUND,
        "the upload peaked at {after_push} bytes"
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let received = rt.block_on(async {
        let response = reqwest::Client::new()
            .get(format!(
                "{}/api/v1/vendors/acme/objects/{}",
                portal.url, release.digest
            ))
            .header("authorization", format!("License {}", release.license))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut stream = response.bytes_stream();
        let mut digester = bundles::seal::SealedDigester::new();
        let mut received = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap();
            digester.update(&chunk).unwrap();
            received += chunk.len() as u64;
        }
        assert_eq!(
            digester.finish().unwrap().sealed_digest.to_string(),
            release.digest
        );
        received
    });
    assert_eq!(received, release.size);
    let (_, peak) = memory(portal.pid());
    assert!(
        peak < BOUND,
        "moving {received} bytes peaked the portal at {peak} bytes"
    );
}
