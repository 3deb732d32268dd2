//! Wrapping data keys to an installer's X25519 key, for key grants and air-gapped kits:
//! an ephemeral X25519 key agrees a secret with the recipient's public key; HKDF-SHA256 turns it
//! into an AES-256-GCM key that seals the payload.
//!
//! ```text
//! wrapped = "consign-wrap-v1\0" (16 bytes) || ephemeral public key (32) || AES-256-GCM(payload) || tag (16)
//! key     = HKDF-SHA256(salt = ephemeral public || recipient public, ikm = X25519 shared secret,
//!                       info = "consign-keywrap-v1")
//! nonce   = 12 zero bytes (every wrap uses a fresh ephemeral key, so every key seals once)
//! ```

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

const MAGIC: &[u8; 16] = b"consign-wrap-v1\x00";
const INFO: &[u8] = b"consign-keywrap-v1";

/// An installer's X25519 key pair (its secret is zeroized on drop).
pub struct RecipientSecret(StaticSecret);

impl RecipientSecret {
    /// A fresh key pair.
    pub fn generate() -> Result<Self> {
        Ok(Self(StaticSecret::from(*random32()?)))
    }

    /// The key from its 32 secret bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(StaticSecret::from(bytes))
    }

    /// The 32 secret bytes, for storing with mode 0600.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public key to give the sender.
    pub fn public(&self) -> [u8; 32] {
        PublicKey::from(&self.0).to_bytes()
    }
}

impl std::fmt::Debug for RecipientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecipientSecret(…)")
    }
}

fn random32() -> Result<Zeroizing<[u8; 32]>> {
    use ring::rand::SecureRandom as _;
    let mut bytes = Zeroizing::new([0u8; 32]);
    ring::rand::SystemRandom::new()
        .fill(&mut *bytes)
        .map_err(|_| Error::Crypto("the system random source failed".into()))?;
    Ok(bytes)
}

fn aead(
    shared: &x25519_dalek::SharedSecret,
    ephemeral: &[u8; 32],
    recipient: &[u8; 32],
) -> Result<LessSafeKey> {
    if !shared.was_contributory() {
        return Err(Error::Crypto(
            "the recipient public key is a low-order point: it is not a real X25519 key".into(),
        ));
    }
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(ephemeral);
    salt[32..].copy_from_slice(recipient);
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &salt).extract(shared.as_bytes());
    let okm = prk
        .expand(&[INFO], &AES_256_GCM)
        .map_err(|_| Error::Crypto("key derivation failed".into()))?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

/// Seals `payload` so that only the holder of `recipient`'s secret can read it.
pub fn wrap(payload: &[u8], recipient: &[u8; 32]) -> Result<Vec<u8>> {
    let ephemeral = StaticSecret::from(*random32()?);
    let ephemeral_public = PublicKey::from(&ephemeral).to_bytes();
    let shared = ephemeral.diffie_hellman(&PublicKey::from(*recipient));
    let key = aead(&shared, &ephemeral_public, recipient)?;
    let mut out = Vec::with_capacity(16 + 32 + payload.len() + 16);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&ephemeral_public);
    let mut body = payload.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key([0; 12]),
        Aad::from(&out[..48]),
        &mut body,
    )
    .map_err(|_| Error::Crypto("sealing failed".into()))?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Opens a payload wrapped to `secret`.
pub fn unwrap(wrapped: &[u8], secret: &RecipientSecret) -> Result<Zeroizing<Vec<u8>>> {
    if wrapped.len() < 16 + 32 + 16 || &wrapped[..16] != MAGIC {
        return Err(Error::Crypto("this is not a Consign wrapped key".into()));
    }
    let mut ephemeral = [0u8; 32];
    ephemeral.copy_from_slice(&wrapped[16..48]);
    let shared = secret.0.diffie_hellman(&PublicKey::from(ephemeral));
    let key = aead(&shared, &ephemeral, &secret.public())?;
    let mut body = Zeroizing::new(wrapped[48..].to_vec());
    let len = key
        .open_in_place(Nonce::assume_unique_for_key([0; 12]), Aad::from(&wrapped[..48]), &mut body)
        .map_err(|_| Error::Crypto("the wrapped keys do not open with this key: they were wrapped for another installer, or altered".into()))?
        .len();
    body.truncate(len);
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_recipient_unwraps() {
        let alice = RecipientSecret::generate().unwrap();
        let mallory = RecipientSecret::generate().unwrap();
        let wrapped = wrap(b"data keys", &alice.public()).unwrap();
        assert_eq!(&*unwrap(&wrapped, &alice).unwrap(), b"data keys");
        assert!(unwrap(&wrapped, &mallory).is_err());
        let mut tampered = wrapped.clone();
        tampered[60] ^= 1;
        assert!(unwrap(&tampered, &alice).is_err());
        assert!(unwrap(&wrapped[..40], &alice).is_err());
        let again = RecipientSecret::from_bytes(*alice.to_bytes());
        assert_eq!(&*unwrap(&wrapped, &again).unwrap(), b"data keys");
    }

    #[test]
    fn low_order_recipient_keys_are_refused() {
        assert!(
            wrap(b"x", &[0u8; 32])
                .unwrap_err()
                .to_string()
                .contains("low-order")
        );
    }
}
