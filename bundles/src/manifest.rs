//! The signed bundle manifest: what a release is (app, version, notes, functions, assets,
//! parameters, capabilities), what it creates and may do in AWS (resources and IAM permissions,
//! read from the template at build), and every object it carries with its plaintext and sealed
//! digests. Signed with the vendor's release key; the signature covers the exact manifest bytes,
//! prefixed for domain separation from every other signature Consign makes.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::app::ParameterSpec;
use crate::digest::{Digest, DigestKind};
use crate::error::{Error, Result};
use crate::limits::{BundlePath, Limits};
use crate::seal;
use crate::template::{Permission, Resource};

/// What the release key signs: this prefix, then the manifest bytes.
pub const SIGNING_PREFIX: &[u8] = b"consign-bundle-manifest-v1:";
/// The manifest format version.
pub const FORMAT_VERSION: u32 = 1;

/// The signed manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleManifest {
    /// Always [`FORMAT_VERSION`].
    pub format: u32,
    /// The app's slug.
    pub app: license::claims::Slug,
    /// The app's display name.
    pub name: String,
    /// The release's version.
    pub version: semver::Version,
    /// Release notes (Markdown).
    pub release_notes: String,
    /// When the bundle was built.
    pub built_at: license::UnixTime,
    /// The oldest installer that can deploy it.
    pub min_installer_version: semver::Version,
    /// CloudFormation capabilities the stack needs.
    pub capabilities: Vec<String>,
    /// The template's object path.
    pub template: BundlePath,
    /// The template parameter receiving the artifact bucket's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_bucket_parameter: Option<String>,
    /// The template parameter receiving the release's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_parameter: Option<String>,
    /// Parameters the admin may set.
    pub parameters: Vec<ParameterSpec>,
    /// The functions.
    pub functions: Vec<FunctionEntry>,
    /// The static asset sets.
    pub assets: Vec<AssetEntry>,
    /// The Lambda layers (absent from manifests without any, so older manifests keep their
    /// bytes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerEntry>,
    /// Resources the template declares.
    pub resources: Vec<Resource>,
    /// IAM permissions the template grants.
    pub permissions: Vec<Permission>,
    /// Every object in the bundle, in container order.
    pub objects: Vec<ObjectEntry>,
}

/// A function in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionEntry {
    /// Its name.
    pub name: license::claims::Slug,
    /// Lambda runtime.
    pub runtime: String,
    /// Handler.
    pub handler: String,
    /// Memory in MB.
    pub memory: u32,
    /// Timeout in seconds.
    pub timeout: u32,
    /// The feature that gates it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature: Option<license::claims::FeatureName>,
    /// The template parameter receiving its code's S3 key.
    pub code_parameter: String,
    /// The object holding its zip.
    pub object: BundlePath,
    /// Whether it ships as source or compiled (absent for source, so manifests without compiled
    /// functions keep their bytes and older installers keep reading them).
    #[serde(default, skip_serializing_if = "FunctionKind::is_source")]
    pub kind: FunctionKind,
}

/// How a function's code ships to the customer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FunctionKind {
    /// Its source: Python, JavaScript, anything the runtime reads as written.
    #[default]
    Source,
    /// A native executable: the runtime is `provided.*` and the zip's `bootstrap` is an ELF
    /// binary. The vendor's source is not in the bundle.
    Compiled,
}

impl FunctionKind {
    /// Whether this is [`FunctionKind::Source`].
    pub fn is_source(&self) -> bool {
        *self == FunctionKind::Source
    }

    /// The kind of a function with `runtime` whose zip holds `entries`: compiled when the
    /// runtime runs the zip's `bootstrap` and that file is an ELF executable.
    pub fn of(runtime: &str, entries: &[crate::zip::ZipEntry]) -> Self {
        let native = entries.iter().any(|e| {
            e.name.as_str() == "bootstrap" && e.executable && e.data.starts_with(b"\x7fELF")
        });
        if runtime.starts_with("provided.") && native {
            FunctionKind::Compiled
        } else {
            FunctionKind::Source
        }
    }

    /// `source` or `compiled`.
    pub fn as_str(&self) -> &'static str {
        match self {
            FunctionKind::Source => "source",
            FunctionKind::Compiled => "compiled",
        }
    }
}

/// A Lambda layer in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerEntry {
    /// Its name.
    pub name: license::claims::Slug,
    /// The template parameter receiving its zip's S3 key.
    pub code_parameter: String,
    /// The object holding its zip.
    pub object: BundlePath,
}

/// A static asset set in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetEntry {
    /// Its name.
    pub name: license::claims::Slug,
    /// The stack output naming the bucket to upload into.
    pub bucket_output: String,
    /// Its files' objects; the key in the bucket is the path after `assets/<name>/`.
    pub files: Vec<BundlePath>,
}

/// What an object is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The CloudFormation template.
    Template,
    /// A function's code zip.
    Function,
    /// A static asset file.
    Asset,
    /// A Lambda layer's zip.
    Layer,
}

/// One object: plaintext identity and sealed identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectEntry {
    /// Its path (`template.json`, `functions/posts.zip`, `assets/site/index.html`).
    pub path: BundlePath,
    /// What it is for.
    pub role: Role,
    /// SHA-256 of the plaintext: the object's address.
    pub digest: Digest,
    /// Plaintext size.
    pub size: u64,
    /// SHA-256 over the sealed header and chunk tags.
    pub sealed_digest: Digest,
    /// Sealed size.
    pub sealed_size: u64,
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::Malformed(format!("the manifest {}", reason.into()))
}

impl BundleManifest {
    /// Checks everything the types cannot: sizes against limits, digest kinds, sealed sizes
    /// that follow from plaintext sizes, unique paths, and references that resolve.
    pub fn validate(&self, limits: &Limits) -> Result<()> {
        if self.format != FORMAT_VERSION {
            return Err(invalid(format!(
                "has format {}; this tool reads format {FORMAT_VERSION}: upgrade it",
                self.format
            )));
        }
        if self.objects.len() > limits.max_objects as usize {
            return Err(Error::TooLarge {
                what: "object count",
                size: self.objects.len() as u64,
                limit: u64::from(limits.max_objects),
            });
        }
        let mut paths = BTreeSet::new();
        for o in &self.objects {
            if !paths.insert(&o.path) {
                return Err(invalid(format!("lists object {} twice", o.path)));
            }
            if o.size > limits.max_object_size {
                return Err(Error::TooLarge {
                    what: "object size",
                    size: o.size,
                    limit: limits.max_object_size,
                });
            }
            if o.digest.kind() != DigestKind::Plain || o.sealed_digest.kind() != DigestKind::Sealed
            {
                return Err(invalid(format!(
                    "gives object {} digests of the wrong kind",
                    o.path
                )));
            }
            if o.sealed_size != seal::sealed_size(o.size) {
                return Err(invalid(format!(
                    "gives object {} a sealed size that does not match its size",
                    o.path
                )));
            }
        }
        let role_of = |path: &BundlePath| {
            self.objects
                .iter()
                .find(|o| &o.path == path)
                .map(|o| o.role)
        };
        if role_of(&self.template) != Some(Role::Template) {
            return Err(invalid("names a template that is not among its objects"));
        }
        for f in &self.functions {
            if role_of(&f.object) != Some(Role::Function) {
                return Err(invalid(format!(
                    "names code for {} that is not among its objects",
                    f.name
                )));
            }
        }
        for l in &self.layers {
            if role_of(&l.object) != Some(Role::Layer) {
                return Err(invalid(format!(
                    "names the zip of layer {} that is not among its objects",
                    l.name
                )));
            }
        }
        for a in &self.assets {
            for file in &a.files {
                if role_of(file) != Some(Role::Asset) {
                    return Err(invalid(format!(
                        "names asset {file} that is not among its objects"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The object at `path`.
    pub fn object(&self, path: &BundlePath) -> Option<&ObjectEntry> {
        self.objects.iter().find(|o| &o.path == path)
    }

    /// The entitlement a license needs to receive the release: the feature every function names,
    /// when they all name the same one. Functions gated by different features are checked at
    /// run time by the license agent instead.
    pub fn release_entitlement(&self) -> Option<&license::claims::FeatureName> {
        let mut features = self.functions.iter().map(|f| f.feature.as_ref());
        let first = features.next()??;
        features.all(|f| f == Some(first)).then_some(first)
    }

    /// The distinct IAM actions the release holds.
    pub fn actions(&self) -> Vec<String> {
        let set: BTreeSet<&str> = self.permissions.iter().map(|p| p.action.as_str()).collect();
        set.into_iter().map(str::to_owned).collect()
    }
}

/// The manifest's signature: the release key's id and its Ed25519 signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestSignature {
    /// The release key's id in the vendor's keyset.
    pub kid: String,
    /// The signature over [`SIGNING_PREFIX`] followed by the manifest bytes.
    pub signature: [u8; 64],
}

fn signing_input(manifest_bytes: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(SIGNING_PREFIX.len() + manifest_bytes.len());
    input.extend_from_slice(SIGNING_PREFIX);
    input.extend_from_slice(manifest_bytes);
    input
}

/// Signs manifest bytes with the release key named `kid`.
pub fn sign_manifest(
    manifest_bytes: &[u8],
    kid: &str,
    release_key: &license::SigningKey,
) -> ManifestSignature {
    ManifestSignature {
        kid: kid.to_owned(),
        signature: release_key.sign(&signing_input(manifest_bytes)),
    }
}

/// Verifies manifest bytes against the vendor's keyset: the key must be one of its *release*
/// keys, valid at `now`, and the signature must verify. Only then are the bytes parsed.
pub fn verify_manifest(
    manifest_bytes: &[u8],
    signature: &ManifestSignature,
    keyset: &license::TrustedKeyset,
    now: license::UnixTime,
    limits: &Limits,
) -> Result<BundleManifest> {
    let key = keyset.release_key(&signature.kid).ok_or_else(|| {
        Error::Signature(format!(
            "is signed by key {:?}, which is not a release key in the trusted keyset (a license key cannot sign releases)",
            signature.kid
        ))
    })?;
    key.check_valid_at(now, license::verify::DEFAULT_LEEWAY)?;
    if !key
        .public_key
        .verify(&signing_input(manifest_bytes), &signature.signature)
    {
        return Err(Error::Signature(
            "signature does not verify: the bundle was altered or signed by another key".into(),
        ));
    }
    let manifest: BundleManifest = serde_json::from_slice(manifest_bytes)
        .map_err(|e| invalid(format!("is not valid: {e}")))?;
    manifest.validate(limits)?;
    Ok(manifest)
}

impl BundleManifest {
    /// A human-readable description: what the release is, what it creates in AWS and which IAM
    /// permissions it holds, and its objects. Used by `release inspect` and `installer verify`.
    pub fn describe(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(s, "{} ({}) version {}", self.name, self.app, self.version);
        let _ = writeln!(
            s,
            "  built {}; needs installer {} or later",
            self.built_at, self.min_installer_version
        );
        if !self.capabilities.is_empty() {
            let _ = writeln!(s, "  capabilities: {}", self.capabilities.join(", "));
        }
        for line in self.release_notes.trim().lines() {
            let _ = writeln!(s, "  | {line}");
        }
        let _ = writeln!(s, "Functions:");
        for f in &self.functions {
            let feature = f
                .feature
                .as_ref()
                .map(|x| format!(", feature {x}"))
                .unwrap_or_default();
            let size = self.object(&f.object).map_or(0, |o| o.size);
            let _ = writeln!(
                s,
                "  {:<16} {:<8} {} {} {} MB {} s{feature}, {size} bytes",
                f.name,
                f.kind.as_str(),
                f.runtime,
                f.handler,
                f.memory,
                f.timeout,
            );
        }
        if !self.layers.is_empty() {
            let _ = writeln!(s, "Lambda layers:");
            for l in &self.layers {
                let size = self.object(&l.object).map_or(0, |o| o.size);
                let _ = writeln!(s, "  {:<16} {size} bytes", l.name);
            }
        }
        if !self.assets.is_empty() {
            let _ = writeln!(s, "Static assets:");
            for a in &self.assets {
                let _ = writeln!(
                    s,
                    "  {:<16} {} files into the bucket output {}",
                    a.name,
                    a.files.len(),
                    a.bucket_output
                );
            }
        }
        if !self.parameters.is_empty() {
            let _ = writeln!(s, "Parameters:");
            for p in &self.parameters {
                let default = p
                    .default
                    .as_deref()
                    .map(|d| format!(" (default {d})"))
                    .unwrap_or_default();
                let _ = writeln!(
                    s,
                    "  {}{default}: {}",
                    p.name,
                    p.description.as_deref().unwrap_or("")
                );
            }
        }
        let _ = writeln!(s, "AWS resources ({}):", self.resources.len());
        for r in &self.resources {
            let _ = writeln!(s, "  {:<24} {}", r.logical_id, r.kind);
        }
        let _ = writeln!(s, "IAM permissions:");
        for p in &self.permissions {
            let _ = writeln!(
                s,
                "  {:<16} {:<28} on {}",
                p.principal, p.action, p.resource
            );
        }
        let _ = writeln!(s, "Objects ({}):", self.objects.len());
        for o in &self.objects {
            let _ = writeln!(
                s,
                "  {:<8} {:<40} {:>10} bytes  {}",
                format!("{:?}", o.role).to_lowercase(),
                o.path.as_str(),
                o.size,
                o.digest
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::zip::ZipEntry;

    fn file(name: &str, data: &[u8], executable: bool) -> ZipEntry {
        ZipEntry {
            name: BundlePath::new(name).unwrap(),
            executable,
            data: data.to_vec(),
        }
    }

    #[test]
    fn a_bootstrap_binary_is_compiled_and_anything_else_is_source() {
        let binary = [file("bootstrap", b"\x7fELF\x02\x01\x01rest", true)];
        assert_eq!(
            FunctionKind::of("provided.al2023", &binary),
            FunctionKind::Compiled
        );
        assert_eq!(
            FunctionKind::of("provided.al2", &binary),
            FunctionKind::Compiled
        );
        // A shell script as bootstrap, a binary that is not executable, a binary under another
        // name or another runtime: the source (or something other than a binary) ships.
        for (runtime, files) in [
            (
                "provided.al2023",
                [file("bootstrap", b"#!/bin/sh\nexec python3 app.py", true)],
            ),
            (
                "provided.al2023",
                [file("bootstrap", b"\x7fELF\x02", false)],
            ),
            ("provided.al2023", [file("server", b"\x7fELF\x02", true)]),
            ("python3.12", [file("bootstrap", b"\x7fELF\x02", true)]),
        ] {
            assert_eq!(
                FunctionKind::of(runtime, &files),
                FunctionKind::Source,
                "{runtime}"
            );
        }
    }

    #[test]
    fn source_functions_keep_the_manifest_bytes_of_before() {
        let entry = FunctionEntry {
            name: license::claims::Slug::new("posts").unwrap(),
            runtime: "python3.12".into(),
            handler: "app.handler".into(),
            memory: 128,
            timeout: 3,
            feature: None,
            code_parameter: "PostsCodeKey".into(),
            object: BundlePath::new("functions/posts.zip").unwrap(),
            kind: FunctionKind::Source,
        };
        let text = serde_json::to_string(&entry).unwrap();
        assert!(!text.contains("kind"), "{text}");
        let compiled = FunctionEntry {
            kind: FunctionKind::Compiled,
            ..entry
        };
        let text = serde_json::to_string(&compiled).unwrap();
        assert!(text.ends_with(r#","kind":"compiled"}"#), "{text}");
        let back: FunctionEntry = serde_json::from_str(&text).unwrap();
        assert_eq!(back, compiled);
    }
}
