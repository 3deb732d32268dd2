//! The frozen license vectors in `tests/vectors/license`: licenses issued by an earlier build must
//! keep verifying, and the recorded forgeries must keep failing for the recorded reason. A change
//! that breaks this has changed the license format for every customer who holds a license.

use std::collections::BTreeSet;
use std::path::PathBuf;

use license::{Keyset, TrustPin, UnixTime, VerifyOptions};

#[test]
fn every_frozen_vector_verifies_or_fails_as_recorded() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors/license");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("vectors.json")).expect("vectors.json"))
            .expect("json");
    let pin = TrustPin {
        root_fingerprint: manifest["root_fingerprint"].as_str().map(str::to_owned),
        min_seq: 0,
    };
    let keyset = Keyset::verify(
        &std::fs::read(dir.join("keyset.json")).expect("keyset"),
        &pin,
    )
    .expect("keyset verifies");
    let vectors = manifest["vectors"].as_array().expect("vectors");
    assert!(vectors.len() >= 10, "the vector set shrank");
    let mut listed = BTreeSet::from(["keyset.json".to_owned(), "vectors.json".to_owned()]);
    for vector in vectors {
        let file = vector["file"].as_str().expect("file");
        listed.insert(file.to_owned());
        let text = std::fs::read_to_string(dir.join(file)).expect("vector file");
        let at = UnixTime::parse(vector["at"].as_str().expect("at")).expect("time");
        let outcome = match keyset.verify_license(&text, &VerifyOptions::at(at)) {
            Ok(_) => "valid".to_owned(),
            Err(e) => e.code().to_owned(),
        };
        assert_eq!(
            outcome,
            vector["expect"].as_str().expect("expect"),
            "{file}: {}",
            vector["why"]
        );
        assert_eq!(
            file.starts_with("must-fail-"),
            outcome != "valid",
            "{file}: the name says whether it must fail"
        );
    }
    let present: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        present, listed,
        "every file in the vectors folder is listed in vectors.json"
    );
}
