//! Support bundles over HTTP; see [`crate::server::domain::support`].

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::server::domain::error::DomainResult;
use crate::server::domain::support::{self, StoredBundle, SupportKey, Upload};
use crate::server::http::auth::Caller;
use crate::server::http::extract::{ApiJson, ApiPath, ApiQuery, RequestMeta};
use crate::server::http::reply::json_response;
use crate::server::state::AppState;

type Problem = crate::server::http::problem::Problem;

/// Sets the vendor's support key (owners only): the X25519 public key support bundles are
/// sealed to. Its secret half stays with the vendor.
#[utoipa::path(put, path = "/api/v1/support/key", operation_id = "set_support_key", tag = "support", security(("token" = [])),
    request_body = SupportKey, responses((status = 200, body = SupportKey), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn set_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<SupportKey>,
) -> DomainResult<Response> {
    let key = support::set_key(&state, &caller, body).await?;
    Ok(json_response(StatusCode::OK, key))
}

/// A vendor's support key, for installers sealing a bundle.
#[utoipa::path(get, path = "/api/v1/vendors/{vendor}/support-key", operation_id = "support_key", tag = "public",
    params(("vendor" = String, Path, description = "Vendor slug")),
    responses((status = 200, body = SupportKey), (status = 404, body = Problem)))]
pub async fn public_key(
    State(state): State<AppState>,
    ApiPath(vendor): ApiPath<String>,
) -> DomainResult<Response> {
    let key = support::public_key(&state, &vendor).await?;
    Ok(json_response(StatusCode::OK, key))
}

/// Stores a support bundle sealed to the vendor's support key, sent with the installation's
/// license (`installer support-bundle --upload`).
#[utoipa::path(post, path = "/api/v1/support/bundles", operation_id = "upload_support_bundle", tag = "support",
    request_body = Upload, responses((status = 201, body = StoredBundle), (status = 403, body = Problem),
    (status = 413, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)))]
pub async fn upload(
    State(state): State<AppState>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<Upload>,
) -> DomainResult<Response> {
    let stored = support::upload(&state, &meta, body).await?;
    Ok(json_response(StatusCode::CREATED, stored))
}

/// Which bundles to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this customer's (slug).
    pub customer: Option<String>,
}

/// The vendor's support bundles, newest first.
#[utoipa::path(get, path = "/api/v1/support/bundles", operation_id = "list_support_bundles", tag = "support",
    security(("token" = [])), params(ListQuery), responses((status = 200, body = Vec<StoredBundle>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> DomainResult<Response> {
    let bundles = support::list(&state, &caller, query.customer.as_deref()).await?;
    Ok(json_response(StatusCode::OK, bundles))
}

/// A bundle's sealed bytes, for `vendor-portal support open`.
#[utoipa::path(get, path = "/api/v1/support/bundles/{id}", operation_id = "download_support_bundle", tag = "support",
    security(("token" = [])), params(("id" = String, Path, description = "Bundle id")),
    responses((status = 200, description = "The sealed bundle", content_type = "application/octet-stream"), (status = 404, body = Problem)))]
pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> DomainResult<Response> {
    let bytes = support::sealed(&state, &caller, &id).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}
