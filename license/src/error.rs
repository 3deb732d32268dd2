//! Every way a license, a keyset or an entitlement question can be refused, each with a message
//! that names what is wrong and what the reader can do about it.

use crate::time::UnixTime;

/// Why a license or keyset was refused.
///
/// Messages are one sentence meant for an administrator; signature failures are deliberately coarse
/// ("does not verify") so that they reveal nothing about which byte was wrong.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// An account proof could not be made.
    #[error("cannot prove the AWS account: {0}")]
    Proof(String),
    /// The input is larger than the limit for its kind.
    #[error(
        "the {what} is {size} bytes, over the {limit}-byte limit: this is not a Consign {what}"
    )]
    TooLarge {
        /// What was too large ("license", "keyset", ...).
        what: &'static str,
        /// Its size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },

    /// The armour around the license is broken.
    #[error("the license file is not a valid armoured Consign license: {reason}")]
    Armor {
        /// What is wrong with the armour.
        reason: String,
    },

    /// A part of the compact JWS could not be decoded.
    #[error("the license is malformed: {part} {reason}; ask the vendor for a fresh copy")]
    Malformed {
        /// Which part ("header", "payload", "signature", "token").
        part: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The header names an algorithm other than EdDSA.
    #[error("the license uses algorithm {alg:?}; Consign accepts only EdDSA (Ed25519) signatures")]
    Algorithm {
        /// The algorithm the header claimed.
        alg: String,
    },

    /// The header carries a parameter that could point verification at attacker-chosen keys.
    #[error(
        "the license header carries {name:?}, which Consign refuses: verification keys come only from the pinned keyset"
    )]
    ForbiddenHeader {
        /// The header parameter's name.
        name: String,
    },

    /// The header carries a parameter Consign does not know.
    #[error(
        "the license header carries unknown parameter {name:?}; only alg, typ and kid are allowed"
    )]
    UnknownHeader {
        /// The header parameter's name.
        name: String,
    },

    /// The header's `typ` is not the one for this kind of token.
    #[error("the token has type {found:?}, not {expected:?}: it is not a Consign license")]
    WrongType {
        /// What `typ` was found (empty when missing).
        found: String,
        /// What `typ` was expected.
        expected: &'static str,
    },

    /// The signing key is not in the trusted keyset.
    #[error(
        "the license is signed by key {kid:?}, which is not in the trusted keyset: get the vendor's current keyset.json"
    )]
    UnknownKey {
        /// The key id from the header.
        kid: String,
    },

    /// The signing key is in the keyset but outside its validity window.
    #[error(
        "the license's signing key {kid:?} {reason}; ask the vendor for a license signed with a current key"
    )]
    KeyNotValid {
        /// The key id.
        kid: String,
        /// "expired at …" or "is valid only from …".
        reason: String,
    },

    /// The signature does not verify.
    #[error("the {what} signature does not verify: it was altered or signed by another key")]
    BadSignature {
        /// What carried the signature ("license", "keyset").
        what: &'static str,
    },

    /// The claims or keyset contents are not what the format allows.
    #[error("the {what} contents are invalid: {reason}")]
    Invalid {
        /// What was invalid ("license claims", "keyset", "claims file").
        what: &'static str,
        /// What is wrong, naming the field.
        reason: String,
    },

    /// The license is past its `exp`.
    #[error("the license expired at {exp} (it is now {now}): ask the vendor for a renewed license")]
    Expired {
        /// When it expired.
        exp: UnixTime,
        /// The verifier's clock.
        now: UnixTime,
    },

    /// The license is before its `nbf`.
    #[error(
        "the license is not valid until {nbf} (it is now {now}): check this machine's clock or wait"
    )]
    NotYetValid {
        /// When it becomes valid.
        nbf: UnixTime,
        /// The verifier's clock.
        now: UnixTime,
    },

    /// The license claims to have been issued in the future.
    #[error(
        "the license says it was issued at {iat}, after now ({now}): check this machine's clock"
    )]
    IssuedInFuture {
        /// The `iat` claim.
        iat: UnixTime,
        /// The verifier's clock.
        now: UnixTime,
    },

    /// A newer revision of the same license (or a newer keyset) has already been seen.
    #[error(
        "this {what} has seq {seq}, older than seq {seen} already seen: a newer revision exists, use that one"
    )]
    Rollback {
        /// "license" or "keyset".
        what: &'static str,
        /// The seq presented.
        seq: u64,
        /// The highest seq seen before.
        seen: u64,
    },

    /// A signed answer echoes another nonce than the one asked with: an old answer played back,
    /// or one meant for someone else.
    #[error(
        "this {what} answers another request (its nonce differs): it is a replayed or misdirected answer"
    )]
    Replayed {
        /// "status".
        what: &'static str,
    },

    /// The license was issued by someone other than the keyset's vendor.
    #[error(
        "the license is issued by {iss:?} but the keyset belongs to {expected:?}: use that vendor's keyset"
    )]
    IssuerMismatch {
        /// The `iss` claim.
        iss: String,
        /// The keyset's issuer.
        expected: String,
    },

    /// The keyset's root key is not the pinned one.
    #[error(
        "the keyset's root key is {found}, not the pinned {expected}: this keyset is not from the vendor you trust"
    )]
    RootMismatch {
        /// The pinned fingerprint.
        expected: String,
        /// The keyset root's fingerprint.
        found: String,
    },

    /// A key could not be read or generated.
    #[error("{0}")]
    Key(String),
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A stable, machine-readable name for the kind of failure, for `--output json` and APIs.
    pub fn code(&self) -> &'static str {
        match self {
            Error::TooLarge { .. } => "too_large",
            Error::Armor { .. } => "bad_armor",
            Error::Malformed { .. } => "malformed",
            Error::Algorithm { .. } => "wrong_algorithm",
            Error::ForbiddenHeader { .. } => "forbidden_header",
            Error::UnknownHeader { .. } => "unknown_header",
            Error::WrongType { .. } => "wrong_type",
            Error::UnknownKey { .. } => "unknown_key",
            Error::KeyNotValid { .. } => "key_not_valid",
            Error::BadSignature { .. } => "bad_signature",
            Error::Invalid { .. } => "invalid_contents",
            Error::Expired { .. } => "expired",
            Error::NotYetValid { .. } => "not_yet_valid",
            Error::IssuedInFuture { .. } => "issued_in_future",
            Error::Rollback { .. } => "rollback",
            Error::Replayed { .. } => "replayed",
            Error::IssuerMismatch { .. } => "wrong_issuer",
            Error::RootMismatch { .. } => "untrusted_root",
            Error::Key(_) => "key_error",
            Error::Proof(_) => "proof_error",
        }
    }
}
