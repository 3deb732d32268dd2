//! Properties of the license format that must hold for every input: what is signed verifies to
//! the same claims, and no single-character change to a signed license survives verification.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a broken fixture should fail the test loudly"
)]

use license::claims::{AwsAccountId, FeatureName, Limit, Period, Quota, Slug};
use license::{Claims, VerifyOptions};
use proptest::prelude::*;
use tests::{Vendor, compact, now};

fn slug() -> impl Strategy<Value = Slug> {
    "[a-z0-9][a-z0-9-]{0,20}".prop_map(|s| s.parse().unwrap())
}

fn feature() -> impl Strategy<Value = FeatureName> {
    "[a-z0-9][a-z0-9_.:-]{0,20}".prop_map(|s| s.parse().unwrap())
}

fn claims_strategy() -> impl Strategy<Value = Claims> {
    (
        (slug(), slug(), 1u64..u64::MAX / 2, 0u64..100_000_000),
        (
            61u64..400_000_000,
            proptest::collection::btree_set(feature(), 0..8),
        ),
        proptest::collection::btree_map(
            feature(),
            (0u64..1_000_000, proptest::option::of(0u64..1000)),
            0..4,
        ),
        proptest::collection::btree_map(feature(), (0u64..1_000_000, 0usize..4), 0..4),
        proptest::collection::btree_set("[0-9]{12}", 0..4),
        any::<bool>(),
    )
        .prop_map(
            |((sub, aud, seq, nbf), (length, features), limits, quotas, accounts, trial)| {
                let mut claims = Vendor::template_claims();
                claims.sub = sub;
                claims.aud = aud;
                claims.seq = seq;
                // Valid at the fixture's "now", when the vendor's signing key is valid too.
                claims.nbf = now().minus(nbf);
                claims.iat = claims.nbf;
                claims.exp = now().plus(length);
                claims.term.start = claims.nbf;
                claims.term.end = claims.exp;
                claims.trial = trial;
                claims.entitlements.features = features.into_iter().collect();
                claims.entitlements.limits = limits
                    .into_iter()
                    .map(|(k, (max, overage))| (k, Limit { max, overage }))
                    .collect();
                claims.entitlements.quotas = quotas
                    .into_iter()
                    .map(|(k, (amount, p))| {
                        let period = [Period::Hour, Period::Day, Period::Month, Period::Year][p];
                        (
                            k,
                            Quota {
                                amount,
                                period,
                                overage: None,
                            },
                        )
                    })
                    .collect();
                claims.bindings.aws_accounts = accounts
                    .into_iter()
                    .map(|a| AwsAccountId::new(a).unwrap())
                    .collect();
                claims
            },
        )
}

trait TemplateClaims {
    fn template_claims() -> Claims;
}

impl TemplateClaims for Vendor {
    fn template_claims() -> Claims {
        thread_local!(static VENDOR: Vendor = Vendor::new());
        VENDOR.with(Vendor::claims)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn sign_then_verify_returns_the_same_claims(claims in claims_strategy()) {
        let vendor = Vendor::new();
        let armored = vendor.sign(&claims);
        let verified = vendor.trusted().verify_license(&armored, &VerifyOptions::at(now())).unwrap();
        prop_assert_eq!(verified.claims(), &claims);
        for feature in &claims.entitlements.features {
            prop_assert!(verified.is_feature_allowed(feature.as_str(), now()).is_ok());
        }
    }

    #[test]
    fn keyset_sign_then_verify_returns_the_same_keyset(seq in 1u64..u64::MAX, extra in 0usize..4) {
        let vendor = Vendor::new();
        let mut keyset = vendor.keyset.clone();
        keyset.seq = seq;
        for _ in 0..extra {
            let key = license::SigningKey::generate().unwrap();
            keyset.license_keys.push(license::KeyEntry {
                kid: key.public_key().derive_kid("lic"),
                public_key: key.public_key(),
                not_before: now(),
                not_after: now().plus(1),
            });
        }
        let json = keyset.sign(&vendor.root).unwrap();
        let trusted = license::Keyset::verify(json.as_bytes(), &vendor.pin()).unwrap();
        prop_assert_eq!(trusted.keyset(), &keyset);
    }
}

/// Every position of the compact JWS, replaced by every other character of the JWS alphabet
/// that could appear there, makes verification fail. Exhaustive over positions, sampled over
/// replacement characters to keep the run short.
#[test]
fn changing_any_single_character_of_the_jws_makes_verify_fail() {
    let vendor = Vendor::new();
    let trusted = vendor.trusted();
    let token = compact(&vendor.sign(&vendor.claims()));
    let options = tests::at_now();
    trusted.verify_compact(&token, &options).unwrap();
    let alphabet: Vec<char> = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
        .chars()
        .collect();
    let mut checked = 0;
    for (i, original) in token.char_indices() {
        for step in [1usize, 7, 23, 41] {
            let at = alphabet.iter().position(|c| *c == original).unwrap();
            let replacement = alphabet[(at + step) % alphabet.len()];
            let mut forged = token.clone();
            forged.replace_range(i..i + 1, &replacement.to_string());
            assert!(
                trusted.verify_compact(&forged, &options).is_err(),
                "changing position {i} from {original:?} to {replacement:?} still verified"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, token.len() * 4);
}

/// The same through the armour, with the command-line verifier's view: any character of the
/// armoured body changed, and the license is refused.
#[test]
fn changing_any_character_of_the_armored_body_makes_verify_fail() {
    let vendor = Vendor::new();
    let trusted = vendor.trusted();
    let armored = vendor.sign(&vendor.claims());
    let body_start = armored.find('\n').unwrap() + 1;
    let body_end = armored.find("-----END").unwrap();
    for i in body_start..body_end {
        let original = armored.as_bytes()[i];
        let replacement = if original == b'A' { 'B' } else { 'A' };
        let mut forged = armored.clone();
        forged.replace_range(i..i + 1, &replacement.to_string());
        assert!(
            trusted.verify_license(&forged, &tests::at_now()).is_err(),
            "position {i}"
        );
    }
}
