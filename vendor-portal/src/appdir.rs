//! Reads an app folder for `release build`: `consign.toml`, the template, function folders (zipped
//! deterministically) or prebuilt zips, and static asset files. Symbolic links and special files
//! are refused: they would make a build depend on the machine it runs on.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use bundles::build::{Opener, in_memory};
use bundles::zip::{ZipEntry, write_zip};
use bundles::{AppManifest, Builder, BundlePath};

/// Names never packed: editor and OS litter, Python caches.
fn ignored(name: &str) -> bool {
    matches!(name, ".DS_Store" | "__pycache__" | ".git" | "Thumbs.db") || name.ends_with(".pyc")
}

/// Every regular file under `dir`, as (path relative to `dir`, absolute path), sorted.
pub fn list_files(dir: &Path) -> Result<Vec<(BundlePath, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((folder, prefix)) = stack.pop() {
        let entries = fs::read_dir(&folder)
            .with_context(|| format!("cannot read the folder {}", folder.display()))?;
        for entry in entries {
            let entry =
                entry.with_context(|| format!("cannot read the folder {}", folder.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if ignored(&name) {
                continue;
            }
            let path = entry.path();
            let kind = entry
                .file_type()
                .with_context(|| format!("cannot read {}", path.display()))?;
            let relative = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            if kind.is_symlink() {
                bail!(
                    "{} is a symbolic link: bundles hold regular files only (copy the target instead)",
                    path.display()
                );
            } else if kind.is_dir() {
                stack.push((path, relative));
            } else if kind.is_file() {
                let bundle_path = BundlePath::new(relative)
                    .with_context(|| format!("cannot pack {}", path.display()))?;
                out.push((bundle_path, path));
            } else {
                bail!("{} is not a regular file", path.display());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A deterministic zip of `folders`' files merged at the zip's root.
pub fn zip_folders(folders: &[PathBuf]) -> Result<Vec<u8>> {
    let mut entries = Vec::new();
    for folder in folders {
        for (name, path) in list_files(folder)? {
            let meta =
                fs::metadata(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let data =
                fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            entries.push(ZipEntry {
                name,
                executable: meta.permissions().mode() & 0o111 != 0,
                data,
            });
        }
    }
    write_zip(entries).context("cannot zip the code")
}

fn inside(app_dir: &Path, relative: &str, what: &str) -> Result<PathBuf> {
    let path = app_dir.join(relative);
    let canonical = path
        .canonicalize()
        .with_context(|| format!("{what} {} does not exist", path.display()))?;
    let root = app_dir
        .canonicalize()
        .with_context(|| format!("cannot read {}", app_dir.display()))?;
    if !canonical.starts_with(&root) {
        bail!("{what} {relative:?} is outside the app folder");
    }
    Ok(canonical)
}

fn file_opener(path: PathBuf) -> Opener {
    Box::new(move || Ok(Box::new(fs::File::open(&path)?) as Box<dyn std::io::Read>))
}

/// Reads the app folder into a [`Builder`].
pub fn load(app_dir: &Path) -> Result<Builder> {
    let manifest_path = app_dir.join("consign.toml");
    let text = fs::read_to_string(&manifest_path).with_context(|| {
        format!(
            "cannot read {} (is {} an app folder?)",
            manifest_path.display(),
            app_dir.display()
        )
    })?;
    let app = AppManifest::parse(&text)?;
    let template_path = inside(app_dir, &app.app.template, "the template")?;
    let template = fs::read(&template_path)
        .with_context(|| format!("cannot read {}", template_path.display()))?;
    let functions = app.functions.clone();
    let layers = app.layers.clone();
    let assets = app.assets.clone();
    let mut builder = Builder::new(app, template)?;
    for f in &functions {
        let code = inside(
            app_dir,
            &f.code,
            &format!("the code of function {}", f.name),
        )?;
        let zip = if code.is_dir() {
            let mut folders = vec![code];
            for include in &f.include {
                folders.push(inside(
                    app_dir,
                    include,
                    &format!("an include of function {}", f.name),
                )?);
            }
            in_memory(zip_folders(&folders)?)
        } else if code.extension().is_some_and(|e| e == "zip") {
            if !f.include.is_empty() {
                bail!(
                    "function {}: include works only with a code folder, not a prebuilt zip",
                    f.name
                );
            }
            file_opener(code)
        } else {
            bail!("function {}: code must be a folder or a .zip file", f.name);
        };
        builder.add_function(f.name.as_str(), zip)?;
    }
    for l in &layers {
        // An optional layer that is not there is left out; `release build` says so.
        if l.optional && !app_dir.join(&l.code).exists() {
            continue;
        }
        let code = inside(app_dir, &l.code, &format!("the code of layer {}", l.name))?;
        let zip = if code.is_dir() {
            in_memory(zip_folders(&[code])?)
        } else if code.extension().is_some_and(|e| e == "zip") {
            file_opener(code)
        } else {
            bail!("layer {}: code must be a folder or a .zip file", l.name);
        };
        builder.add_layer(l.name.as_str(), zip)?;
    }
    for a in &assets {
        let folder = inside(
            app_dir,
            &a.path,
            &format!("the folder of asset set {}", a.name),
        )?;
        for (relative, path) in list_files(&folder)? {
            builder.add_asset_file(a.name.as_str(), &relative, file_opener(path))?;
        }
    }
    Ok(builder)
}
