//! The vendor's keyset: the public license-signing and release keys, each with a validity window,
//! signed by the vendor's offline root key. Verifiers pin the root key by fingerprint, accept any
//! unexpired key in the newest keyset they have seen, and refuse an older keyset (lower `seq`), so
//! signing keys rotate without anyone reinstalling.
//!
//! On disk (`keyset.json`) it is `{"signed": {...}, "signatures": [{"keyid", "sig"}]}`, the shape
//! TUF metadata has. The signature covers `consign-keyset-v1:` followed by the OLPC canonical JSON
//! of `signed`; the prefix keeps a keyset signature from ever being valid as any other document
//! the root key signs.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::claims::Slug;
use crate::error::{Error, Result};
use crate::json::check_strict;
use crate::jws::valid_kid;
use crate::keys::{PublicKey, SigningKey};
use crate::time::UnixTime;

/// The value of `signed.type`.
pub const KEYSET_TYPE: &str = "consign-keyset";
/// The largest keyset file accepted, in bytes.
pub const MAX_KEYSET_LEN: usize = 256 * 1024;
/// The most keys of each role a keyset may list.
pub const MAX_KEYS: usize = 64;
const SIGNING_PREFIX: &[u8] = b"consign-keyset-v1:";

/// A keyset's contents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keyset {
    /// Always [`KEYSET_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// The vendor; when present, licenses verified with this keyset must carry it as `iss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<Slug>,
    /// Increases with every new keyset; verifiers refuse one lower than any they have seen.
    pub seq: u64,
    /// When this keyset was signed.
    pub issued_at: UnixTime,
    /// The root public key that signs the keyset.
    pub root: PublicKey,
    /// Keys that sign licenses.
    pub license_keys: Vec<KeyEntry>,
    /// Keys that sign release manifests and TUF targets.
    #[serde(default)]
    pub release_keys: Vec<KeyEntry>,
}

/// One key in the keyset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// The key id a signature names in its header.
    pub kid: String,
    /// The Ed25519 public key.
    pub public_key: PublicKey,
    /// The key is not accepted before this time.
    pub not_before: UnixTime,
    /// Nor after this one.
    pub not_after: UnixTime,
}

impl KeyEntry {
    /// `Ok` when the key may be used at `now` (with `leeway` seconds either side), else the reason.
    pub fn check_valid_at(&self, now: UnixTime, leeway: u64) -> Result<()> {
        if now.plus(leeway) < self.not_before {
            return Err(Error::KeyNotValid {
                kid: self.kid.clone(),
                reason: format!("is valid only from {}", self.not_before),
            });
        }
        if now.minus(leeway) > self.not_after {
            return Err(Error::KeyNotValid {
                kid: self.kid.clone(),
                reason: format!("expired at {}", self.not_after),
            });
        }
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedDocument {
    signed: serde_json::Value,
    signatures: Vec<DocumentSignature>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentSignature {
    keyid: String,
    sig: String,
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::Invalid {
        what: "keyset",
        reason: reason.into(),
    }
}

fn signing_bytes(signed: &serde_json::Value) -> Result<Vec<u8>> {
    let mut out = SIGNING_PREFIX.to_vec();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut out, olpc_cjson::CanonicalFormatter::new());
    signed
        .serialize(&mut ser)
        .map_err(|e| invalid(format!("it cannot be put in canonical form ({e})")))?;
    Ok(out)
}

/// What a verifier already trusts: the pinned root fingerprint (if any) and the highest keyset
/// `seq` it has seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustPin {
    /// `sha256:<hex>` of the root key; `None` trusts the keyset's own root (first use).
    pub root_fingerprint: Option<String>,
    /// Refuse keysets with a lower `seq` than this.
    pub min_seq: u64,
}

/// A keyset whose signature and contents have been checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedKeyset {
    keyset: Keyset,
}

impl Keyset {
    /// Checks the contents: type, non-empty unique key ids, sane windows, no key reused across
    /// roles or equal to the root.
    pub fn validate(&self) -> Result<()> {
        if self.kind != KEYSET_TYPE {
            return Err(invalid(format!(
                "its type is {:?}, not {KEYSET_TYPE:?}",
                self.kind
            )));
        }
        if self.seq == 0 {
            return Err(invalid("seq must be 1 or more"));
        }
        if self.license_keys.is_empty() {
            return Err(invalid("it lists no license-signing keys"));
        }
        if self.license_keys.len() > MAX_KEYS || self.release_keys.len() > MAX_KEYS {
            return Err(invalid(format!(
                "it lists more than {MAX_KEYS} keys of one role"
            )));
        }
        let all: Vec<&KeyEntry> = self.license_keys.iter().chain(&self.release_keys).collect();
        for (i, key) in all.iter().enumerate() {
            if !valid_kid(&key.kid) {
                return Err(invalid(format!(
                    "key id {:?} is not 1-64 letters, digits, '-', '_' or '.'",
                    key.kid
                )));
            }
            if key.not_before >= key.not_after {
                return Err(invalid(format!(
                    "key {} has not_before on or after not_after",
                    key.kid
                )));
            }
            if key.public_key == self.root {
                return Err(invalid(format!(
                    "key {} is the root key; the root key signs only keysets",
                    key.kid
                )));
            }
            if let Some(other) = all[..i]
                .iter()
                .find(|k| k.kid == key.kid || k.public_key == key.public_key)
            {
                return Err(invalid(format!(
                    "keys {} and {} share a key id or a public key",
                    other.kid, key.kid
                )));
            }
        }
        Ok(())
    }

    /// Signs the keyset with the root key and returns `keyset.json`'s text.
    pub fn sign(&self, root: &SigningKey) -> Result<String> {
        self.validate()?;
        if root.public_key() != self.root {
            return Err(invalid("the signing key is not the keyset's root key"));
        }
        let signed = serde_json::to_value(self).map_err(|e| invalid(e.to_string()))?;
        let sig = root.sign(&signing_bytes(&signed)?);
        let doc = SignedDocument {
            signed,
            signatures: vec![DocumentSignature {
                keyid: self.root.fingerprint(),
                sig: URL_SAFE_NO_PAD.encode(sig),
            }],
        };
        let mut text = serde_json::to_string_pretty(&doc).map_err(|e| invalid(e.to_string()))?;
        text.push('\n');
        Ok(text)
    }

    /// Verifies `keyset.json` against what the verifier already trusts.
    ///
    /// Order: size, strict JSON, shape, root pin, signature, contents, rollback. Nothing inside
    /// `signed` but the root key (checked against the pin first) is interpreted before the
    /// signature over it verifies.
    pub fn verify(bytes: &[u8], pin: &TrustPin) -> Result<TrustedKeyset> {
        if bytes.len() > MAX_KEYSET_LEN {
            return Err(Error::TooLarge {
                what: "keyset",
                size: bytes.len(),
                limit: MAX_KEYSET_LEN,
            });
        }
        check_strict(bytes).map_err(|e| invalid(format!("it is not valid JSON ({e})")))?;
        let doc: SignedDocument = serde_json::from_slice(bytes)
            .map_err(|e| invalid(format!("it is not a signed keyset ({e})")))?;
        let [signature] = doc.signatures.as_slice() else {
            return Err(invalid(format!(
                "it carries {} signatures; a keyset carries exactly one, by its root key",
                doc.signatures.len()
            )));
        };
        let root: PublicKey = doc
            .signed
            .get("root")
            .cloned()
            .ok_or_else(|| invalid("it names no root key"))
            .and_then(|v| {
                serde_json::from_value(v)
                    .map_err(|e| invalid(format!("its root key is invalid ({e})")))
            })?;
        let fingerprint = root.fingerprint();
        if let Some(expected) = &pin.root_fingerprint
            && *expected != fingerprint
        {
            return Err(Error::RootMismatch {
                expected: expected.clone(),
                found: fingerprint,
            });
        }
        if signature.keyid != fingerprint {
            return Err(invalid("its signature is not by its root key"));
        }
        let sig = URL_SAFE_NO_PAD
            .decode(signature.sig.as_bytes())
            .map_err(|_| Error::BadSignature { what: "keyset" })?;
        if !root.verify(&signing_bytes(&doc.signed)?, &sig) {
            return Err(Error::BadSignature { what: "keyset" });
        }
        let keyset: Keyset =
            serde_json::from_value(doc.signed).map_err(|e| invalid(e.to_string()))?;
        keyset.validate()?;
        if keyset.seq < pin.min_seq {
            return Err(Error::Rollback {
                what: "keyset",
                seq: keyset.seq,
                seen: pin.min_seq,
            });
        }
        Ok(TrustedKeyset { keyset })
    }
}

impl TrustedKeyset {
    /// The verified contents.
    pub fn keyset(&self) -> &Keyset {
        &self.keyset
    }

    /// The root key's fingerprint, to pin.
    pub fn root_fingerprint(&self) -> String {
        self.keyset.root.fingerprint()
    }

    /// The license-signing key named `kid`.
    pub fn license_key(&self, kid: &str) -> Option<&KeyEntry> {
        self.keyset.license_keys.iter().find(|k| k.kid == kid)
    }

    /// The release key named `kid`.
    pub fn release_key(&self, kid: &str) -> Option<&KeyEntry> {
        self.keyset.release_keys.iter().find(|k| k.kid == kid)
    }
}
