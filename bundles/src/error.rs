//! Every way a bundle can be refused, each naming what is wrong and, where there is one, what to do.

/// Why a bundle, an app folder's manifest or a keys file was refused.
///
/// Decryption failures are deliberately coarse ("does not decrypt"): they say which object, not
/// which byte.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `consign.toml` (or the template it names) is not acceptable.
    #[error("{file}: {reason}")]
    AppManifest {
        /// Which file.
        file: String,
        /// What is wrong, naming the field.
        reason: String,
    },
    /// The container's structure is broken.
    #[error("the bundle is malformed: {0}")]
    Malformed(String),
    /// A length in the bundle is over its limit.
    #[error("the bundle's {what} is {size}, over the limit of {limit}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The bundle ended early.
    #[error("the bundle is truncated: it ends inside {0}")]
    Truncated(String),
    /// The manifest's signature does not verify, or is not by a release key.
    #[error("the bundle's manifest {0}")]
    Signature(String),
    /// An object's sealed bytes do not match the signed manifest.
    #[error("object {path} does not match the signed manifest: {reason}")]
    ObjectMismatch {
        /// The object's path.
        path: String,
        /// What differs.
        reason: String,
    },
    /// An object does not decrypt with the key given for it.
    #[error("object {path} does not decrypt: {reason}")]
    Decrypt {
        /// The object's path.
        path: String,
        /// Why, in terms the user can act on.
        reason: String,
    },
    /// The keys file is unusable.
    #[error("the keys file is invalid: {0}")]
    KeysFile(String),
    /// A path in the bundle or app folder is unsafe.
    #[error("path {path:?} is not allowed: {reason}")]
    UnsafePath {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// Reading or writing a stream failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being read or written.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A cryptographic primitive failed (the system random source, key wrapping).
    #[error("{0}")]
    Crypto(String),
    /// A license-layer error (keys, keysets).
    #[error(transparent)]
    License(#[from] license::Error),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| {
            if source.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::Truncated(context)
            } else {
                Error::Io { context, source }
            }
        }
    }

    /// A stable, machine-readable name for the kind of failure.
    pub fn code(&self) -> &'static str {
        match self {
            Error::AppManifest { .. } => "invalid_app",
            Error::Malformed(_) => "malformed",
            Error::TooLarge { .. } => "too_large",
            Error::Truncated(_) => "truncated",
            Error::Signature(_) => "bad_signature",
            Error::ObjectMismatch { .. } => "object_mismatch",
            Error::Decrypt { .. } => "decrypt_failed",
            Error::KeysFile(_) => "bad_keys_file",
            Error::UnsafePath { .. } => "unsafe_path",
            Error::Io { .. } => "io",
            Error::Crypto(_) => "crypto",
            Error::License(e) => e.code(),
        }
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
