//! `FILE.bundle.keys`: the data key of every object in a bundle, by plaintext digest. Secret: the
//! vendor's tools write it with mode 0600 and the portal stores it encrypted at rest. It names the
//! manifest it belongs to, so a keys file from another bundle is refused before anything is opened.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::seal::DataKey;

/// The value of `type`.
pub const KEYS_FILE_TYPE: &str = "consign-bundle-keys";
/// The largest keys file accepted, in bytes.
pub const MAX_KEYS_FILE_LEN: usize = 4 * 1024 * 1024;

/// A bundle's data keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysFile {
    /// Always [`KEYS_FILE_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// The app.
    pub app: license::claims::Slug,
    /// The version.
    pub version: semver::Version,
    /// SHA-256 of the manifest bytes the keys belong to.
    pub manifest: Digest,
    /// Data keys by plaintext digest.
    pub keys: BTreeMap<Digest, KeyText>,
}

/// A data key as it appears in the keys file.
#[derive(Debug, Clone)]
pub struct KeyText(pub DataKey);

impl Serialize for KeyText {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_base64())
    }
}

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = zeroize::Zeroizing::new(String::deserialize(d)?);
        DataKey::from_base64(&text)
            .map(KeyText)
            .ok_or_else(|| serde::de::Error::custom("a data key is 32 bytes of unpadded base64url"))
    }
}

impl KeysFile {
    /// Parses a keys file.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_KEYS_FILE_LEN {
            return Err(Error::KeysFile(format!(
                "it is over {MAX_KEYS_FILE_LEN} bytes"
            )));
        }
        let keys: KeysFile = serde_json::from_slice(bytes)
            .map_err(|e| Error::KeysFile(format!("{e}; is this a .bundle.keys file?")))?;
        if keys.kind != KEYS_FILE_TYPE {
            return Err(Error::KeysFile(format!(
                "its type is {:?}, not {KEYS_FILE_TYPE:?}",
                keys.kind
            )));
        }
        Ok(keys)
    }

    /// The file's JSON text.
    pub fn to_json(&self) -> Result<zeroize::Zeroizing<String>> {
        serde_json::to_string_pretty(self)
            .map(|mut s| {
                s.push('\n');
                zeroize::Zeroizing::new(s)
            })
            .map_err(|e| Error::KeysFile(e.to_string()))
    }

    /// Checks that the file belongs to the manifest `manifest_bytes` of `app` `version`.
    pub fn check_belongs_to(
        &self,
        manifest_bytes: &[u8],
        app: &str,
        version: &semver::Version,
    ) -> Result<()> {
        if self.manifest != Digest::of(manifest_bytes) {
            return Err(Error::KeysFile(format!(
                "it belongs to {} {} (manifest {}), not to this bundle of {app} {version}",
                self.app, self.version, self.manifest
            )));
        }
        Ok(())
    }

    /// The data key for the object with plaintext digest `digest`.
    pub fn key_for(&self, digest: &Digest) -> Option<&DataKey> {
        self.keys.get(digest).map(|k| &k.0)
    }
}
