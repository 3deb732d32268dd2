//! Deterministic zip files for Lambda function code: entries sorted by name, every time stamp
//! 1980-01-01 00:00, permissions 0644 or 0755, no extra fields, deflate at a fixed level (or
//! stored when that is smaller). The same files give the same bytes on every machine, so an
//! unchanged function keeps its digest across versions.
//!
//! A prebuilt zip (a vendor's own, or a build tool's) is read back into its files with
//! [`read_zip`] and written again with [`write_zip`], so its digest depends on its files alone,
//! not on the time stamps and order the tool that made it chose.

use std::io::{Read as _, Write as _};

use crate::error::{Error, Result};
use crate::limits::BundlePath;

/// One file to put in a zip.
#[derive(Debug, Clone)]
pub struct ZipEntry {
    /// Its path inside the zip.
    pub name: BundlePath,
    /// Whether it is executable (mode 0755 instead of 0644).
    pub executable: bool,
    /// Its contents.
    pub data: Vec<u8>,
}

const DOS_DATE_1980_01_01: u16 = (1 << 5) | 1;
const VERSION: u16 = 20;
const MADE_BY_UNIX: u16 = (3 << 8) | VERSION;

/// Writes `entries` as a deterministic zip. Entries are sorted by name here; duplicate names and
/// files over 4 GiB (which would need zip64) are refused.
pub fn write_zip(mut entries: Vec<ZipEntry>) -> Result<Vec<u8>> {
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(pair) = entries.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(Error::UnsafePath {
            path: pair[0].name.to_string(),
            reason: "it appears twice".into(),
        });
    }
    if entries.len() > usize::from(u16::MAX) {
        return Err(Error::Malformed(
            "a function zip may hold at most 65535 files".into(),
        ));
    }
    let mut out = Vec::new();
    let mut central = Vec::new();
    for entry in &entries {
        let too_big = || Error::TooLarge {
            what: "function file",
            size: entry.data.len() as u64,
            limit: u64::from(u32::MAX),
        };
        let size = u32::try_from(entry.data.len()).map_err(|_| too_big())?;
        let crc = crc32fast::hash(&entry.data);
        let mut deflater =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(6));
        deflater
            .write_all(&entry.data)
            .map_err(Error::io("compressing a function file"))?;
        let deflated = deflater
            .finish()
            .map_err(Error::io("compressing a function file"))?;
        let (method, body): (u16, &[u8]) = if deflated.len() < entry.data.len() {
            (8, &deflated)
        } else {
            (0, &entry.data)
        };
        let compressed = u32::try_from(body.len()).map_err(|_| too_big())?;
        let offset = u32::try_from(out.len()).map_err(|_| too_big())?;
        let name = entry.name.as_str().as_bytes();
        let name_len = u16::try_from(name.len()).map_err(|_| too_big())?;
        // Local file header.
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        for v in [VERSION, 0, method, 0, DOS_DATE_1980_01_01] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [crc, compressed, size] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(body);
        // Central directory header.
        let mode: u32 = if entry.executable {
            0o100_755
        } else {
            0o100_644
        };
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        for v in [MADE_BY_UNIX, VERSION, 0, method, 0, DOS_DATE_1980_01_01] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        for v in [crc, compressed, size] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        for v in [name_len, 0, 0, 0, 0] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        central.extend_from_slice(&(mode << 16).to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name);
    }
    let count = entries.len() as u16;
    let central_offset = u32::try_from(out.len())
        .map_err(|_| Error::Malformed("the function zip is over 4 GiB".into()))?;
    let central_len = central.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    for v in [0u16, 0, count, count] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&central_len.to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    Ok(out)
}

/// The most a prebuilt zip may unpack to: Lambda's own limit on a function's unzipped code.
pub const MAX_UNZIPPED: u64 = 250 * 1024 * 1024;

const EOCD: u32 = 0x0605_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const LOCAL: u32 = 0x0403_4b50;

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Reads the files of a zip `what` names (for errors): stored and deflated entries, folders
/// skipped, the executable bit kept. Refused: encrypted entries, zip64, symbolic links, other
/// compression methods, names that are not [`BundlePath`]s, a CRC or size that does not match,
/// and more than [`MAX_UNZIPPED`] bytes in all (checked as it inflates, so a zip bomb stops at
/// the limit).
pub fn read_zip(what: &str, bytes: &[u8]) -> Result<Vec<ZipEntry>> {
    let bad = |reason: &str| Error::AppManifest {
        file: what.to_owned(),
        reason: format!("not a usable zip: {reason}"),
    };
    let truncated = || bad("it is truncated");
    let search_from = bytes.len().saturating_sub(22 + usize::from(u16::MAX));
    let eocd = (search_from..bytes.len().saturating_sub(21))
        .rev()
        .find(|&i| u32_at(bytes, i) == Some(EOCD))
        .ok_or_else(|| bad("it has no end of central directory"))?;
    let count = u16_at(bytes, eocd + 10).ok_or_else(truncated)?;
    let central_offset = u32_at(bytes, eocd + 16).ok_or_else(truncated)?;
    if count == u16::MAX || central_offset == u32::MAX {
        return Err(bad("it is a zip64 file; zip it without zip64"));
    }
    let mut at = central_offset as usize;
    let mut entries = Vec::new();
    let mut total: u64 = 0;
    for _ in 0..count {
        if u32_at(bytes, at) != Some(CENTRAL) {
            return Err(bad("its central directory is damaged"));
        }
        let made_by = u16_at(bytes, at + 4).ok_or_else(truncated)?;
        let flags = u16_at(bytes, at + 8).ok_or_else(truncated)?;
        let method = u16_at(bytes, at + 10).ok_or_else(truncated)?;
        let crc = u32_at(bytes, at + 16).ok_or_else(truncated)?;
        let compressed = u32_at(bytes, at + 20).ok_or_else(truncated)? as usize;
        let size = u32_at(bytes, at + 24).ok_or_else(truncated)?;
        let name_len = usize::from(u16_at(bytes, at + 28).ok_or_else(truncated)?);
        let extra_len = usize::from(u16_at(bytes, at + 30).ok_or_else(truncated)?);
        let comment_len = usize::from(u16_at(bytes, at + 32).ok_or_else(truncated)?);
        let external = u32_at(bytes, at + 38).ok_or_else(truncated)?;
        let local = u32_at(bytes, at + 42).ok_or_else(truncated)? as usize;
        let name = bytes
            .get(at + 46..at + 46 + name_len)
            .ok_or_else(truncated)?;
        at += 46 + name_len + extra_len + comment_len;
        let name = std::str::from_utf8(name).map_err(|_| bad("an entry's name is not UTF-8"))?;
        let unix_mode = if made_by >> 8 == 3 { external >> 16 } else { 0 };
        if name.ends_with('/') || unix_mode & 0o170_000 == 0o040_000 {
            continue;
        }
        if unix_mode & 0o170_000 == 0o120_000 {
            return Err(bad(&format!(
                "{name} is a symbolic link; zip the file it points to instead"
            )));
        }
        if flags & 1 != 0 {
            return Err(bad(&format!("{name} is encrypted")));
        }
        total += u64::from(size);
        if total > MAX_UNZIPPED {
            return Err(Error::TooLarge {
                what: "unzipped function code",
                size: total,
                limit: MAX_UNZIPPED,
            });
        }
        if u32_at(bytes, local) != Some(LOCAL) {
            return Err(bad(&format!("the local header of {name} is missing")));
        }
        let local_name = usize::from(u16_at(bytes, local + 26).ok_or_else(truncated)?);
        let local_extra = usize::from(u16_at(bytes, local + 28).ok_or_else(truncated)?);
        let start = local + 30 + local_name + local_extra;
        let body = bytes.get(start..start + compressed).ok_or_else(truncated)?;
        let mut data = Vec::new();
        match method {
            0 => data.extend_from_slice(body),
            8 => {
                flate2::read::DeflateDecoder::new(body)
                    .take(u64::from(size) + 1)
                    .read_to_end(&mut data)
                    .map_err(|_| bad(&format!("{name} does not inflate")))?;
            }
            other => {
                return Err(bad(&format!(
                    "{name} uses compression method {other}; zip with deflate or store"
                )));
            }
        }
        if data.len() as u64 != u64::from(size) || crc32fast::hash(&data) != crc {
            return Err(bad(&format!("{name} does not match its size or CRC")));
        }
        entries.push(ZipEntry {
            name: BundlePath::new(name)?,
            executable: unix_mode & 0o111 != 0,
            data,
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, data: &[u8], executable: bool) -> ZipEntry {
        ZipEntry {
            name: BundlePath::new(name).unwrap(),
            executable,
            data: data.to_vec(),
        }
    }

    #[test]
    fn the_same_files_in_any_order_give_the_same_bytes() {
        let a = write_zip(vec![
            entry("b.py", b"print(1)\n", false),
            entry("a/x.py", &[7; 5000], true),
        ])
        .unwrap();
        let b = write_zip(vec![
            entry("a/x.py", &[7; 5000], true),
            entry("b.py", b"print(1)\n", false),
        ])
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(&a[..4], b"PK\x03\x04");
    }

    #[test]
    fn a_zip_reads_back_into_its_files() {
        let files = vec![
            entry("bootstrap", &[0x7f, b'E', b'L', b'F', 1, 2, 3], true),
            entry("lib/data.txt", &[b'x'; 10_000], false),
        ];
        let zip = write_zip(files.clone()).unwrap();
        let back = read_zip("test.zip", &zip).unwrap();
        assert_eq!(back.len(), 2);
        for (a, b) in files.iter().zip(&back) {
            assert_eq!(
                (&a.name, a.executable, &a.data),
                (&b.name, b.executable, &b.data)
            );
        }
        assert_eq!(write_zip(back).unwrap(), zip);
    }

    #[test]
    fn damaged_zips_are_refused_without_panicking() {
        let zip = write_zip(vec![entry("a.txt", &[b'a'; 4096], false)]).unwrap();
        for cut in [0, 10, zip.len() / 2, zip.len() - 1] {
            assert!(read_zip("t.zip", &zip[..cut]).is_err(), "cut at {cut}");
        }
        // A CRC that does not match the data.
        let mut bad_crc = zip.clone();
        let central = (0..bad_crc.len())
            .find(|&i| u32_at(&bad_crc, i) == Some(CENTRAL))
            .unwrap();
        bad_crc[central + 16] ^= 1;
        assert!(
            read_zip("t.zip", &bad_crc)
                .unwrap_err()
                .to_string()
                .contains("CRC")
        );
        // An entry that claims to be small but inflates further stops at its claim.
        let mut bomb = zip.clone();
        bomb[central + 24..central + 28].copy_from_slice(&16u32.to_le_bytes());
        assert!(read_zip("t.zip", &bomb).is_err());
        // A name that climbs out of the folder.
        let escape = zip.clone();
        let mut escape = escape;
        let name_at = central + 46;
        escape[name_at..name_at + 5].copy_from_slice(b"../ab");
        assert!(read_zip("t.zip", &escape).is_err());
    }

    #[test]
    fn duplicate_names_are_refused() {
        assert!(write_zip(vec![entry("a", b"1", false), entry("a", b"2", false)]).is_err());
    }
}
