//! The vendor's single sign-on settings over HTTP; see [`crate::server::domain::sso`]. The
//! sign-in itself is a browser flow (`/console/sso/start`, `/console/sso/callback`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use crate::server::domain::error::{DomainError, DomainResult};
use crate::server::domain::sso::{self, SsoConfig, SsoSettings};
use crate::server::http::auth::Caller;
use crate::server::http::extract::ApiJson;
use crate::server::http::reply::json_response;
use crate::server::state::AppState;

type Problem = crate::server::http::problem::Problem;

/// The vendor's identity provider (the client secret is never shown).
#[utoipa::path(get, path = "/api/v1/sso", operation_id = "show_sso", tag = "vendor", security(("token" = [])),
    responses((status = 200, body = SsoConfig), (status = 404, body = Problem)))]
pub async fn show(State(state): State<AppState>, caller: Caller) -> DomainResult<Response> {
    let config = sso::show(&state, &caller)
        .await?
        .ok_or_else(|| DomainError::not_found("SSO provider", &caller.vendor_slug))?;
    Ok(json_response(StatusCode::OK, config))
}

/// Sets the vendor's identity provider (owners only). The provider's discovery document is
/// read now: a wrong issuer is refused here.
#[utoipa::path(put, path = "/api/v1/sso", operation_id = "set_sso", tag = "vendor", security(("token" = [])),
    request_body = SsoSettings, responses((status = 200, body = SsoConfig), (status = 403, body = Problem),
    (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn set(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<SsoSettings>,
) -> DomainResult<Response> {
    let config = sso::set(&state, &caller, body).await?;
    Ok(json_response(StatusCode::OK, config))
}

/// Removes the vendor's identity provider (owners only): members sign in with passwords again.
#[utoipa::path(delete, path = "/api/v1/sso", operation_id = "remove_sso", tag = "vendor", security(("token" = [])),
    responses((status = 200, body = SsoConfig), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn remove(State(state): State<AppState>, caller: Caller) -> DomainResult<Response> {
    let config = sso::remove(&state, &caller).await?;
    Ok(json_response(StatusCode::OK, config))
}
