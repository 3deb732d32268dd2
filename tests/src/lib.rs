//! Shared fixtures for Consign's end-to-end tests: a vendor with freshly generated keys, helpers
//! that forge tokens byte by byte for the attack suites, the location of the workspace's
//! binaries, and a moto server on a free port.
//!
//! Keys are generated per test run; nothing secret is committed.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

pub mod agent;
pub mod bench;
pub mod browser;
pub mod bundle;
pub mod iam;
pub mod install;
pub mod lambda;
pub mod load;
pub mod mail;
pub mod mitm;
pub mod moto;
pub mod oidc;
pub mod portal;
pub mod visitor;
pub mod webhook;

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use license::{
    Claims, KeyEntry, Keyset, LicenseRequest, SigningKey, TrustPin, TrustedKeyset, UnixTime,
    VerifyOptions,
};

/// The fixed "now" of the attack suites: 2026-11-26T00:00:00Z.
pub fn now() -> UnixTime {
    UnixTime::parse("2026-11-26").unwrap()
}

/// Verification options at [`now`].
pub fn at_now() -> VerifyOptions {
    VerifyOptions::at(now())
}

/// Unpadded base64url.
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes unpadded base64url (panics on bad input: fixtures only).
pub fn unb64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).unwrap()
}

/// A vendor with a root key, one license-signing key and one release key, and its signed keyset.
pub struct Vendor {
    pub root: SigningKey,
    pub signer: SigningKey,
    pub release: SigningKey,
    pub kid: String,
    pub keyset: Keyset,
    pub keyset_json: String,
}

impl Vendor {
    pub fn new() -> Self {
        Self::with_seq(1)
    }

    pub fn with_seq(seq: u64) -> Self {
        Self::with_keys_from(seq, now().minus(86_400))
    }

    /// A vendor whose keys (and keyset) are valid from `from` on: for licenses issued long ago.
    pub fn with_keys_from(seq: u64, from: UnixTime) -> Self {
        let root = SigningKey::generate().unwrap();
        let signer = SigningKey::generate().unwrap();
        let release = SigningKey::generate().unwrap();
        let kid = signer.public_key().derive_kid("lic");
        let entry = |key: &SigningKey, prefix| KeyEntry {
            kid: key.public_key().derive_kid(prefix),
            public_key: key.public_key(),
            not_before: from,
            not_after: now().plus(5 * 365 * 86_400),
        };
        let keyset = Keyset {
            kind: license::KEYSET_TYPE.into(),
            issuer: Some("acme".parse().unwrap()),
            seq,
            issued_at: from,
            root: root.public_key(),
            license_keys: vec![entry(&signer, "lic")],
            release_keys: vec![entry(&release, "rel")],
        };
        let keyset_json = keyset.sign(&root).unwrap();
        Self {
            root,
            signer,
            release,
            kid,
            keyset,
            keyset_json,
        }
    }

    /// The keyset as a verifier that pins this vendor's root sees it.
    pub fn trusted(&self) -> TrustedKeyset {
        Keyset::verify(self.keyset_json.as_bytes(), &self.pin()).unwrap()
    }

    pub fn pin(&self) -> TrustPin {
        TrustPin {
            root_fingerprint: Some(self.root.public_key().fingerprint()),
            min_seq: 0,
        }
    }

    /// Typical claims, valid at [`now`].
    pub fn claims(&self) -> Claims {
        LicenseRequest::from_json(
            br#"{"sub":"globex","aud":"serverless-blog","exp":1830000000,
                "features":["posts","users"],"aws_accounts":["123456789012"],
                "regions":["eu-west-1"],"max_installations":3,
                "limits":{"seats":{"max":50,"overage":10}},
                "quotas":{"api-calls":{"amount":100000,"period":"month"}},
                "versions":">=1.0.0, <2.0.0"}"#,
        )
        .unwrap()
        .into_claims(self.keyset.issuer.as_ref(), now().minus(3600))
        .unwrap()
    }

    /// The armoured license for `claims`, signed properly.
    pub fn sign(&self, claims: &Claims) -> String {
        license::sign_license(claims, &self.kid, &self.signer).unwrap()
    }

    /// A compact JWS with an arbitrary header and payload, signed with this vendor's
    /// license-signing key: the signature is genuine, so only the parser stands in the way.
    pub fn sign_raw(&self, header_json: &str, payload: &[u8]) -> String {
        let input = format!("{}.{}", b64(header_json), b64(payload));
        let sig = self.signer.sign(input.as_bytes());
        format!("{input}.{}", b64(sig))
    }

    /// The header this vendor's licenses carry.
    pub fn header(&self) -> String {
        format!(
            r#"{{"alg":"EdDSA","typ":"consign-license+jwt","kid":"{}"}}"#,
            self.kid
        )
    }
}

impl Default for Vendor {
    fn default() -> Self {
        Self::new()
    }
}

/// The compact JWS inside an armoured license.
pub fn compact(armored: &str) -> String {
    license::armor::dearmor(armored).unwrap()
}

/// The path of a binary built from this workspace (`license-agent`, `vendor-portal`, ...).
///
/// `cargo nextest run --workspace` and `cargo test --workspace` build every package's binaries
/// alongside its tests, so they sit next to this test's own executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // Test executables live in target/<profile>/deps, binaries of this crate in target/<profile>.
    let parent = exe.parent().unwrap();
    let dir = if parent.ends_with("deps") {
        parent.parent().unwrap()
    } else {
        parent
    };
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built: run the tests with `cargo nextest run --workspace` (or scripts/test)",
        path.display()
    );
    path
}
