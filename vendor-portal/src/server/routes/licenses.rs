//! Licenses over HTTP: issue, list, download, change, and the public signed status. The rules
//! are [`crate::server::domain::licenses`]'s.

use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use license::status::{LicenseState, valid_nonce};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::server::domain::error::{DomainError, DomainResult};
use crate::server::domain::licenses::change::{Change, LicenseReason, LicenseRenew, change};
use crate::server::domain::licenses::issue::LicenseIssue;
use crate::server::domain::licenses::status::signed_status;
use crate::server::domain::licenses::{self, License, LicenseFilter, secs};
use crate::server::http::auth::Caller;
use crate::server::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::server::http::idempotency::IdempotencyContext;
use crate::server::http::reply::json_response;
use crate::server::state::AppState;

/// Issues a license.
#[utoipa::path(post, path = "/api/v1/licenses", operation_id = "issue_license", tag = "licenses", security(("token" = [])), request_body = LicenseIssue, responses(
    (status = 201, body = License), (status = 404, body = crate::server::http::problem::Problem),
    (status = 422, body = crate::server::http::problem::Problem), (status = 429, body = crate::server::http::problem::Problem)))]
pub async fn issue(
    State(state): State<AppState>,
    caller: Caller,
    idem: Option<Extension<IdempotencyContext>>,
    ApiJson(body): ApiJson<LicenseIssue>,
) -> DomainResult<Response> {
    let issued = licenses::issue::issue(&state, &caller, idem.as_deref(), body).await?;
    Ok((
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        issued.json,
    )
        .into_response())
}

/// Lists licenses, newest first.
#[utoipa::path(get, path = "/api/v1/licenses", operation_id = "list_licenses", tag = "licenses", security(("token" = [])), params(LicenseFilter),
    responses((status = 200, body = Vec<License>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(filter): ApiQuery<LicenseFilter>,
) -> DomainResult<Response> {
    let found = licenses::list(&state, &caller, filter).await?;
    Ok(json_response(StatusCode::OK, found))
}

/// Shows a license.
#[utoipa::path(get, path = "/api/v1/licenses/{id}", operation_id = "show_license", tag = "licenses", security(("token" = [])),
    params(("id" = String, Path, description = "License id")), responses((status = 200, body = License), (status = 404, body = crate::server::http::problem::Problem)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> DomainResult<Response> {
    let license = licenses::show(&state, &caller, id).await?;
    Ok(json_response(StatusCode::OK, license))
}

/// Downloads the current license file.
#[utoipa::path(get, path = "/api/v1/licenses/{id}/file", operation_id = "download_license", tag = "licenses", security(("token" = [])),
    params(("id" = String, Path, description = "License id")), responses((status = 200, description = "The armoured license", body = String, content_type = "application/vnd.consign.license"), (status = 404, body = crate::server::http::problem::Problem)))]
pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> DomainResult<Response> {
    let license: License = licenses::show(&state, &caller, id).await?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "application/vnd.consign.license".to_owned(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}.lic\"", license.id),
            ),
        ],
        license.license,
    )
        .into_response())
}

/// Extends a license; the new file has a higher `seq`.
#[utoipa::path(post, path = "/api/v1/licenses/{id}/renew", tag = "licenses", security(("token" = [])), request_body = LicenseRenew,
    params(("id" = String, Path, description = "License id")), responses((status = 200, body = License), (status = 404, body = crate::server::http::problem::Problem), (status = 409, body = crate::server::http::problem::Problem)))]
pub async fn renew(
    State(state): State<AppState>,
    caller: Caller,
    idem: Option<Extension<IdempotencyContext>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<LicenseRenew>,
) -> DomainResult<Response> {
    let changed = change(
        &state,
        &caller,
        idem.as_deref(),
        &id,
        Change::Renew(body.expires_at),
    )
    .await?;
    Ok(json_response(StatusCode::OK, changed))
}

/// Suspends a license: the status endpoint reports it, installs restrict until reinstated.
#[utoipa::path(post, path = "/api/v1/licenses/{id}/suspend", tag = "licenses", security(("token" = [])), request_body = LicenseReason,
    params(("id" = String, Path, description = "License id")), responses((status = 200, body = License), (status = 404, body = crate::server::http::problem::Problem), (status = 409, body = crate::server::http::problem::Problem)))]
pub async fn suspend(
    State(state): State<AppState>,
    caller: Caller,
    idem: Option<Extension<IdempotencyContext>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<LicenseReason>,
) -> DomainResult<Response> {
    let changed = change(
        &state,
        &caller,
        idem.as_deref(),
        &id,
        Change::State(LicenseState::Suspended, body.reason),
    )
    .await?;
    Ok(json_response(StatusCode::OK, changed))
}

/// Reinstates a suspended license.
#[utoipa::path(post, path = "/api/v1/licenses/{id}/reinstate", tag = "licenses", security(("token" = [])), request_body = LicenseReason,
    params(("id" = String, Path, description = "License id")), responses((status = 200, body = License), (status = 404, body = crate::server::http::problem::Problem), (status = 409, body = crate::server::http::problem::Problem)))]
pub async fn reinstate(
    State(state): State<AppState>,
    caller: Caller,
    idem: Option<Extension<IdempotencyContext>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<LicenseReason>,
) -> DomainResult<Response> {
    let changed = change(
        &state,
        &caller,
        idem.as_deref(),
        &id,
        Change::State(LicenseState::Active, body.reason),
    )
    .await?;
    Ok(json_response(StatusCode::OK, changed))
}

/// Revokes a license for good.
#[utoipa::path(post, path = "/api/v1/licenses/{id}/revoke", tag = "licenses", security(("token" = [])), request_body = LicenseReason,
    params(("id" = String, Path, description = "License id")), responses((status = 200, body = License), (status = 404, body = crate::server::http::problem::Problem), (status = 409, body = crate::server::http::problem::Problem)))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    idem: Option<Extension<IdempotencyContext>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<LicenseReason>,
) -> DomainResult<Response> {
    let changed = change(
        &state,
        &caller,
        idem.as_deref(),
        &id,
        Change::State(LicenseState::Revoked, body.reason),
    )
    .await?;
    Ok(json_response(StatusCode::OK, changed))
}

/// The nonce a status request carries.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    /// 16 to 128 characters of base64url (`[A-Za-z0-9_-]`, padding allowed), fresh for each
    /// request.
    pub nonce: String,
}

/// A signed status.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatusResponse {
    /// The license id.
    pub license: String,
    /// `active`, `suspended` or `revoked`.
    pub state: String,
    /// The current revision.
    pub seq: i64,
    /// The portal's clock, Unix seconds.
    pub time: i64,
    /// The nonce, echoed.
    pub nonce: String,
    /// The same, as a compact JWS (`typ` `consign-status+jwt`) signed by a license-signing key
    /// of the vendor's keyset: verify this, not the fields beside it.
    pub signed: String,
}

/// The signed status of a license, for agents and installers (no credentials: license ids are
/// unguessable and the answer reveals only the state).
#[utoipa::path(get, path = "/api/v1/vendors/{vendor}/licenses/{id}/status", operation_id = "license_status", tag = "public", params(
    ("vendor" = String, Path, description = "Vendor slug"), ("id" = String, Path, description = "License id"), StatusQuery),
    responses((status = 200, body = StatusResponse), (status = 400, body = crate::server::http::problem::Problem), (status = 404, body = crate::server::http::problem::Problem)))]
pub async fn status(
    State(state): State<AppState>,
    ApiPath((vendor, id)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<StatusQuery>,
) -> DomainResult<Response> {
    if !valid_nonce(&query.nonce) {
        return Err(DomainError::bad_request(license::status::NONCE_RULE));
    }
    let (claims, signed) = signed_status(&state, &vendor, &id, &query.nonce).await?;
    Ok(json_response(
        StatusCode::OK,
        StatusResponse {
            license: id,
            state: claims.state.as_str().to_owned(),
            seq: i64::try_from(claims.seq).unwrap_or(i64::MAX),
            time: secs(claims.time),
            nonce: query.nonce,
            signed,
        },
    ))
}
