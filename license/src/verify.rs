//! License verification: armour → JWS → key from the trusted keyset → signature → typed claims →
//! times → revision. Also signing (for the vendor's tools) and an explicitly unverified decode
//! (for `license-agent inspect`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::armor::{armor, dearmor};
use crate::claims::{Claims, LICENSE_TYP};
use crate::error::{Error, Result};
use crate::json::check_strict;
use crate::jws::{Header, parse_compact, sign_compact};
use crate::keys::SigningKey;
use crate::keyset::{Keyset, TrustPin, TrustedKeyset};
use crate::time::UnixTime;

/// Clock tolerance, in seconds, for `nbf`, `exp`, `iat` and key windows.
pub const DEFAULT_LEEWAY: u64 = 60;

/// How to verify: at what time, with how much clock tolerance, refusing which revisions.
#[derive(Clone, Copy, Debug)]
pub struct VerifyOptions {
    /// The verifier's clock.
    pub now: UnixTime,
    /// Seconds of clock tolerance.
    pub leeway: u64,
    /// Refuse a license whose `seq` is below this.
    pub min_seq: u64,
    /// Whether a license outside its validity period is an error.
    pub window: Window,
}

/// What verification does with a license outside its validity period (`nbf`..`exp`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Window {
    /// Refuse it: the installer and the portal act on a license only while it is valid.
    #[default]
    Enforce,
    /// Accept it when genuine, and let the caller decide: the license agent keeps an expired
    /// license loaded (its lifecycle is RESTRICTED, every check answers why) so that a renewal
    /// arriving at the next check-in takes over without a restart. The signing key must have
    /// been valid when the license was issued, and a license issued in the future is still an
    /// error.
    Report,
}

impl VerifyOptions {
    /// Verify at `now` with the default leeway, accepting any revision.
    pub fn at(now: UnixTime) -> Self {
        Self {
            now,
            leeway: DEFAULT_LEEWAY,
            min_seq: 0,
            window: Window::Enforce,
        }
    }
}

/// A license whose signature, claims and times have been checked. Entitlement questions are
/// answered by its methods (see `entitlements.rs`) without further verification.
#[derive(Clone, Debug)]
pub struct VerifiedLicense {
    pub(crate) claims: Claims,
    pub(crate) kid: String,
    /// Feature names, sorted, for binary search in [`VerifiedLicense::is_feature_allowed`].
    pub(crate) features: Vec<Box<str>>,
}

impl VerifiedLicense {
    /// The verified claims.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// The id of the key that signed it.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// Signs `claims` with the license-signing key `kid` and returns the armoured license.
pub fn sign_license(claims: &Claims, kid: &str, key: &SigningKey) -> Result<String> {
    claims.validate().map_err(|reason| Error::Invalid {
        what: "license claims",
        reason,
    })?;
    let payload = serde_json::to_vec(claims).map_err(|e| Error::Invalid {
        what: "license claims",
        reason: e.to_string(),
    })?;
    Ok(armor(&sign_compact(LICENSE_TYP, kid, &payload, key)))
}

impl TrustedKeyset {
    /// Verifies an armoured license.
    pub fn verify_license(
        &self,
        armored: &str,
        options: &VerifyOptions,
    ) -> Result<VerifiedLicense> {
        self.verify_compact(&dearmor(armored)?, options)
    }

    /// Verifies a bare compact JWS license.
    pub fn verify_compact(
        &self,
        compact: &str,
        options: &VerifyOptions,
    ) -> Result<VerifiedLicense> {
        let jws = parse_compact(compact, LICENSE_TYP)?;
        let key = self
            .license_key(&jws.header.kid)
            .ok_or_else(|| Error::UnknownKey {
                kid: jws.header.kid.clone(),
            })?;
        if options.window == Window::Enforce {
            key.check_valid_at(options.now, options.leeway)?;
        }
        if !key
            .public_key
            .verify(jws.signing_input.as_bytes(), &jws.signature)
        {
            return Err(Error::BadSignature { what: "license" });
        }
        // Only signed bytes from here on.
        let claims = Claims::from_json(&jws.payload)?;
        if let Some(issuer) = &self.keyset().issuer
            && *issuer != claims.iss
        {
            return Err(Error::IssuerMismatch {
                iss: claims.iss.to_string(),
                expected: issuer.to_string(),
            });
        }
        if options.window == Window::Report {
            // A key signs only inside its window, whatever the license says about itself.
            key.check_valid_at(claims.iat, options.leeway)?;
        }
        check_times(&claims, options)?;
        if claims.seq < options.min_seq {
            return Err(Error::Rollback {
                what: "license",
                seq: claims.seq,
                seen: options.min_seq,
            });
        }
        let mut features: Vec<Box<str>> = claims
            .entitlements
            .features
            .iter()
            .map(|f| f.as_str().into())
            .collect();
        features.sort_unstable();
        Ok(VerifiedLicense {
            claims,
            kid: jws.header.kid,
            features,
        })
    }
}

impl Claims {
    /// Parses and validates claims from a license payload: typed fields, relations between
    /// fields. Used on signed bytes only, and by the fuzz targets.
    ///
    /// No separate strict-JSON pass here (it would cost as much as the parse): every object in
    /// [`Claims`] is a struct that refuses unknown and repeated fields, or a map read with
    /// `unique_map`, so duplicate keys, unknown fields and nesting beyond the typed shape are
    /// all refused by the typed parse itself.
    pub fn from_json(payload: &[u8]) -> Result<Claims> {
        let invalid = |reason: String| Error::Invalid {
            what: "license claims",
            reason,
        };
        let claims: Claims = serde_json::from_slice(payload).map_err(|e| invalid(e.to_string()))?;
        claims.validate().map_err(invalid)?;
        Ok(claims)
    }
}

fn check_times(claims: &Claims, options: &VerifyOptions) -> Result<()> {
    let now = options.now;
    if options.window == Window::Enforce && now.plus(options.leeway) < claims.nbf {
        return Err(Error::NotYetValid {
            nbf: claims.nbf,
            now,
        });
    }
    if options.window == Window::Enforce && now.minus(options.leeway) >= claims.exp {
        return Err(Error::Expired {
            exp: claims.exp,
            now,
        });
    }
    if now.plus(options.leeway) < claims.iat {
        return Err(Error::IssuedInFuture {
            iat: claims.iat,
            now,
        });
    }
    Ok(())
}

/// A license decoded without any verification, for display. Nothing in it may be trusted.
#[derive(Debug, Clone, Serialize)]
pub struct UnverifiedLicense {
    /// The key id the header names.
    pub kid: String,
    /// The payload as JSON, whatever it contains.
    pub claims: serde_json::Value,
}

/// Decodes an armoured license without checking its signature. The header must still be a
/// well-formed Consign license header.
pub fn decode_unverified(armored: &str) -> Result<UnverifiedLicense> {
    let compact = dearmor(armored)?;
    let jws = parse_compact(&compact, LICENSE_TYP)?;
    check_strict(&jws.payload).map_err(|e| Error::Invalid {
        what: "license claims",
        reason: format!("not valid JSON ({e})"),
    })?;
    let claims = serde_json::from_slice(&jws.payload).map_err(|e| Error::Invalid {
        what: "license claims",
        reason: e.to_string(),
    })?;
    let Header { kid } = jws.header;
    Ok(UnverifiedLicense { kid, claims })
}

/// What a verifier remembers between runs: the pinned root, the newest keyset `seq` and the
/// highest `seq` of each license id. Persist it (it serializes to JSON) so that rollback
/// protection survives restarts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustState {
    /// The pinned root fingerprint; set on first use when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_fingerprint: Option<String>,
    /// The highest keyset `seq` accepted.
    #[serde(default)]
    pub keyset_seq: u64,
    /// The highest `seq` accepted per license id.
    #[serde(default)]
    pub license_seq: BTreeMap<String, u64>,
}

impl TrustState {
    /// Verifies a keyset against this state and records its root and `seq`.
    pub fn accept_keyset(&mut self, bytes: &[u8]) -> Result<TrustedKeyset> {
        let trusted = Keyset::verify(
            bytes,
            &TrustPin {
                root_fingerprint: self.root_fingerprint.clone(),
                min_seq: self.keyset_seq,
            },
        )?;
        self.root_fingerprint = Some(trusted.root_fingerprint());
        self.keyset_seq = trusted.keyset().seq;
        Ok(trusted)
    }

    /// Verifies a license against `keyset` and this state, and records its `seq`.
    pub fn accept_license(
        &mut self,
        keyset: &TrustedKeyset,
        armored: &str,
        now: UnixTime,
    ) -> Result<VerifiedLicense> {
        // The license id is only known after the signature verifies; verify, then compare.
        let verified = keyset.verify_license(armored, &VerifyOptions::at(now))?;
        let id = verified.claims.jti.as_str();
        let seen = self.license_seq.get(id).copied().unwrap_or(0);
        if verified.claims.seq < seen {
            return Err(Error::Rollback {
                what: "license",
                seq: verified.claims.seq,
                seen,
            });
        }
        self.license_seq.insert(id.to_owned(), verified.claims.seq);
        Ok(verified)
    }
}
