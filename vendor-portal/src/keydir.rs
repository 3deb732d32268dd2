//! The vendor's key directory, as `keys init` writes it:
//!
//! ```text
//! DIR/root.key                 offline root key (signs keysets; move it offline after init)
//! DIR/license-signing.key      current license-signing key
//! DIR/release.key              release key (signs bundle manifests and TUF targets)
//! DIR/keyset.json              the public keyset, signed by the root key
//! DIR/retired/<kid>.key        license-signing keys replaced by `keys rotate`
//! ```
//!
//! Private keys are PKCS#8 PEM with mode 0600, the directory 0700. Nothing here is ever
//! overwritten in place: new files are created exclusively, and `keyset.json` is replaced by
//! rename so a crash leaves either the old or the new keyset.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use license::{Keyset, SigningKey, TrustPin, TrustedKeyset};

/// File names inside a key directory.
pub const ROOT_KEY: &str = "root.key";
/// The current license-signing key.
pub const LICENSE_KEY: &str = "license-signing.key";
/// The release key.
pub const RELEASE_KEY: &str = "release.key";
/// The public keyset.
pub const KEYSET: &str = "keyset.json";
/// Where rotated-out license-signing keys go.
pub const RETIRED: &str = "retired";

/// Writes `bytes` to a new file (never an existing one) with mode 0600, creating its folder,
/// and syncs it: how every secret the vendor's tools and the portal keep on disk is written.
pub fn write_secret_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// A vendor key directory.
pub struct KeyDir {
    dir: PathBuf,
}

impl KeyDir {
    /// Opens an existing key directory (it must hold a keyset).
    pub fn open(dir: &Path) -> Result<Self> {
        let keys = Self {
            dir: dir.to_owned(),
        };
        if !keys.path(KEYSET).is_file() {
            bail!(
                "{} holds no {KEYSET}: create keys with `vendor-portal keys init --out {}`",
                dir.display(),
                dir.display()
            );
        }
        Ok(keys)
    }

    /// Creates a new, empty key directory with mode 0700; refuses one that already holds keys.
    pub fn create(dir: &Path) -> Result<Self> {
        for name in [ROOT_KEY, LICENSE_KEY, RELEASE_KEY, KEYSET] {
            if dir.join(name).exists() {
                bail!(
                    "{} already holds {name}: refusing to replace existing keys (use `keys rotate`, or choose another --out)",
                    dir.display()
                );
            }
        }
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {} to its owner", dir.display()))?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// The path of `name` inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Reads the private key `name`.
    pub fn read_key(&self, name: &str) -> Result<SigningKey> {
        let path = self.path(name);
        let pem = zeroize::Zeroizing::new(
            fs::read_to_string(&path)
                .with_context(|| format!("cannot read the private key {}", path.display()))?,
        );
        SigningKey::from_pem(&pem)
            .with_context(|| format!("{} is not a usable key", path.display()))
    }

    /// Writes a private key to a new file with mode 0600.
    pub fn write_key(&self, name: &str, key: &SigningKey) -> Result<PathBuf> {
        let path = self.path(name);
        write_secret_file(&path, key.to_pem().as_bytes())?;
        Ok(path)
    }

    /// Reads and verifies the keyset (self-signed by its own root: this is the vendor's own copy).
    pub fn read_keyset(&self) -> Result<TrustedKeyset> {
        let path = self.path(KEYSET);
        let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        Keyset::verify(&bytes, &TrustPin::default())
            .with_context(|| format!("{} is not a valid keyset", path.display()))
    }

    /// Replaces `keyset.json` atomically.
    pub fn write_keyset(&self, text: &str) -> Result<PathBuf> {
        let path = self.path(KEYSET);
        let tmp = self.path(".keyset.json.tmp");
        fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        fs::rename(&tmp, &path).with_context(|| format!("cannot replace {}", path.display()))?;
        Ok(path)
    }
}
