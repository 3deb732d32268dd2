//! The calling vendor, its members, its API tokens and browser sessions, over HTTP; the rules
//! are [`crate::server::domain::vendors`]' and [`crate::server::domain::sessions`]'.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::server::domain::error::DomainResult;
use crate::server::domain::members::{self, MemberCreate, MemberCreated, MemberInfo};
use crate::server::domain::sessions::SessionInfo;
use crate::server::domain::sessions::{self, Login};
use crate::server::domain::vendors::{self, TokenCreate, TokenCreated, TokenInfo, VendorInfo};
use crate::server::http::auth::{Caller, clear_session_cookie, session_secret, set_session_cookie};
use crate::server::http::extract::{ApiJson, ApiPath, RequestMeta};
use crate::server::http::idempotency::IdempotencyContext;
use crate::server::http::reply::json_response;
use crate::server::state::AppState;

/// Who am I.
#[utoipa::path(get, path = "/api/v1/vendor", operation_id = "show_vendor", tag = "vendor", security(("token" = [])), responses(
    (status = 200, body = VendorInfo), (status = 401, body = crate::server::http::problem::Problem)))]
pub async fn show(State(state): State<AppState>, caller: Caller) -> DomainResult<Response> {
    let answer = vendors::show(&state, &caller).await?;
    Ok(json_response(StatusCode::OK, answer))
}

/// Adds a member (owners only).
#[utoipa::path(post, path = "/api/v1/members", tag = "vendor", security(("token" = [])), request_body = MemberCreate, responses(
    (status = 201, body = MemberCreated), (status = 403, body = crate::server::http::problem::Problem), (status = 409, body = crate::server::http::problem::Problem)))]
pub async fn add_member(
    State(state): State<AppState>,
    caller: Caller,
    idem: Option<Extension<IdempotencyContext>>,
    ApiJson(body): ApiJson<MemberCreate>,
) -> DomainResult<Response> {
    let answer = members::add_member(&state, &caller, idem.as_deref(), body).await?;
    Ok(json_response(StatusCode::CREATED, answer))
}

/// Lists the vendor's members.
#[utoipa::path(get, path = "/api/v1/members", tag = "vendor", security(("token" = [])), responses((status = 200, body = Vec<MemberInfo>)))]
pub async fn list_members(State(state): State<AppState>, caller: Caller) -> DomainResult<Response> {
    let answer = members::list_members(&state, &caller).await?;
    Ok(json_response(StatusCode::OK, answer))
}

/// Creates an API token acting as the caller.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "vendor", security(("token" = [])), request_body = TokenCreate, responses(
    (status = 201, body = TokenCreated)))]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    idem: Option<Extension<IdempotencyContext>>,
    ApiJson(body): ApiJson<TokenCreate>,
) -> DomainResult<Response> {
    let answer = vendors::create_token(&state, &caller, idem.as_deref(), body).await?;
    Ok(json_response(StatusCode::CREATED, answer))
}

/// Lists tokens: owners see the vendor's, others their own.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "vendor", security(("token" = [])), responses((status = 200, body = Vec<TokenInfo>)))]
pub async fn list_tokens(State(state): State<AppState>, caller: Caller) -> DomainResult<Response> {
    let answer = vendors::list_tokens(&state, &caller).await?;
    Ok(json_response(StatusCode::OK, answer))
}

/// Revokes a token at once (owners any, others their own).
#[utoipa::path(post, path = "/api/v1/tokens/{id}/revoke", tag = "vendor", security(("token" = [])),
    params(("id" = String, Path, description = "Token id")), responses((status = 200, body = TokenInfo), (status = 404, body = crate::server::http::problem::Problem)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    idem: Option<Extension<IdempotencyContext>>,
    ApiPath(id): ApiPath<String>,
) -> DomainResult<Response> {
    let answer = vendors::revoke_token(&state, &caller, idem.as_deref(), id).await?;
    Ok(json_response(StatusCode::OK, answer))
}

/// Opens a browser session (sets an HttpOnly, SameSite=Strict cookie).
#[utoipa::path(post, path = "/api/v1/session", tag = "vendor", request_body = Login, responses(
    (status = 200, body = SessionInfo), (status = 401, body = crate::server::http::problem::Problem), (status = 429, body = crate::server::http::problem::Problem)))]
pub async fn login(
    State(state): State<AppState>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<Login>,
) -> DomainResult<Response> {
    let (info, secret) = sessions::login(&state, &meta, body).await?;
    let mut response = json_response(StatusCode::OK, info);
    if let Ok(value) = HeaderValue::from_str(&set_session_cookie(&secret)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// Ends the caller's browser session.
#[utoipa::path(delete, path = "/api/v1/session", tag = "vendor", responses((status = 204, description = "Logged out")))]
pub async fn logout(
    State(state): State<AppState>,
    parts: axum::http::HeaderMap,
) -> DomainResult<Response> {
    if let Some(secret) = session_secret(&parts) {
        sessions::logout(&state, &secret).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(&clear_session_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}
