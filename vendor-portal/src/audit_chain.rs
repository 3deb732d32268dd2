//! The audit log's hash chain, shared by the portal (which appends) and `vendor-portal audit
//! verify` (which checks what the portal serves, so a vendor need not trust the portal's word).
//!
//! Entry `n` stores the exact JSON text of what happened and
//! `hash_n = SHA-256("consign-audit-v1\n" || hash_{n-1} || "\n" || entry_n)` in hex, with
//! `hash_0` = 64 zeros. Sequence numbers start at 1 and have no gaps; changing, removing or
//! reordering any entry changes every later hash.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The hash before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of an entry given the previous hash.
pub fn chain_hash(prev_hash: &str, entry: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"consign-audit-v1\n");
    ctx.update(prev_hash.as_bytes());
    ctx.update(b"\n");
    ctx.update(entry.as_bytes());
    crate::server::base::secrets::hex(ctx.finish().as_ref())
}

/// One entry as the API serves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Position in the vendor's chain, from 1.
    pub seq: i64,
    /// When it happened, Unix seconds.
    pub at: i64,
    /// What happened (`license.issue`, `token.revoke`, ...).
    pub action: String,
    /// The exact JSON text the hash covers: who, what, when, from where.
    pub entry: String,
    /// The previous entry's hash.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

/// Checks that `entries` continue a chain whose last hash was `prev_hash` at `prev_seq`.
/// Returns the new head (seq, hash) or the first break, described.
pub fn verify_chain(
    prev_seq: i64,
    prev_hash: &str,
    entries: &[AuditEntry],
) -> Result<(i64, String), String> {
    let mut seq = prev_seq;
    let mut hash = prev_hash.to_owned();
    for e in entries {
        if e.seq != seq + 1 {
            return Err(format!(
                "entry {} follows entry {seq}: entries are missing",
                e.seq
            ));
        }
        if e.prev_hash != hash {
            return Err(format!(
                "entry {} does not link to entry {seq}'s hash",
                e.seq
            ));
        }
        let expected = chain_hash(&hash, &e.entry);
        if e.hash != expected {
            return Err(format!(
                "entry {} was altered: its hash does not match its contents",
                e.seq
            ));
        }
        let inner: serde_json::Value =
            serde_json::from_str(&e.entry).map_err(|_| format!("entry {} is not JSON", e.seq))?;
        if inner.get("seq").and_then(serde_json::Value::as_i64) != Some(e.seq)
            || inner.get("action").and_then(serde_json::Value::as_str) != Some(e.action.as_str())
            || inner.get("at").and_then(serde_json::Value::as_i64) != Some(e.at)
        {
            return Err(format!(
                "entry {}'s listed seq, action or time differ from its signed text",
                e.seq
            ));
        }
        seq = e.seq;
        hash = e.hash.clone();
    }
    Ok((seq, hash))
}
