//! The installer's own folder: the login (`installer login`) and the TUF datastore that keeps the
//! newest release metadata this machine has seen, so an older copy is refused.
//!
//! ```text
//! $CONSIGN_INSTALLER_HOME (default $XDG_CONFIG_HOME/consign-installer, else ~/.config/consign-installer)
//!   login.json                 portal, vendor, app, pinned root fingerprint, the license
//!   tuf/<vendor>/<app>/        tough's datastore
//!   installation-keys/<license>.pem   the key this machine registers installations with (0600)
//! ```
//!
//! Nothing here records what is installed: that lives in the AWS account (stack tags and an SSM
//! parameter), so any admin on any machine sees the same.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow};
use serde::{Deserialize, Serialize};

/// The installer's folder.
pub fn dir() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os("CONSIGN_INSTALLER_HOME") {
        return Ok(PathBuf::from(home));
    }
    if let Some(config) = std::env::var_os("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(config).join("consign-installer"));
    }
    std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".config/consign-installer"))
        .ok_or_else(|| anyhow!("neither CONSIGN_INSTALLER_HOME nor HOME is set: set one"))
}

/// What `installer login` remembers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Login {
    /// The portal's base URL.
    pub portal: String,
    /// The vendor's slug (the license's issuer).
    pub vendor: String,
    /// The app's slug (the license's audience).
    pub app: String,
    /// The vendor's root key fingerprint, pinned at login.
    pub root_fingerprint: String,
    /// The highest keyset `seq` seen.
    pub keyset_seq: u64,
    /// The license, armoured.
    pub license: String,
}

impl Login {
    /// The file it is kept in.
    pub fn path() -> Result<PathBuf> {
        Ok(dir()?.join("login.json"))
    }

    /// Reads the login, or says to log in.
    pub fn read() -> Result<Self> {
        let path = Self::path()?;
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                crate::refuse!(
                    NotLoggedIn,
                    "not logged in: run `installer login --portal URL --license FILE.lic --trust-root FINGERPRINT` first (the vendor gives you the fingerprint)"
                )
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        serde_json::from_str(&text).map_err(|e| {
            anyhow!(
                "{} is damaged ({e}): run `installer login` again",
                path.display()
            )
        })
    }

    /// Saves it (mode 0600: it holds the license).
    pub fn save(&self) -> Result<()> {
        let path = Self::path()?;
        let parent = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        write_private(&path, serde_json::to_string_pretty(self)?.as_bytes())
    }

    /// The app's TUF datastore.
    pub fn datastore(&self) -> Result<PathBuf> {
        datastore(&self.vendor, &self.app)
    }

    /// The portal URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.portal.trim_end_matches('/'))
    }
}

/// The TUF datastore for `vendor`'s `app`.
pub fn datastore(vendor: &str, app: &str) -> Result<PathBuf> {
    Ok(dir()?.join("tuf").join(vendor).join(app))
}

/// The Ed25519 key this machine registers installations of `license_id` with on the portal
/// (as an agent does when it activates), made on first use, mode 0600. One per license: the
/// portal binds a key to one license.
pub fn installation_key(license_id: &str) -> Result<license::SigningKey> {
    let folder = dir()?.join("installation-keys");
    let path = folder.join(format!("{license_id}.pem"));
    match std::fs::read_to_string(&path) {
        Ok(pem) => license::SigningKey::from_pem(&pem).with_context(|| {
            format!(
                "{} is not an Ed25519 key: delete it and run the command again",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&folder)
                .with_context(|| format!("cannot create {}", folder.display()))?;
            let key = license::SigningKey::generate()?;
            write_private(&path, key.to_pem().as_bytes())?;
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes `bytes` to `path` whole or not at all (a temporary file renamed into place), readable
/// by the owner alone (0600): the login holds the license, the key is a secret.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}
