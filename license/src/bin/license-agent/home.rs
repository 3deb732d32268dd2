//! The agent's state directory: the installation key, what the agent remembers, the newest
//! license seen, the usage journal and ledger, and the outbox log. Every file but the journal is
//! replaced atomically (write, sync, rename, sync the directory), so a crash leaves the old or
//! the new version, never half of one.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use license::{Memory, SigningKey};
use serde::{Deserialize, Serialize};

/// Writes `bytes` to `path` atomically and durably, readable by the owner only (the state holds
/// the installation key and the customer's usage).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let write = || -> std::io::Result<()> {
        // A leftover from a crash keeps its old mode: start from nothing.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().with_context(|| format!("cannot save {}", path.display()))
}

/// Creates `dir` (and its parents) and makes it the owner's alone (0700): the agent's state holds
/// its installation key, the license and the usage journal.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    let made = || -> std::io::Result<()> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
        // One that existed before keeps its mode: tighten it.
        #[cfg(unix)]
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        Ok(())
    };
    made().with_context(|| format!("cannot create the state directory {}", dir.display()))
}

/// Opens `path` for appending, creating it readable by its owner only (0600).
pub fn open_private_append(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// What the agent keeps besides the journal.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Saved {
    /// The license agent core's memory.
    #[serde(default)]
    pub memory: Memory,
    /// The vendor root pinned on first use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_fingerprint: Option<String>,
    /// The highest keyset seq accepted.
    #[serde(default)]
    pub keyset_seq: u64,
    /// The installation (seat) the portal gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation: Option<String>,
}

/// The state directory.
pub struct Home {
    dir: PathBuf,
}

impl Home {
    /// Opens (creating) `dir`, readable by its owner only.
    pub fn open(dir: &Path) -> Result<Self> {
        create_private_dir(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the directory's lock, held until the file is dropped: one agent (or one usage
    /// export or acknowledgement) at a time writes the journal and the records.
    pub fn lock(&self) -> Result<std::fs::File> {
        let path = self.dir.join("agent.lock");
        let file = open_private_append(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                "another license agent is using {}: stop it first (usage export and ack need the agent stopped)",
                self.dir.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }

    /// The installation key, created on first use (readable by the owner only).
    pub fn installation_key(&self) -> Result<SigningKey> {
        let path = self.dir.join("installation-key.pem");
        match std::fs::read_to_string(&path) {
            Ok(pem) => SigningKey::from_pem(&pem).with_context(|| {
                format!(
                    "{} is not an installation key; move it away and the agent makes a new one (and activates again)",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = SigningKey::generate()?;
                write_atomic(&path, key.to_pem().as_bytes())?;
                Ok(key)
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// What the last run saved.
    pub fn load(&self) -> Result<Saved> {
        let path = self.dir.join("agent-state.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} is damaged: move it away to start over (the agent then forgets the newest license and status it saw)",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Saved::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Saves the agent's state.
    pub fn save(&self, saved: &Saved) -> Result<()> {
        write_atomic(
            &self.dir.join("agent-state.json"),
            &serde_json::to_vec_pretty(saved)?,
        )
    }

    /// The newest license the agent took (a renewal from the portal), if any.
    pub fn license(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("license.lic")).ok()
    }

    /// Keeps a renewed license so that a restart runs it even if the original file is older.
    pub fn save_license(&self, armored: &str) -> Result<()> {
        write_atomic(&self.dir.join("license.lic"), armored.as_bytes())
    }
}
