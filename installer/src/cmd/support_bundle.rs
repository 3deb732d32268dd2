//! `installer support-bundle`: collect what the vendor needs to help, redacted, into a file the
//! admin reads first; with `--upload`, seal it to the vendor's support key and send it.

use std::path::PathBuf;

use anyhow::{Context as _, Result, anyhow, bail};
use base64::Engine as _;
use installer::aws::{Aws, AwsOptions};
use installer::redact::Redactor;
use serde_json::json;

use super::{Output, print_json};

/// What `support-bundle` was asked.
pub struct Ask {
    /// The stack.
    pub stack: String,
    /// Where to write it.
    pub out: Option<PathBuf>,
    /// How far back events and logs go, in seconds.
    pub since: u64,
    /// The customer's own redaction patterns.
    pub redact: Option<PathBuf>,
    /// Send it, sealed, to the vendor.
    pub upload: bool,
}

/// Parses `30m`, `1h`, `2d` or plain seconds.
pub fn parse_since(text: &str) -> Result<u64, String> {
    let (number, unit) = text.split_at(text.trim_end_matches(['s', 'm', 'h', 'd']).len());
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30m, 1h or 2d"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?} is not a duration like 30m, 1h or 2d")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// Runs `support-bundle`.
pub async fn run(ask: Ask, options: &AwsOptions, output: Output) -> Result<()> {
    let redactor = Redactor::new(ask.redact.as_deref())?;
    let aws = Aws::connect(options).await?;
    let bundle = installer::support::collect(&aws, &ask.stack, ask.since, &redactor).await?;
    let out = ask
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("support-{}.tar.gz", ask.stack)));
    installer::home::write_private(&out, &bundle.bytes)
        .with_context(|| format!("cannot write {}", out.display()))?;
    let uploaded = if ask.upload {
        Some(upload(&aws, &ask.stack, &bundle.bytes).await?)
    } else {
        None
    };
    let m = &bundle.manifest;
    match output {
        Output::Json => print_json(
            &json!({"file": out, "bytes": bundle.bytes.len(), "manifest": m,
            "uploaded": uploaded}),
        ),
        Output::Text => {
            println!(
                "Support bundle of {} ({} {}): {} ({} bytes)",
                ask.stack,
                m.account,
                m.region,
                out.display(),
                bundle.bytes.len()
            );
            for f in &m.files {
                println!("  {:<40} {:>9} bytes", f.path, f.bytes);
            }
            if m.redactions.counts.is_empty() {
                println!("Redacted: nothing matched");
            } else {
                let counts: Vec<String> = m
                    .redactions
                    .counts
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect();
                println!("Redacted: {} (where: manifest.json)", counts.join(", "));
            }
            for p in &m.problems {
                println!("Not collected: {p}");
            }
            match uploaded {
                Some((id, fingerprint)) => println!(
                    "Sent sealed to the vendor's support key {fingerprint}: bundle {id}. The portal stores it and cannot read it."
                ),
                None => println!(
                    "Nothing was sent. Read it first (tar -xzf {}), then run again with --upload, or send the file by other means.",
                    out.display()
                ),
            }
            Ok(())
        }
    }
}

/// The support key's fingerprint: `sha256:` and the first 16 hex digits of its SHA-256.
fn fingerprint(key: &[u8; 32]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, key);
    let hex: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// Pins the vendor's support key on first use; a different key later is refused.
fn pin(vendor: &str, key: &[u8; 32]) -> Result<String> {
    let print = fingerprint(key);
    let path = installer::home::dir()?.join("support-keys").join(vendor);
    match std::fs::read_to_string(&path) {
        Ok(pinned) if pinned.trim() == print => Ok(print),
        Ok(pinned) => bail!(
            "the portal now gives {print} as {vendor}'s support key, not {} pinned at the first upload: nothing was sent. If the vendor rotated it, check the new fingerprint with them and delete {}",
            pinned.trim(),
            path.display()
        ),
        Err(_) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            installer::home::write_private(&path, print.as_bytes())?;
            Ok(print)
        }
    }
}

async fn upload(aws: &Aws, stack: &str, bytes: &[u8]) -> Result<(String, String)> {
    let login = installer::home::Login::read()?;
    let portal = installer::portal::Portal::new(&login.portal)?;
    let key = portal.support_key(&login.vendor).await?;
    let print = pin(&login.vendor, &key)?;
    let sealed =
        bundles::wrap::wrap(bytes, &key).map_err(|e| anyhow!("cannot seal the bundle: {e}"))?;
    let id = portal
        .upload_support(&json!({
            "license": login.license,
            "stack": stack,
            "aws_account": aws.account,
            "region": aws.region,
            "sealed": base64::engine::general_purpose::STANDARD.encode(&sealed),
        }))
        .await?;
    Ok((id, print))
}
