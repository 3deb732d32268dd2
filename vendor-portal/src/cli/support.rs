//! `vendor-portal support`: the vendor's support key, and the support bundles customers send.
//! The key's secret half stays in a file on the vendor's machine; bundles are opened here.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::Subcommand;
use serde_json::json;

use super::catalog::{list, path_part, show};
use super::{Ctx, Output, print_json};

/// `support` subcommands.
#[derive(Debug, Subcommand)]
pub enum SupportCommand {
    /// Make a support key (offline): its secret into FILE (mode 0600), its public half printed.
    Keygen {
        /// Where to write the secret key.
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
    },
    /// Register the public half of a support key with the portal (owners only); installers
    /// seal bundles to it from then on.
    Register {
        /// The secret key file from `support keygen`.
        #[arg(long)]
        key: PathBuf,
    },
    /// List the support bundles customers sent.
    List {
        /// Only this customer's (slug).
        #[arg(long)]
        customer: Option<String>,
    },
    /// Download a bundle and open it with the support key: writes the `.tar.gz` the customer's
    /// installer made.
    Open {
        /// The bundle's id (sup_...).
        id: String,
        /// The secret key file.
        #[arg(long)]
        key: PathBuf,
        /// Where to write it (ID.tar.gz).
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
    },
}

fn read_secret(path: &Path) -> Result<bundles::wrap::RecipientSecret> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the support key {}", path.display()))?;
    let bytes = STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            anyhow!(
                "{} is not a support key (`vendor-portal support keygen` makes one)",
                path.display()
            )
        })?;
    Ok(bundles::wrap::RecipientSecret::from_bytes(bytes))
}

fn write_secret(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| {
        format!(
            "cannot create {} (an existing key is never overwritten)",
            path.display()
        )
    })?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

impl SupportCommand {
    /// Runs the subcommand.
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        match self {
            SupportCommand::Keygen { out } => {
                let secret = bundles::wrap::RecipientSecret::generate()
                    .map_err(|e| anyhow!("cannot make a key: {e}"))?;
                write_secret(&out, &STANDARD.encode(*secret.to_bytes()))?;
                let public = STANDARD.encode(secret.public());
                let answer = json!({"file": out, "public_key": public,
                    "fingerprint": crate::server::domain::support::fingerprint(&secret.public())});
                match ctx.output {
                    Output::Json => print_json(&answer),
                    Output::Text => {
                        println!(
                            "Wrote the support key {} ({}); keep it safe: bundles open only with it",
                            out.display(),
                            answer["fingerprint"].as_str().unwrap_or_default()
                        );
                        println!(
                            "Register it: vendor-portal support register --key {}",
                            out.display()
                        );
                        Ok(())
                    }
                }
            }
            SupportCommand::Register { key } => {
                let secret = read_secret(&key)?;
                let answer = ctx.portal()?.put(
                    "/api/v1/support/key",
                    &json!({"public_key": STANDARD.encode(secret.public()), "fingerprint": ""}),
                )?;
                show(
                    ctx.output,
                    &answer,
                    "Registered the support key; installers pin its fingerprint at their first upload",
                )
            }
            SupportCommand::List { customer } => {
                let path = match customer {
                    Some(c) => format!("/api/v1/support/bundles?customer={}", path_part(&c)),
                    None => "/api/v1/support/bundles".into(),
                };
                let bundles = ctx.portal()?.get(&path)?;
                list(
                    ctx.output,
                    &bundles,
                    &["id", "customer", "aws_account", "region", "stack", "size"],
                    &["created_at"],
                )
            }
            SupportCommand::Open { id, key, out } => {
                let secret = read_secret(&key)?;
                let mut sealed = Vec::new();
                ctx.portal()?.download(
                    &format!("/api/v1/support/bundles/{}", path_part(&id)),
                    true,
                    &mut sealed,
                    &|_| {},
                )?;
                let opened = bundles::wrap::unwrap(&sealed, &secret).map_err(|e| {
                    anyhow!("bundle {id} does not open with {}: {e} (was it sealed to another support key?)", key.display())
                })?;
                if !opened.starts_with(&[0x1f, 0x8b]) {
                    bail!(
                        "bundle {id} opened but is not a .tar.gz: it was not made by the installer"
                    );
                }
                let out = out.unwrap_or_else(|| PathBuf::from(format!("{id}.tar.gz")));
                std::fs::write(&out, &*opened)
                    .with_context(|| format!("cannot write {}", out.display()))?;
                match ctx.output {
                    Output::Json => print_json(&json!({"file": out, "bytes": opened.len()})),
                    Output::Text => {
                        println!(
                            "Opened bundle {id}: {} ({} bytes; tar -xzf to read, manifest.json first)",
                            out.display(),
                            opened.len()
                        );
                        Ok(())
                    }
                }
            }
        }
    }
}
