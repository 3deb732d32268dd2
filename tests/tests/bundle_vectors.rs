//! The frozen bundle vectors in `tests/vectors/bundle`: a bundle built by an earlier build must
//! keep verifying and opening to the same plaintext, and every recorded forgery must keep failing
//! with the recorded error. A change that breaks this has changed the bundle format.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a broken fixture should fail the test loudly"
)]

use std::path::PathBuf;

use bundles::open::open_all;
use bundles::{BundleReader, Digest, KeysFile, Limits};
use license::{Keyset, TrustPin, UnixTime};
use serde_json::Value;
use tests::bundle::MemorySink;

fn open(
    bundle: &[u8],
    keyset: &license::TrustedKeyset,
    keys: &KeysFile,
    at: UnixTime,
) -> bundles::Result<MemorySink> {
    let reader = BundleReader::open(bundle, keyset, at, &Limits::default())?;
    let mut sink = MemorySink::default();
    open_all(reader, keys, &mut sink)?;
    Ok(sink)
}

#[test]
fn the_frozen_bundle_opens_and_every_recorded_forgery_fails() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors/bundle");
    let vectors: Value =
        serde_json::from_slice(&std::fs::read(dir.join("vectors.json")).unwrap()).unwrap();
    let pin = TrustPin {
        root_fingerprint: vectors["root_fingerprint"].as_str().map(str::to_owned),
        min_seq: 0,
    };
    let keyset = Keyset::verify(&std::fs::read(dir.join("keyset.json")).unwrap(), &pin).unwrap();
    let keys = KeysFile::parse(&std::fs::read(dir.join("tiny.bundle.keys")).unwrap()).unwrap();
    let bundle = std::fs::read(dir.join("tiny.bundle")).unwrap();
    let at = UnixTime::parse(vectors["at"].as_str().unwrap()).unwrap();

    let opened = open(&bundle, &keyset, &keys, at).unwrap();
    let expected = vectors["objects"].as_object().unwrap();
    assert_eq!(opened.committed.len(), expected.len());
    for (path, want) in expected {
        let data = &opened.committed[path];
        assert_eq!(
            Digest::of(data).to_string(),
            want["digest"].as_str().unwrap(),
            "{path}"
        );
        assert_eq!(data.len() as u64, want["size"].as_u64().unwrap(), "{path}");
    }

    let cases = vectors["must_fail"].as_array().unwrap();
    assert!(cases.len() >= 9);
    for case in cases {
        let mut forged = bundle.clone();
        for edit in case["xor"].as_array().into_iter().flatten() {
            let (at, mask) = (
                edit[0].as_u64().unwrap() as usize,
                edit[1].as_u64().unwrap() as u8,
            );
            forged[at] ^= mask;
        }
        if let Some(len) = case["truncate"].as_u64() {
            forged.truncate(len as usize);
        }
        if let Some(swap) = case["swap"].as_array() {
            let (a, b, n) = (
                swap[0].as_u64().unwrap() as usize,
                swap[1].as_u64().unwrap() as usize,
                swap[2].as_u64().unwrap() as usize,
            );
            let first = forged[a..a + n].to_vec();
            forged.copy_within(b..b + n, a);
            forged[b..b + n].copy_from_slice(&first);
        }
        if case["append"].is_string() {
            forged.push(0);
        }
        let name = case["name"].as_str().unwrap();
        match open(&forged, &keyset, &keys, at) {
            Ok(_) => panic!("{name}: a forged bundle opened"),
            Err(e) => assert_eq!(e.code(), case["code"].as_str().unwrap(), "{name}: {e}"),
        }
    }
}
