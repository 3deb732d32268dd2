//! Streaming encryption of one object: 64 KiB chunks sealed with AES-256-GCM under a key derived
//! per object with HKDF, STREAM-style nonces (chunk counter and last-chunk flag), the object header
//! as associated data. Memory stays at one chunk whatever the object's size.
//!
//! See `FORMAT.md` for the byte layout and the reasoning; the functions here follow it step by
//! step.

use std::io::{Read, Write};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use zeroize::Zeroizing;

use crate::digest::{Digest, DigestKind};
use crate::error::{Error, Result};

/// Plaintext bytes per chunk.
pub const CHUNK_SIZE: usize = 64 * 1024;
/// Bytes of authentication tag per chunk.
pub const TAG_LEN: usize = 16;
/// The first 16 bytes of every sealed object.
pub const OBJECT_MAGIC: &[u8; 16] = b"consign-object\x00\x01";
/// Magic, chunk size (u32 BE), plaintext size (u64 BE).
pub const HEADER_LEN: usize = 16 + 4 + 8;
const KEY_SALT: &[u8] = b"consign-object-v1";

/// An object's 256-bit data key. Zeroized on drop; `Debug` does not show it.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self> {
        use ring::rand::SecureRandom as _;
        let mut key = Zeroizing::new([0u8; 32]);
        ring::rand::SystemRandom::new()
            .fill(&mut *key)
            .map_err(|_| Error::Crypto("the system random source failed".into()))?;
        Ok(Self(key))
    }

    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The key as unpadded base64url (for the keys file).
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(URL_SAFE_NO_PAD.encode(*self.0))
    }

    /// A key from unpadded base64url.
    pub fn from_base64(text: &str) -> Option<Self> {
        let bytes = Zeroizing::new(URL_SAFE_NO_PAD.decode(text).ok()?);
        let array: [u8; 32] = bytes.as_slice().try_into().ok()?;
        Some(Self::from_bytes(array))
    }

    /// The raw bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(…)")
    }
}

/// What sealing produced: the sealed digest and size the manifest records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sealed {
    /// SHA-256 over the header and every chunk tag (`sealed-sha256:`).
    pub sealed_digest: Digest,
    /// Total sealed bytes.
    pub sealed_size: u64,
}

/// Number of chunks for a plaintext of `size` bytes (an empty object has one empty final chunk).
pub fn chunk_count(size: u64) -> u64 {
    size.div_ceil(CHUNK_SIZE as u64).max(1)
}

/// Sealed size of a plaintext of `size` bytes.
pub fn sealed_size(size: u64) -> u64 {
    HEADER_LEN as u64 + size + chunk_count(size) * TAG_LEN as u64
}

fn header(size: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..16].copy_from_slice(OBJECT_MAGIC);
    h[16..20].copy_from_slice(&(CHUNK_SIZE as u32).to_be_bytes());
    h[20..].copy_from_slice(&size.to_be_bytes());
    h
}

/// payload key = HKDF-SHA256(salt = "consign-object-v1", ikm = data key,
///                           info = plaintext digest (32 bytes) || plaintext size (u64 BE))
fn payload_key(key: &DataKey, digest: &Digest, size: u64) -> Result<LessSafeKey> {
    let size_bytes = size.to_be_bytes();
    let info = [digest.bytes().as_slice(), size_bytes.as_slice()];
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, KEY_SALT).extract(key.bytes());
    let okm = prk
        .expand(&info, &AES_256_GCM)
        .map_err(|_| Error::Crypto("key derivation failed".into()))?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

/// nonce = 0x000000 || chunk counter (u64 BE) || last-chunk flag (0x01 on the final chunk)
fn nonce(counter: u64, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[3..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    Nonce::assume_unique_for_key(n)
}

/// Seals a plaintext of `size` bytes whose SHA-256 is `digest` (hash it first: the key depends on
/// it, so that a data key can never encrypt two different plaintexts). Encryption is
/// deterministic for a given key and plaintext, which is what lets an unchanged object keep its
/// ciphertext across versions.
pub fn seal(
    key: &DataKey,
    digest: &Digest,
    size: u64,
    mut reader: impl Read,
    mut writer: impl Write,
) -> Result<Sealed> {
    let aead = payload_key(key, digest, size)?;
    let header = header(size);
    let mut tags = ring::digest::Context::new(&ring::digest::SHA256);
    tags.update(&header);
    writer
        .write_all(&header)
        .map_err(Error::io("writing a sealed object"))?;
    let chunks = chunk_count(size);
    let mut buf = vec![0u8; CHUNK_SIZE];
    let mut remaining = size;
    for i in 0..chunks {
        let n = remaining.min(CHUNK_SIZE as u64) as usize;
        reader
            .read_exact(&mut buf[..n])
            .map_err(|e| source_changed(e, "is shorter than when it was hashed"))?;
        let tag = aead
            .seal_in_place_separate_tag(
                nonce(i, i + 1 == chunks),
                Aad::from(&header),
                &mut buf[..n],
            )
            .map_err(|_| Error::Crypto("encryption failed".into()))?;
        writer
            .write_all(&buf[..n])
            .and_then(|()| writer.write_all(tag.as_ref()))
            .map_err(Error::io("writing a sealed object"))?;
        tags.update(tag.as_ref());
        remaining -= n as u64;
    }
    let mut probe = [0u8; 1];
    if reader
        .read(&mut probe)
        .map_err(Error::io("reading the object to seal"))?
        != 0
    {
        return Err(source_changed(
            std::io::ErrorKind::InvalidData.into(),
            "is longer than when it was hashed",
        ));
    }
    Ok(Sealed {
        sealed_digest: Digest::from_context(DigestKind::Sealed, tags),
        sealed_size: sealed_size(size),
    })
}

fn source_changed(e: std::io::Error, how: &str) -> Error {
    Error::Io {
        context: format!("the file being sealed {how} (was it changed during the build?)"),
        source: e,
    }
}

fn read_header(reader: &mut impl Read, path: &str, size: u64) -> Result<[u8; HEADER_LEN]> {
    let mut got = [0u8; HEADER_LEN];
    reader
        .read_exact(&mut got)
        .map_err(Error::io(format!("the header of object {path}")))?;
    let mismatch = |reason: &str| Error::ObjectMismatch {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if &got[..16] != OBJECT_MAGIC {
        return Err(mismatch("it does not start with the sealed-object magic"));
    }
    if got[16..20] != (CHUNK_SIZE as u32).to_be_bytes() {
        return Err(mismatch("its chunk size is not 65536"));
    }
    if got[20..] != size.to_be_bytes() {
        return Err(mismatch("its header states another plaintext size"));
    }
    Ok(got)
}

fn expect_end(reader: &mut impl Read, path: &str) -> Result<()> {
    let mut probe = [0u8; 1];
    match reader
        .read(&mut probe)
        .map_err(Error::io(format!("object {path}")))?
    {
        0 => Ok(()),
        _ => Err(Error::ObjectMismatch {
            path: path.to_owned(),
            reason: "there is data after its final chunk".into(),
        }),
    }
}

/// Opens a sealed object named `path` with `key`, writing plaintext to `writer` one
/// authenticated chunk at a time, and checks that the plaintext's SHA-256 is `digest` and its
/// size `size`. `reader` must yield exactly the sealed object (the container bounds it).
///
/// Every chunk is authenticated before any of its bytes reach `writer`, but the whole-object
/// digest is known only at the end: callers write to a temporary file and keep it only on `Ok`.
pub fn open(
    key: &DataKey,
    path: &str,
    digest: &Digest,
    size: u64,
    mut reader: impl Read,
    mut writer: impl Write,
) -> Result<Sealed> {
    let header = read_header(&mut reader, path, size)?;
    let aead = payload_key(key, digest, size)?;
    let mut tags = ring::digest::Context::new(&ring::digest::SHA256);
    tags.update(&header);
    let mut plain = ring::digest::Context::new(&ring::digest::SHA256);
    let chunks = chunk_count(size);
    let mut buf = vec![0u8; CHUNK_SIZE + TAG_LEN];
    let mut remaining = size;
    for i in 0..chunks {
        let n = remaining.min(CHUNK_SIZE as u64) as usize;
        let sealed = &mut buf[..n + TAG_LEN];
        reader
            .read_exact(sealed)
            .map_err(Error::io(format!("chunk {i} of object {path}")))?;
        tags.update(&sealed[n..]);
        let plaintext = aead
            .open_in_place(nonce(i, i + 1 == chunks), Aad::from(&header), sealed)
            .map_err(|_| Error::Decrypt {
                path: path.to_owned(),
                reason: format!(
                    "chunk {i} fails authentication: the bundle was altered, truncated or reordered, or the key belongs to another bundle"
                ),
            })?;
        plain.update(plaintext);
        writer
            .write_all(plaintext)
            .map_err(Error::io(format!("writing object {path}")))?;
        remaining -= n as u64;
    }
    expect_end(&mut reader, path)?;
    if Digest::from_context(DigestKind::Plain, plain) != *digest {
        return Err(Error::Decrypt {
            path: path.to_owned(),
            reason: "its plaintext does not have the signed digest (the data key does not belong to this object)".into(),
        });
    }
    Ok(Sealed {
        sealed_digest: Digest::from_context(DigestKind::Sealed, tags),
        sealed_size: sealed_size(size),
    })
}

/// Checks a sealed object's structure without its key: header, chunk layout, exact length, and
/// the sealed digest recomputed from the tags. What `installer verify` runs on every object.
pub fn check_structure(path: &str, size: u64, mut reader: impl Read) -> Result<Sealed> {
    let header = read_header(&mut reader, path, size)?;
    let mut tags = ring::digest::Context::new(&ring::digest::SHA256);
    tags.update(&header);
    let mut buf = vec![0u8; CHUNK_SIZE + TAG_LEN];
    let mut remaining = size;
    for i in 0..chunk_count(size) {
        let n = remaining.min(CHUNK_SIZE as u64) as usize;
        reader
            .read_exact(&mut buf[..n + TAG_LEN])
            .map_err(Error::io(format!("chunk {i} of object {path}")))?;
        tags.update(&buf[n..n + TAG_LEN]);
        remaining -= n as u64;
    }
    expect_end(&mut reader, path)?;
    Ok(Sealed {
        sealed_digest: Digest::from_context(DigestKind::Sealed, tags),
        sealed_size: sealed_size(size),
    })
}

/// Computes a sealed object's digest from its bytes as they arrive in pieces of any size (how
/// the portal checks an upload while streaming it to storage): the header is checked, the tags
/// are hashed, and the length must be exactly what the header implies.
pub struct SealedDigester {
    header: Vec<u8>,
    tags: ring::digest::Context,
    // Plaintext bytes left, and the position inside the current chunk record (data then tag).
    remaining: u64,
    chunks_left: u64,
    in_record: usize,
    seen: u64,
}

impl Default for SealedDigester {
    fn default() -> Self {
        Self::new()
    }
}

impl SealedDigester {
    /// A digester waiting for the header.
    pub fn new() -> Self {
        Self {
            header: Vec::with_capacity(HEADER_LEN),
            tags: ring::digest::Context::new(&ring::digest::SHA256),
            remaining: 0,
            chunks_left: 0,
            in_record: 0,
            seen: 0,
        }
    }

    fn record_data_len(&self) -> usize {
        self.remaining.min(CHUNK_SIZE as u64) as usize
    }

    /// Takes the next bytes.
    pub fn update(&mut self, mut bytes: &[u8]) -> Result<()> {
        let mismatch = |reason: &str| Error::ObjectMismatch {
            path: "upload".into(),
            reason: reason.to_owned(),
        };
        self.seen += bytes.len() as u64;
        if self.header.len() < HEADER_LEN {
            let take = bytes.len().min(HEADER_LEN - self.header.len());
            self.header.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.header.len() < HEADER_LEN {
                return Ok(());
            }
            if &self.header[..16] != OBJECT_MAGIC {
                return Err(mismatch("it does not start with the sealed-object magic"));
            }
            if self.header[16..20] != (CHUNK_SIZE as u32).to_be_bytes() {
                return Err(mismatch("its chunk size is not 65536"));
            }
            let mut size = [0u8; 8];
            size.copy_from_slice(&self.header[20..28]);
            self.remaining = u64::from_be_bytes(size);
            self.chunks_left = chunk_count(self.remaining);
            self.tags.update(&self.header);
        }
        while !bytes.is_empty() {
            if self.chunks_left == 0 {
                return Err(mismatch("there is data after its final chunk"));
            }
            let data_len = self.record_data_len();
            let record_len = data_len + TAG_LEN;
            let take = bytes.len().min(record_len - self.in_record);
            let (piece, rest) = bytes.split_at(take);
            // The part of `piece` that lies in the tag.
            let tag_from = data_len.saturating_sub(self.in_record);
            if tag_from < piece.len() {
                self.tags.update(&piece[tag_from..]);
            }
            self.in_record += take;
            bytes = rest;
            if self.in_record == record_len {
                self.remaining -= data_len as u64;
                self.chunks_left -= 1;
                self.in_record = 0;
            }
        }
        Ok(())
    }

    /// The object's digest and size, once every byte has arrived.
    pub fn finish(self) -> Result<Sealed> {
        if self.header.len() < HEADER_LEN || self.chunks_left != 0 {
            return Err(Error::Truncated("the sealed object".into()));
        }
        Ok(Sealed {
            sealed_digest: Digest::from_context(DigestKind::Sealed, self.tags),
            sealed_size: self.seen,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(data: &[u8], key: &DataKey) -> (Vec<u8>, Sealed, Digest) {
        let digest = Digest::of(data);
        let mut out = Vec::new();
        let s = seal(key, &digest, data.len() as u64, data, &mut out).unwrap();
        (out, s, digest)
    }

    #[test]
    fn round_trips_at_chunk_boundaries() {
        let key = DataKey::generate().unwrap();
        for len in [
            0,
            1,
            CHUNK_SIZE - 1,
            CHUNK_SIZE,
            CHUNK_SIZE + 1,
            3 * CHUNK_SIZE,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let (ct, s, digest) = sealed(&data, &key);
            assert_eq!(ct.len() as u64, s.sealed_size);
            let mut back = Vec::new();
            let o = open(&key, "x", &digest, len as u64, ct.as_slice(), &mut back).unwrap();
            assert_eq!(back, data);
            assert_eq!(o, s);
            assert_eq!(check_structure("x", len as u64, ct.as_slice()).unwrap(), s);
            for piece in [1, 7, 1000, CHUNK_SIZE + TAG_LEN, usize::MAX] {
                let mut digester = SealedDigester::new();
                for part in ct.chunks(piece.min(ct.len().max(1))) {
                    digester.update(part).unwrap();
                }
                assert_eq!(digester.finish().unwrap(), s);
            }
            let mut short = SealedDigester::new();
            short.update(&ct[..ct.len() - 1]).unwrap();
            assert!(short.finish().is_err());
            let mut long = SealedDigester::new();
            long.update(&ct).unwrap();
            assert!(long.update(b"x").is_err());
        }
    }

    #[test]
    fn sealing_is_deterministic_for_a_key_and_plaintext() {
        let key = DataKey::generate().unwrap();
        let data = vec![5u8; 100_000];
        assert_eq!(sealed(&data, &key).0, sealed(&data, &key).0);
        let other = DataKey::generate().unwrap();
        assert_ne!(sealed(&data, &key).0, sealed(&data, &other).0);
    }

    #[test]
    fn a_source_that_changes_between_hash_and_seal_is_refused() {
        let key = DataKey::generate().unwrap();
        let digest = Digest::of(b"abc");
        assert!(seal(&key, &digest, 3, &b"ab"[..], Vec::new()).is_err());
        assert!(seal(&key, &digest, 3, &b"abcd"[..], Vec::new()).is_err());
    }
}
