//! Feeds arbitrary bytes to every license parser: armour, compact JWS and header, claims, and full
//! verification against a keyset made at start-up. None may panic, whatever the input.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use license::{Claims, KeyEntry, Keyset, SigningKey, TrustPin, TrustedKeyset, UnixTime, VerifyOptions};

fn keyset() -> &'static Option<TrustedKeyset> {
    static KEYSET: OnceLock<Option<TrustedKeyset>> = OnceLock::new();
    KEYSET.get_or_init(|| {
        let root = SigningKey::generate().ok()?;
        let signer = SigningKey::generate().ok()?;
        let keyset = Keyset {
            kind: license::KEYSET_TYPE.into(),
            issuer: None,
            seq: 1,
            issued_at: UnixTime::from_secs(0)?,
            root: root.public_key(),
            license_keys: vec![KeyEntry {
                kid: "fuzz".into(),
                public_key: signer.public_key(),
                not_before: UnixTime::from_secs(0)?,
                not_after: UnixTime::MAX,
            }],
            release_keys: vec![],
        };
        let text = keyset.sign(&root).ok()?;
        Keyset::verify(text.as_bytes(), &TrustPin::default()).ok()
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = Claims::from_json(data);
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = license::armor::dearmor(text);
    let _ = license::decode_unverified(text);
    if let Some(keyset) = keyset() {
        let options = VerifyOptions::at(UnixTime::from_secs(1_800_000_000).unwrap_or(UnixTime::MAX));
        let _ = keyset.verify_license(text, &options);
        let _ = keyset.verify_compact(text, &options);
    }
});
