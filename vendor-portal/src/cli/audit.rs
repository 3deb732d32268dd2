//! `vendor-portal audit`: read the vendor's audit log and check its hash chain.

use anyhow::{Result, bail};
use clap::Subcommand;
use serde_json::json;

use super::{Ctx, Output, print_json, print_table};
use crate::audit_chain::{AuditEntry, GENESIS, verify_chain};

/// `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Show the latest entries.
    List {
        /// How many.
        #[arg(long, default_value_t = 50)]
        last: u32,
    },
    /// Fetch the whole log and prove its hash chain unbroken from the first entry to the head.
    Verify,
}

#[derive(serde::Deserialize)]
struct Page {
    entries: Vec<AuditEntry>,
    head_seq: i64,
    head_hash: String,
}

impl AuditCommand {
    /// Runs the subcommand.
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        let portal = ctx.portal()?;
        match self {
            AuditCommand::List { last } => {
                let head: Page = serde_json::from_value(portal.get("/api/v1/audit?limit=1")?)?;
                let after = (head.head_seq - i64::from(last)).max(0);
                let page: Page = serde_json::from_value(
                    portal.get(&format!("/api/v1/audit?after={after}&limit={last}"))?,
                )?;
                match ctx.output {
                    Output::Json => print_json(&json!(page.entries)),
                    Output::Text => {
                        let rows: Vec<Vec<String>> = page
                            .entries
                            .iter()
                            .map(|e| {
                                let inner: serde_json::Value =
                                    serde_json::from_str(&e.entry).unwrap_or_default();
                                let who = inner["actor"]["email"]
                                    .as_str()
                                    .or(inner["actor"]["admin"].as_str())
                                    .unwrap_or("-")
                                    .to_owned();
                                vec![
                                    e.seq.to_string(),
                                    super::time_field(&json!({"t": e.at}), "t"),
                                    who,
                                    e.action.clone(),
                                    inner["target"].as_str().unwrap_or("-").to_owned(),
                                    inner["source"].as_str().unwrap_or("-").to_owned(),
                                ]
                            })
                            .collect();
                        print_table(&["seq", "at", "who", "action", "target", "from"], &rows);
                        Ok(())
                    }
                }
            }
            AuditCommand::Verify => {
                let (mut seq, mut hash) = (0i64, GENESIS.to_owned());
                let mut head = None;
                loop {
                    let page: Page = serde_json::from_value(
                        portal.get(&format!("/api/v1/audit?after={seq}&limit=5000"))?,
                    )?;
                    head.get_or_insert((page.head_seq, page.head_hash.clone()));
                    if page.entries.is_empty() {
                        break;
                    }
                    (seq, hash) = verify_chain(seq, &hash, &page.entries)
                        .map_err(|e| anyhow::anyhow!("the audit log is broken: {e}"))?;
                }
                let (head_seq, head_hash) = head.unwrap_or((0, GENESIS.to_owned()));
                if seq < head_seq || (seq == head_seq && hash != head_hash) {
                    bail!(
                        "the audit log is broken: the portal reports head {head_seq} but the entries end at {seq} with another hash"
                    );
                }
                match ctx.output {
                    Output::Json => {
                        print_json(&json!({"verified": true, "entries": seq, "head_hash": hash}))
                    }
                    Output::Text => {
                        println!("Audit log verified: {seq} entries, chain unbroken, head {hash}");
                        Ok(())
                    }
                }
            }
        }
    }
}
