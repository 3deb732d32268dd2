//! `vendor-portal keys`: create the vendor's keys, show the root fingerprint, rotate the
//! license-signing key, and register the keyset and license-signing key with a portal.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use license::{KEYSET_TYPE, KeyEntry, Keyset, SigningKey, UnixTime};
use serde_json::json;

use super::{Ctx, Output, print_json, print_table};
use crate::keydir::{KeyDir, LICENSE_KEY, RELEASE_KEY, RETIRED, ROOT_KEY};

/// Default validity of license-signing and release keys: five years.
const DEFAULT_VALIDITY_DAYS: u64 = 5 * 365;

/// `keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Write a root key, a license-signing key, a release key and the signed public keyset.
    Init(InitArgs),
    /// Print the root key's fingerprint (sha256:<hex>) for customers to pin.
    Fingerprint(FingerprintArgs),
    /// Add a new license-signing key (or, with --release, release key) and publish a new keyset;
    /// the old key stays valid until it expires (or until --retire-after-days), so issued
    /// licenses and published bundles keep verifying.
    /// Without --keys: rotate the portal-held license-signing key of a vendor that has not
    /// registered its own keys.
    Rotate(RotateArgs),
    /// Give the portal the public keyset and the license-signing key from a key directory (the
    /// root and release keys stay here). Run it again after `keys rotate --keys DIR`.
    Register(RegisterArgs),
    /// Show the keys the portal knows for the vendor.
    Show,
}

/// Arguments of `keys register`.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// The key directory from `keys init`.
    #[arg(long)]
    keys: PathBuf,
    /// Upload only the keyset (it must list a license-signing key the portal already holds).
    #[arg(long)]
    keyset_only: bool,
}

/// Arguments of `keys init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory to create the keys in (must not hold keys yet).
    #[arg(long)]
    out: PathBuf,
    /// The vendor's slug; licenses verified with this keyset must name it as issuer.
    #[arg(long)]
    issuer: Option<license::claims::Slug>,
    /// Days the license-signing and release keys stay valid.
    #[arg(long, default_value_t = DEFAULT_VALIDITY_DAYS)]
    validity_days: u64,
}

/// Arguments of `keys fingerprint`.
#[derive(Debug, Args)]
pub struct FingerprintArgs {
    /// The key directory.
    #[arg(long)]
    keys: PathBuf,
}

/// Arguments of `keys rotate`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The key directory (its root.key must be present: rotation is signed by the root);
    /// without it, the portal rotates its own held keys.
    #[arg(long)]
    keys: Option<PathBuf>,
    /// Days the new license-signing key stays valid.
    #[arg(long, default_value_t = DEFAULT_VALIDITY_DAYS)]
    validity_days: u64,
    /// Stop accepting the old key this many days from now instead of at its own expiry
    /// (0 removes it from the keyset at once: licenses or bundles it signed stop verifying).
    #[arg(long)]
    retire_after_days: Option<u64>,
    /// Rotate the release key (which signs bundles) instead of the license-signing key.
    #[arg(long)]
    release: bool,
}

impl KeysCommand {
    /// Runs the subcommand.
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        let output = ctx.output;
        match self {
            KeysCommand::Init(args) => init(args, output),
            KeysCommand::Fingerprint(args) => fingerprint(args, output),
            KeysCommand::Rotate(args) if args.keys.is_none() => {
                let info = ctx.portal()?.post("/api/v1/keys/rotate", &json!({}))?;
                print_keys(output, &info, "Rotated the portal-held license-signing key")
            }
            KeysCommand::Rotate(args) => rotate(args, output),
            KeysCommand::Register(args) => register(args, ctx),
            KeysCommand::Show => {
                let info = ctx.portal()?.get("/api/v1/keys")?;
                print_keys(output, &info, "Keys on the portal")
            }
        }
    }
}

fn new_entry(key: &SigningKey, prefix: &str, now: UnixTime, days: u64) -> KeyEntry {
    KeyEntry {
        kid: key.public_key().derive_kid(prefix),
        public_key: key.public_key(),
        not_before: now,
        not_after: now.plus(days.saturating_mul(86_400)),
    }
}

fn init(args: InitArgs, output: Output) -> Result<()> {
    anyhow::ensure!(args.validity_days > 0, "--validity-days must be 1 or more");
    let dir = KeyDir::create(&args.out)?;
    let now = UnixTime::now();
    let root = SigningKey::generate()?;
    let signer = SigningKey::generate()?;
    let release = SigningKey::generate()?;
    let keyset = Keyset {
        kind: KEYSET_TYPE.into(),
        issuer: args.issuer,
        seq: 1,
        issued_at: now,
        root: root.public_key(),
        license_keys: vec![new_entry(&signer, "lic", now, args.validity_days)],
        release_keys: vec![new_entry(&release, "rel", now, args.validity_days)],
    };
    let text = keyset.sign(&root)?;
    dir.write_key(ROOT_KEY, &root)?;
    dir.write_key(LICENSE_KEY, &signer)?;
    dir.write_key(RELEASE_KEY, &release)?;
    let keyset_path = dir.write_keyset(&text)?;
    let fingerprint = root.public_key().fingerprint();
    match output {
        Output::Json => print_json(&json!({
            "dir": args.out,
            "root_fingerprint": fingerprint,
            "keyset": keyset_path,
            "keyset_seq": 1,
            "license_key": keyset.license_keys[0].kid,
            "release_key": keyset.release_keys[0].kid,
        }))?,
        Output::Text => {
            println!("Created keys in {}", args.out.display());
            println!("  {ROOT_KEY:<22} root key: signs keysets only. Move it offline now.");
            println!(
                "  {LICENSE_KEY:<22} license-signing key {}",
                keyset.license_keys[0].kid
            );
            println!(
                "  {RELEASE_KEY:<22} release key {}",
                keyset.release_keys[0].kid
            );
            println!(
                "  {:<22} public keyset (seq 1): give it to customers",
                "keyset.json"
            );
            println!("Root fingerprint: {fingerprint}");
            println!(
                "Customers pin this fingerprint; publish it where they can check it out of band."
            );
        }
    }
    Ok(())
}

fn fingerprint(args: FingerprintArgs, output: Output) -> Result<()> {
    let keyset = KeyDir::open(&args.keys)?.read_keyset()?;
    let fingerprint = keyset.root_fingerprint();
    match output {
        Output::Json => print_json(
            &json!({ "root_fingerprint": fingerprint, "keyset_seq": keyset.keyset().seq }),
        )?,
        Output::Text => println!("{fingerprint}"),
    }
    Ok(())
}

fn register(args: RegisterArgs, ctx: &Ctx) -> Result<()> {
    let dir = KeyDir::open(&args.keys)?;
    dir.read_keyset()?;
    let keyset = std::fs::read_to_string(dir.path(crate::keydir::KEYSET))
        .with_context(|| format!("cannot read the keyset in {}", args.keys.display()))?;
    let key = if args.keyset_only {
        None
    } else {
        Some(dir.read_key(LICENSE_KEY)?.to_pem())
    };
    let info = ctx.portal()?.post(
        "/api/v1/keys/register",
        &json!({"keyset": keyset, "license_signing_key": key.as_ref().map(|k| k.as_str())}),
    )?;
    print_keys(
        ctx.output,
        &info,
        "Registered the keyset with the portal; root and release keys stay offline",
    )
}

fn print_keys(output: Output, info: &serde_json::Value, heading: &str) -> Result<()> {
    match output {
        Output::Json => print_json(info),
        Output::Text => {
            println!("{heading}");
            println!("  custody:          {}", super::field(info, "custody"));
            println!(
                "  root fingerprint: {}",
                super::field(info, "root_fingerprint")
            );
            println!("  keyset seq:       {}", super::field(info, "keyset_seq"));
            let rows: Vec<Vec<String>> = info["keys"]
                .as_array()
                .map(|keys| {
                    keys.iter()
                        .map(|k| {
                            vec![
                                super::field(k, "kid"),
                                super::field(k, "role"),
                                super::field(k, "held_by_portal"),
                                super::time_field(k, "not_before"),
                                super::time_field(k, "not_after"),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            print_table(
                &["kid", "role", "held by portal", "not before", "not after"],
                &rows,
            );
            Ok(())
        }
    }
}

fn rotate(args: RotateArgs, output: Output) -> Result<()> {
    anyhow::ensure!(args.validity_days > 0, "--validity-days must be 1 or more");
    let keys_dir = args.keys.clone().unwrap_or_default();
    let dir = KeyDir::open(&keys_dir)?;
    let root = dir.read_key(ROOT_KEY).context(
        "rotation needs the offline root key: bring root.key back into the key directory",
    )?;
    let current = dir.read_keyset()?;
    let mut keyset = current.keyset().clone();
    anyhow::ensure!(
        root.public_key() == keyset.root,
        "root.key is not the root of keyset.json: this key directory is inconsistent"
    );
    let now = UnixTime::now();
    let (file, prefix, role, what) = if args.release {
        (RELEASE_KEY, "rel", "release", "bundles")
    } else {
        (LICENSE_KEY, "lic", "license", "licenses")
    };
    let keys = if args.release {
        &mut keyset.release_keys
    } else {
        &mut keyset.license_keys
    };
    let old = dir.read_key(file)?;
    let old_kid = old.public_key().derive_kid(prefix);
    match args.retire_after_days {
        // At once means out of the keyset: no clock leeway keeps it alive for another minute.
        Some(0) => keys.retain(|k| k.kid != old_kid),
        Some(days) => {
            let retire_at = now.plus(days.saturating_mul(86_400));
            for entry in keys.iter_mut().filter(|k| k.kid == old_kid) {
                entry.not_after = entry.not_after.min(retire_at);
            }
        }
        None => {}
    }
    // Keys past their expiry verify nothing; drop them so the keyset does not grow forever.
    keys.retain(|k| k.not_after > now);
    let signer = SigningKey::generate()?;
    let entry = new_entry(&signer, prefix, now, args.validity_days);
    let new_kid = entry.kid.clone();
    keys.push(entry);
    let listed: Vec<KeyEntry> = keys.clone();
    keyset.seq += 1;
    keyset.issued_at = now;
    let text = keyset.sign(&root)?;
    // Order matters for crash safety: keep the old key, stage the new one, publish the keyset
    // that lists both, and only then make the new key current. A crash at any point leaves a
    // current key that the published keyset lists.
    let retired = dir.write_key(&format!("{RETIRED}/{old_kid}.key"), &old)?;
    let staged = format!(".{file}.new");
    dir.write_key(&staged, &signer)?;
    dir.write_keyset(&text)?;
    std::fs::rename(dir.path(&staged), dir.path(file))
        .with_context(|| format!("cannot install the new {role} key"))?;
    match output {
        Output::Json => print_json(&json!({
            "keyset_seq": keyset.seq,
            "role": role,
            format!("{role}_key"): new_kid,
            "retired_key": old_kid,
            format!("{role}_keys"): listed.iter().map(|k| json!({
                "kid": k.kid, "not_before": k.not_before, "not_after": k.not_after,
            })).collect::<Vec<_>>(),
        }))?,
        Output::Text => {
            println!(
                "New {role} key {new_kid}; keyset is now seq {}.",
                keyset.seq
            );
            for k in &listed {
                println!("  {}  valid {} to {}", k.kid, k.not_before, k.not_after);
            }
            println!("The old key {old_kid} is kept in {}.", retired.display());
            println!(
                "Publish the new keyset.json to customers; {what} signed by {old_kid} verify until it expires."
            );
        }
    }
    Ok(())
}
