//! Consign bundles: versioned, signed, encrypted, content-addressed function bundles.
//!
//! A vendor's app folder (`consign.toml`, a CloudFormation template, function code, static
//! assets) becomes one `.bundle` file: a manifest signed with the vendor's release key, listing
//! every object by the SHA-256 of its plaintext, and the objects themselves, each sealed with its
//! own data key in 64 KiB AES-256-GCM chunks. The data keys go to a separate, secret keys file.
//! The byte layout and the reasoning behind it are in `bundles/FORMAT.md`.
//!
//! Like the `license` crate, this one does no I/O beyond `Read`/`Write` streams: the vendor's CLI
//! reads folders and files and hands their contents over ([`build::Builder`]).
//!
//! Once deployed, code in Lambda is readable by the customer: encryption protects distribution
//! (in transit and at rest on the portal), the license protects the contract.

pub mod app;
pub mod build;
pub mod container;
pub mod digest;
pub mod error;
pub mod keys_file;
pub mod limits;
pub mod manifest;
pub mod open;
pub mod release;
pub mod seal;
pub mod template;
pub mod workflow;
pub mod wrap;
pub mod zip;

pub use app::AppManifest;
pub use build::{Builder, Built};
pub use container::{BundleReader, BundleWriter};
pub use digest::Digest;
pub use error::{Error, Result};
pub use keys_file::KeysFile;
pub use limits::{BundlePath, Limits};
pub use manifest::{BundleManifest, ObjectEntry, Role};
