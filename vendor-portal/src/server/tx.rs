//! A vendor's write transaction. It starts by locking the vendor's row (which also holds the
//! head of its audit chain), so a vendor's changes are serialised across every portal process;
//! each change appends a hash-chained audit entry in the same transaction; the commit records the
//! response under the request's `Idempotency-Key`, so a retried request either replays that
//! response or finds nothing happened.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sqlx::{Any, AnyConnection, Row as _, Transaction};

use super::auth::Caller;
use super::db::is_unique_violation;
use super::error::{ApiError, ApiResult};
use super::idempotency::IdempotencyContext;
use super::now;
use super::state::AppState;
use crate::audit_chain::chain_hash;

/// An open write transaction for one vendor.
pub struct VendorTx {
    tx: Transaction<'static, Any>,
    vendor_id: String,
    audit_seq: i64,
    audit_hash: String,
    changed: bool,
}

impl VendorTx {
    /// Begins a transaction and locks `vendor_id`'s row.
    pub async fn begin(state: &AppState, vendor_id: &str) -> ApiResult<Self> {
        let tx = state.db.pool.begin().await?;
        Self::lock(tx, vendor_id).await
    }

    /// Locks `vendor_id`'s row in an open transaction.
    pub async fn lock(mut tx: Transaction<'static, Any>, vendor_id: &str) -> ApiResult<Self> {
        // A no-op update: it takes the row lock on PostgreSQL and the write lock on SQLite at
        // once, so the transaction never has to upgrade a read lock (which deadlocks in WAL).
        let row = sqlx::query(
            "UPDATE vendors SET audit_seq = audit_seq WHERE id = $1 RETURNING audit_seq, audit_hash",
        )
        .bind(vendor_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| ApiError::not_found("vendor", vendor_id))?;
        Ok(Self {
            tx,
            vendor_id: vendor_id.to_owned(),
            audit_seq: row.try_get("audit_seq")?,
            audit_hash: row.try_get("audit_hash")?,
            changed: false,
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
    ) -> ApiResult<()> {
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
    ) -> ApiResult<()> {
        let seq = self.audit_seq + 1;
        let at = now();
        let entry = serde_json::json!({
            "seq": seq,
            "at": at,
            "vendor": self.vendor_id,
            "actor": actor,
            "action": action,
            "target": target,
            "detail": detail,
            "source": source,
            "request_id": request_id,
        })
        .to_string();
        let hash = chain_hash(&self.audit_hash, &entry);
        sqlx::query(
            "INSERT INTO audit_log (vendor_id, seq, at, action, entry, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&self.vendor_id)
        .bind(seq)
        .bind(at)
        .bind(action)
        .bind(&entry)
        .bind(&self.audit_hash)
        .bind(&hash)
        .execute(&mut *self.tx)
        .await?;
        self.audit_seq = seq;
        self.audit_hash = hash;
        self.changed = true;
        Ok(())
    }

    /// Commits, recording `body` as the response to the request's idempotency key, and returns
    /// the response.
    pub async fn commit<T: Serialize>(
        mut self,
        idempotency: Option<&IdempotencyContext>,
        status: StatusCode,
        body: &T,
    ) -> ApiResult<Response> {
        let json = serde_json::to_string(body).map_err(ApiError::internal)?;
        if self.changed {
            sqlx::query("UPDATE vendors SET audit_seq = $2, audit_hash = $3 WHERE id = $1")
                .bind(&self.vendor_id)
                .bind(self.audit_seq)
                .bind(&self.audit_hash)
                .execute(&mut *self.tx)
                .await?;
        }
        if let Some(ctx) = idempotency {
            ctx.record(&mut self.tx, status, &json).await?;
        }
        self.tx.commit().await.map_err(|e| {
            if is_unique_violation(&e) {
                IdempotencyContext::race()
            } else {
                ApiError::from(e)
            }
        })?;
        Ok((
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            json,
        )
            .into_response())
    }
}

/// A JSON response with a status, for handlers that change nothing.
pub fn json_response<T: Serialize>(status: StatusCode, body: T) -> Response {
    (status, Json(body)).into_response()
}
