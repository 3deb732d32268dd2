//! The bundle attack suite: each test mounts one attack on a genuine bundle and checks that it is
//! refused with a clear error, that nothing of the object under attack is kept, and that nothing
//! panics.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a broken fixture should fail the test loudly"
)]

use bundles::seal::{CHUNK_SIZE, HEADER_LEN, TAG_LEN};
use bundles::{BundleReader, Error, KeysFile, Limits};
use tests::bundle::{AppFixture, check_bytes, layout, noise, open_bytes};
use tests::{Vendor, now};

struct Case {
    vendor: Vendor,
    app: AppFixture,
    bundle: Vec<u8>,
    keys: KeysFile,
}

fn case() -> Case {
    let vendor = Vendor::new();
    let app = AppFixture::small();
    let (bundle, built) = app.build(&vendor, None);
    Case {
        vendor,
        app,
        bundle,
        keys: built.keys,
    }
}

impl Case {
    /// Opening `forged` must fail; returns the error.
    fn refuse(&self, forged: &[u8]) -> Error {
        match open_bytes(&self.vendor, forged, &self.keys) {
            Ok(_) => panic!("a forged bundle opened"),
            Err(e) => e,
        }
    }

    /// The index of the multi-chunk asset among the objects.
    fn big(&self) -> usize {
        let reader = BundleReader::open(
            self.bundle.as_slice(),
            &self.vendor.trusted(),
            now(),
            &Limits::default(),
        )
        .unwrap();
        reader
            .manifest()
            .objects
            .iter()
            .position(|o| o.path.as_str() == "assets/site/big.bin")
            .unwrap()
    }

    /// Sealed bytes of the big asset, and where its chunks start inside them.
    fn chunk_range(&self, chunk: usize) -> std::ops::Range<usize> {
        let (_, body) = layout(&self.bundle).objects[self.big()].clone();
        let start = body.start + HEADER_LEN + chunk * (CHUNK_SIZE + TAG_LEN);
        start..(start + CHUNK_SIZE + TAG_LEN).min(body.end)
    }
}

/// A bundle with `manifest` in place of the genuine one, properly signed by the vendor's release
/// key, and the genuine objects after it: what an attacker who could make the vendor sign
/// anything would produce, so the checks after the signature are the ones tested.
fn resigned(c: &Case, manifest: &str) -> Vec<u8> {
    let l = layout(&c.bundle);
    let kid = c.vendor.release.public_key().derive_kid("rel");
    let sig = bundles::manifest::sign_manifest(manifest.as_bytes(), &kid, &c.vendor.release);
    let mut forged = b"consign-bundle\x00\x01".to_vec();
    forged.extend_from_slice(&(manifest.len() as u32).to_be_bytes());
    forged.extend_from_slice(manifest.as_bytes());
    forged.push(sig.kid.len() as u8);
    forged.extend_from_slice(sig.kid.as_bytes());
    forged.extend_from_slice(&sig.signature);
    forged.extend_from_slice(&c.bundle[l.count.start..]);
    forged
}

fn manifest_text(c: &Case) -> String {
    String::from_utf8(c.bundle[layout(&c.bundle).manifest].to_vec()).unwrap()
}

fn assert_refused(err: &Error, code: &str, says: &str) {
    assert_eq!(err.code(), code, "{err}");
    let message = err.to_string();
    assert!(message.contains(says), "{message:?} does not say {says:?}");
    assert!(!message.contains('\n'), "{message:?}");
}

#[test]
fn a_genuine_bundle_opens_to_exactly_its_contents() {
    let c = case();
    assert_eq!(
        open_bytes(&c.vendor, &c.bundle, &c.keys).unwrap(),
        c.app.expected()
    );
    assert_eq!(check_bytes(&c.vendor, &c.bundle).unwrap(), 4);
}

#[test]
fn flipped_byte_anywhere_is_refused() {
    // Every byte of the bundle except the big asset's chunk bodies (covered below, a sample of
    // positions inside them) is flipped in turn; every flip must stop `open`.
    let c = case();
    let l = layout(&c.bundle);
    let big = l.objects[c.big()].1.clone();
    let mut positions: Vec<usize> = (0..c.bundle.len()).filter(|i| !big.contains(i)).collect();
    positions.extend((big.start..big.end).step_by(997));
    positions.extend(big.end - 20..big.end);
    for at in positions {
        let mut forged = c.bundle.clone();
        forged[at] ^= 0x01;
        let err = c.refuse(&forged);
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn flipped_byte_in_the_header() {
    let c = case();
    let mut forged = c.bundle.clone();
    forged[3] ^= 0x20;
    assert_refused(&c.refuse(&forged), "malformed", "not a .bundle file");
}

#[test]
fn flipped_byte_in_the_manifest() {
    let c = case();
    let l = layout(&c.bundle);
    let mut forged = c.bundle.clone();
    forged[l.manifest.start + 40] ^= 0x01;
    assert_refused(
        &c.refuse(&forged),
        "bad_signature",
        "signature does not verify",
    );
}

#[test]
fn flipped_byte_in_the_signature() {
    let c = case();
    let l = layout(&c.bundle);
    let mut forged = c.bundle.clone();
    forged[l.signature.start + 10] ^= 0x80;
    assert_refused(
        &c.refuse(&forged),
        "bad_signature",
        "signature does not verify",
    );
}

#[test]
fn flipped_byte_in_a_chunk() {
    let c = case();
    let chunk = c.chunk_range(1);
    let mut forged = c.bundle.clone();
    forged[chunk.start + 100] ^= 0x01;
    assert_refused(
        &c.refuse(&forged),
        "decrypt_failed",
        "chunk 1 fails authentication",
    );
    // Without keys the body is opaque, but a flipped tag is caught by the sealed digest.
    let mut forged = c.bundle.clone();
    forged[chunk.end - 1] ^= 0x01;
    assert_refused(
        &check_bytes(&c.vendor, &forged).unwrap_err(),
        "object_mismatch",
        "sealed digest",
    );
}

#[test]
fn truncated_at_a_chunk_boundary() {
    let c = case();
    let cut = c.chunk_range(2).start;
    assert_refused(
        &c.refuse(&c.bundle[..cut]),
        "truncated",
        "chunk 2 of object assets/site/big.bin",
    );
}

#[test]
fn truncated_inside_a_chunk() {
    let c = case();
    let cut = c.chunk_range(1).start + 1234;
    assert_refused(
        &c.refuse(&c.bundle[..cut]),
        "truncated",
        "chunk 1 of object assets/site/big.bin",
    );
    for cut in [
        0,
        10,
        17,
        22,
        layout(&c.bundle).manifest.start + 5,
        layout(&c.bundle).count.start + 2,
    ] {
        assert_eq!(
            c.refuse(&c.bundle[..cut]).code(),
            "truncated",
            "cut at {cut}"
        );
    }
}

#[test]
fn chunks_reordered() {
    let c = case();
    let (a, b) = (c.chunk_range(0), c.chunk_range(1));
    let mut forged = c.bundle.clone();
    let first = c.bundle[a.clone()].to_vec();
    forged[a.clone()].copy_from_slice(&c.bundle[b.clone()]);
    forged[b].copy_from_slice(&first);
    assert_refused(
        &c.refuse(&forged),
        "decrypt_failed",
        "chunk 0 fails authentication",
    );
}

#[test]
fn chunk_dropped() {
    let c = case();
    let big = c.big();
    let l = layout(&c.bundle);
    let chunk = c.chunk_range(1);
    let mut forged = c.bundle[..chunk.start].to_vec();
    forged.extend_from_slice(&c.bundle[chunk.end..]);
    // As is, the object runs short and the next bytes are read as the rest of it...
    // (chunk 2 arrives where chunk 1 belongs and fails authentication)...
    assert_refused(
        &c.refuse(&forged),
        "decrypt_failed",
        "chunk 1 fails authentication",
    );
    // ...and with the length prefix forged to match, the signed length still does not.
    let (prefix, body) = l.objects[big].clone();
    let new_len = (body.len() - chunk.len()) as u64;
    forged[prefix].copy_from_slice(&new_len.to_be_bytes());
    assert_refused(&c.refuse(&forged), "object_mismatch", "is not the signed");
}

#[test]
fn chunk_duplicated() {
    let c = case();
    let chunk = c.chunk_range(1);
    // Chunk 1 written over chunk 2: same length, wrong position.
    let mut forged = c.bundle.clone();
    let copy = c.bundle[chunk.clone()].to_vec();
    let next = c.chunk_range(2);
    forged[next.start..next.start + copy.len()].copy_from_slice(&copy);
    assert_refused(
        &c.refuse(&forged),
        "decrypt_failed",
        "chunk 2 fails authentication",
    );
}

#[test]
fn final_chunk_moved_earlier() {
    // The last-chunk flag: a final chunk replayed as a middle chunk must fail even if the
    // attacker lines everything else up.
    let c = case();
    let last = c.chunk_range(3);
    let first = c.chunk_range(0);
    let mut forged = c.bundle.clone();
    forged[first.start..first.start + last.len()].copy_from_slice(&c.bundle[last]);
    assert_eq!(c.refuse(&forged).code(), "decrypt_failed");
}

#[test]
fn data_after_the_final_chunk() {
    let c = case();
    let big = c.big();
    let (prefix, body) = layout(&c.bundle).objects[big].clone();
    let mut forged = c.bundle[..body.end].to_vec();
    forged.extend_from_slice(b"trailing");
    forged.extend_from_slice(&c.bundle[body.end..]);
    forged[prefix].copy_from_slice(&((body.len() + 8) as u64).to_be_bytes());
    assert_refused(&c.refuse(&forged), "object_mismatch", "is not the signed");
    // And after the last object of the bundle.
    let mut forged = c.bundle.clone();
    forged.extend_from_slice(b"x");
    assert_refused(
        &c.refuse(&forged),
        "malformed",
        "data after the last object",
    );
}

#[test]
fn object_swapped_between_two_bundles() {
    // Same app and version built twice: same plaintext, different data keys, same sizes.
    let c = case();
    let (other, _) = c.app.build(&c.vendor, None);
    let (mine, theirs) = (
        layout(&c.bundle).objects[c.big()].1.clone(),
        layout(&other).objects[c.big()].1.clone(),
    );
    assert_eq!(mine.len(), theirs.len());
    let mut forged = c.bundle.clone();
    forged[mine].copy_from_slice(&other[theirs]);
    assert_refused(&c.refuse(&forged), "decrypt_failed", "fails authentication");
    assert_refused(
        &check_bytes(&c.vendor, &forged).unwrap_err(),
        "object_mismatch",
        "sealed digest",
    );
}

#[test]
fn object_swapped_between_two_versions() {
    // Version 2 changes the big asset's contents but not its size; its object is swapped into v1.
    let c = case();
    let mut v2 = c.app.clone();
    v2.toml = v2
        .toml
        .replace("version = \"1.0.0\"", "version = \"2.0.0\"");
    v2.assets[1].1 = noise(3 * 65_536 + 1_000, 8);
    let (other, _) = v2.build(&c.vendor, Some(c.keys.clone()));
    let (mine, theirs) = (
        layout(&c.bundle).objects[c.big()].1.clone(),
        layout(&other).objects[c.big()].1.clone(),
    );
    let mut forged = c.bundle.clone();
    forged[mine].copy_from_slice(&other[theirs]);
    assert_eq!(c.refuse(&forged).code(), "decrypt_failed");
}

#[test]
fn manifest_signed_with_the_license_key() {
    let c = case();
    let l = layout(&c.bundle);
    let manifest = &c.bundle[l.manifest.clone()];
    // Under its own key id: not a release key.
    let sig = bundles::manifest::sign_manifest(manifest, &c.vendor.kid, &c.vendor.signer);
    let mut forged = c.bundle[..l.manifest.end].to_vec();
    forged.push(sig.kid.len() as u8);
    forged.extend_from_slice(sig.kid.as_bytes());
    forged.extend_from_slice(&sig.signature);
    forged.extend_from_slice(&c.bundle[l.count.start..]);
    assert_refused(&c.refuse(&forged), "bad_signature", "not a release key");
    // Under the release key's id: the signature does not verify.
    let mut forged = c.bundle.clone();
    forged[l.signature].copy_from_slice(&sig.signature);
    assert_refused(&c.refuse(&forged), "bad_signature", "does not verify");
}

#[test]
fn manifest_signed_by_another_vendors_release_key() {
    let c = case();
    let other = Vendor::new();
    let (theirs, _) = c.app.build(&other, None);
    assert_refused(
        &c.refuse(&theirs),
        "bad_signature",
        "not a release key in the trusted keyset",
    );
}

#[test]
fn wrong_keys_file() {
    let c = case();
    let (_, other) = c.app.build(&c.vendor, None);
    let err = open_bytes(&c.vendor, &c.bundle, &other.keys).unwrap_err();
    assert_refused(&err, "bad_keys_file", "belongs to tiny-app 1.0.0");
    // A keys file that names the right manifest but carries another key for one object.
    let mut keys = c.keys.clone();
    let digest = *keys.keys.keys().next().unwrap();
    keys.keys.insert(digest, other.keys.keys[&digest].clone());
    let err = open_bytes(&c.vendor, &c.bundle, &keys).unwrap_err();
    assert_eq!(err.code(), "decrypt_failed", "{err}");
}

#[test]
fn path_traversal_in_names() {
    // A manifest naming an object "../../etc/cron.d/x", correctly signed by the release key.
    let c = case();
    let manifest = manifest_text(&c);
    for evil in [
        "../../etc/cron.d/x",
        "/etc/passwd",
        "assets/site/../../x",
        "a\\\\..\\\\b",
    ] {
        let err = c.refuse(&resigned(
            &c,
            &manifest.replace("assets/site/index.html", evil),
        ));
        assert_eq!(err.code(), "malformed", "{evil}: {err}");
        assert!(err.to_string().contains("is not allowed"), "{err}");
    }
}

#[test]
fn oversized_lengths() {
    let c = case();
    let l = layout(&c.bundle);
    // A manifest length of 4 GiB: refused before anything is allocated.
    let mut forged = c.bundle.clone();
    forged[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_refused(&c.refuse(&forged), "too_large", "manifest");
    // A key id length of 0 or 200.
    for len in [0u8, 200] {
        let mut forged = c.bundle.clone();
        forged[l.manifest.end] = len;
        assert_refused(&c.refuse(&forged), "malformed", "key id length");
    }
    // An object count that does not match the manifest.
    let mut forged = c.bundle.clone();
    forged[l.count.clone()].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_refused(
        &c.refuse(&forged),
        "malformed",
        "objects but its manifest lists 4",
    );
    // An object length of 2^64-1.
    let mut forged = c.bundle.clone();
    forged[l.objects[0].0.clone()].copy_from_slice(&u64::MAX.to_be_bytes());
    assert_refused(&c.refuse(&forged), "object_mismatch", "is not the signed");
    // A signed manifest that claims a 1 TiB object: over the limit, refused.
    let manifest = manifest_text(&c);
    let size = c.app.assets[0].1.len();
    let forged_manifest =
        manifest.replacen(&format!("\"size\":{size},"), "\"size\":1099511627776,", 1);
    assert_ne!(forged_manifest, manifest);
    let err = c.refuse(&resigned(&c, &forged_manifest));
    assert_refused(&err, "too_large", "object size");
}

#[test]
fn a_failed_open_keeps_nothing_of_the_failing_object() {
    let c = case();
    let chunk = c.chunk_range(3);
    let mut forged = c.bundle.clone();
    forged[chunk.start] ^= 1;
    let reader = BundleReader::open(
        forged.as_slice(),
        &c.vendor.trusted(),
        now(),
        &Limits::default(),
    )
    .unwrap();
    let mut sink = tests::bundle::MemorySink::default();
    assert!(bundles::open::open_all(reader, &c.keys, &mut sink).is_err());
    assert!(!sink.committed.contains_key("assets/site/big.bin"));
}
