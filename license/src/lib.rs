//! Consign licenses: the signed license format, the vendor's keyset, their verification, and
//! entitlement evaluation.
//!
//! A license is a compact JWS signed with Ed25519 (`alg` `EdDSA`, `typ` `consign-license+jwt`,
//! `kid` naming a key in the vendor's keyset) in an armoured text file. The vendor's offline root
//! key signs a keyset that lists the license-signing keys; verifiers pin the root by fingerprint.
//! Everything here is pure computation over byte slices and strings: no files, no network, no
//! clock unless asked ([`UnixTime::now`]), so the portal, the installer and the license agent
//! share one implementation.
//!
//! ```
//! use license::{Claims, Keyset, KeyEntry, LicenseRequest, SigningKey, TrustPin, UnixTime, VerifyOptions};
//!
//! # fn main() -> Result<(), license::Error> {
//! let now = UnixTime::parse("2026-11-26").unwrap();
//! let root = SigningKey::generate()?;
//! let signer = SigningKey::generate()?;
//! let kid = signer.public_key().derive_kid("lic");
//! let keyset = Keyset {
//!     kind: license::KEYSET_TYPE.into(),
//!     issuer: Some("acme".parse().unwrap()),
//!     seq: 1,
//!     issued_at: now,
//!     root: root.public_key(),
//!     license_keys: vec![KeyEntry {
//!         kid: kid.clone(),
//!         public_key: signer.public_key(),
//!         not_before: now,
//!         not_after: now.plus(5 * 365 * 86_400),
//!     }],
//!     release_keys: vec![],
//! };
//! let keyset_json = keyset.sign(&root)?;
//!
//! let request = LicenseRequest::from_json(br#"{"sub":"globex","aud":"serverless-blog",
//!     "exp":1830000000,"features":["posts"],"aws_accounts":["123456789012"]}"#)?;
//! let claims: Claims = request.into_claims(keyset.issuer.as_ref(), now)?;
//! let armored = license::sign_license(&claims, &kid, &signer)?;
//!
//! let pin = TrustPin { root_fingerprint: Some(root.public_key().fingerprint()), min_seq: 0 };
//! let trusted = Keyset::verify(keyset_json.as_bytes(), &pin)?;
//! let verified = trusted.verify_license(&armored, &VerifyOptions::at(now))?;
//! assert!(verified.is_feature_allowed("posts", now).is_ok());
//! assert!(verified.is_feature_allowed("users", now).is_err());
//! assert!(verified.check_placement("123456789012", "eu-west-1").is_ok());
//! # Ok(())
//! # }
//! ```

pub mod agent;
pub mod armor;
pub mod checkin;
pub mod claims;
pub mod entitlements;
pub mod error;
mod json;
pub mod jws;
pub mod keys;
pub mod keyset;
#[cfg(feature = "cli")]
pub mod process;
pub mod proof;
pub mod request;
pub mod status;
pub mod time;
pub mod verify;

/// The semver crate, re-exported so callers build [`ReleaseRef`] versions with the same types.
pub use semver;

pub use agent::{Accepted, Agent, Memory};
pub use claims::{Claims, LICENSE_TYP};
pub use entitlements::{Denial, Lifecycle, LimitStatus, Offer, QuotaStatus, ReleaseRef, State};
pub use error::{Error, Result};
pub use keys::{PublicKey, SigningKey};
pub use keyset::{KEYSET_TYPE, KeyEntry, Keyset, TrustPin, TrustedKeyset};
pub use request::LicenseRequest;
pub use time::UnixTime;
pub use verify::{
    TrustState, UnverifiedLicense, VerifiedLicense, VerifyOptions, Window, decode_unverified,
    sign_license,
};
