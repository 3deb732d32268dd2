//! Consign bundles: versioned, signed, encrypted, content-addressed function bundles.
//!
//! **Not built yet** (issue 3). This crate will hold the app manifest (`consign.toml`),
//! deterministic packing of function folders into zips, content addressing (`sha256:<hex>` of the
//! plaintext), streaming AES-256-GCM encryption with a random data key per object, the release
//! key's signature over the manifest, X25519 key wrapping, and limits on every untrusted input.
//! Like the `license` crate it does no I/O beyond `Read`/`Write` streams.
