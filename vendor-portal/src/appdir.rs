//! Reads an app folder for `release build`: `consign.toml`, the template, function folders (zipped
//! deterministically) or prebuilt zips (read and zipped again the same way), and static asset
//! files. A function with a `build` command is built first, and its zip is checked against its
//! declared sources, so a compiled function never ships the source it was compiled from.
//! Symbolic links and special files are refused: they would make a build depend on the machine it
//! runs on.

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::AsFd as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};
use bundles::app::{BuildSpec, FunctionInput};
use bundles::build::{Opener, in_memory};
use bundles::manifest::FunctionKind;
use bundles::zip::{ZipEntry, read_zip, write_zip};
use bundles::{AppManifest, Builder, BundlePath, Digest};

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
    write_zip(folder_entries(folders)?).context("cannot zip the code")
}

/// `folders`' files merged at one root, as zip entries.
fn folder_entries(folders: &[PathBuf]) -> Result<Vec<ZipEntry>> {
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
    Ok(entries)
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
        let (zip, kind) = function_zip(app_dir, f)?;
        builder.add_function(f.name.as_str(), in_memory(zip), kind)?;
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

/// The zip of function `f` and how it ships: its build run first when it has one, its folder or
/// prebuilt zip read into files, the files checked against its sources, and zipped
/// deterministically.
fn function_zip(app_dir: &Path, f: &FunctionInput) -> Result<(Vec<u8>, FunctionKind)> {
    if let Some(build) = &f.build {
        run_build(app_dir, f, build)?;
        if !app_dir.join(&f.code).exists() {
            bail!(
                "function {}: its build command ran, but left nothing at code = {:?}: make `code` name what the build writes",
                f.name,
                f.code
            );
        }
    }
    let code = inside(
        app_dir,
        &f.code,
        &format!("the code of function {}", f.name),
    )?;
    let entries = if code.is_dir() {
        let mut folders = vec![code];
        for include in &f.include {
            folders.push(inside(
                app_dir,
                include,
                &format!("an include of function {}", f.name),
            )?);
        }
        folder_entries(&folders)?
    } else if code.extension().is_some_and(|e| e == "zip") {
        if !f.include.is_empty() {
            bail!(
                "function {}: include works only with a code folder, not a prebuilt zip",
                f.name
            );
        }
        let bytes = fs::read(&code).with_context(|| format!("cannot read {}", code.display()))?;
        read_zip(&code.display().to_string(), &bytes)
            .with_context(|| {
                format!(
                    "function {}: its prebuilt zip cannot be used (zip its files again, stored or deflated, without links or names outside the folder)",
                    f.name
                )
            })?
    } else {
        bail!("function {}: code must be a folder or a .zip file", f.name);
    };
    if let Some(build) = &f.build {
        refuse_shipped_sources(app_dir, f, build, &entries)?;
    }
    let kind = FunctionKind::of(&f.runtime, &entries);
    let zip = write_zip(entries).with_context(|| format!("cannot zip function {}", f.name))?;
    Ok((zip, kind))
}

/// Runs a function's build command in the app folder, its output on our stderr (stdout stays
/// the command's answer, for `--output json`). SOURCE_DATE_EPOCH is set, unless the vendor set
/// it, for tools that stamp times into what they build.
fn run_build(app_dir: &Path, f: &FunctionInput, build: &BuildSpec) -> Result<()> {
    let shown = build.command.join(" ");
    eprintln!("building function {}: {shown}", f.name);
    let stdout: Stdio = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_or_else(|_| Stdio::inherit(), Stdio::from);
    let mut command = Command::new(&build.command[0]);
    command
        .args(&build.command[1..])
        .current_dir(app_dir)
        .stdin(Stdio::null())
        .stdout(stdout);
    if std::env::var_os("SOURCE_DATE_EPOCH").is_none() {
        command.env("SOURCE_DATE_EPOCH", "315532800");
    }
    let status = command.status().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!(
                "function {}: the build command's program {:?} is not installed (or not on PATH): install it, or fix functions.build.command in consign.toml",
                f.name,
                build.command[0]
            )
        } else {
            anyhow::anyhow!("function {}: cannot run `{shown}`: {e}", f.name)
        }
    })?;
    if !status.success() {
        bail!(
            "function {}: the build command `{shown}` failed ({status}); its output is above: fix the build and run release build again",
            f.name
        );
    }
    Ok(())
}

/// Refuses a zip that carries a file of the function's declared sources (compared by content,
/// so a renamed copy is caught too).
fn refuse_shipped_sources(
    app_dir: &Path,
    f: &FunctionInput,
    build: &BuildSpec,
    entries: &[ZipEntry],
) -> Result<()> {
    let mut sources: BTreeMap<Digest, String> = BTreeMap::new();
    for source in &build.sources {
        let path = inside(
            app_dir,
            source,
            &format!("the source {source:?} of function {}", f.name),
        )?;
        let files = if path.is_dir() {
            list_files(&path)?
                .into_iter()
                .map(|(relative, file)| (format!("{source}/{relative}"), file))
                .collect()
        } else {
            vec![(source.clone(), path)]
        };
        for (shown, file) in files {
            let data =
                fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            if !data.is_empty() {
                sources.insert(Digest::of(&data), shown);
            }
        }
    }
    for entry in entries {
        if let Some(source) = sources.get(&Digest::of(&entry.data)) {
            bail!(
                "function {}: its code would ship {} — the same file as its source {source}: point `code` at what the build writes, not at the source",
                f.name,
                entry.name
            );
        }
    }
    Ok(())
}
