//! The vendor's audit log, served page by page with its hash chain so that the vendor can check
//! it (`vendor-portal audit verify`).

use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use utoipa::{IntoParams, ToSchema};

use super::access::Caller;
use super::error::DomainResult;
use crate::audit_chain::AuditEntry;
use crate::server::state::AppState;

/// Which page.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Entries after this seq (0 for the start).
    pub after: Option<i64>,
    /// At most this many (default 500, at most 5000).
    pub limit: Option<u32>,
}

/// A page of the audit log.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// Entries in order.
    pub entries: Vec<AuditEntry>,
    /// The chain's head seq now.
    pub head_seq: i64,
    /// The chain's head hash now.
    pub head_hash: String,
}

/// Reads the audit log.
pub async fn list(state: &AppState, caller: &Caller, query: AuditQuery) -> DomainResult<AuditPage> {
    let after = query.after.unwrap_or(0).max(0);
    let limit = i64::from(query.limit.unwrap_or(500).clamp(1, 5000));
    let mut conn = state.db.pool.acquire().await?;
    let head = sqlx::query("SELECT audit_seq, audit_hash FROM vendors WHERE id = $1")
        .bind(&caller.vendor_id)
        .fetch_one(&mut *conn)
        .await?;
    let rows = sqlx::query(
        "SELECT seq, at, action, entry, prev_hash, hash FROM audit_log WHERE vendor_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(&caller.vendor_id)
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        entries.push(AuditEntry {
            seq: row.try_get("seq")?,
            at: row.try_get("at")?,
            action: row.try_get("action")?,
            entry: row.try_get("entry")?,
            prev_hash: row.try_get("prev_hash")?,
            hash: row.try_get("hash")?,
        });
    }
    Ok(AuditPage {
        entries,
        head_seq: head.try_get("audit_seq")?,
        head_hash: head.try_get("audit_hash")?,
    })
}
