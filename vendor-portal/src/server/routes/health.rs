//! Liveness, readiness and metrics.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::server::domain::error::DomainError;
use crate::server::http::reply::json_response;
use crate::server::state::AppState;

/// `/readyz`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ok`.
    pub database: String,
    /// `ok`.
    pub blobs: String,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process is up", body = String)))]
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// The database and blob store answer.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, body = Readiness),
    (status = 503, body = crate::server::http::problem::Problem, description = "A dependency is unavailable"),
))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    if let Err(e) = state.db.ping().await {
        return DomainError::unavailable(format!("the database does not answer: {e}"))
            .into_response();
    }
    if let Err(e) = state.blobs.ping().await {
        return DomainError::unavailable(format!("the blob store does not answer: {e:#}"))
            .into_response();
    }
    json_response(
        StatusCode::OK,
        Readiness {
            database: "ok".into(),
            blobs: "ok".into(),
        },
    )
}

/// Prometheus metrics of this process.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
