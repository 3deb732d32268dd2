//! The `.bundle` container: one stream holding the signed manifest and every sealed object, read
//! front to back so that nothing is interpreted before the manifest's signature verifies.
//!
//! ```text
//! magic            16 bytes  "consign-bundle\0\x01"
//! manifest length  u32 BE    ≤ Limits::max_manifest_len
//! manifest         JSON bytes
//! key id length    u8        1–64
//! key id           ASCII
//! signature        64 bytes  Ed25519 over "consign-bundle-manifest-v1:" || manifest
//! object count     u32 BE    = manifest.objects.len()
//! per object, in manifest order:
//!   sealed length  u64 BE    = manifest.objects[i].sealed_size
//!   sealed object  (see seal.rs)
//! end of stream
//! ```

use std::io::{Read, Write};

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::manifest::{BundleManifest, ManifestSignature, ObjectEntry, verify_manifest};

/// The first 16 bytes of every bundle.
pub const BUNDLE_MAGIC: &[u8; 16] = b"consign-bundle\x00\x01";

/// Writes a bundle: header, manifest and signature now, then one object at a time.
pub struct BundleWriter<W: Write> {
    writer: W,
    expected: Vec<(String, u64)>,
    written: usize,
}

impl<W: Write> BundleWriter<W> {
    /// Starts a bundle with the manifest bytes and their signature; `objects` are the manifest's
    /// entries, which [`BundleWriter::write_object`] must then receive in order.
    pub fn new(
        mut writer: W,
        manifest_bytes: &[u8],
        signature: &ManifestSignature,
        objects: &[ObjectEntry],
    ) -> Result<Self> {
        let io = Error::io("writing the bundle");
        let manifest_len = u32::try_from(manifest_bytes.len())
            .map_err(|_| Error::Malformed("the manifest is over 4 GiB".into()))?;
        let kid = signature.kid.as_bytes();
        let kid_len = u8::try_from(kid.len())
            .ok()
            .filter(|l| (1..=64).contains(l));
        let Some(kid_len) = kid_len else {
            return Err(Error::Malformed(
                "the release key id must be 1-64 bytes".into(),
            ));
        };
        let count = u32::try_from(objects.len())
            .map_err(|_| Error::Malformed("too many objects".into()))?;
        (|| {
            writer.write_all(BUNDLE_MAGIC)?;
            writer.write_all(&manifest_len.to_be_bytes())?;
            writer.write_all(manifest_bytes)?;
            writer.write_all(&[kid_len])?;
            writer.write_all(kid)?;
            writer.write_all(&signature.signature)?;
            writer.write_all(&count.to_be_bytes())
        })()
        .map_err(io)?;
        Ok(Self {
            writer,
            expected: objects
                .iter()
                .map(|o| (o.path.to_string(), o.sealed_size))
                .collect(),
            written: 0,
        })
    }

    /// Writes the next object by calling `write_sealed` with the stream; it must write exactly the
    /// object's sealed size.
    pub fn write_object(
        &mut self,
        write_sealed: impl FnOnce(&mut dyn Write) -> Result<u64>,
    ) -> Result<()> {
        let Some((path, size)) = self.expected.get(self.written).cloned() else {
            return Err(Error::Malformed(
                "more objects written than the manifest lists".into(),
            ));
        };
        self.writer
            .write_all(&size.to_be_bytes())
            .map_err(Error::io("writing the bundle"))?;
        let mut counted = CountingWriter {
            inner: &mut self.writer,
            count: 0,
        };
        let reported = write_sealed(&mut counted)?;
        if counted.count != size || reported != size {
            return Err(Error::ObjectMismatch {
                path,
                reason: format!(
                    "{} bytes were written, the manifest says {size}",
                    counted.count
                ),
            });
        }
        self.written += 1;
        Ok(())
    }

    /// Finishes the bundle, checking that every object was written.
    pub fn finish(mut self) -> Result<W> {
        if self.written != self.expected.len() {
            return Err(Error::Malformed(format!(
                "{} of {} objects were written",
                self.written,
                self.expected.len()
            )));
        }
        self.writer
            .flush()
            .map_err(Error::io("writing the bundle"))?;
        Ok(self.writer)
    }
}

struct CountingWriter<'a, W: Write> {
    inner: &'a mut W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A bundle whose header has been read and whose manifest signature has verified; objects are
/// read one at a time, in order, with [`BundleReader::next_object`].
pub struct BundleReader<R: Read> {
    reader: R,
    manifest: BundleManifest,
    manifest_bytes: Vec<u8>,
    signature: ManifestSignature,
    next: usize,
}

/// The unverified head of a bundle: manifest bytes and signature, as read.
#[derive(Debug, Clone)]
pub struct BundleHead {
    /// The manifest bytes.
    pub manifest_bytes: Vec<u8>,
    /// The signature block.
    pub signature: ManifestSignature,
}

fn read_array<const N: usize>(reader: &mut impl Read, what: &str) -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    reader
        .read_exact(&mut buf)
        .map_err(Error::io(what.to_owned()))?;
    Ok(buf)
}

/// Reads the head of a bundle (magic, manifest bytes, signature) without trusting any of it.
/// Lengths are checked against `limits` before anything is allocated.
pub fn read_head(reader: &mut impl Read, limits: &Limits) -> Result<BundleHead> {
    let magic: [u8; 16] = read_array(reader, "the bundle header")?;
    if &magic != BUNDLE_MAGIC {
        return Err(Error::Malformed(
            "it does not start with the Consign bundle magic: this is not a .bundle file".into(),
        ));
    }
    let manifest_len = u32::from_be_bytes(read_array(reader, "the manifest length")?);
    if manifest_len > limits.max_manifest_len {
        return Err(Error::TooLarge {
            what: "manifest",
            size: u64::from(manifest_len),
            limit: u64::from(limits.max_manifest_len),
        });
    }
    let mut manifest_bytes = Vec::new();
    reader
        .take(u64::from(manifest_len))
        .read_to_end(&mut manifest_bytes)
        .map_err(Error::io("the manifest"))?;
    if manifest_bytes.len() != manifest_len as usize {
        return Err(Error::Truncated("the manifest".into()));
    }
    let [kid_len] = read_array::<1>(reader, "the signature block")?;
    if !(1..=64).contains(&kid_len) {
        return Err(Error::Malformed(
            "the signature's key id length is not 1-64".into(),
        ));
    }
    let mut kid = vec![0u8; usize::from(kid_len)];
    reader
        .read_exact(&mut kid)
        .map_err(Error::io("the signature block"))?;
    let kid = String::from_utf8(kid)
        .ok()
        .filter(|k| {
            k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .ok_or_else(|| Error::Malformed("the signature's key id is not a key id".into()))?;
    let signature: [u8; 64] = read_array(reader, "the signature block")?;
    Ok(BundleHead {
        manifest_bytes,
        signature: ManifestSignature { kid, signature },
    })
}

impl<R: Read> BundleReader<R> {
    /// Reads the head and verifies the manifest against the vendor's keyset at `now`.
    pub fn open(
        mut reader: R,
        keyset: &license::TrustedKeyset,
        now: license::UnixTime,
        limits: &Limits,
    ) -> Result<Self> {
        let head = read_head(&mut reader, limits)?;
        let manifest = verify_manifest(&head.manifest_bytes, &head.signature, keyset, now, limits)?;
        Self::finish_open(reader, manifest, head)
    }

    /// Reads the head and accepts the manifest only if its SHA-256 is `manifest_digest` (as
    /// recorded in the bundle's own keys file): how a vendor opens a bundle they built without a
    /// keyset. The signature is carried along but not checked.
    pub fn open_pinned(
        mut reader: R,
        manifest_digest: &crate::Digest,
        limits: &Limits,
    ) -> Result<Self> {
        let head = read_head(&mut reader, limits)?;
        if crate::Digest::of(&head.manifest_bytes) != *manifest_digest {
            return Err(Error::KeysFile(format!(
                "it belongs to another bundle (its manifest is {manifest_digest}, this bundle's is {})",
                crate::Digest::of(&head.manifest_bytes)
            )));
        }
        let manifest: BundleManifest = serde_json::from_slice(&head.manifest_bytes)
            .map_err(|e| Error::Malformed(format!("the manifest is not valid: {e}")))?;
        manifest.validate(limits)?;
        Self::finish_open(reader, manifest, head)
    }

    fn finish_open(mut reader: R, manifest: BundleManifest, head: BundleHead) -> Result<Self> {
        let count = u32::from_be_bytes(read_array(&mut reader, "the object count")?);
        if count as usize != manifest.objects.len() {
            return Err(Error::Malformed(format!(
                "it holds {count} objects but its manifest lists {}",
                manifest.objects.len()
            )));
        }
        Ok(Self {
            reader,
            manifest,
            manifest_bytes: head.manifest_bytes,
            signature: head.signature,
            next: 0,
        })
    }

    /// The verified manifest.
    pub fn manifest(&self) -> &BundleManifest {
        &self.manifest
    }

    /// The exact manifest bytes the signature covers (for the portal to store).
    pub fn manifest_bytes(&self) -> &[u8] {
        &self.manifest_bytes
    }

    /// The manifest's signature.
    pub fn signature(&self) -> &ManifestSignature {
        &self.signature
    }

    /// The next object's entry and a reader bounded to exactly its sealed bytes, or `None` after
    /// the last object (when the stream must also have ended).
    pub fn next_object(&mut self) -> Result<Option<(ObjectEntry, std::io::Take<&mut R>)>> {
        let Some(entry) = self.manifest.objects.get(self.next).cloned() else {
            let mut probe = [0u8; 1];
            return match self
                .reader
                .read(&mut probe)
                .map_err(Error::io("the end of the bundle"))?
            {
                0 => Ok(None),
                _ => Err(Error::Malformed(
                    "there is data after the last object".into(),
                )),
            };
        };
        let len = u64::from_be_bytes(read_array(
            &mut self.reader,
            &format!("the length of object {}", entry.path),
        )?);
        if len != entry.sealed_size {
            return Err(Error::ObjectMismatch {
                path: entry.path.to_string(),
                reason: format!(
                    "its stated length {len} is not the signed {}",
                    entry.sealed_size
                ),
            });
        }
        self.next += 1;
        Ok(Some((entry, (&mut self.reader).take(len))))
    }
}
