//! Deterministic zip files for Lambda function code: entries sorted by name, every time stamp
//! 1980-01-01 00:00, permissions 0644 or 0755, no extra fields, deflate at a fixed level (or
//! stored when that is smaller). The same files give the same bytes on every machine, so an
//! unchanged function keeps its digest across versions.

use std::io::Write as _;

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
    fn duplicate_names_are_refused() {
        assert!(write_zip(vec![entry("a", b"1", false), entry("a", b"2", false)]).is_err());
    }
}
