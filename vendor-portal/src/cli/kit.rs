//! `vendor-portal kit export`: one file for an air-gapped customer.
//!
//! A kit is a tar file:
//!
//! ```text
//! consign-kit.json                 what it holds: vendor, app, version, license id, target name
//! license.lic                      the customer's license
//! keyset.json                      the vendor's keyset, to verify the license offline
//! keys.wrapped                     the release's data keys wrapped to the customer's install key
//! tuf/metadata/N.root.json         every root version (clients walk them one by one)
//! tuf/metadata/timestamp.json      the newest timestamp, snapshot and targets
//! tuf/metadata/N.snapshot.json
//! tuf/metadata/N.targets.json
//! tuf/targets/<sha256>.<target>    the release's signed manifest, as TUF serves it
//! <app>-<version>.bundle           the bundle (signed manifest and sealed objects)
//! ```
//!
//! The installer verifies the TUF metadata offline (a kit's timestamp expires a day after export:
//! install within a day, or export again), the manifest against the signed target, each object
//! against the manifest, and unwraps the keys with its static key (`installer keygen`).

use std::fs;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use tough::schema::{Signed, Snapshot, Timestamp};

use super::{Ctx, Output, print_json};
use crate::tuf;
use license::process::Progress;

/// The kit's index file.
pub const INDEX: &str = "consign-kit.json";

/// `kit` subcommands.
#[derive(Debug, Subcommand)]
pub enum KitCommand {
    /// Export one release for an air-gapped customer.
    #[command(disable_version_flag = true)]
    Export(ExportArgs),
}

/// Arguments of `kit export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The customer's license file.
    #[arg(long)]
    license: PathBuf,
    /// The version to export.
    #[arg(long)]
    version: String,
    /// The customer's install key: the public key `installer keygen` printed (base64), or the
    /// path of its install.pub file.
    #[arg(long)]
    recipient: String,
    /// Where to write the kit.
    #[arg(short = 'o', long = "out")]
    out: PathBuf,
}

impl KitCommand {
    /// Runs the subcommand.
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        match self {
            KitCommand::Export(args) => export(args, ctx),
        }
    }
}

fn append(tar: &mut tar::Builder<impl std::io::Write>, name: &str, bytes: &[u8]) -> Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o600);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, name, bytes)
        .with_context(|| format!("cannot add {name} to the kit"))
}

fn recipient_key(text: &str) -> Result<String> {
    let candidate = if Path::new(text).is_file() {
        fs::read_to_string(text).with_context(|| format!("cannot read {text}"))?
    } else {
        text.to_owned()
    };
    let trimmed = candidate.trim().to_owned();
    let ok = STANDARD
        .decode(&trimmed)
        .ok()
        .or_else(|| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&trimmed)
                .ok()
        })
        .is_some_and(|b| b.len() == 32);
    if !ok {
        bail!(
            "--recipient must be the install public key `installer keygen` printed (32 bytes, base64) or its .pub file"
        );
    }
    Ok(trimmed)
}

fn export(args: ExportArgs, ctx: &Ctx) -> Result<()> {
    let license_text = fs::read_to_string(&args.license)
        .with_context(|| format!("cannot read {}", args.license.display()))?;
    let unverified = license::verify::decode_unverified(&license_text)
        .with_context(|| format!("{} is not a license", args.license.display()))?;
    let claim = |name: &str| -> Result<String> {
        unverified
            .claims
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("the license has no {name} claim"))
    };
    let (vendor, app, license_id) = (claim("iss")?, claim("aud")?, claim("jti")?);
    let recipient = recipient_key(&args.recipient)?;
    let portal = ctx.portal()?;

    // The keys first: they carry every entitlement check.
    let grant = portal.post(
        &format!("/api/v1/licenses/{license_id}/kit-keys"),
        &json!({"version": args.version, "recipient": recipient}),
    )?;
    let wrapped = STANDARD
        .decode(
            grant
                .get("wrapped_keys")
                .and_then(Value::as_str)
                .unwrap_or(""),
        )
        .context("the portal's wrapped keys are not base64")?;
    let release = portal.get(&format!("/api/v1/apps/{app}/releases/{}", args.version))?;

    // TUF metadata: every root, then the newest timestamp, snapshot and targets.
    let base = format!("/tuf/{vendor}/{app}");
    let mut metadata: Vec<(String, String)> = Vec::new();
    for n in 1.. {
        match portal.get_public(&format!("{base}/{n}.root.json")) {
            Ok(text) => metadata.push((format!("{n}.root.json"), text)),
            Err(_) if n > 1 => break,
            Err(e) => {
                return Err(
                    e.context("the app has no TUF root on the portal: publish a release first")
                );
            }
        }
    }
    let timestamp_text = portal.get_public(&format!("{base}/timestamp.json"))?;
    let timestamp: Signed<Timestamp> = tuf::parse(timestamp_text.as_bytes(), "timestamp")?;
    let snapshot_version = timestamp
        .signed
        .meta
        .get("snapshot.json")
        .map(|m| m.version.get())
        .context("the timestamp names no snapshot")?;
    let snapshot_text = portal.get_public(&format!("{base}/{snapshot_version}.snapshot.json"))?;
    let snapshot: Signed<Snapshot> = tuf::parse(snapshot_text.as_bytes(), "snapshot")?;
    let targets_version = snapshot
        .signed
        .meta
        .get("targets.json")
        .map(|m| m.version.get())
        .context("the snapshot names no targets")?;
    let targets_text = portal.get_public(&format!("{base}/{targets_version}.targets.json"))?;
    metadata.push(("timestamp.json".into(), timestamp_text));
    metadata.push((format!("{snapshot_version}.snapshot.json"), snapshot_text));
    metadata.push((format!("{targets_version}.targets.json"), targets_text));
    let version = semver::Version::parse(&args.version)?;
    let target = bundles::release::target_name(&app, &version);
    let digest = release
        .get("manifest_digest")
        .and_then(Value::as_str)
        .and_then(|d| d.strip_prefix("sha256:"))
        .context("the portal's release has no manifest digest")?
        .to_owned();
    let manifest = portal.get_public(&format!("{base}/targets/{digest}.{target}"))?;
    let keyset = portal.get_public(&format!("/api/v1/vendors/{vendor}/keyset"))?;

    // The bundle, reassembled from the manifest and the sealed objects.
    let parsed: bundles::BundleManifest =
        serde_json::from_str(&manifest).context("the portal's manifest is not valid")?;
    let sig = release
        .get("signature")
        .context("the portal's release has no signature")?;
    let kid = sig
        .get("kid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let signature: [u8; 64] = STANDARD
        .decode(sig.get("signature").and_then(Value::as_str).unwrap_or(""))
        .ok()
        .and_then(|b| b.try_into().ok())
        .context("the portal's manifest signature is not 64 bytes")?;
    let parent = args
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut bundle_file = tempfile::NamedTempFile::new_in(parent)
        .with_context(|| format!("cannot write in {}", parent.display()))?;
    {
        let mut writer = bundles::BundleWriter::new(
            BufWriter::new(bundle_file.as_file_mut()),
            manifest.as_bytes(),
            &bundles::manifest::ManifestSignature { kid, signature },
            &parsed.objects,
        )?;
        let total: u64 = parsed.objects.iter().map(|o| o.sealed_size).sum();
        let progress = Progress::new("downloading objects", total);
        let tick = progress.tick();
        for object in &parsed.objects {
            let mut failed = None;
            let written = writer.write_object(|out| {
                portal
                    .download(
                        &format!("/api/v1/vendors/{vendor}/objects/{}", object.sealed_digest),
                        true,
                        out,
                        &tick,
                    )
                    .map_err(|e| {
                        let text = format!("{e:#}");
                        failed = Some(e);
                        bundles::Error::Malformed(text)
                    })
            });
            if let Some(e) = failed {
                return Err(e.context(format!("cannot download object {}", object.path)));
            }
            written?;
        }
        progress.finish();
        writer.finish()?.flush()?;
    }

    // The kit, written beside its final name and renamed into place.
    let mut kit_file = tempfile::NamedTempFile::new_in(parent)?;
    {
        let mut tar = tar::Builder::new(BufWriter::new(kit_file.as_file_mut()));
        let index = json!({
            "format": 1,
            "vendor": vendor,
            "app": app,
            "version": args.version,
            "license": license_id,
            "target": target,
            "bundle": format!("{app}-{}.bundle", args.version),
            "exported_at": license::UnixTime::now().as_secs(),
        });
        append(
            &mut tar,
            INDEX,
            serde_json::to_string_pretty(&index)?.as_bytes(),
        )?;
        append(&mut tar, "license.lic", license_text.as_bytes())?;
        append(&mut tar, "keyset.json", keyset.as_bytes())?;
        append(&mut tar, "keys.wrapped", &wrapped)?;
        for (name, text) in &metadata {
            append(&mut tar, &format!("tuf/metadata/{name}"), text.as_bytes())?;
        }
        append(
            &mut tar,
            &format!("tuf/targets/{digest}.{target}"),
            manifest.as_bytes(),
        )?;
        let mut header = tar::Header::new_ustar();
        header.set_size(bundle_file.as_file().metadata()?.len());
        header.set_mode(0o600);
        header.set_mtime(0);
        header.set_cksum();
        let reader = fs::File::open(bundle_file.path())?;
        tar.append_data(
            &mut header,
            format!("{app}-{}.bundle", args.version),
            reader,
        )
        .context("cannot add the bundle to the kit")?;
        tar.into_inner()?.flush()?;
    }
    bundle_file.close()?;
    kit_file
        .persist(&args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    let size = fs::metadata(&args.out)?.len();
    let report = json!({"kit": args.out, "app": app, "version": args.version, "license": license_id,
        "grant": grant.get("grant"), "size": size});
    match ctx.output {
        Output::Json => print_json(&report),
        Output::Text => {
            println!(
                "wrote {} ({size} bytes): {app} {} for license {license_id}, keys wrapped to the customer's install key",
                args.out.display(),
                args.version
            );
            Ok(())
        }
    }
}
