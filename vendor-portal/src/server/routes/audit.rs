//! The vendor's audit log over HTTP; see [`crate::server::domain::audit`].

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use crate::server::domain::audit::{self, AuditPage, AuditQuery};
use crate::server::domain::error::DomainResult;
use crate::server::http::auth::Caller;
use crate::server::http::extract::ApiQuery;
use crate::server::http::reply::json_response;
use crate::server::state::AppState;

/// Reads the audit log.
#[utoipa::path(get, path = "/api/v1/audit", operation_id = "list_audit", tag = "vendor", security(("token" = [])), params(AuditQuery), responses((status = 200, body = AuditPage)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> DomainResult<Response> {
    let answer = audit::list(&state, &caller, query).await?;
    Ok(json_response(StatusCode::OK, answer))
}
