//! Content addresses: `sha256:<hex>` of an object's plaintext, and the sealed digest that
//! addresses its ciphertext.

use std::fmt;
use std::io::Read;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// A SHA-256 digest, written `sha256:<64 hex>` (plaintext addresses) or `sealed-sha256:<64 hex>`
/// (sealed digests; see FORMAT.md). The prefix is part of the value: the two never compare equal.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    kind: DigestKind,
    bytes: [u8; 32],
}

/// What a [`Digest`] is a digest of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DigestKind {
    /// SHA-256 of plaintext bytes.
    Plain,
    /// SHA-256 over a sealed object's header and chunk tags.
    Sealed,
}

impl DigestKind {
    fn prefix(self) -> &'static str {
        match self {
            DigestKind::Plain => "sha256:",
            DigestKind::Sealed => "sealed-sha256:",
        }
    }
}

impl Digest {
    /// A digest of `kind` from its 32 bytes.
    pub fn new(kind: DigestKind, bytes: [u8; 32]) -> Self {
        Self { kind, bytes }
    }

    /// SHA-256 of `data`.
    pub fn of(data: &[u8]) -> Self {
        let d = ring::digest::digest(&ring::digest::SHA256, data);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(d.as_ref());
        Self::new(DigestKind::Plain, bytes)
    }

    /// SHA-256 and length of everything `reader` yields, read in 64 KiB pieces.
    pub fn of_reader(mut reader: impl Read) -> Result<(Self, u64)> {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(Error::io("reading data to hash"))?;
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
            total += n as u64;
        }
        Ok((Self::from_context(DigestKind::Plain, ctx), total))
    }

    pub(crate) fn from_context(kind: DigestKind, ctx: ring::digest::Context) -> Self {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(ctx.finish().as_ref());
        Self::new(kind, bytes)
    }

    /// The raw 32 bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// What this is a digest of.
    pub fn kind(&self) -> DigestKind {
        self.kind
    }

    /// The hex digits alone, for file and object names.
    pub fn hex(&self) -> String {
        use fmt::Write as _;
        self.bytes
            .iter()
            .fold(String::with_capacity(64), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            })
    }

    /// Parses `sha256:<hex>` or `sealed-sha256:<hex>` (lowercase hex only).
    pub fn parse(text: &str) -> Option<Self> {
        let (kind, hex) = if let Some(h) = text.strip_prefix("sha256:") {
            (DigestKind::Plain, h)
        } else {
            (DigestKind::Sealed, text.strip_prefix("sealed-sha256:")?)
        };
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self::new(kind, bytes))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.kind.prefix(), self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        Digest::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format_args!(
                "{text:?} is not sha256:<64 lowercase hex> or sealed-sha256:<…>"
            ))
        })
    }
}
