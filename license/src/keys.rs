//! Ed25519 keys: public keys with their fingerprints, and signing keys held in PKCS#8 that are
//! wiped from memory when dropped and never printed.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Length of an Ed25519 public key in bytes.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature in bytes.
pub const SIGNATURE_LEN: usize = 64;

/// An Ed25519 public key; serialized as unpadded base64url of its 32 raw bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; PUBLIC_KEY_LEN]);

impl PublicKey {
    /// A public key from its 32 raw bytes; any other length is refused.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let raw: [u8; PUBLIC_KEY_LEN] = bytes.try_into().map_err(|_| {
            Error::Key(format!(
                "an Ed25519 public key is {PUBLIC_KEY_LEN} bytes, this one is {}",
                bytes.len()
            ))
        })?;
        Ok(Self(raw))
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }

    /// `sha256:<hex>` of the raw key: what administrators compare out of band and what
    /// verifiers pin.
    pub fn fingerprint(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.0);
        format!("sha256:{}", hex(digest.as_ref()))
    }

    /// A short key id derived from the fingerprint, with a prefix naming the key's role.
    pub fn derive_kid(&self, prefix: &str) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.0);
        format!("{prefix}-{}", &hex(digest.as_ref())[..16])
    }

    /// Whether `signature` is this key's Ed25519 signature of `message`. A signature of the wrong
    /// length is simply not valid.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        signature.len() == SIGNATURE_LEN
            && UnparsedPublicKey::new(&ED25519, &self.0)
                .verify(message, signature)
                .is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

impl PublicKey {
    /// Unpadded base64url of the raw key, as it is serialized.
    pub fn to_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// A key from unpadded base64url of its raw bytes.
    pub fn from_base64url(text: &str) -> Result<Self> {
        let raw = URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map_err(|_| Error::Key("a public key must be base64url".into()))?;
        Self::from_bytes(&raw)
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        let bytes = URL_SAFE_NO_PAD.decode(text.as_bytes()).map_err(|e| {
            serde::de::Error::custom(format_args!("public key is not base64url: {e}"))
        })?;
        PublicKey::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

/// An Ed25519 signing key. The PKCS#8 document is zeroized on drop; `Debug` shows only the
/// public key's fingerprint.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    pkcs8: Zeroizing<Vec<u8>>,
}

const PEM_LABEL: &str = "PRIVATE KEY";

impl SigningKey {
    /// Generates a fresh key from the operating system's random source.
    pub fn generate() -> Result<Self> {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| Error::Key("the system random source failed".into()))?;
        Self::from_pkcs8_der(doc.as_ref())
    }

    /// A key from a PKCS#8 DER document (v1 as OpenSSL writes it, or v2 with the public key).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| Error::Key(format!("not an Ed25519 PKCS#8 private key ({e})")))?;
        Ok(Self {
            pair,
            pkcs8: Zeroizing::new(der.to_vec()),
        })
    }

    /// A key from a `-----BEGIN PRIVATE KEY-----` PEM file.
    pub fn from_pem(pem: &str) -> Result<Self> {
        let begin = format!("-----BEGIN {PEM_LABEL}-----");
        let end = format!("-----END {PEM_LABEL}-----");
        let body = pem
            .trim()
            .strip_prefix(&begin)
            .and_then(|rest| rest.strip_suffix(&end))
            .ok_or_else(|| {
                Error::Key(format!(
                    "a private key file must be PEM between {begin} and {end}"
                ))
            })?;
        let b64: Zeroizing<String> = Zeroizing::new(body.split_whitespace().collect());
        let der = Zeroizing::new(
            STANDARD
                .decode(b64.as_bytes())
                .map_err(|e| Error::Key(format!("the private key PEM is not base64 ({e})")))?,
        );
        Self::from_pkcs8_der(&der)
    }

    /// The PKCS#8 PEM text, for writing to a file with mode 0600.
    pub fn to_pem(&self) -> Zeroizing<String> {
        let b64 = Zeroizing::new(STANDARD.encode(&*self.pkcs8));
        let mut out = Zeroizing::new(format!("-----BEGIN {PEM_LABEL}-----\n"));
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push('\n');
        }
        out.push_str(&format!("-----END {PEM_LABEL}-----\n"));
        out
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        let mut raw = [0u8; PUBLIC_KEY_LEN];
        raw.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(raw)
    }

    /// The Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut sig = [0u8; SIGNATURE_LEN];
        sig.copy_from_slice(self.pair.sign(message).as_ref());
        sig
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.public_key().fingerprint())
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_keeps_the_key() {
        let key = SigningKey::generate().unwrap();
        let again = SigningKey::from_pem(&key.to_pem()).unwrap();
        assert_eq!(key.public_key(), again.public_key());
        let sig = again.sign(b"m");
        assert!(key.public_key().verify(b"m", &sig));
        assert!(!key.public_key().verify(b"n", &sig));
    }

    #[test]
    fn debug_never_shows_secret_material() {
        let key = SigningKey::generate().unwrap();
        let shown = format!("{key:?}");
        assert!(shown.starts_with("SigningKey(sha256:"));
        let pem = key.to_pem();
        let body: String = pem.lines().nth(1).unwrap().chars().take(20).collect();
        assert!(!shown.contains(&body));
    }

    #[test]
    fn wrong_lengths_are_errors_not_panics() {
        assert!(PublicKey::from_bytes(&[0; 31]).is_err());
        assert!(PublicKey::from_bytes(&[0; 33]).is_err());
        let key = SigningKey::generate().unwrap().public_key();
        assert!(!key.verify(b"m", &[0; 63]));
        assert!(!key.verify(b"m", &[0; 65]));
        assert!(!key.verify(b"m", &[]));
        assert!(SigningKey::from_pkcs8_der(&[1, 2, 3]).is_err());
        assert!(SigningKey::from_pem("hello").is_err());
    }
}
