//! The vendor's keys on the portal over HTTP: what it holds, registering the vendor's own
//! keyset, rotating portal-held keys, and the public keyset that verifiers fetch. The rules are
//! [`crate::server::domain::keys`]'.

use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse as _, Response};

use crate::server::domain::error::DomainResult;
use crate::server::domain::keys::{self, KeysInfo, KeysRegister};
use crate::server::http::auth::Caller;
use crate::server::http::extract::{ApiJson, ApiPath};
use crate::server::http::idempotency::IdempotencyContext;
use crate::server::http::reply::json_response;
use crate::server::state::AppState;

/// Shows the vendor's keys.
#[utoipa::path(get, path = "/api/v1/keys", operation_id = "show_keys", tag = "keys", security(("token" = [])), responses((status = 200, body = KeysInfo)))]
pub async fn show(State(state): State<AppState>, caller: Caller) -> DomainResult<Response> {
    let answer = keys::show(&state, &caller).await?;
    Ok(json_response(StatusCode::OK, answer))
}

/// Registers the vendor's own keyset (and license-signing key). After this the portal holds no
/// root or release key.
#[utoipa::path(post, path = "/api/v1/keys/register", tag = "keys", security(("token" = [])), request_body = KeysRegister, responses(
    (status = 200, body = KeysInfo), (status = 409, body = crate::server::http::problem::Problem), (status = 422, body = crate::server::http::problem::Problem)))]
pub async fn register(
    State(state): State<AppState>,
    caller: Caller,
    idem: Option<Extension<IdempotencyContext>>,
    ApiJson(body): ApiJson<KeysRegister>,
) -> DomainResult<Response> {
    let answer = keys::register(&state, &caller, idem.as_deref(), body).await?;
    Ok(json_response(StatusCode::OK, answer))
}

/// Rotates the license-signing key (portal custody only: with registered keys, rotate on the
/// vendor's machine and register again).
#[utoipa::path(post, path = "/api/v1/keys/rotate", tag = "keys", security(("token" = [])), responses(
    (status = 200, body = KeysInfo), (status = 409, body = crate::server::http::problem::Problem)))]
pub async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
    idem: Option<Extension<IdempotencyContext>>,
) -> DomainResult<Response> {
    let answer = keys::rotate(&state, &caller, idem.as_deref()).await?;
    Ok(json_response(StatusCode::OK, answer))
}

/// The vendor's current public keyset, exactly as signed (what `license-agent verify --trust`
/// and `installer login` read).
#[utoipa::path(get, path = "/api/v1/vendors/{vendor}/keyset", tag = "public",
    params(("vendor" = String, Path, description = "Vendor slug")),
    responses((status = 200, description = "The signed keyset", body = Object), (status = 404, body = crate::server::http::problem::Problem)))]
pub async fn public_keyset(
    State(state): State<AppState>,
    ApiPath(vendor): ApiPath<String>,
) -> DomainResult<Response> {
    let document = keys::public_keyset(&state, vendor).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], document).into_response())
}
