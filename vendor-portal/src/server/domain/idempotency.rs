//! Idempotency records: a request's answer stored under its `Idempotency-Key` in the same
//! transaction as the change it describes, so a crash leaves either both or neither. The web
//! layer (`http::idempotency`) reads the key, replays stored answers and hands the key to the
//! domain as an [`IdempotencyContext`].

use sqlx::AnyConnection;
use sqlx::AssertSqlSafe;

use super::error::{DomainError, DomainResult, Kind};
use crate::server::base::db::is_unique_violation;
use crate::server::base::db::values_clause;
use crate::server::base::now;

/// The code of the error a request gets when another request with its key completed first.
pub const RACE_CODE: &str = "idempotency_race";

/// A request's idempotency key, scoped to its credential, with a digest of the request.
#[derive(Clone, Debug)]
pub struct IdempotencyContext {
    /// The credential's scope (a hash of it, or `anonymous`).
    pub scope: String,
    /// The key the caller chose.
    pub key: String,
    /// SHA-256 of the method, URI and body.
    pub request_hash: String,
}

/// One answer to record: the key, the HTTP status and the body.
pub type Answer<'a> = (&'a IdempotencyContext, u16, &'a str);

impl IdempotencyContext {
    /// Stores answers in the caller's transaction, with one statement.
    pub async fn record_many(conn: &mut AnyConnection, records: &[Answer<'_>]) -> DomainResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "INSERT INTO idempotency_keys (scope, idem_key, request_hash, status, body, created_at) VALUES {}",
            values_clause(records.len(), 6)
        );
        let created = now();
        let mut query = sqlx::query(AssertSqlSafe(sql.as_str()));
        for (ctx, status, body) in records {
            query = query
                .bind(&ctx.scope)
                .bind(&ctx.key)
                .bind(&ctx.request_hash)
                .bind(i64::from(*status))
                .bind(*body)
                .bind(created);
        }
        match query.execute(conn).await {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(Self::race()),
            Err(e) => Err(e.into()),
        }
    }

    /// The error a request gets when another request with the same key won.
    pub fn race() -> DomainError {
        DomainError::new(
            Kind::Conflict,
            RACE_CODE,
            "another request with this Idempotency-Key completed first",
        )
    }
}
