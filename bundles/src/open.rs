//! Opening a bundle: verify the manifest, then decrypt each object into a sink that only keeps an
//! object once it has been fully authenticated and its plaintext digest checked.

use std::io::{Read, Write};

use crate::container::BundleReader;
use crate::error::{Error, Result};
use crate::keys_file::KeysFile;
use crate::manifest::ObjectEntry;
use crate::seal;

/// Where opened objects go. The CLI writes each to a temporary file and renames it on
/// [`ObjectSink::commit`]; [`ObjectSink::abort`] removes it.
pub trait ObjectSink {
    /// A writer for `entry`'s plaintext.
    fn begin(&mut self, entry: &ObjectEntry) -> Result<Box<dyn Write + '_>>;
    /// `entry` was authenticated completely: make it visible.
    fn commit(&mut self, entry: &ObjectEntry) -> Result<()>;
    /// `entry` failed: discard whatever was written.
    fn abort(&mut self, entry: &ObjectEntry);
}

/// Decrypts every object of a verified bundle with `keys` into `sink`, stopping at the first
/// failure (objects already committed stay; the failing one is aborted).
pub fn open_all<R: Read>(
    mut bundle: BundleReader<R>,
    keys: &KeysFile,
    sink: &mut dyn ObjectSink,
) -> Result<usize> {
    let m = bundle.manifest();
    keys.check_belongs_to(bundle.manifest_bytes(), m.app.as_str(), &m.version)?;
    let mut opened = 0;
    while let Some((entry, reader)) = bundle.next_object()? {
        let key = keys
            .key_for(&entry.digest)
            .ok_or_else(|| {
                Error::KeysFile(format!(
                    "it has no key for object {} ({})",
                    entry.path, entry.digest
                ))
            })?
            .clone();
        let result = (|| {
            let mut writer = sink.begin(&entry)?;
            let sealed = seal::open(
                &key,
                entry.path.as_str(),
                &entry.digest,
                entry.size,
                reader,
                &mut writer,
            )?;
            writer
                .flush()
                .map_err(Error::io(format!("writing {}", entry.path)))?;
            drop(writer);
            if sealed.sealed_digest != entry.sealed_digest {
                return Err(Error::ObjectMismatch {
                    path: entry.path.to_string(),
                    reason: "its sealed digest is not the signed one".into(),
                });
            }
            Ok(())
        })();
        match result {
            Ok(()) => sink.commit(&entry)?,
            Err(e) => {
                sink.abort(&entry);
                return Err(e);
            }
        }
        opened += 1;
    }
    Ok(opened)
}

/// Checks every object's structure and sealed digest without keys (what `installer verify`
/// does after the signature).
pub fn check_all<R: Read>(mut bundle: BundleReader<R>) -> Result<usize> {
    let mut checked = 0;
    while let Some((entry, reader)) = bundle.next_object()? {
        let sealed = seal::check_structure(entry.path.as_str(), entry.size, reader)?;
        if sealed.sealed_digest != entry.sealed_digest {
            return Err(Error::ObjectMismatch {
                path: entry.path.to_string(),
                reason: "its chunk tags do not match the signed sealed digest".into(),
            });
        }
        checked += 1;
    }
    Ok(checked)
}

/// What checking a bundle without its keys shows: who signed it, that every object matches the
/// signed manifest, and what it would create in an account and which IAM permissions it would
/// hold. `installer verify` and `vendor-portal release inspect` both print this.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Inspection {
    /// Always true: a bundle that fails a check is an error instead.
    pub verified: bool,
    /// The release key that signed the manifest.
    pub signed_by: String,
    /// How many objects were checked against the manifest.
    pub objects_checked: usize,
    /// The IAM actions the app's roles would hold.
    pub iam_actions: Vec<String>,
    /// The signed manifest.
    pub manifest: crate::manifest::BundleManifest,
}

impl Inspection {
    /// The report for people: a VERIFIED line, then the manifest's description.
    pub fn text(&self) -> String {
        format!(
            "VERIFIED: signed by release key {}; {} objects match the signed manifest\n{}",
            self.signed_by,
            self.objects_checked,
            self.manifest.describe()
        )
    }
}

/// Verifies a bundle's signature against `keyset` and every object's structure against the
/// signed manifest, without its keys.
pub fn inspect<R: Read>(
    bundle: R,
    keyset: &license::TrustedKeyset,
    now: license::UnixTime,
    limits: &crate::limits::Limits,
) -> Result<Inspection> {
    let reader = BundleReader::open(bundle, keyset, now, limits)?;
    let manifest = reader.manifest().clone();
    let signed_by = reader.signature().kid.clone();
    let objects_checked = check_all(reader)?;
    Ok(Inspection {
        verified: true,
        signed_by,
        objects_checked,
        iam_actions: manifest.actions(),
        manifest,
    })
}
