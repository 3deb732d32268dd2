//! The signed license status the portal answers with (`GET
//! /api/v1/vendors/{vendor}/licenses/{id}/status?nonce=N`): whether a license is active, suspended
//! or revoked, its current `seq`, the portal's clock, and the caller's nonce echoed back so that an
//! old answer cannot be replayed. It is a compact JWS of type [`STATUS_TYP`], signed by one of the
//! vendor's license-signing keys, so the agent and the installer verify it with the keyset they
//! already pin and trust nothing the network adds.

use serde::{Deserialize, Serialize};

use crate::claims::{LicenseId, Slug};
use crate::error::{Error, Result};
use crate::jws::{parse_compact, sign_compact};
use crate::keys::SigningKey;
use crate::keyset::TrustedKeyset;
use crate::time::UnixTime;

/// The `typ` header of a signed status.
pub const STATUS_TYP: &str = "consign-status+jwt";
/// Nonces are 16 to 128 characters of `[A-Za-z0-9_-]`, optionally padded with up to two `=`.
pub const NONCE_LEN: std::ops::RangeInclusive<usize> = 16..=128;

/// The state of a license as the portal knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LicenseState {
    /// In force.
    Active,
    /// Paused by the vendor; reinstating it makes it active again.
    Suspended,
    /// Ended for good.
    Revoked,
}

impl LicenseState {
    /// The lowercase name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            LicenseState::Active => "active",
            LicenseState::Suspended => "suspended",
            LicenseState::Revoked => "revoked",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(LicenseState::Active),
            "suspended" => Some(LicenseState::Suspended),
            "revoked" => Some(LicenseState::Revoked),
            _ => None,
        }
    }
}

/// The signed contents of a status answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusClaims {
    /// The vendor.
    pub iss: Slug,
    /// The license the status is about.
    pub jti: LicenseId,
    /// Its state.
    pub state: LicenseState,
    /// Its current revision; a license file with a lower `seq` is outdated.
    pub seq: u64,
    /// The portal's clock when it answered.
    pub time: UnixTime,
    /// The caller's nonce, echoed.
    pub nonce: String,
}

/// What [`valid_nonce`] asks for, in the words an error gives.
pub const NONCE_RULE: &str = "nonce must be 16 to 128 characters of base64url (A-Z a-z 0-9 _ -, padding allowed): make one with `head -c16 /dev/urandom | basenc --base64url`";

/// Whether `nonce` has the allowed length and alphabet: base64url, padded or not (`basenc
/// --base64url` pads), so up to two `=` may end it.
pub fn valid_nonce(nonce: &str) -> bool {
    let body = nonce
        .strip_suffix("==")
        .or_else(|| nonce.strip_suffix('='))
        .unwrap_or(nonce);
    NONCE_LEN.contains(&nonce.len())
        && !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// Signs a status with the license-signing key `kid`.
pub fn sign_status(status: &StatusClaims, kid: &str, key: &SigningKey) -> Result<String> {
    let payload = serde_json::to_vec(status).map_err(|e| Error::Invalid {
        what: "status",
        reason: e.to_string(),
    })?;
    Ok(sign_compact(STATUS_TYP, kid, &payload, key))
}

impl TrustedKeyset {
    /// Verifies a signed status: the signature by a license key of this keyset valid at the
    /// status's own time, the issuer, and that it answers `nonce` (so it is fresh) about
    /// `license`.
    pub fn verify_status(
        &self,
        compact: &str,
        license: &LicenseId,
        nonce: &str,
    ) -> Result<StatusClaims> {
        let status = self.verify_kept_status(compact, license)?;
        if status.nonce != nonce {
            return Err(Error::Replayed { what: "status" });
        }
        Ok(status)
    }

    /// Verifies a status the agent accepted earlier and kept in its state: genuine and about
    /// `license`, whatever nonce it echoes (the request it answered is long gone). What the
    /// agent's memory says of the portal is only believed as far as such a status shows it.
    pub fn verify_kept_status(&self, compact: &str, license: &LicenseId) -> Result<StatusClaims> {
        let jws = parse_compact(compact, STATUS_TYP)?;
        let key = self
            .license_key(&jws.header.kid)
            .ok_or_else(|| Error::UnknownKey {
                kid: jws.header.kid.clone(),
            })?;
        if !key
            .public_key
            .verify(jws.signing_input.as_bytes(), &jws.signature)
        {
            return Err(Error::BadSignature { what: "status" });
        }
        let status: StatusClaims =
            serde_json::from_slice(&jws.payload).map_err(|e| Error::Invalid {
                what: "status",
                reason: e.to_string(),
            })?;
        key.check_valid_at(status.time, crate::verify::DEFAULT_LEEWAY)?;
        let invalid = |reason: String| Error::Invalid {
            what: "status",
            reason,
        };
        if let Some(issuer) = &self.keyset().issuer
            && *issuer != status.iss
        {
            return Err(Error::IssuerMismatch {
                iss: status.iss.to_string(),
                expected: issuer.to_string(),
            });
        }
        if status.jti != *license {
            return Err(invalid(format!(
                "it is about license {}, not {license}",
                status.jti
            )));
        }
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::{KEYSET_TYPE, KeyEntry, Keyset, TrustPin};

    fn keyset(root: &SigningKey, signer: &SigningKey) -> TrustedKeyset {
        let now = UnixTime::from_secs(1_800_000_000).unwrap();
        let ks = Keyset {
            kind: KEYSET_TYPE.into(),
            issuer: Some(Slug::known("acme")),
            seq: 1,
            issued_at: now,
            root: root.public_key(),
            license_keys: vec![KeyEntry {
                kid: signer.public_key().derive_kid("lic"),
                public_key: signer.public_key(),
                not_before: now,
                not_after: now.plus(86_400 * 365),
            }],
            release_keys: vec![],
        };
        Keyset::verify(ks.sign(root).unwrap().as_bytes(), &TrustPin::default()).unwrap()
    }

    fn status(nonce: &str) -> StatusClaims {
        StatusClaims {
            iss: Slug::known("acme"),
            jti: LicenseId::new("lic_000000000000000000000001").unwrap(),
            state: LicenseState::Revoked,
            seq: 4,
            time: UnixTime::from_secs(1_800_000_100).unwrap(),
            nonce: nonce.into(),
        }
    }

    #[test]
    fn status_round_trips_and_binds_the_nonce() {
        let (root, signer) = (
            SigningKey::generate().unwrap(),
            SigningKey::generate().unwrap(),
        );
        let ks = keyset(&root, &signer);
        let kid = signer.public_key().derive_kid("lic");
        let nonce = "nonce-0123456789abcdef";
        let signed = sign_status(&status(nonce), &kid, &signer).unwrap();
        let got = ks
            .verify_status(&signed, &status(nonce).jti, nonce)
            .unwrap();
        assert_eq!(got.state, LicenseState::Revoked);
        assert_eq!(got.seq, 4);
        let replayed = ks.verify_status(&signed, &status(nonce).jti, "another-nonce-0123456");
        assert!(matches!(replayed, Err(Error::Replayed { .. })));
    }

    #[test]
    fn status_signed_by_a_foreign_key_is_refused() {
        let (root, signer) = (
            SigningKey::generate().unwrap(),
            SigningKey::generate().unwrap(),
        );
        let ks = keyset(&root, &signer);
        let forger = SigningKey::generate().unwrap();
        let kid = signer.public_key().derive_kid("lic");
        let nonce = "nonce-0123456789abcdef";
        let forged = sign_status(&status(nonce), &kid, &forger).unwrap();
        assert!(matches!(
            ks.verify_status(&forged, &status(nonce).jti, nonce),
            Err(Error::BadSignature { .. })
        ));
        // A license token is not a status, even when validly signed.
        let wrong_type = sign_compact(crate::LICENSE_TYP, &kid, b"{}", &signer);
        assert!(
            ks.verify_status(&wrong_type, &status(nonce).jti, nonce)
                .is_err()
        );
    }

    #[test]
    fn nonce_alphabet_and_length() {
        assert!(valid_nonce("abcdefghijklmnop"));
        // `head -c16 /dev/urandom | basenc --base64url` pads to 24 characters.
        assert!(valid_nonce("q83vEjRWeJq83vEjRWeJqw=="));
        assert!(valid_nonce("q83vEjRWeJq83vEjRWeJqwQ="));
        assert!(!valid_nonce("q83vEjRWeJq83vEjRWeJ===="));
        assert!(!valid_nonce("q83vEjRW=eJq83vEjRWeJqw"));
        assert!(!valid_nonce("================"));
        assert!(!valid_nonce("short"));
        assert!(!valid_nonce("has spaces in it, sadly"));
        assert!(!valid_nonce(&"a".repeat(129)));
    }
}
