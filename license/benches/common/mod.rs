//! What the license benchmarks share: timing a closure, the median of rounds, and a vendor with
//! a license.

use std::time::{Duration, Instant};

/// The mean time of one call of `f` over `iterations` calls.
pub fn time_per_op(iterations: u32, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed() / iterations
}

/// The median of `v`.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A vendor with a keyset valid from `from`: the verifier's view of it, and a license signed
/// for `claims_json` (issued at `from`).
pub fn vendor_license(
    from: license::UnixTime,
    claims_json: &[u8],
) -> (license::TrustedKeyset, String) {
    use license::{KeyEntry, Keyset, LicenseRequest, SigningKey, TrustPin};
    let root = SigningKey::generate().expect("key");
    let signer = SigningKey::generate().expect("key");
    let kid = signer.public_key().derive_kid("lic");
    let keyset = Keyset {
        kind: license::KEYSET_TYPE.into(),
        issuer: Some("acme".parse().expect("slug")),
        seq: 1,
        issued_at: from,
        root: root.public_key(),
        license_keys: vec![KeyEntry {
            kid: kid.clone(),
            public_key: signer.public_key(),
            not_before: from,
            not_after: from.plus(10 * 365 * 86_400),
        }],
        release_keys: vec![],
    };
    let trusted = Keyset::verify(
        keyset.sign(&root).expect("sign").as_bytes(),
        &TrustPin::default(),
    )
    .expect("keyset");
    let claims = LicenseRequest::from_json(claims_json)
        .and_then(|r| r.into_claims(keyset.issuer.as_ref(), from))
        .expect("claims");
    let armored = license::sign_license(&claims, &kid, &signer).expect("license");
    (trusted, armored)
}
