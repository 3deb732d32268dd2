//! Properties of bundles that must hold for any contents: opening a built bundle gives back
//! exactly what went in; the same inputs give the same function zips; an unchanged object keeps
//! its ciphertext across versions when the previous keys file is reused, and only then.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a broken fixture should fail the test loudly"
)]

use proptest::prelude::*;
use tests::Vendor;
use tests::bundle::{AppFixture, layout, noise, open_bytes};

fn app_with(assets: Vec<(String, Vec<u8>)>) -> AppFixture {
    let mut app = AppFixture::small();
    app.assets = assets;
    app
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn open_of_build_is_identity(
        files in proptest::collection::btree_map("[a-z][a-z0-9_.-]{0,12}", (0usize..200_000, any::<u64>()), 1..5)
    ) {
        let vendor = Vendor::new();
        let app = app_with(files.into_iter().map(|(name, (len, seed))| (name, noise(len, seed))).collect());
        let (bundle, built) = app.build(&vendor, None);
        prop_assert_eq!(open_bytes(&vendor, &bundle, &built.keys).unwrap(), app.expected());
    }
}

#[test]
fn unchanged_objects_keep_their_ciphertext_when_keys_are_reused() {
    let vendor = Vendor::new();
    let v1 = AppFixture::small();
    let (b1, built1) = v1.build(&vendor, None);
    let mut v2 = v1.clone();
    v2.toml = v2
        .toml
        .replace("version = \"1.0.0\"", "version = \"1.1.0\"");
    v2.assets[0].1 = b"<!doctype html><title>tiny v2</title>".to_vec();
    let (b2, built2) = v2.build(&vendor, Some(built1.keys.clone()));
    assert_eq!(
        built2.reused, 3,
        "template, function and the big asset are unchanged"
    );
    let by_path = |m: &bundles::BundleManifest| {
        m.objects
            .iter()
            .map(|o| (o.path.to_string(), o.sealed_digest))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let (s1, s2) = (by_path(&built1.manifest), by_path(&built2.manifest));
    assert_eq!(s1["assets/site/big.bin"], s2["assets/site/big.bin"]);
    assert_eq!(s1["functions/worker.zip"], s2["functions/worker.zip"]);
    assert_ne!(s1["assets/site/index.html"], s2["assets/site/index.html"]);
    // Byte-identical ciphertext, not just equal digests.
    let big = built1
        .manifest
        .objects
        .iter()
        .position(|o| o.path.as_str() == "assets/site/big.bin")
        .unwrap();
    assert_eq!(
        &b1[layout(&b1).objects[big].1.clone()],
        &b2[layout(&b2).objects[big].1.clone()]
    );
    // Without the previous keys, nothing is shared.
    let (_, fresh) = v2.build(&vendor, None);
    assert_eq!(fresh.reused, 0);
    assert_ne!(
        by_path(&fresh.manifest)["assets/site/big.bin"],
        s1["assets/site/big.bin"]
    );
    assert_eq!(
        open_bytes(&vendor, &b2, &built2.keys).unwrap(),
        v2.expected()
    );
}

#[test]
fn plaintext_digests_do_not_depend_on_keys_or_build_time() {
    let vendor = Vendor::new();
    let app = AppFixture::small();
    let (_, a) = app.build(&vendor, None);
    let (_, b) = app.build(&Vendor::new(), None);
    let digests =
        |m: &bundles::BundleManifest| m.objects.iter().map(|o| o.digest).collect::<Vec<_>>();
    assert_eq!(digests(&a.manifest), digests(&b.manifest));
}
