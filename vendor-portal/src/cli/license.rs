//! `vendor-portal license sign`: sign a license offline from a claims file.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use license::{LicenseRequest, UnixTime, VerifyOptions, sign_license};
use serde_json::json;

use super::{Output, print_json};
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
    pub fn run(self, output: Output) -> Result<()> {
        match self {
            LicenseCommand::Sign(args) => sign(args, output),
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
