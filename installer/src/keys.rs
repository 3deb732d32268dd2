//! The installer's static install key (`installer keygen`): an X25519 key pair to which a vendor
//! wraps a release's data keys in an air-gapped kit.
//!
//! ```text
//! DIR/install.key   32 secret bytes, base64, mode 0600
//! DIR/install.pub   the public key, base64: give it to the vendor
//! ```

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bundles::wrap::RecipientSecret;

/// The secret key's file name.
pub const SECRET: &str = "install.key";
/// The public key's file name.
pub const PUBLIC: &str = "install.pub";

/// Creates a key pair in `dir` (refusing to overwrite one); the public key in base64.
pub fn generate(dir: &Path) -> Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let secret = RecipientSecret::generate()?;
    let public = STANDARD.encode(secret.public());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join(SECRET))
        .with_context(|| {
            format!(
                "cannot create {} (it must not exist yet)",
                dir.join(SECRET).display()
            )
        })?;
    let text = zeroize::Zeroizing::new(STANDARD.encode(*secret.to_bytes()));
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .context("cannot write the install key")?;
    std::fs::write(dir.join(PUBLIC), format!("{public}\n")).context("cannot write install.pub")?;
    Ok(public)
}

/// Reads the key pair in `dir`.
pub fn read(dir: &Path) -> Result<RecipientSecret> {
    let path = dir.join(SECRET);
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?,
    );
    let bytes = zeroize::Zeroizing::new(STANDARD.decode(text.trim()).unwrap_or_default());
    let Ok(array) = <[u8; 32]>::try_from(bytes.as_slice()) else {
        bail!(
            "{} is not an install key (32 bytes, base64)",
            path.display()
        );
    };
    Ok(RecipientSecret::from_bytes(array))
}
