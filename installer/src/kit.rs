//! Opening an air-gapped kit (`vendor-portal kit export`): unpacking it safely, verifying its TUF
//! metadata offline from the vendor's pinned root key, reading the release's manifest through the
//! signed target, unwrapping the data keys with the install key, and checking the bundle against
//! that manifest. Nothing in a kit is trusted before these checks pass.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow};
use bundles::release::ReleaseTarget;
use bundles::wrap::RecipientSecret;
use bundles::{BundleReader, Digest, KeysFile, Limits};
use serde::Deserialize;

use crate::tuf;

/// Most entries a kit may hold.
const MAX_ENTRIES: usize = 4096;
/// Largest entry other than the bundle.
const MAX_SMALL_ENTRY: u64 = 16 * 1024 * 1024;

/// The kit's index.
#[derive(Debug, Clone, Deserialize)]
pub struct KitIndex {
    /// Kit format (1).
    pub format: u32,
    /// Vendor slug.
    pub vendor: String,
    /// App slug.
    pub app: String,
    /// Version.
    pub version: String,
    /// License id.
    pub license: String,
    /// The bundle's file name in the kit.
    pub bundle: String,
}

/// A verified kit, unpacked in a temporary folder.
pub struct OpenedKit {
    /// Where it was unpacked (removed on drop).
    pub dir: tempfile::TempDir,
    /// Its index.
    pub index: KitIndex,
    /// The release, as the vendor's signed targets describe it.
    pub release: ReleaseTarget,
    /// The signed manifest bytes (verified against the TUF target).
    pub manifest: Vec<u8>,
    /// The release's data keys.
    pub keys: KeysFile,
    /// The license text.
    pub license: String,
    /// The vendor's keyset (verified by the caller against the pinned root).
    pub keyset: Vec<u8>,
    /// Every release in the kit's signed targets, newest first.
    pub all: Vec<ReleaseTarget>,
    /// The bundle's path in `dir`.
    pub bundle: PathBuf,
    /// The manifest's signature, from the bundle (checked by the caller against the keyset).
    pub signature: bundles::manifest::ManifestSignature,
}

fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('/')
        && name.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-+@~".contains(&b))
        })
}

fn unpack(kit: &Path, into: &Path) -> Result<()> {
    let file = std::fs::File::open(kit)
        .with_context(|| format!("cannot open the kit {}", kit.display()))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let entries = archive
        .entries()
        .with_context(|| format!("{} is not a kit", kit.display()))?;
    for (count, entry) in entries.enumerate() {
        if count >= MAX_ENTRIES {
            crate::refuse!(BadKit, "the kit holds more than {MAX_ENTRIES} files");
        }
        let mut entry = entry.with_context(|| format!("{} is damaged", kit.display()))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            crate::refuse!(
                BadKit,
                "the kit holds something other than plain files: refusing it"
            );
        }
        let name = entry
            .path()
            .ok()
            .and_then(|p| p.to_str().map(str::to_owned))
            .unwrap_or_default();
        if !safe_name(&name) {
            crate::refuse!(
                BadKit,
                "the kit holds a file named {name:?}, which is not allowed"
            );
        }
        let size = entry.header().size().unwrap_or(u64::MAX);
        if !name.ends_with(".bundle") && size > MAX_SMALL_ENTRY {
            crate::refuse!(
                BadKit,
                "{name} in the kit is {size} bytes, over the {MAX_SMALL_ENTRY}-byte limit"
            );
        }
        let target = into.join(&name);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .with_context(|| format!("the kit holds {name} twice"))?;
        let copied = std::io::copy(&mut (&mut entry).take(size), &mut out)
            .with_context(|| format!("{name} in the kit is truncated"))?;
        if copied != size {
            crate::refuse!(BadKit, "{name} in the kit is truncated");
        }
    }
    Ok(())
}

/// Reads only a kit's index (to find where this machine keeps its metadata), with the vendor
/// and app checked to be slugs. Nothing else in the index is trusted.
pub fn peek(kit: &Path) -> Result<KitIndex> {
    let file = std::fs::File::open(kit)
        .with_context(|| format!("cannot open the kit {}", kit.display()))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let entries = archive
        .entries()
        .with_context(|| format!("{} is not a kit", kit.display()))?;
    for entry in entries.take(MAX_ENTRIES) {
        let entry = entry.with_context(|| format!("{} is damaged", kit.display()))?;
        let is_index = entry
            .path()
            .ok()
            .is_some_and(|p| p.as_os_str() == "consign-kit.json");
        if is_index {
            let mut text = Vec::new();
            entry
                .take(MAX_SMALL_ENTRY)
                .read_to_end(&mut text)
                .with_context(|| format!("{} is damaged", kit.display()))?;
            let index: KitIndex = serde_json::from_slice(&text)
                .map_err(|e| anyhow!("the kit's index is not valid: {e}"))?;
            for slug in [&index.vendor, &index.app] {
                license::claims::Slug::new(slug.as_str())
                    .map_err(|e| anyhow!("the kit's index names {slug:?}: {e}"))?;
            }
            return Ok(index);
        }
    }
    crate::refuse!(
        BadKit,
        "{} has no consign-kit.json: it is not a kit",
        kit.display()
    )
}

fn read_small(dir: &Path, name: &str) -> Result<Vec<u8>> {
    std::fs::read(dir.join(name)).with_context(|| format!("the kit has no {name}"))
}

fn file_url(path: &Path) -> Result<url::Url> {
    url::Url::from_directory_path(path)
        .map_err(|()| anyhow!("{} is not an absolute folder", path.display()))
}

/// A kit's metadata refused for being older than what this machine has seen, or expired, says
/// what to do about it: ask the vendor for a new kit.
fn stale_kit(e: anyhow::Error) -> anyhow::Error {
    use crate::tuf::{MetadataRefused, Refusal};
    let advice = match e.downcast_ref::<MetadataRefused>().map(|r| &r.kind) {
        Some(Refusal::Older(role, seen, offered)) => format!(
            "this kit's {role} metadata (version {offered}) is older than what this machine has already seen (version {seen}): it was exported before a newer kit or an online install; ask the vendor to export a new kit (`vendor-portal kit export`)"
        ),
        Some(Refusal::Expired(role)) => format!(
            "this kit's {role} metadata has expired (a kit must be installed within a day of its export): ask the vendor to export a new kit (`vendor-portal kit export`)"
        ),
        _ => return e,
    };
    crate::error::refused(crate::error::Code::BadKit, advice)
}

/// Opens and verifies `kit` with the install key `key`, trusting only the vendor root key
/// `root_pin` (`sha256:<hex>`); `datastore` keeps the newest metadata seen, so an older kit
/// cannot roll this machine back.
pub async fn open(
    kit: &Path,
    key: &RecipientSecret,
    root_pin: &str,
    datastore: &Path,
) -> Result<OpenedKit> {
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    unpack(kit, dir.path())?;
    let index: KitIndex = serde_json::from_slice(&read_small(dir.path(), "consign-kit.json")?)
        .map_err(|e| anyhow!("the kit's index is not valid: {e}"))?;
    if index.format != 1 {
        crate::refuse!(
            InstallerTooOld,
            "the kit is format {}, this installer reads format 1: update the installer",
            index.format
        );
    }
    let metadata = dir.path().join("tuf/metadata");
    let repo = tuf::load_pinned(
        root_pin,
        |n| std::future::ready(read_small(&metadata, &format!("{n}.root.json"))),
        file_url(&metadata)?,
        file_url(&dir.path().join("tuf/targets"))?,
        datastore,
        tough::FilesystemTransport,
    )
    .await
    .map_err(stale_kit)?;
    let all = tuf::releases(&repo)?;
    let release = kit_release(&all, &index)?;
    let manifest = tuf::read_manifest(&repo, &release).await?;
    let wrapped = read_small(dir.path(), "keys.wrapped")?;
    let keys_bytes = bundles::wrap::unwrap(&wrapped, key)?;
    let keys = KeysFile::parse(&keys_bytes)?;
    keys.check_belongs_to(&manifest, release.app.as_str(), &release.version)?;
    if !safe_name(&index.bundle) {
        crate::refuse!(
            BadKit,
            "the kit names its bundle {:?}, which is not allowed",
            index.bundle
        );
    }
    let bundle = dir.path().join(&index.bundle);
    let reader = BundleReader::open_pinned(
        std::io::BufReader::new(std::fs::File::open(&bundle).context("the kit has no bundle")?),
        &Digest::of(&manifest),
        &Limits::default(),
    )?;
    let signature = reader.signature().clone();
    bundles::open::check_all(reader)?;
    let license = String::from_utf8(read_small(dir.path(), "license.lic")?)
        .map_err(|_| anyhow!("the kit's license is not text"))?;
    let keyset = read_small(dir.path(), "keyset.json")
        .context("export the kit again with a current vendor-portal")?;
    Ok(OpenedKit {
        dir,
        index,
        release,
        manifest,
        keys,
        license,
        keyset,
        all,
        bundle,
        signature,
    })
}

/// The release the kit's index names, from the verified metadata; a yanked one is refused.
fn kit_release(all: &[ReleaseTarget], index: &KitIndex) -> Result<ReleaseTarget> {
    let release = all
        .iter()
        .find(|r| r.app.as_str() == index.app && r.version.to_string() == index.version)
        .cloned()
        .ok_or_else(|| {
            anyhow!(
                "the kit's signed metadata has no {} {}",
                index.app,
                index.version
            )
        })?;
    if let Some(reason) = &release.yanked {
        crate::refuse!(
            Yanked,
            "{} {} was withdrawn by the vendor ({reason})",
            index.app,
            index.version
        );
    }
    Ok(release)
}
