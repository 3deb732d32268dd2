//! `vendor-portal license`: issue and manage licenses on the portal, or sign one offline from a
//! claims file.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use license::{LicenseRequest, UnixTime, VerifyOptions, sign_license};
use serde_json::json;

use super::catalog::{list, path_part, show};
use super::{Ctx, Output, field, parse_time, print_json, time_field};
use crate::keydir::{KeyDir, LICENSE_KEY};

/// `license` subcommands.
#[derive(Debug, Subcommand)]
pub enum LicenseCommand {
    /// Sign a license offline from a JSON claims file.
    ///
    /// The file needs `sub` (customer), `aud` (app) and `exp` (Unix seconds); it may also give
    /// `features`, `aws_accounts`, `regions`, `seq`, `jti`, `plan`, `limits`, `quotas`,
    /// `channels`, `versions` and the agent policy. See the license crate's docs for every field.
    Sign(SignArgs),
    /// Issue a license on the portal from a plan, with overrides, and save the file.
    Issue(IssueArgs),
    /// List licenses on the portal.
    List(ListArgs),
    /// Show a license.
    Show {
        /// The license id.
        id: String,
    },
    /// Save the current license file.
    Download {
        /// The license id.
        id: String,
        /// Where to write it.
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
    },
    /// Extend a license (a new file with a higher seq).
    Renew {
        /// The license id.
        id: String,
        /// The new expiry: RFC 3339, Unix seconds or +N d; else the plan's duration from the
        /// current expiry.
        #[arg(long, value_parser = parse_time)]
        expires: Option<u64>,
        /// Where to write the renewed file.
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
    },
    /// Suspend a license: installs learn it from the signed status and restrict until reinstated.
    Suspend(ReasonArgs),
    /// Reinstate a suspended license.
    Reinstate(ReasonArgs),
    /// Revoke a license for good.
    Revoke(ReasonArgs),
}

/// Arguments of `license issue`.
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// The customer's slug.
    #[arg(long)]
    customer: String,
    /// The app's slug.
    #[arg(long)]
    app: String,
    /// The plan's slug.
    #[arg(long)]
    plan: Option<String>,
    /// Features that are on, replacing the plan's (comma-separated).
    #[arg(long, value_delimiter = ',')]
    features: Option<Vec<String>>,
    /// Expiry: RFC 3339, Unix seconds or +N d (default: the plan's duration).
    #[arg(long, value_parser = parse_time)]
    expires: Option<u64>,
    /// Bind to this AWS account (repeat for several; default: the customer's accounts).
    #[arg(long = "aws-account")]
    aws_accounts: Vec<String>,
    /// Bind to this AWS region (repeat for several).
    #[arg(long = "region")]
    regions: Vec<String>,
    /// Release channel it may install from (repeat for several; stable by default).
    #[arg(long = "channel")]
    channels: Vec<String>,
    /// The versions it may install, a semver requirement (e.g. ">=1.0, <2").
    #[arg(long)]
    versions: Option<String>,
    /// Only releases published before this time (RFC 3339, Unix seconds or +Nd).
    #[arg(long, value_parser = super::parse_time)]
    published_before: Option<u64>,
    /// How many installations (AWS account, region and stack) may run at once; unlimited by
    /// default. License agents take a seat when they activate; `installer uninstall` frees it.
    #[arg(long)]
    max_installations: Option<u32>,
    /// Whether installers and agents must prove their AWS account (a signed
    /// sts:GetCallerIdentity): required, optional, or default (required when the license names
    /// accounts or is a trial).
    #[arg(long, value_parser = ["default", "required", "optional"])]
    account_proof: Option<String>,
    /// Where to write the license file.
    #[arg(short = 'o', long = "out")]
    out: PathBuf,
}

/// Arguments of `license list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this customer's.
    #[arg(long)]
    customer: Option<String>,
    /// Only this app's.
    #[arg(long)]
    app: Option<String>,
    /// Only active, suspended or revoked ones.
    #[arg(long)]
    state: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

/// A license id and why it changes.
#[derive(Debug, Args)]
pub struct ReasonArgs {
    /// The license id.
    id: String,
    /// Why (recorded in the audit log).
    #[arg(long)]
    reason: Option<String>,
}

/// Arguments of `license sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The key directory.
    #[arg(long)]
    keys: PathBuf,
    /// The claims file (JSON).
    #[arg(long)]
    claims: PathBuf,
    /// Where to write the armoured license.
    #[arg(short = 'o', long = "out")]
    out: PathBuf,
}

impl LicenseCommand {
    /// Runs the subcommand.
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        let output = ctx.output;
        match self {
            LicenseCommand::Sign(args) => sign(args, output),
            LicenseCommand::Issue(args) => issue(args, ctx),
            LicenseCommand::List(args) => {
                let mut query = format!("?limit={}", args.limit);
                for (name, value) in [
                    ("customer", &args.customer),
                    ("app", &args.app),
                    ("state", &args.state),
                ] {
                    if let Some(value) = value {
                        query.push_str(&format!("&{name}={}", path_part(value)));
                    }
                }
                let licenses = ctx.portal()?.get(&format!("/api/v1/licenses{query}"))?;
                list(
                    output,
                    &licenses,
                    &["id", "customer", "app", "plan", "state", "seq"],
                    &["expires_at"],
                )
            }
            LicenseCommand::Show { id } => {
                let license = ctx
                    .portal()?
                    .get(&format!("/api/v1/licenses/{}", path_part(&id)))?;
                show(output, &license, &format!("License {id}"))
            }
            LicenseCommand::Download { id, out } => {
                let text = ctx
                    .portal()?
                    .get_text(&format!("/api/v1/licenses/{}/file", path_part(&id)))?;
                write_license(&out, &text)?;
                match output {
                    Output::Json => print_json(&json!({"id": id, "file": out})),
                    Output::Text => {
                        println!("Saved license {id} to {}", out.display());
                        Ok(())
                    }
                }
            }
            LicenseCommand::Renew { id, expires, out } => {
                let license = ctx.portal()?.post(
                    &format!("/api/v1/licenses/{}/renew", path_part(&id)),
                    &json!({"expires_at": expires}),
                )?;
                if let Some(out) = &out {
                    write_license(out, &field(&license, "license"))?;
                }
                changed(output, &license, "Renewed", out.as_deref())
            }
            LicenseCommand::Suspend(args) => state_change(ctx, args, "suspend", "Suspended"),
            LicenseCommand::Reinstate(args) => state_change(ctx, args, "reinstate", "Reinstated"),
            LicenseCommand::Revoke(args) => state_change(ctx, args, "revoke", "Revoked"),
        }
    }
}

fn write_license(path: &std::path::Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn issue(args: IssueArgs, ctx: &Ctx) -> Result<()> {
    let mut body = json!({"customer": args.customer, "app": args.app, "plan": args.plan,
                          "features": args.features, "expires_at": args.expires});
    if !args.aws_accounts.is_empty() {
        body["aws_accounts"] = json!(args.aws_accounts);
    }
    if !args.channels.is_empty() {
        body["channels"] = json!(args.channels);
    }
    if let Some(versions) = &args.versions {
        body["versions"] = json!(versions);
    }
    if let Some(max) = args.max_installations {
        body["max_installations"] = json!(max);
    }
    if let Some(proof) = &args.account_proof {
        body["account_proof"] = json!(proof);
    }
    if let Some(before) = args.published_before {
        body["published_before"] = json!(before);
    }
    if !args.regions.is_empty() {
        body["regions"] = json!(args.regions);
    }
    let license = ctx.portal()?.post("/api/v1/licenses", &body)?;
    write_license(&args.out, &field(&license, "license"))?;
    match ctx.output {
        Output::Json => print_json(&json!({"file": args.out, "license": license})),
        Output::Text => {
            println!(
                "Issued license {} (seq {}) for {} on app {}, plan {}",
                field(&license, "id"),
                field(&license, "seq"),
                field(&license, "customer"),
                field(&license, "app"),
                field(&license, "plan")
            );
            println!(
                "  expires {}, signed with {}",
                time_field(&license, "expires_at"),
                field(&license, "kid")
            );
            println!("  written to {}", args.out.display());
            Ok(())
        }
    }
}

fn state_change(ctx: &Ctx, args: ReasonArgs, action: &str, done: &str) -> Result<()> {
    let license = ctx.portal()?.post(
        &format!("/api/v1/licenses/{}/{action}", path_part(&args.id)),
        &json!({"reason": args.reason}),
    )?;
    changed(ctx.output, &license, done, None)
}

fn changed(
    output: Output,
    license: &serde_json::Value,
    done: &str,
    out: Option<&std::path::Path>,
) -> Result<()> {
    match output {
        Output::Json => print_json(license),
        Output::Text => {
            println!(
                "{done} license {}: now {} at seq {}, expires {}",
                field(license, "id"),
                field(license, "state"),
                field(license, "seq"),
                time_field(license, "expires_at")
            );
            if let Some(out) = out {
                println!("  written to {}", out.display());
            }
            Ok(())
        }
    }
}

fn sign(args: SignArgs, output: Output) -> Result<()> {
    let dir = KeyDir::open(&args.keys)?;
    let keyset = dir.read_keyset()?;
    let signer = dir.read_key(LICENSE_KEY)?;
    let kid = signer.public_key().derive_kid("lic");
    let Some(entry) = keyset.license_key(&kid) else {
        bail!(
            "{LICENSE_KEY} (key {kid}) is not in keyset.json: this key directory is inconsistent"
        );
    };
    let bytes = std::fs::read(&args.claims)
        .with_context(|| format!("cannot read {}", args.claims.display()))?;
    let now = UnixTime::now();
    let claims = LicenseRequest::from_json(&bytes)
        .and_then(|request| request.into_claims(keyset.keyset().issuer.as_ref(), now))
        .with_context(|| format!("{} cannot be signed", args.claims.display()))?;
    if claims.exp > entry.not_after {
        bail!(
            "the license would expire at {} but signing key {kid} expires at {}: rotate keys (`vendor-portal keys rotate`) or shorten exp",
            claims.exp,
            entry.not_after
        );
    }
    let armored = sign_license(&claims, &kid, &signer)?;
    // Check our own output with the published keyset before anyone else relies on it.
    let options = VerifyOptions::at(claims.nbf.max(now));
    keyset
        .verify_license(&armored, &options)
        .context("the signed license does not verify against keyset.json")?;
    std::fs::write(&args.out, &armored)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    match output {
        Output::Json => print_json(&json!({ "file": args.out, "kid": kid, "claims": claims }))?,
        Output::Text => {
            println!(
                "Signed license {} (seq {}) for {} on app {}, plan {}",
                claims.jti, claims.seq, claims.sub, claims.aud, claims.plan
            );
            println!(
                "  valid {} to {}, signed with {kid}",
                claims.nbf, claims.exp
            );
            println!("  written to {}", args.out.display());
        }
    }
    Ok(())
}
