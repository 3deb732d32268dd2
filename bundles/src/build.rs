//! Building a bundle from an app's parts: the caller (the vendor's CLI) reads the app folder and
//! hands over the template, function zips and asset files; the builder hashes every object, gives
//! it a data key (the previous version's, when the plaintext is unchanged, so the ciphertext is
//! too), seals it, signs the manifest with the release key and writes the container.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Arc;

use crate::app::AppManifest;
use crate::container::BundleWriter;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::keys_file::{KEYS_FILE_TYPE, KeyText, KeysFile};
use crate::limits::{BundlePath, Limits};
use crate::manifest::{
    AssetEntry, BundleManifest, FORMAT_VERSION, FunctionEntry, FunctionKind, LayerEntry,
    ObjectEntry, Role, sign_manifest,
};
use crate::seal::{self, DataKey};
use crate::template::TemplateSummary;

/// Opens an object's plaintext; called up to three times (hash, dry-run seal, seal).
pub type Opener = Box<dyn Fn() -> std::io::Result<Box<dyn Read>>>;

/// An opener over bytes in memory.
pub fn in_memory(bytes: Vec<u8>) -> Opener {
    let bytes: Arc<[u8]> = bytes.into();
    Box::new(move || Ok(Box::new(std::io::Cursor::new(Arc::clone(&bytes))) as Box<dyn Read>))
}

struct Planned {
    path: BundlePath,
    role: Role,
    open: Opener,
}

/// What the builder is doing, for a progress display.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// Hashing object `index` (from 1) of `total`.
    Hashing {
        /// The object's path.
        path: &'a BundlePath,
        /// Its position, from 1.
        index: usize,
        /// How many objects there are.
        total: usize,
    },
    /// Sealing object `index` of `total` into the bundle.
    Sealing {
        /// The object's path.
        path: &'a BundlePath,
        /// Its position, from 1.
        index: usize,
        /// How many objects there are.
        total: usize,
        /// Its plaintext size.
        size: u64,
    },
}

/// A bundle being assembled.
pub struct Builder {
    app: AppManifest,
    summary: TemplateSummary,
    template_path: BundlePath,
    planned: Vec<Planned>,
    functions: Vec<FunctionEntry>,
    layers: Vec<LayerEntry>,
    assets: BTreeMap<String, AssetEntry>,
    previous: Option<KeysFile>,
    limits: Limits,
    progress: Option<ProgressFn>,
}

/// A progress callback.
type ProgressFn = Box<dyn FnMut(Progress<'_>)>;

/// What [`Builder::build`] produced besides the bundle bytes.
pub struct Built {
    /// The signed manifest.
    pub manifest: BundleManifest,
    /// The data keys (secret).
    pub keys: KeysFile,
    /// How many objects took their key, and so their ciphertext, from the previous keys file.
    pub reused: usize,
}

impl Builder {
    /// Starts from the parsed `consign.toml` and the template's bytes, checking them against each
    /// other.
    pub fn new(app: AppManifest, template: Vec<u8>) -> Result<Self> {
        let summary = TemplateSummary::parse(&app.app.template, &template)?;
        app.check_against(&summary)?;
        let template_path = BundlePath::new("template.json")?;
        let mut builder = Self {
            app,
            summary,
            template_path: template_path.clone(),
            planned: Vec::new(),
            functions: Vec::new(),
            layers: Vec::new(),
            assets: BTreeMap::new(),
            previous: None,
            limits: Limits::default(),
            progress: None,
        };
        builder.planned.push(Planned {
            path: template_path,
            role: Role::Template,
            open: in_memory(template),
        });
        Ok(builder)
    }

    /// Calls `report` as each object is hashed and sealed.
    pub fn on_progress(&mut self, report: impl FnMut(Progress<'_>) + 'static) {
        self.progress = Some(Box::new(report));
    }

    /// Reuses data keys from the previous version's keys file for unchanged objects.
    pub fn reuse_keys(&mut self, previous: KeysFile) {
        self.previous = Some(previous);
    }

    /// Adds the code zip of function `name` (which must be in `consign.toml`), shipping as
    /// `kind` ([`crate::manifest::FunctionKind::of`] tells it from the zip's files).
    pub fn add_function(&mut self, name: &str, zip: Opener, kind: FunctionKind) -> Result<()> {
        let f = self
            .app
            .functions
            .iter()
            .find(|f| f.name.as_str() == name)
            .ok_or_else(|| Error::Malformed(format!("function {name} is not in consign.toml")))?;
        let path = BundlePath::new(format!("functions/{name}.zip"))?;
        self.functions.push(FunctionEntry {
            name: f.name.clone(),
            runtime: f.runtime.clone(),
            handler: f.handler.clone(),
            memory: f.memory,
            timeout: f.timeout,
            feature: f.feature.clone(),
            code_parameter: f.code_parameter.clone(),
            object: path.clone(),
            kind,
        });
        self.planned.push(Planned {
            path,
            role: Role::Function,
            open: zip,
        });
        Ok(())
    }

    /// The optional layers of `consign.toml` that were not added: the bundle goes without them.
    pub fn layers_left_out(&self) -> Vec<String> {
        self.app
            .layers
            .iter()
            .filter(|l| !self.layers.iter().any(|e| e.name == l.name))
            .map(|l| l.name.to_string())
            .collect()
    }

    /// Adds the zip of layer `name` (which must be in `consign.toml`).
    pub fn add_layer(&mut self, name: &str, zip: Opener) -> Result<()> {
        let l = self
            .app
            .layers
            .iter()
            .find(|l| l.name.as_str() == name)
            .ok_or_else(|| Error::Malformed(format!("layer {name} is not in consign.toml")))?;
        let path = BundlePath::new(format!("layers/{name}.zip"))?;
        self.layers.push(LayerEntry {
            name: l.name.clone(),
            code_parameter: l.code_parameter.clone(),
            object: path.clone(),
        });
        self.planned.push(Planned {
            path,
            role: Role::Layer,
            open: zip,
        });
        Ok(())
    }

    /// Adds file `relative` of asset set `asset` (which must be in `consign.toml`).
    pub fn add_asset_file(
        &mut self,
        asset: &str,
        relative: &BundlePath,
        open: Opener,
    ) -> Result<()> {
        let a = self
            .app
            .assets
            .iter()
            .find(|a| a.name.as_str() == asset)
            .ok_or_else(|| Error::Malformed(format!("asset set {asset} is not in consign.toml")))?;
        let path = BundlePath::new(format!("assets/{asset}/{relative}"))?;
        self.assets
            .entry(asset.to_owned())
            .or_insert_with(|| AssetEntry {
                name: a.name.clone(),
                bucket_output: a.bucket_output.clone(),
                files: Vec::new(),
            })
            .files
            .push(path.clone());
        self.planned.push(Planned {
            path,
            role: Role::Asset,
            open,
        });
        Ok(())
    }

    /// Seals every object, signs the manifest with `release_key` (named `kid` in the keyset) and
    /// writes the bundle to `writer`.
    pub fn build(
        mut self,
        kid: &str,
        release_key: &license::SigningKey,
        now: license::UnixTime,
        writer: impl Write,
    ) -> Result<Built> {
        let mut report = self.progress.take();
        let total = self.planned.len();
        if let Some(missing) = self
            .app
            .functions
            .iter()
            .find(|f| !self.functions.iter().any(|e| e.name == f.name))
        {
            return Err(Error::Malformed(format!(
                "function {} has no code",
                missing.name
            )));
        }
        if let Some(missing) = self
            .app
            .layers
            .iter()
            .find(|l| !l.optional && !self.layers.iter().any(|e| e.name == l.name))
        {
            return Err(Error::Malformed(format!(
                "layer {} has no zip",
                missing.name
            )));
        }
        let mut keys: BTreeMap<Digest, KeyText> = BTreeMap::new();
        let mut objects = Vec::with_capacity(self.planned.len());
        let mut reused = 0;
        for (index, p) in self.planned.iter().enumerate() {
            if let Some(report) = report.as_mut() {
                report(Progress::Hashing {
                    path: &p.path,
                    index: index + 1,
                    total,
                });
            }
            let context = format!("reading {}", p.path);
            let (digest, size) =
                Digest::of_reader((p.open)().map_err(Error::io(context.clone()))?)?;
            if size > self.limits.max_object_size {
                return Err(Error::TooLarge {
                    what: "object size",
                    size,
                    limit: self.limits.max_object_size,
                });
            }
            let key = match (
                keys.get(&digest),
                self.previous
                    .as_ref()
                    .and_then(|prev| prev.key_for(&digest)),
            ) {
                (Some(k), _) => k.0.clone(),
                (None, Some(k)) => {
                    reused += 1;
                    k.clone()
                }
                (None, None) => DataKey::generate()?,
            };
            // Sealing is deterministic, so a dry run yields the sealed digest the real run will.
            let sealed = seal::seal(
                &key,
                &digest,
                size,
                (p.open)().map_err(Error::io(context))?,
                std::io::sink(),
            )?;
            keys.insert(digest, KeyText(key));
            objects.push(ObjectEntry {
                path: p.path.clone(),
                role: p.role,
                digest,
                size,
                sealed_digest: sealed.sealed_digest,
                sealed_size: sealed.sealed_size,
            });
        }
        let app = &self.app.app;
        let manifest = BundleManifest {
            format: FORMAT_VERSION,
            app: app.slug.clone(),
            name: app.name.clone(),
            version: app.version.clone(),
            release_notes: app.release_notes.clone(),
            built_at: now,
            min_installer_version: app.min_installer_version.clone(),
            capabilities: app.capabilities.clone(),
            template: self.template_path.clone(),
            artifact_bucket_parameter: app.artifact_bucket_parameter.clone(),
            version_parameter: app.version_parameter.clone(),
            parameters: self.app.parameters.clone(),
            functions: self.functions,
            assets: self.assets.into_values().collect(),
            layers: self.layers,
            resources: self.summary.resources.clone(),
            permissions: self.summary.permissions.clone(),
            objects,
        };
        manifest.validate(&self.limits)?;
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(|e| Error::Malformed(e.to_string()))?;
        let signature = sign_manifest(&manifest_bytes, kid, release_key);
        let mut out = BundleWriter::new(writer, &manifest_bytes, &signature, &manifest.objects)?;
        for (index, (p, entry)) in self.planned.iter().zip(&manifest.objects).enumerate() {
            if let Some(report) = report.as_mut() {
                report(Progress::Sealing {
                    path: &p.path,
                    index: index + 1,
                    total,
                    size: entry.size,
                });
            }
            let key = &keys[&entry.digest].0;
            let source = (p.open)().map_err(Error::io(format!("reading {}", p.path)))?;
            out.write_object(|w| {
                let sealed = seal::seal(key, &entry.digest, entry.size, source, w)?;
                if sealed.sealed_digest != entry.sealed_digest {
                    return Err(Error::ObjectMismatch {
                        path: entry.path.to_string(),
                        reason: "it changed while the bundle was being built".into(),
                    });
                }
                Ok(sealed.sealed_size)
            })?;
        }
        out.finish()?;
        let keys = KeysFile {
            kind: KEYS_FILE_TYPE.into(),
            app: manifest.app.clone(),
            version: manifest.version.clone(),
            manifest: Digest::of(&manifest_bytes),
            keys,
        };
        Ok(Built {
            manifest,
            keys,
            reused,
        })
    }
}
