//! Secrets the portal makes and keeps: the master key that seals vendors' private keys at rest,
//! random ids and API tokens (stored only as hashes), and argon2 password hashes.

use std::fs;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::digest::{SHA256, digest};
use ring::hkdf;
use ring::rand::{SecureRandom as _, SystemRandom};
use zeroize::Zeroizing;

/// The environment variable holding the master key (base64url, 32 bytes).
pub const MASTER_KEY_ENV: &str = "CONSIGN_MASTER_KEY";
/// Prefix of vendor API tokens, so that secret scanners and people recognise them.
pub const TOKEN_PREFIX: &str = "cns_";
/// Prefix of browser session ids.
pub const SESSION_PREFIX: &str = "cnss_";
const SEALED_PREFIX: &str = "v1.";
const CHECK_AAD: &str = "consign-master-key-check";

/// The key that seals vendors' private keys in the database. It never enters the database.
pub struct MasterKey {
    key: LessSafeKey,
    /// Signing keys already opened, by their sealed text: opening and parsing a key costs more
    /// than the signature it makes. The cache is derived from the database (a sealed value never
    /// changes), so another process missing it only pays the opening again.
    opened: std::sync::Mutex<
        std::collections::HashMap<(String, String), std::sync::Arc<license::SigningKey>>,
    >,
}

/// Opened signing keys kept at most; the cache starts over beyond this.
const OPENED_KEYS_MAX: usize = 10_000;

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

struct AesKeyLen;

impl hkdf::KeyType for AesKeyLen {
    fn len(&self) -> usize {
        32
    }
}

impl MasterKey {
    /// A master key from 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != 32 {
            bail!("the master key is {} bytes; it must be 32", bytes.len());
        }
        // Derive the sealing key rather than using the master key directly, so that a later
        // use of the master key for something else never shares a key with this one.
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"consign-portal-master-v1").extract(bytes);
        let mut sealing = Zeroizing::new([0u8; 32]);
        prk.expand(&[b"seal vendor keys"], AesKeyLen)
            .and_then(|okm| okm.fill(sealing.as_mut()))
            .map_err(|_| anyhow::anyhow!("cannot derive the sealing key"))?;
        let unbound = UnboundKey::new(&AES_256_GCM, sealing.as_ref())
            .map_err(|_| anyhow::anyhow!("cannot use the sealing key"))?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
            opened: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// Parses the base64url text form.
    pub fn from_text(text: &str) -> Result<Self> {
        let bytes = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(text.trim().trim_end_matches('='))
                .context("the master key is not base64url")?,
        );
        Self::from_bytes(&bytes)
    }

    /// Reads the key from a file, creating one with a fresh random key (mode 0600) when
    /// `create` is set and the file does not exist.
    pub fn from_file(path: &Path, create: bool) -> Result<Self> {
        if !path.exists() && create {
            let mut raw = Zeroizing::new([0u8; 32]);
            fill_random(raw.as_mut())?;
            let text = Zeroizing::new(URL_SAFE_NO_PAD.encode(raw.as_ref()));
            crate::keydir::write_secret_file(path, format!("{}\n", text.as_str()).as_bytes())
                .context("cannot create the master key file")?;
        }
        let text = Zeroizing::new(
            fs::read_to_string(path)
                .with_context(|| format!("cannot read the master key file {}", path.display()))?,
        );
        Self::from_text(&text)
            .with_context(|| format!("{} holds no usable master key", path.display()))
    }

    /// Encrypts `plaintext`, bound to `context` (e.g. vendor and key id) so that a sealed value
    /// cannot be moved to another row.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<String> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .map_err(|_| anyhow::anyhow!("cannot seal a secret"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(out)))
    }

    /// Decrypts what [`MasterKey::seal`] made with the same `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Zeroizing<Vec<u8>>> {
        let failed = || {
            anyhow::anyhow!(
                "a sealed secret cannot be opened: the master key is not the one it was sealed with"
            )
        };
        let body = sealed.strip_prefix(SEALED_PREFIX).ok_or_else(failed)?;
        let raw = URL_SAFE_NO_PAD.decode(body).map_err(|_| failed())?;
        if raw.len() < NONCE_LEN {
            return Err(failed());
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| failed())?;
        let mut buf = Zeroizing::new(ciphertext.to_vec());
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| failed())?;
        Ok(Zeroizing::new(plain.to_vec()))
    }

    /// Opens a sealed PKCS#8 PEM signing key, from the cache when it was opened before.
    pub fn open_signing_key(
        &self,
        context: &str,
        sealed: &str,
    ) -> Result<std::sync::Arc<license::SigningKey>> {
        let id = (context.to_owned(), sealed.to_owned());
        if let Some(key) = self
            .opened
            .lock()
            .ok()
            .and_then(|cache| cache.get(&id).cloned())
        {
            return Ok(key);
        }
        let pem = self.open(context, sealed)?;
        let text = std::str::from_utf8(&pem).context("a sealed signing key is not PEM")?;
        let key = std::sync::Arc::new(
            license::SigningKey::from_pem(text).context("a sealed signing key does not parse")?,
        );
        if let Ok(mut cache) = self.opened.lock() {
            if cache.len() >= OPENED_KEYS_MAX {
                cache.clear();
            }
            cache.insert(id, key.clone());
        }
        Ok(key)
    }

    /// A value stored once per database so that starting with the wrong master key fails at
    /// once, not at the first license issued.
    pub fn check_value(&self) -> Result<String> {
        self.seal(CHECK_AAD, b"consign")
    }

    /// Whether `stored` was made by [`MasterKey::check_value`] with this key.
    pub fn matches_check_value(&self, stored: &str) -> bool {
        self.open(CHECK_AAD, stored).is_ok()
    }
}

/// Equal in time that does not depend on where they differ.
pub fn equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Fills `buf` from the system's random source.
pub fn fill_random(buf: &mut [u8]) -> Result<()> {
    SystemRandom::new()
        .fill(buf)
        .map_err(|_| anyhow::anyhow!("the system random source failed"))
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Lowercase or uppercase hex to bytes (`None` when it is not hex).
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// SHA-256 in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(digest(&SHA256, bytes).as_ref())
}

/// A new id: `prefix`, `_`, 24 hex digits (96 random bits).
pub fn new_id(prefix: &str) -> Result<String> {
    let mut bytes = [0u8; 12];
    fill_random(&mut bytes)?;
    Ok(format!("{prefix}_{}", hex(&bytes)))
}

/// A new bearer secret: `prefix` and 256 random bits in base64url.
pub fn new_secret(prefix: &str) -> Result<Zeroizing<String>> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    fill_random(bytes.as_mut())?;
    Ok(Zeroizing::new(format!(
        "{prefix}{}",
        URL_SAFE_NO_PAD.encode(bytes.as_ref())
    )))
}

/// A generated password for a new member: 24 base64url characters (144 bits).
pub fn new_password() -> Result<Zeroizing<String>> {
    let mut bytes = Zeroizing::new([0u8; 18]);
    fill_random(bytes.as_mut())?;
    Ok(Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes.as_ref())))
}

/// What the database stores for a bearer secret. Tokens carry 256 random bits, so a plain
/// SHA-256 is enough (no salt or stretching needed, as for crates.io's tokens); passwords,
/// which people choose, get argon2 instead.
pub fn secret_hash(secret: &str) -> String {
    sha256_hex(secret.as_bytes())
}

/// Hashes a password with argon2id and a random salt (PHC string format).
pub fn hash_password(password: &str) -> Result<String> {
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    let mut salt = [0u8; 16];
    fill_random(&mut salt)?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))
}

/// Checks a password against its argon2 hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier as _};
    PasswordHash::new(hash)
        .and_then(|parsed| argon2::Argon2::default().verify_password(password.as_bytes(), &parsed))
        .is_ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_the_same_key_and_context() {
        let key = MasterKey::from_bytes(&[7u8; 32]).unwrap();
        let sealed = key.seal("ven_1/lic-a", b"secret").unwrap();
        assert_eq!(
            key.open("ven_1/lic-a", &sealed).unwrap().as_slice(),
            b"secret"
        );
        assert!(
            key.open("ven_2/lic-a", &sealed).is_err(),
            "moved to another row"
        );
        let other = MasterKey::from_bytes(&[8u8; 32]).unwrap();
        assert!(
            other.open("ven_1/lic-a", &sealed).is_err(),
            "wrong master key"
        );
        assert!(!other.matches_check_value(&key.check_value().unwrap()));
    }

    #[test]
    fn passwords_verify_only_themselves() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("correct horsE", &hash));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn tokens_are_prefixed_and_distinct() {
        let a = new_secret(TOKEN_PREFIX).unwrap();
        let b = new_secret(TOKEN_PREFIX).unwrap();
        assert!(a.starts_with("cns_") && a.len() == 4 + 43);
        assert_ne!(*a, *b);
        assert_ne!(secret_hash(&a), secret_hash(&b));
    }
}
