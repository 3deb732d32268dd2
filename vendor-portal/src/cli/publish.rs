//! `vendor-portal release push|list|promote|yank|require`: publishing releases to a portal.
//!
//! `push` uploads only the objects the portal lacks (streamed, with a progress bar), stages the
//! release, and then publishes it by signing the app's TUF targets on this machine with the
//! release key; the portal never sees that key. `promote`, `yank` and `require` change a
//! published release's signed description the same way. Before building on the portal's current
//! targets, they are checked against the vendor's own release keys, so a compromised portal
//! cannot slip a target into the vendor's next signature.

use license::process::{Progress, human_size};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use bundles::release::{ReleaseTarget, target_name};
use bundles::{BundleReader, Limits};
use clap::Args;
use license::{PublicKey, SigningKey, UnixTime};
use serde_json::{Value, json};
use tough::schema::{Root, Signed, Targets};

use super::{Ctx, Output, field, print_json, print_table, time_field};
use crate::client::Portal;
use crate::keydir::{KeyDir, RELEASE_KEY, ROOT_KEY};
use crate::tuf;

/// Arguments of `release push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The bundle (its keys file is FILE.bundle.keys unless --bundle-keys says otherwise).
    bundle: PathBuf,
    /// The key directory: its release key signs the TUF targets, its root key the TUF root.
    #[arg(long)]
    keys: PathBuf,
    /// The channel to publish on (stable, beta, or your own).
    #[arg(long, default_value = "stable")]
    channel: String,
    /// The bundle's keys file.
    #[arg(long)]
    bundle_keys: Option<PathBuf>,
    /// Mark the release as required: upgrades cannot skip it.
    #[arg(long)]
    required: bool,
    /// Objects larger than this many MiB go up in parts of this size, so that an interrupted
    /// push resumes inside them (1 to 64).
    #[arg(long, default_value_t = 64, hide = true)]
    part_size_mib: u64,
}

/// Arguments of `release promote`.
#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The app's slug.
    app: String,
    /// The version.
    version: String,
    /// The channel to add it to.
    #[arg(long)]
    channel: String,
    /// Remove it from the channel instead.
    #[arg(long)]
    remove: bool,
    /// The key directory, whose release key re-signs the targets; without it the portal signs,
    /// which it can only for a vendor whose keys it holds (the demo's, a new vendor's).
    #[arg(long)]
    keys: Option<PathBuf>,
}

/// Arguments of `release yank`.
#[derive(Debug, Args)]
pub struct YankArgs {
    /// The app's slug.
    app: String,
    /// The version.
    version: String,
    /// Why (customers see it).
    #[arg(long)]
    reason: String,
    /// The key directory, whose release key re-signs the targets; without it the portal signs,
    /// which it can only for a vendor whose keys it holds (the demo's, a new vendor's).
    #[arg(long)]
    keys: Option<PathBuf>,
}

/// Arguments of `release require`.
#[derive(Debug, Args)]
pub struct RequireArgs {
    /// The app's slug.
    app: String,
    /// The version.
    version: String,
    /// Clear the mark instead.
    #[arg(long)]
    clear: bool,
    /// The key directory, whose release key re-signs the targets; without it the portal signs,
    /// which it can only for a vendor whose keys it holds (the demo's, a new vendor's).
    #[arg(long)]
    keys: Option<PathBuf>,
}

/// Arguments of `release list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The app's slug.
    app: String,
}

/// Where each sealed object starts in a `.bundle` file (see `bundles/src/container.rs`).
fn object_offsets(
    manifest_len: usize,
    kid_len: usize,
    objects: &[bundles::ObjectEntry],
) -> Vec<u64> {
    let mut at = (16 + 4 + manifest_len + 1 + kid_len + 64 + 4) as u64;
    objects
        .iter()
        .map(|o| {
            let start = at + 8;
            at = start + o.sealed_size;
            start
        })
        .collect()
}

/// `release push`.
pub fn push(args: PushArgs, ctx: &Ctx) -> Result<()> {
    let keys = KeyDir::open(&args.keys)?;
    let trusted = keys.read_keyset()?;
    let root_key = keys.read_key(ROOT_KEY)?;
    let release_key = keys.read_key(RELEASE_KEY)?;
    license::claims::Slug::new(args.channel.clone())
        .map_err(|e| anyhow::anyhow!("--channel {:?}: {e}", args.channel))?;
    let keys_path = args
        .bundle_keys
        .clone()
        .unwrap_or_else(|| super::release::keys_path(&args.bundle));
    let keys_text =
        zeroize::Zeroizing::new(std::fs::read_to_string(&keys_path).with_context(|| {
            format!("cannot read the bundle's keys file {}", keys_path.display())
        })?);
    let file = std::fs::File::open(&args.bundle)
        .with_context(|| format!("cannot open {}", args.bundle.display()))?;
    let file_len = file.metadata()?.len();
    let reader = BundleReader::open(
        std::io::BufReader::new(file),
        &trusted,
        UnixTime::now(),
        &Limits::default(),
    )
    .with_context(|| {
        format!(
            "{} does not verify against {}",
            args.bundle.display(),
            args.keys.display()
        )
    })?;
    let manifest = reader.manifest().clone();
    let manifest_bytes = reader.manifest_bytes().to_vec();
    let signature = reader.signature().clone();
    let keys_file = bundles::KeysFile::parse(keys_text.as_bytes())
        .with_context(|| format!("{} is not usable", keys_path.display()))?;
    keys_file.check_belongs_to(&manifest_bytes, manifest.app.as_str(), &manifest.version)?;
    let offsets = object_offsets(manifest_bytes.len(), signature.kid.len(), &manifest.objects);
    let end = offsets.last().zip(manifest.objects.last()).map_or(
        (16 + 4 + manifest_bytes.len() + 1 + signature.kid.len() + 64 + 4) as u64,
        |(o, e)| o + e.sealed_size,
    );
    if end != file_len {
        bail!(
            "{} is {file_len} bytes but its manifest describes {end}: the file is damaged; build it again",
            args.bundle.display()
        );
    }
    let app = manifest.app.as_str().to_owned();
    let portal = ctx.portal()?;

    // 1. Objects: only those the portal lacks.
    let mut unique: Vec<(usize, &bundles::ObjectEntry)> = Vec::new();
    for (i, object) in manifest.objects.iter().enumerate() {
        if !unique
            .iter()
            .any(|(_, o)| o.sealed_digest == object.sealed_digest)
        {
            unique.push((i, object));
        }
    }
    let answer = portal.post(
        &format!("/api/v1/apps/{app}/releases/missing"),
        &json!({"digests": unique.iter().map(|(_, o)| o.sealed_digest.to_string()).collect::<Vec<_>>()}),
    )?;
    let missing: Vec<String> = answer
        .get("missing")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let to_send: Vec<(usize, &bundles::ObjectEntry)> = unique
        .iter()
        .copied()
        .filter(|(_, o)| missing.contains(&o.sealed_digest.to_string()))
        .collect();
    anyhow::ensure!(
        (1..=64).contains(&args.part_size_mib),
        "--part-size-mib must be 1 to 64"
    );
    let part_size = args.part_size_mib << 20;
    let bytes_total: u64 = to_send.iter().map(|(_, o)| o.sealed_size).sum();
    let progress = Progress::new(
        &format!(
            "uploading {}",
            license::process::count(to_send.len() as u64, "object", "objects")
        ),
        bytes_total,
    );
    let mut bytes_sent = 0;
    for (i, object) in &to_send {
        let path = format!("/api/v1/objects/{}", object.sealed_digest);
        if object.sealed_size <= part_size {
            portal.upload(
                &path,
                &args.bundle,
                offsets[*i],
                object.sealed_size,
                progress.tick(),
            )?;
            bytes_sent += object.sealed_size;
        } else {
            bytes_sent += upload_in_parts(
                &portal,
                &path,
                &args.bundle,
                offsets[*i],
                object.sealed_size,
                part_size,
                &progress,
            )?;
        }
    }
    progress.finish();

    // 2. Stage the release.
    use base64::Engine as _;
    let staged = portal.put(
        &format!("/api/v1/apps/{app}/releases/{}", manifest.version),
        &json!({
            "manifest": String::from_utf8(manifest_bytes.clone()).context("the manifest is not UTF-8")?,
            "signature": {"kid": signature.kid, "signature": base64::engine::general_purpose::STANDARD.encode(signature.signature)},
            "keys": &*keys_text,
        }),
    )?;
    let length = staged
        .get("length")
        .and_then(Value::as_u64)
        .unwrap_or(manifest_bytes.len() as u64);

    // 3. Publish: root if needed, then targets signed here.
    let info = tuf::new_release(&manifest, &manifest_bytes, &args.channel, args.required)?;
    let published = resign(
        &portal,
        &app,
        &trusted,
        &root_key,
        &release_key,
        |targets| tuf::add_release(targets, length, &info),
    )?;
    let report = json!({
        "app": app,
        "version": manifest.version.to_string(),
        "channel": args.channel,
        "required": args.required,
        "objects_total": manifest.objects.len(),
        "objects_uploaded": to_send.len(),
        "objects_skipped": unique.len() - to_send.len(),
        "bytes_sent": bytes_sent,
        "manifest_digest": info.manifest.to_string(),
        "targets_version": published.get("targets"),
        "snapshot_version": published.get("snapshot"),
    });
    match ctx.output {
        Output::Json => print_json(&report),
        Output::Text => {
            println!(
                "published {app} {} on {}: {} of {} uploaded ({}), {} already on the portal",
                manifest.version,
                args.channel,
                to_send.len(),
                license::process::count(unique.len() as u64, "object", "objects"),
                human_size(bytes_sent),
                unique.len() - to_send.len()
            );
            Ok(())
        }
    }
}

/// Sends a large object in parts of `part_size`, skipping the parts an earlier, interrupted push
/// delivered, then has the portal assemble and check it. The bytes actually sent.
fn upload_in_parts(
    portal: &Portal,
    path: &str,
    bundle: &Path,
    offset: u64,
    size: u64,
    part_size: u64,
    progress: &Progress,
) -> Result<u64> {
    let state = portal.get(&format!("{path}/parts"))?;
    if state.get("complete").and_then(Value::as_bool) == Some(true) {
        progress.tick()(size);
        return Ok(0);
    }
    let arrived: Vec<(u64, u64)> = state
        .get("parts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| Some((p.get("part")?.as_u64()?, p.get("size")?.as_u64()?)))
        .collect();
    let count = size.div_ceil(part_size);
    let mut sent = 0;
    for n in 0..count {
        let start = n * part_size;
        let len = part_size.min(size - start);
        if arrived.contains(&(n, len)) {
            progress.tick()(len);
            continue;
        }
        portal.upload(
            &format!("{path}/parts/{n}"),
            bundle,
            offset + start,
            len,
            progress.tick(),
        )?;
        sent += len;
    }
    portal.post_slow(&format!("{path}/complete"), &json!({ "parts": count }))?;
    Ok(sent)
}

/// The release keys the app's root should name: the keyset's release keys valid now.
fn release_keys(trusted: &license::TrustedKeyset) -> Vec<PublicKey> {
    let now = UnixTime::now();
    trusted
        .keyset()
        .release_keys
        .iter()
        .filter(|k| k.check_valid_at(now, 0).is_ok())
        .map(|k| k.public_key)
        .collect()
}

/// Fetches the app's TUF state, renews the root when it no longer names the right keys or
/// expires soon, applies `change` to the current targets (checked against the vendor's release
/// keys first), signs them with the release key and publishes them. The portal's answer.
fn resign(
    portal: &Portal,
    app: &str,
    trusted: &license::TrustedKeyset,
    root_key: &SigningKey,
    release_key: &SigningKey,
    change: impl FnOnce(&mut Targets) -> Result<()>,
) -> Result<Value> {
    let state = portal.get(&format!("/api/v1/apps/{app}/tuf"))?;
    let online = crate::server::base::secrets::unhex(
        state
            .get("online_key")
            .and_then(Value::as_str)
            .unwrap_or(""),
    )
    .and_then(|b| PublicKey::from_bytes(&b).ok())
    .context("the portal's online key is not an Ed25519 key")?;
    let root_public = trusted.keyset().root;
    if root_key.public_key() != root_public {
        bail!("the root key in the key directory is not the keyset's root key");
    }
    let targets_keys = release_keys(trusted);
    if !targets_keys.contains(&release_key.public_key()) {
        bail!(
            "the release key in the key directory is not a valid release key of the keyset: run `vendor-portal keys register` after rotating"
        );
    }
    let wanted = tuf::RootKeys {
        root: vec![&root_public],
        targets: targets_keys.iter().collect(),
        online: &online,
    };
    let now = UnixTime::now().as_secs() as i64;
    let current: Option<Signed<Root>> = match state.get("root") {
        Some(Value::Null) | None => None,
        Some(v) => Some(tuf::parse(&serde_json::to_vec(v)?, "root")?),
    };
    let renew = !current.as_ref().is_some_and(|root| {
        tuf::root_matches(&root.signed, &wanted)
            && root.signed.expires.as_second() > now + tuf::ROOT_RENEW
    });
    if renew {
        let version = current.as_ref().map_or(1, |r| r.signed.version.get() + 1);
        let new = tuf::root(version, now + tuf::ROOT_LIFETIME, &wanted)?;
        let signed = tuf::sign(new, &[root_key])?;
        portal.put_raw(
            &format!("/api/v1/apps/{app}/tuf/root"),
            tuf::to_bytes(&signed)?,
        )?;
    }
    let previous: Option<Signed<Targets>> = match state.get("targets") {
        Some(Value::Null) | None => None,
        Some(v) => Some(tuf::parse(&serde_json::to_vec(v)?, "targets")?),
    };
    // Re-anchoring: the app's metadata so far was signed with portal-held keys, before the
    // vendor registered its own (its keyset's root changed).
    let reanchor = current
        .as_ref()
        .is_some_and(|root| tuf::root_fingerprints(&root.signed) != [root_public.fingerprint()]);
    if let Some(previous) = &previous {
        if let (true, Some(current)) = (reanchor, &current) {
            // Carry over what the portal-held release key published, checked against the root
            // it was published under, and say so.
            tuf::verify(&current.signed, previous).context(
                "the portal's current targets are not signed by the keys its root names: investigate the portal",
            )?;
            let names: Vec<&str> = previous.signed.targets.keys().map(|n| n.raw()).collect();
            eprintln!(
                "re-anchoring {app} in your root key {}: re-signing {} published with portal-held keys ({}); your customers re-pin the new root",
                root_public.fingerprint(),
                license::process::count(names.len() as u64, "release", "releases"),
                names.join(", ")
            );
        } else {
            // Only build on targets this vendor's own release keys signed.
            let ours = tuf::root(1, now + 60, &wanted)?;
            tuf::verify(&ours, previous).context(
                "the portal's current targets are not signed by your release keys: do not publish on top of them; investigate the portal",
            )?;
        }
    }
    let next = tuf::next_targets(previous.as_ref().map(|p| &p.signed), now, change)?;
    let signed = tuf::sign(next, &[release_key])?;
    portal.put_raw(
        &format!("/api/v1/apps/{app}/tuf/targets"),
        tuf::to_bytes(&signed)?,
    )
}

/// Changes the signed description of one published release: re-signed here with the release key
/// of `keys_dir`, or, without one, by the portal with the release key it holds for the vendor
/// (`held` describes the change for the portal's endpoint).
fn change_release(
    ctx: &Ctx,
    keys_dir: Option<&Path>,
    (app, version): (&str, &str),
    held: Value,
    change: impl FnOnce(&mut ReleaseTarget),
) -> Result<Value> {
    let version = semver::Version::parse(version)
        .map_err(|e| anyhow::anyhow!("{version:?} is not a semantic version: {e}"))?;
    let portal = ctx.portal()?;
    let Some(keys_dir) = keys_dir else {
        let answer = portal.post(
            &format!("/api/v1/apps/{app}/releases/{version}/change"),
            &held,
        )?;
        if ctx.output == Output::Text {
            eprintln!(
                "signed by the portal, which holds this vendor's release key (pass --keys DIR once you hold your own)"
            );
        }
        return Ok(answer);
    };
    let keys = KeyDir::open(keys_dir)?;
    let trusted = keys.read_keyset()?;
    let root_key = keys.read_key(ROOT_KEY)?;
    let release_key = keys.read_key(RELEASE_KEY)?;
    resign(&portal, app, &trusted, &root_key, &release_key, |targets| {
        let name = tough::TargetName::new(target_name(app, &version))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let target = targets
            .targets
            .get_mut(&name)
            .with_context(|| format!("{app} {version} is not published"))?;
        let mut info = tuf::release_of(target)?;
        change(&mut info);
        *target = tuf::target(target.length, &info)?;
        Ok(())
    })
}

fn report_change(ctx: &Ctx, answer: &Value, text: String) -> Result<()> {
    match ctx.output {
        Output::Json => print_json(answer),
        Output::Text => {
            println!("{text}");
            Ok(())
        }
    }
}

/// `release promote`.
pub fn promote(args: PromoteArgs, ctx: &Ctx) -> Result<()> {
    let channel = license::claims::Slug::new(args.channel.clone())
        .map_err(|e| anyhow::anyhow!("--channel {:?}: {e}", args.channel))?;
    let remove = args.remove;
    let held = if remove {
        json!({"remove_channel": args.channel})
    } else {
        json!({"promote": args.channel})
    };
    let at = (args.app.as_str(), args.version.as_str());
    let answer = change_release(ctx, args.keys.as_deref(), at, held, |info| {
        info.channels.retain(|c| c != &channel);
        if !remove {
            info.channels.push(channel.clone());
        }
    })?;
    let verb = if remove {
        "removed from"
    } else {
        "promoted to"
    };
    report_change(
        ctx,
        &answer,
        format!("{} {} {verb} {}", args.app, args.version, args.channel),
    )
}

/// `release yank`.
pub fn yank(args: YankArgs, ctx: &Ctx) -> Result<()> {
    if args.reason.trim().is_empty() || args.reason.len() > 500 {
        bail!("--reason must say why, in at most 500 characters");
    }
    let reason = args.reason.clone();
    let held = json!({"yank": args.reason});
    let at = (args.app.as_str(), args.version.as_str());
    let answer = change_release(ctx, args.keys.as_deref(), at, held, |info| {
        info.yanked = Some(reason);
    })?;
    report_change(
        ctx,
        &answer,
        format!("{} {} yanked: {}", args.app, args.version, args.reason),
    )
}

/// `release require`.
pub fn require(args: RequireArgs, ctx: &Ctx) -> Result<()> {
    let clear = args.clear;
    let held = json!({"required": !clear});
    let at = (args.app.as_str(), args.version.as_str());
    let answer = change_release(ctx, args.keys.as_deref(), at, held, |info| {
        info.required = !clear;
    })?;
    let what = if clear {
        "no longer required"
    } else {
        "required: upgrades cannot skip it"
    };
    report_change(
        ctx,
        &answer,
        format!("{} {} is {what}", args.app, args.version),
    )
}

/// `release list`.
pub fn list(args: ListArgs, ctx: &Ctx) -> Result<()> {
    let releases = ctx
        .portal()?
        .get(&format!("/api/v1/apps/{}/releases", args.app))?;
    if ctx.output == Output::Json {
        return print_json(&releases);
    }
    let rows: Vec<Vec<String>> = releases
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let channels = r
                .get("channels")
                .and_then(Value::as_array)
                .map(|c| {
                    c.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let mut state = field(r, "state");
            if r.get("yanked").is_some_and(|y| !y.is_null()) {
                state = format!("yanked ({})", field(r, "yanked"));
            }
            vec![
                field(r, "version"),
                state,
                if channels.is_empty() {
                    "-".into()
                } else {
                    channels
                },
                if r.get("required").and_then(Value::as_bool) == Some(true) {
                    "yes".into()
                } else {
                    "-".into()
                },
                time_field(r, "published_at"),
                human_size(r.get("total_size").and_then(Value::as_u64).unwrap_or(0)),
            ]
        })
        .collect();
    print_table(
        &[
            "version",
            "state",
            "channels",
            "required",
            "published",
            "size",
        ],
        &rows,
    );
    Ok(())
}
