//! An owner's hold over the vendor's members, over HTTP; the rules are
//! [`crate::server::domain::members`]'.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use crate::server::domain::error::DomainResult;
use crate::server::domain::members::{
    self, MemberChanged, MemberCreated, MemberUpdate, PasswordReset,
};
use crate::server::http::auth::Caller;
use crate::server::http::extract::{ApiJson, ApiPath};
use crate::server::http::idempotency::IdempotencyContext;
use crate::server::http::reply::json_response;
use crate::server::state::AppState;

/// Changes a member's role, or disables or enables them (owners only). Ends their sessions and
/// tokens.
#[utoipa::path(patch, path = "/api/v1/members/{id}", tag = "vendor", security(("token" = [])),
    params(("id" = String, Path, description = "Member id")), request_body = MemberUpdate, responses(
    (status = 200, body = MemberChanged), (status = 403, body = crate::server::http::problem::Problem),
    (status = 404, body = crate::server::http::problem::Problem), (status = 409, body = crate::server::http::problem::Problem)))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<MemberUpdate>,
) -> DomainResult<Response> {
    let answer = members::update(&state, &caller, id, body).await?;
    Ok(json_response(StatusCode::OK, answer))
}

/// Sets a member's password (owners only); a generated one is shown once. Ends their sessions
/// and tokens.
#[utoipa::path(post, path = "/api/v1/members/{id}/password", tag = "vendor", security(("token" = [])),
    params(("id" = String, Path, description = "Member id")), request_body = PasswordReset, responses(
    (status = 200, body = MemberCreated), (status = 403, body = crate::server::http::problem::Problem),
    (status = 404, body = crate::server::http::problem::Problem), (status = 422, body = crate::server::http::problem::Problem)))]
pub async fn reset_password(
    State(state): State<AppState>,
    caller: Caller,
    idem: Option<Extension<IdempotencyContext>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PasswordReset>,
) -> DomainResult<Response> {
    let answer = members::reset_password(&state, &caller, idem.as_deref(), id, body).await?;
    Ok(json_response(StatusCode::OK, answer))
}

/// Removes a member (owners only): their sessions end, their tokens are deleted, and they can
/// no longer sign in. The audit log keeps what they did.
#[utoipa::path(delete, path = "/api/v1/members/{id}", operation_id = "remove_member", tag = "vendor", security(("token" = [])),
    params(("id" = String, Path, description = "Member id")), responses(
    (status = 200, body = MemberChanged), (status = 403, body = crate::server::http::problem::Problem),
    (status = 404, body = crate::server::http::problem::Problem), (status = 409, body = crate::server::http::problem::Problem)))]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> DomainResult<Response> {
    let answer = members::remove(&state, &caller, id).await?;
    Ok(json_response(StatusCode::OK, answer))
}
