//! Answers to writes: commit a vendor transaction, record the answer under the request's
//! `Idempotency-Key` in the same transaction, and reply with JSON.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::server::domain::error::{DomainError, DomainResult};
use crate::server::domain::idempotency::IdempotencyContext;
use crate::server::domain::tx::VendorTx;

/// Committing a [`VendorTx`] as the answer to a request.
#[allow(async_fn_in_trait)]
pub trait CommitReply {
    /// Commits, recording `body` as the answer to the request's idempotency key, and returns
    /// the answer.
    async fn commit<T: Serialize>(
        self,
        idempotency: Option<&IdempotencyContext>,
        status: StatusCode,
        body: &T,
    ) -> DomainResult<Response>;

    /// [`CommitReply::commit`] for a reply that carries a secret shown once (a new token, a
    /// generated password): the caller gets `body`, and an `Idempotency-Key` replay gets
    /// `stored`, the same reply with the secret taken out. No secret is ever written to the
    /// idempotency records.
    async fn commit_redacted<T: Serialize, R: Serialize>(
        self,
        idempotency: Option<&IdempotencyContext>,
        status: StatusCode,
        body: &T,
        stored: &R,
    ) -> DomainResult<Response>;
}

impl CommitReply for VendorTx {
    async fn commit<T: Serialize>(
        self,
        idempotency: Option<&IdempotencyContext>,
        status: StatusCode,
        body: &T,
    ) -> DomainResult<Response> {
        self.commit_redacted(idempotency, status, body, body).await
    }

    async fn commit_redacted<T: Serialize, R: Serialize>(
        self,
        idempotency: Option<&IdempotencyContext>,
        status: StatusCode,
        body: &T,
        stored: &R,
    ) -> DomainResult<Response> {
        let json = serde_json::to_string(body).map_err(DomainError::internal)?;
        let stored = serde_json::to_string(stored).map_err(DomainError::internal)?;
        let record: Vec<_> = idempotency
            .map(|ctx| (ctx, status.as_u16(), stored.as_str()))
            .into_iter()
            .collect();
        self.commit_all(&record).await?;
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
