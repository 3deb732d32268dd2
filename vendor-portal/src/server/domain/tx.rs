//! A vendor's write transaction. It starts by locking the vendor's row (which also holds the
//! head of its audit chain), so a vendor's changes are serialised across every portal process;
//! each change appends a hash-chained audit entry in the same transaction; the commit records the
//! response under the request's `Idempotency-Key`, so a retried request either replays that
//! response or finds nothing happened.

use sqlx::AssertSqlSafe;
use sqlx::{Any, AnyConnection, Row as _, Transaction};

use super::access::Caller;
use super::idempotency::{Answer, IdempotencyContext};
use super::webhooks;
use crate::audit_chain::chain_hash;
use crate::server::base::db::{is_unique_violation, values_clause};
use crate::server::base::now;
use crate::server::domain::error::{DomainError, DomainResult};
use crate::server::state::AppState;

/// An open write transaction for one vendor.
pub struct VendorTx {
    tx: Transaction<'static, Any>,
    vendor_id: String,
    audit_seq: i64,
    audit_hash: String,
    changed: bool,
    /// Webhook deliveries were queued: wake this process's sender after the commit.
    webhooks: bool,
    /// Mail was queued: wake this process's mail sender after the commit.
    mail: bool,
    // Held until the transaction ends (SQLite only).
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl VendorTx {
    /// Begins a transaction and locks `vendor_id`'s row.
    pub async fn begin(state: &AppState, vendor_id: &str) -> DomainResult<Self> {
        let turn = state.write_turn().await;
        let tx = state.db.pool.begin().await?;
        Self::lock(tx, vendor_id, turn).await
    }

    /// Locks `vendor_id`'s row in an open transaction begun after taking `turn`.
    pub async fn lock(
        mut tx: Transaction<'static, Any>,
        vendor_id: &str,
        turn: Option<tokio::sync::OwnedMutexGuard<()>>,
    ) -> DomainResult<Self> {
        // A no-op update: it takes the row lock on PostgreSQL and the write lock on SQLite at
        // once, so the transaction never has to upgrade a read lock (which deadlocks in WAL).
        let row = sqlx::query(
            "UPDATE vendors SET audit_seq = audit_seq WHERE id = $1 RETURNING audit_seq, audit_hash",
        )
        .bind(vendor_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| DomainError::not_found("vendor", vendor_id))?;
        Ok(Self {
            tx,
            vendor_id: vendor_id.to_owned(),
            audit_seq: row.try_get("audit_seq")?,
            audit_hash: row.try_get("audit_hash")?,
            changed: false,
            webhooks: false,
            mail: false,
            _turn: turn,
        })
    }

    /// The connection, for queries inside the transaction.
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    /// Appends an audit entry: `actor` did `action` to `target`, with `detail`.
    pub async fn audit(
        &mut self,
        caller: &Caller,
        action: &str,
        target: &str,
        detail: serde_json::Value,
    ) -> DomainResult<()> {
        let actor = caller.actor();
        self.audit_as(
            actor,
            &caller.meta.ip,
            &caller.meta.request_id,
            action,
            target,
            detail,
        )
        .await
    }

    /// Appends an audit entry for an actor that is not an API caller (the admin command).
    pub async fn audit_as(
        &mut self,
        actor: serde_json::Value,
        source: &str,
        request_id: &str,
        action: &str,
        target: &str,
        detail: serde_json::Value,
    ) -> DomainResult<()> {
        self.audit_many(&[AuditRecord {
            actor,
            source: source.to_owned(),
            request_id: request_id.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            detail,
        }])
        .await
    }

    /// Appends entries in order with one statement.
    pub async fn audit_many(&mut self, records: &[AuditRecord]) -> DomainResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        let at = now();
        let (mut seq, mut prev) = (self.audit_seq, self.audit_hash.clone());
        let mut rows = Vec::with_capacity(records.len());
        for r in records {
            seq += 1;
            let entry = serde_json::json!({
                "seq": seq,
                "at": at,
                "vendor": self.vendor_id,
                "actor": r.actor,
                "action": r.action,
                "target": r.target,
                "detail": r.detail,
                "source": r.source,
                "request_id": r.request_id,
            })
            .to_string();
            let hash = chain_hash(&prev, &entry);
            rows.push((
                seq,
                r.action.as_str(),
                entry,
                std::mem::replace(&mut prev, hash.clone()),
                hash,
            ));
        }
        let sql = format!(
            "INSERT INTO audit_log (vendor_id, seq, at, action, entry, prev_hash, hash) VALUES {}",
            values_clause(rows.len(), 7)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql.as_str()));
        for (seq, action, entry, prev_hash, hash) in &rows {
            query = query
                .bind(&self.vendor_id)
                .bind(*seq)
                .bind(at)
                .bind(*action)
                .bind(entry)
                .bind(prev_hash)
                .bind(hash);
        }
        query.execute(&mut *self.tx).await?;
        self.audit_seq = seq;
        self.audit_hash = prev;
        self.changed = true;
        // The webhook events these entries raise, in the same transaction.
        if webhooks::enqueue(&mut self.tx, &self.vendor_id, at, records).await? {
            self.webhooks = true;
        }
        // And the mail they call for.
        if super::mail::enqueue(&mut self.tx, records).await? {
            self.mail = true;
        }
        Ok(())
    }

    /// Wakes this process's webhook sender when the transaction commits.
    pub fn notify_webhooks(&mut self) {
        self.webhooks = true;
    }

    /// Commits, recording each answer under its request's idempotency key.
    pub async fn commit_all(mut self, responses: &[Answer<'_>]) -> DomainResult<()> {
        if self.changed {
            sqlx::query("UPDATE vendors SET audit_seq = $2, audit_hash = $3 WHERE id = $1")
                .bind(&self.vendor_id)
                .bind(self.audit_seq)
                .bind(&self.audit_hash)
                .execute(&mut *self.tx)
                .await?;
        }
        IdempotencyContext::record_many(&mut self.tx, responses).await?;
        self.tx.commit().await.map_err(|e| {
            if is_unique_violation(&e) {
                IdempotencyContext::race()
            } else {
                DomainError::from(e)
            }
        })?;
        if self.mail {
            super::mail::send::wake();
        }
        if self.webhooks {
            webhooks::deliver::wake();
        }
        Ok(())
    }
}

impl VendorTx {
    /// Commits, recording `answer` (its JSON, with HTTP status `status`) as the reply to the
    /// request's idempotency key, if it has one.
    pub async fn commit_answer<T: serde::Serialize>(
        self,
        idem: Option<&IdempotencyContext>,
        status: u16,
        answer: &T,
    ) -> DomainResult<()> {
        let body = serde_json::to_string(answer).map_err(DomainError::internal)?;
        let record: Vec<Answer<'_>> = idem
            .map(|ctx| (ctx, status, body.as_str()))
            .into_iter()
            .collect();
        self.commit_all(&record).await
    }
}

/// One audit entry to append.
#[derive(Clone, Debug)]
pub struct AuditRecord {
    /// Who.
    pub actor: serde_json::Value,
    /// From where (IP address).
    pub source: String,
    /// The request id.
    pub request_id: String,
    /// What (`license.issue`, ...).
    pub action: String,
    /// To what (an id).
    pub target: String,
    /// Particulars.
    pub detail: serde_json::Value,
}

impl AuditRecord {
    /// `caller` did `action` to `target`.
    pub fn by(caller: &Caller, action: &str, target: &str, detail: serde_json::Value) -> Self {
        Self {
            actor: caller.actor(),
            source: caller.meta.ip.clone(),
            request_id: caller.meta.request_id.clone(),
            action: action.to_owned(),
            target: target.to_owned(),
            detail,
        }
    }
}
