//! Limits on every length a bundle states, and the path newtype that keeps a bundle from ever
//! naming a file outside its output folder.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};

/// Bounds on untrusted input. Parsers check every stated length against these before acting on
/// it, and never allocate by a stated length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest signed manifest, in bytes.
    pub max_manifest_len: u32,
    /// Most objects in one bundle.
    pub max_objects: u32,
    /// Largest object (plaintext), in bytes.
    pub max_object_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_manifest_len: 4 * 1024 * 1024,
            max_objects: 10_000,
            max_object_size: 8 * 1024 * 1024 * 1024,
        }
    }
}

/// The longest object path, in bytes.
pub const MAX_PATH_LEN: usize = 255;
/// The most components in an object path.
pub const MAX_PATH_DEPTH: usize = 16;

/// A relative, `/`-separated path inside a bundle: components of `A-Z a-z 0-9 . _ - + @ ~`,
/// never empty, `.` or `..`, at most [`MAX_PATH_DEPTH`] deep and [`MAX_PATH_LEN`] long.
/// Joined onto an output folder it always stays inside it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct BundlePath(String);

impl BundlePath {
    /// Validates `path`.
    pub fn new(path: impl Into<String>) -> Result<Self> {
        let path = path.into();
        let unsafe_path = |reason: &str| Error::UnsafePath {
            path: path.clone(),
            reason: reason.to_owned(),
        };
        if path.is_empty() {
            return Err(unsafe_path("it is empty"));
        }
        if path.len() > MAX_PATH_LEN {
            return Err(unsafe_path("it is longer than 255 bytes"));
        }
        if path.starts_with('/') {
            return Err(unsafe_path("it is absolute"));
        }
        let components: Vec<&str> = path.split('/').collect();
        if components.len() > MAX_PATH_DEPTH {
            return Err(unsafe_path("it is more than 16 folders deep"));
        }
        for c in &components {
            if c.is_empty() {
                return Err(unsafe_path("it has an empty component"));
            }
            if *c == "." || *c == ".." {
                return Err(unsafe_path("it has a '.' or '..' component"));
            }
            if let Some(bad) = c.chars().find(|ch| {
                !(ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-' | '+' | '@' | '~'))
            }) {
                return Err(unsafe_path(&format!(
                    "it contains {bad:?}; names use letters, digits and . _ - + @ ~"
                )));
            }
        }
        Ok(Self(path))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path's components.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl fmt::Display for BundlePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl fmt::Debug for BundlePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl<'de> Deserialize<'de> for BundlePath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        BundlePath::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_escape() {
        for good in [
            "template.json",
            "functions/posts.zip",
            "assets/site/css/main.css",
            "a/b~c@d+e",
        ] {
            assert!(BundlePath::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/.",
            "a\\b",
            "C:x",
            "a\0b",
            "é",
            "a b",
            &"a/".repeat(17),
            &"a".repeat(256),
        ] {
            assert!(BundlePath::new(bad).is_err(), "{bad:?}");
        }
    }
}
