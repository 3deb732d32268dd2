//! Air-gapped usage return: `license-agent usage export` writes the sealed records not yet
//! acknowledged into a plain-JSON file the customer can read before it leaves (signed by the
//! installation key, each record signed and hash-chained as in a check-in); the vendor imports
//! it (`vendor-portal usage import`) and hands back an acknowledgement, which
//! `license-agent usage ack` checks against the agent's own chain before forgetting the
//! records it covers. Both take the state directory's lock: the agent must not be running.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use license::UnixTime;
use license::checkin::{Placement, USAGE_ACK, UsageAck, UsageExport, agent_key_id};
use license::claims::LicenseId;

use crate::home::{Home, write_atomic};
use crate::meter::Meter;
use crate::{Output, read_text};

/// `usage` subcommands.
#[derive(Debug, Subcommand)]
pub enum UsageCommand {
    /// Write the usage not yet acknowledged to a file to carry to the vendor (air-gapped
    /// installations). Stop the agent first.
    Export(ExportArgs),
    /// Take the vendor's acknowledgement of an export: forget the records it counted.
    Ack {
        /// The acknowledgement file (`vendor-portal usage import` wrote it).
        file: PathBuf,
        /// The agent's state directory.
        #[arg(long, default_value = "license-agent-state")]
        state_dir: PathBuf,
    },
}

/// Arguments of `usage export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Where to write the export.
    #[arg(short = 'o', long = "out")]
    out: PathBuf,
    /// The agent's state directory.
    #[arg(long, default_value = "license-agent-state")]
    state_dir: PathBuf,
    /// The license the agent runs (default: the newest one in the state directory).
    #[arg(long)]
    license: Option<PathBuf>,
    /// The AWS account the installation runs in.
    #[arg(long, env = "CONSIGN_AWS_ACCOUNT")]
    aws_account: String,
    /// Its region.
    #[arg(long, env = "AWS_REGION")]
    region: String,
    /// Its CloudFormation stack.
    #[arg(long, env = "CONSIGN_STACK")]
    stack: String,
    /// The app version installed.
    #[arg(long, env = "CONSIGN_APP_VERSION")]
    app_version: String,
}

impl UsageCommand {
    /// Runs the subcommand.
    pub fn run(self, output: Output) -> Result<()> {
        match self {
            UsageCommand::Export(args) => export(&args, output),
            UsageCommand::Ack { file, state_dir } => ack(&file, &state_dir, output),
        }
    }
}

fn license_id(armored: &str) -> Result<LicenseId> {
    let decoded = license::decode_unverified(armored)?;
    decoded.claims["jti"]
        .as_str()
        .and_then(|jti| jti.parse().ok())
        .context("the license names no license id")
}

fn export(args: &ExportArgs, output: Output) -> Result<()> {
    let home = Home::open(&args.state_dir)?;
    let _lock = home.lock()?;
    let armored = match &args.license {
        Some(path) => read_text(path, "license")?,
        None => home.license().with_context(|| {
            format!(
                "{} holds no license: pass --license FILE",
                args.state_dir.display()
            )
        })?,
    };
    let jti = license_id(&armored)?;
    let key = home.installation_key()?;
    let agent = agent_key_id(&key.public_key());
    let meter = Meter::open(home.dir())?;
    // Whatever the journal holds that is not sealed yet goes into records first.
    meter.seal(&agent, &jti, &key)?;
    let records = meter.pending(usize::MAX);
    drop(meter);
    let placement = Placement {
        aws_account: args.aws_account.clone(),
        region: args.region.clone(),
        stack: args.stack.clone(),
        version: args.app_version.clone(),
    };
    let export = UsageExport::sign(armored, placement, records, &key, UnixTime::now())?;
    write_atomic(&args.out, &serde_json::to_vec_pretty(&export)?)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &export.records {
        let total = totals.entry(r.body.dimension.as_str()).or_default();
        *total = total.saturating_add(r.body.quantity);
    }
    let range = match (export.records.first(), export.records.last()) {
        (Some(a), Some(b)) => format!("records {} to {}", a.body.n, b.body.n),
        _ => "no records".into(),
    };
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({"file": args.out, "agent": agent, "license": jti.as_str(),
                "records": export.records.len(), "totals": totals})
        ),
        Output::Text => {
            println!(
                "Wrote {} ({range} of agent {agent}, license {})",
                args.out.display(),
                jti.as_str()
            );
            for (dimension, total) in &totals {
                println!("  {dimension}: {total}");
            }
            println!(
                "It is plain JSON: read it before it leaves. The vendor imports it and gives you an acknowledgement for `license-agent usage ack FILE`; until then the records stay here."
            );
        }
    }
    Ok(())
}

fn ack(file: &Path, state_dir: &Path, output: Output) -> Result<()> {
    let text = read_text(file, "acknowledgement")?;
    let ack: UsageAck = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a usage acknowledgement (JSON from `vendor-portal usage import`)",
            file.display()
        )
    })?;
    if ack.format != USAGE_ACK {
        bail!(
            "{} is a {:?}, not a usage acknowledgement",
            file.display(),
            ack.format
        );
    }
    let home = Home::open(state_dir)?;
    let _lock = home.lock()?;
    let key = home.installation_key()?;
    let agent = agent_key_id(&key.public_key());
    if ack.agent != agent {
        bail!(
            "{} acknowledges agent {}, but the agent of {} is {agent}: it is another installation's",
            file.display(),
            ack.agent,
            state_dir.display()
        );
    }
    let meter = Meter::open(home.dir())?;
    let pending = meter.pending(usize::MAX);
    if let Some(record) = pending.iter().find(|r| r.body.n == ack.records_through)
        && record.hash != ack.chain_hash
    {
        bail!(
            "{} counts record {} with another hash than this agent's: it acknowledges other records; nothing was forgotten",
            file.display(),
            ack.records_through
        );
    }
    if let Some(last) = pending.last()
        && ack.records_through > last.body.n
    {
        bail!(
            "{} counts records through {}, past this agent's last record {}: it is not this agent's acknowledgement; nothing was forgotten",
            file.display(),
            ack.records_through,
            last.body.n
        );
    }
    let forgotten = meter.acknowledged(ack.records_through)?.len();
    let left = meter.pending(usize::MAX).len();
    drop(meter);
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({"forgotten": forgotten, "pending": left, "records_through": ack.records_through})
        ),
        Output::Text => println!(
            "The vendor counted records through {}: forgot {forgotten}, {left} still pending",
            ack.records_through
        ),
    }
    Ok(())
}
