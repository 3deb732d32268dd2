//! `vendor-portal release`: build a bundle from an app folder, inspect one, open one; publishing
//! (`push`, `list`, `promote`, `yank`, `require`) is in [`super::publish`].

use std::fs;
use std::io::{BufReader, BufWriter, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use bundles::open::{ObjectSink, check_all, open_all};
use bundles::{BundleReader, KeysFile, Limits, ObjectEntry};
use clap::{Args, Subcommand};
use license::UnixTime;
use serde_json::json;

use super::{Output, print_json};
use crate::appdir;
use crate::keydir::{KeyDir, RELEASE_KEY};

/// `release` subcommands.
#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// Build a signed, encrypted bundle from an app folder (writes FILE.bundle and the secret
    /// FILE.bundle.keys).
    Build(BuildArgs),
    /// Verify a bundle's signature and structure and show what it is, what AWS resources it
    /// creates and which IAM permissions it holds.
    Inspect(InspectArgs),
    /// Verify and decrypt every object of a bundle into a new folder.
    Open(OpenArgs),
    /// Upload a bundle to the portal (only the objects it lacks) and publish it on a channel,
    /// signing the TUF targets here with the release key.
    Push(super::publish::PushArgs),
    /// List an app's releases on the portal.
    List(super::publish::ListArgs),
    /// Add a published release to a channel (or remove it with --remove).
    #[command(disable_version_flag = true)]
    Promote(super::publish::PromoteArgs),
    /// Retract a published release: installers are no longer offered it or granted its keys.
    #[command(disable_version_flag = true)]
    Yank(super::publish::YankArgs),
    /// Mark a published release as required, so upgrades cannot skip it.
    #[command(disable_version_flag = true)]
    Require(super::publish::RequireArgs),
    /// Lay out the license agent as a Lambda layer folder (extensions/license-agent and
    /// consign/keyset.json) inside an app folder, for a `[[layers]]` entry of consign.toml.
    AgentLayer(AgentLayerArgs),
}

/// Arguments of `release agent-layer`.
#[derive(Debug, Args)]
pub struct AgentLayerArgs {
    /// The `license-agent` executable, built for Lambda (Linux, x86_64 or arm64).
    #[arg(long)]
    agent: PathBuf,
    /// The vendor's keyset.json, which the agent verifies licenses against.
    #[arg(long)]
    trust: PathBuf,
    /// The layer folder to write (for the reference app: examples/serverless-blog/layers/license-agent).
    #[arg(short = 'o', long = "out")]
    out: PathBuf,
}

/// Arguments of `release build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The app folder (with consign.toml).
    app_dir: PathBuf,
    /// The key directory (its release.key signs the bundle).
    #[arg(long)]
    keys: PathBuf,
    /// Where to write the bundle; the keys go to the same name plus `.keys`.
    #[arg(short = 'o', long = "out")]
    out: PathBuf,
    /// The previous version's keys file: unchanged objects keep their key, so their ciphertext is
    /// byte-identical and the portal stores it once.
    #[arg(long)]
    previous_keys: Option<PathBuf>,
}

/// Arguments of `release inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The bundle.
    bundle: PathBuf,
    /// The vendor's keyset.json.
    #[arg(long)]
    trust: PathBuf,
    /// Pin the vendor's root key (sha256:<hex>).
    #[arg(long)]
    trust_root: Option<String>,
}

/// Arguments of `release open`.
#[derive(Debug, Args)]
pub struct OpenArgs {
    /// The bundle.
    bundle: PathBuf,
    /// The bundle's keys file.
    #[arg(long)]
    keys: PathBuf,
    /// The folder to create (must not exist, or be empty).
    #[arg(short = 'o', long = "out")]
    out: PathBuf,
    /// Also verify the manifest's signature against this keyset (the keys file alone already
    /// pins the exact manifest the bundle was built with).
    #[arg(long)]
    trust: Option<PathBuf>,
}

impl ReleaseCommand {
    /// Runs the subcommand.
    pub fn run(self, ctx: &super::Ctx) -> Result<()> {
        let output = ctx.output;
        match self {
            ReleaseCommand::Build(args) => build(args, output),
            ReleaseCommand::Inspect(args) => inspect(args, output),
            ReleaseCommand::Open(args) => open(args, output),
            ReleaseCommand::AgentLayer(args) => agent_layer(args, output),
            ReleaseCommand::Push(args) => super::publish::push(args, ctx),
            ReleaseCommand::List(args) => super::publish::list(args, ctx),
            ReleaseCommand::Promote(args) => super::publish::promote(args, ctx),
            ReleaseCommand::Yank(args) => super::publish::yank(args, ctx),
            ReleaseCommand::Require(args) => super::publish::require(args, ctx),
        }
    }
}

/// `FILE.bundle` → `FILE.bundle.keys`.
pub fn keys_path(bundle: &Path) -> PathBuf {
    let mut name = bundle.as_os_str().to_owned();
    name.push(".keys");
    PathBuf::from(name)
}

fn read_keys_file(path: &Path) -> Result<KeysFile> {
    let bytes = zeroize::Zeroizing::new(
        fs::read(path).with_context(|| format!("cannot read the keys file {}", path.display()))?,
    );
    KeysFile::parse(&bytes).with_context(|| format!("{} is not usable", path.display()))
}

fn write_secret(path: &Path, text: &str) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // An existing file keeps its mode on open: make sure it is the owner's alone.
    fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn build(args: BuildArgs, output: Output) -> Result<()> {
    let dir = KeyDir::open(&args.keys)?;
    let keyset = dir.read_keyset()?;
    let release = dir.read_key(RELEASE_KEY)?;
    let kid = release.public_key().derive_kid("rel");
    let now = UnixTime::now();
    let entry = keyset.release_key(&kid).with_context(|| {
        format!(
            "{RELEASE_KEY} (key {kid}) is not in keyset.json: this key directory is inconsistent"
        )
    })?;
    entry
        .check_valid_at(now, 0)
        .context("the release key cannot sign today")?;
    let mut builder = appdir::load(&args.app_dir)?;
    let left_out = builder.layers_left_out();
    if output == Output::Text && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        builder.on_progress(|p| {
            let line = match p {
                bundles::build::Progress::Hashing { path, index, total } => {
                    format!("[{index}/{total}] hashing {path}")
                }
                bundles::build::Progress::Sealing {
                    path,
                    index,
                    total,
                    size,
                } => {
                    format!("[{index}/{total}] sealing {path} ({size} bytes)")
                }
            };
            eprint!("\r\x1b[2K{line}");
            if matches!(p, bundles::build::Progress::Sealing { index, total, .. } if index == total)
            {
                eprintln!();
            }
        });
    }
    let mut previous_version = None;
    if let Some(previous) = &args.previous_keys {
        let keys = read_keys_file(previous)?;
        previous_version = Some((keys.version.clone(), previous.clone()));
        builder.reuse_keys(keys);
    }
    let tmp = args.out.with_extension("bundle.partial");
    let file =
        fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let built = match builder.build(&kid, &release, now, BufWriter::new(file)) {
        Ok(built) => built,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e).context("the bundle was not built");
        }
    };
    // Read back what was written before calling it done.
    let check = fs::File::open(&tmp)
        .map_err(anyhow::Error::from)
        .and_then(|f| {
            Ok(BundleReader::open(
                BufReader::new(f),
                &keyset,
                now,
                &Limits::default(),
            )?)
        })
        .and_then(|reader| Ok(check_all(reader)?));
    if let Err(e) = check {
        let _ = fs::remove_file(&tmp);
        return Err(e).context("the bundle just built does not verify");
    }
    let keys_file = keys_path(&args.out);
    write_secret(&keys_file, &built.keys.to_json()?)?;
    fs::rename(&tmp, &args.out).with_context(|| format!("cannot write {}", args.out.display()))?;
    let size = fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    let m = &built.manifest;
    for warning in version_warnings(&m.version, previous_version.as_ref(), &args.out) {
        eprintln!("warning: {warning}");
    }
    match output {
        Output::Json => print_json(&json!({
            "bundle": args.out,
            "keys": keys_file,
            "app": m.app,
            "version": m.version.to_string(),
            "signed_by": kid,
            "bytes": size,
            "reused_keys": built.reused,
            "layers_left_out": left_out,
            "functions": m.functions.iter().map(|f| {
                let object = m.object(&f.object);
                json!({
                    "name": f.name, "kind": f.kind, "runtime": f.runtime,
                    "size": object.map(|o| o.size), "digest": object.map(|o| o.digest),
                })
            }).collect::<Vec<_>>(),
            "objects": m.objects.iter().map(|o| json!({
                "role": o.role, "path": o.path, "digest": o.digest, "size": o.size,
                "sealed_digest": o.sealed_digest, "sealed_size": o.sealed_size,
            })).collect::<Vec<_>>(),
        }))?,
        Output::Text => {
            println!(
                "Built {} {} → {} ({size} bytes), signed with {kid}",
                m.app,
                m.version,
                args.out.display()
            );
            for o in &m.objects {
                println!(
                    "  {:<8} {:<40} {:>10} bytes  {}",
                    format!("{:?}", o.role).to_lowercase(),
                    o.path.as_str(),
                    o.size,
                    o.digest
                );
            }
            if !m.functions.is_empty() {
                println!("Functions:");
            }
            for f in &m.functions {
                let Some(object) = m.object(&f.object) else {
                    continue;
                };
                println!(
                    "  {:<16} {:<8} {:<16} {:>10}  {}",
                    f.name.as_str(),
                    f.kind.as_str(),
                    f.runtime,
                    license::process::human_size(object.size),
                    object.digest
                );
            }
            for name in &left_out {
                println!(
                    "  layer {name} is not in the app folder (it is optional): the bundle goes without it"
                );
            }
            if built.reused > 0 {
                println!(
                    "  {} kept their key and ciphertext from the previous version",
                    license::process::count(built.reused as u64, "object", "objects")
                );
            }
            println!(
                "Data keys written to {} (secret: keep it with the release key).",
                keys_file.display()
            );
        }
    }
    Ok(())
}

/// What looks like a build of the wrong version: the same version as the previous build (whose
/// keys are reused), or an output file named for another version than the app folder's.
fn version_warnings(
    version: &semver::Version,
    previous: Option<&(semver::Version, PathBuf)>,
    out: &Path,
) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some((old, file)) = previous
        && old == version
    {
        warnings.push(format!(
            "this build is version {version}, the same as the previous build ({}): the portal publishes a version once; raise `version` in consign.toml and build again",
            file.display()
        ));
    }
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let named: Vec<semver::Version> = name
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
        .filter_map(|part| semver::Version::parse(part.trim_end_matches(".bundle")).ok())
        .collect();
    if let Some(other) = named.iter().find(|v| *v != version)
        && !named.contains(version)
    {
        warnings.push(format!(
            "{} is named for version {other}, but the app folder's consign.toml says {version}: raise `version` there, or name the file for {version}",
            out.display()
        ));
    }
    warnings
}

/// Reads keyset.json with an optional pinned root.
pub fn read_trusted_keyset(
    path: &Path,
    trust_root: Option<String>,
) -> Result<license::TrustedKeyset> {
    let bytes =
        fs::read(path).with_context(|| format!("cannot read the keyset {}", path.display()))?;
    let pin = license::TrustPin {
        root_fingerprint: trust_root,
        min_seq: 0,
    };
    license::Keyset::verify(&bytes, &pin)
        .with_context(|| format!("the keyset {} is not trusted", path.display()))
}

fn open_bundle_file(path: &Path) -> Result<BufReader<fs::File>> {
    let file = fs::File::open(path)
        .with_context(|| format!("cannot read the bundle {}", path.display()))?;
    Ok(BufReader::with_capacity(256 * 1024, file))
}

fn inspect(args: InspectArgs, output: Output) -> Result<()> {
    let keyset = read_trusted_keyset(&args.trust, args.trust_root)?;
    let report = bundles::open::inspect(
        open_bundle_file(&args.bundle)?,
        &keyset,
        UnixTime::now(),
        &Limits::default(),
    )
    .with_context(|| format!("{} is refused", args.bundle.display()))?;
    match output {
        Output::Json => print_json(&serde_json::to_value(&report)?)?,
        Output::Text => print!("{}", report.text()),
    }
    Ok(())
}

fn agent_layer(args: AgentLayerArgs, output: Output) -> Result<()> {
    use std::io::Read as _;
    let mut magic = [0u8; 4];
    fs::File::open(&args.agent)
        .and_then(|mut f| f.read_exact(&mut magic))
        .with_context(|| format!("cannot read the agent {}", args.agent.display()))?;
    if magic != *b"\x7fELF" {
        bail!(
            "{} is not a Linux executable: build license-agent for Lambda (Linux, x86_64 or arm64)",
            args.agent.display()
        );
    }
    let keyset = read_trusted_keyset(&args.trust, None)?;
    let keyset_bytes =
        fs::read(&args.trust).with_context(|| format!("cannot read {}", args.trust.display()))?;
    let extensions = args.out.join("extensions");
    let consign = args.out.join("consign");
    for dir in [&extensions, &consign] {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // Lambda runs every executable in extensions/ as an extension, named by its file name.
    let agent = extensions.join("license-agent");
    fs::copy(&args.agent, &agent).with_context(|| format!("cannot write {}", agent.display()))?;
    fs::set_permissions(&agent, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", agent.display()))?;
    fs::write(consign.join("keyset.json"), &keyset_bytes)
        .with_context(|| format!("cannot write {}", consign.display()))?;
    let size = fs::metadata(&agent).map(|m| m.len()).unwrap_or(0);
    match output {
        Output::Json => print_json(&json!({
            "layer": args.out,
            "agent_bytes": size,
            "keyset_seq": keyset.keyset().seq,
            "root_fingerprint": keyset.root_fingerprint(),
        })),
        Output::Text => {
            println!(
                "Wrote the license agent layer to {}: extensions/license-agent ({}), consign/keyset.json (seq {}, root {})",
                args.out.display(),
                license::process::human_size(size),
                keyset.keyset().seq,
                keyset.root_fingerprint()
            );
            println!(
                "  in the functions: CONSIGN_TRUST=/opt/consign/keyset.json, the agent answers on 127.0.0.1:8787"
            );
            Ok(())
        }
    }
}

/// Writes objects into a staging folder; the caller renames it into place at the end.
struct StagingSink {
    root: PathBuf,
}

impl StagingSink {
    fn target(&self, entry: &ObjectEntry) -> PathBuf {
        // BundlePath components are validated: no '..', no absolute paths, no separators.
        entry
            .path
            .components()
            .fold(self.root.clone(), |p, c| p.join(c))
    }

    fn partial(&self, entry: &ObjectEntry) -> PathBuf {
        let target = self.target(entry);
        let mut name = target.file_name().unwrap_or_default().to_owned();
        name.push(".partial");
        target.with_file_name(name)
    }
}

impl ObjectSink for StagingSink {
    fn begin(&mut self, entry: &ObjectEntry) -> bundles::Result<Box<dyn std::io::Write + '_>> {
        let target = self.target(entry);
        let io = |e| bundles::Error::Io {
            context: format!("writing {}", target.display()),
            source: e,
        };
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io)?;
        }
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.partial(entry))
            .map_err(io)?;
        Ok(Box::new(BufWriter::with_capacity(256 * 1024, file)))
    }

    fn commit(&mut self, entry: &ObjectEntry) -> bundles::Result<()> {
        fs::rename(self.partial(entry), self.target(entry)).map_err(|e| bundles::Error::Io {
            context: format!("writing {}", entry.path),
            source: e,
        })
    }

    fn abort(&mut self, entry: &ObjectEntry) {
        let _ = fs::remove_file(self.partial(entry));
    }
}

fn open(args: OpenArgs, output: Output) -> Result<()> {
    if args.out.exists() {
        let empty = fs::read_dir(&args.out)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty {
            bail!(
                "{} already exists and is not empty: choose a new folder",
                args.out.display()
            );
        }
    }
    let keys = read_keys_file(&args.keys)?;
    let now = UnixTime::now();
    let source = open_bundle_file(&args.bundle)?;
    let limits = Limits::default();
    let reader = match &args.trust {
        Some(trust) => BundleReader::open(source, &read_trusted_keyset(trust, None)?, now, &limits),
        None => BundleReader::open_pinned(source, &keys.manifest, &limits),
    }
    .with_context(|| format!("{} is refused", args.bundle.display()))?;
    let (app, version) = (
        reader.manifest().app.clone(),
        reader.manifest().version.clone(),
    );
    let parent = args
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".consign-open-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot create a staging folder in {}", parent.display()))?;
    let mut sink = StagingSink {
        root: staging.path().to_owned(),
    };
    let opened = open_all(reader, &keys, &mut sink).with_context(|| {
        format!(
            "{} was not opened; nothing was written",
            args.bundle.display()
        )
    })?;
    if args.out.exists() {
        fs::remove_dir(&args.out)
            .with_context(|| format!("cannot replace the empty folder {}", args.out.display()))?;
    }
    let staged = staging.keep();
    fs::rename(&staged, &args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    match output {
        Output::Json => print_json(
            &json!({ "app": app, "version": version.to_string(), "objects": opened, "dir": args.out }),
        )?,
        Output::Text => println!(
            "Opened {app} {version}: {opened} objects verified and decrypted into {}",
            args.out.display()
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_of_the_wrong_version_is_warned_about() {
        let v = |s: &str| semver::Version::parse(s).unwrap();
        let none = version_warnings(&v("1.1.0"), None, Path::new("blog-1.1.0.bundle"));
        assert!(none.is_empty(), "{none:?}");
        let misnamed = version_warnings(&v("1.0.0"), None, Path::new("out/blog-1.1.0.bundle"));
        assert_eq!(misnamed.len(), 1, "{misnamed:?}");
        assert!(
            misnamed[0].contains("named for version 1.1.0"),
            "{misnamed:?}"
        );
        let previous = (v("1.0.0"), PathBuf::from("blog-1.0.0.bundle.keys"));
        let same = version_warnings(&v("1.0.0"), Some(&previous), Path::new("blog.bundle"));
        assert_eq!(same.len(), 1, "{same:?}");
        assert!(same[0].contains("same as the previous build"), "{same:?}");
        assert!(version_warnings(&v("1.1.0"), Some(&previous), Path::new("b.bundle")).is_empty());
    }
}
