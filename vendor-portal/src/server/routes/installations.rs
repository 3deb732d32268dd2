//! Installations and their license agents over HTTP (activation, check-in, removal) and the
//! vendor's view of usage; the rules are [`crate::server::domain::installations`]'.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use crate::server::domain::error::DomainResult;
use crate::server::domain::installations::usage::{CustomerUsage, LicenseUsage};
use crate::server::domain::installations::{self, RemoveRequest, Removed, SignedRequest};
use crate::server::http::auth::Caller;
use crate::server::http::extract::{ApiJson, ApiPath, RequestMeta};
use crate::server::http::reply::json_response;
use crate::server::state::AppState;

/// Activates an agent: takes or joins the seat of its (account, region, stack).
#[utoipa::path(post, path = "/api/v1/installations", tag = "agents", request_body = SignedRequest,
    responses((status = 200, body = Object, description = "installation, agent, signed status and any renewed license"),
              (status = 401, body = crate::server::http::problem::Problem), (status = 403, body = crate::server::http::problem::Problem),
              (status = 422, body = crate::server::http::problem::Problem), (status = 429, body = crate::server::http::problem::Problem)))]
pub async fn activate(
    State(state): State<AppState>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<SignedRequest>,
) -> DomainResult<Response> {
    let answer = installations::activate(&state, &meta, body).await?;
    Ok(json_response(StatusCode::OK, answer))
}

/// A check-in: usage records in, signed status (and any renewed license) out.
#[utoipa::path(post, path = "/api/v1/installations/checkin", tag = "agents", request_body = SignedRequest,
    responses((status = 200, body = Object, description = "signed status, any renewed license, records stored"),
              (status = 401, body = crate::server::http::problem::Problem), (status = 403, body = crate::server::http::problem::Problem),
              (status = 404, body = crate::server::http::problem::Problem), (status = 409, body = crate::server::http::problem::Problem),
              (status = 410, body = crate::server::http::problem::Problem), (status = 422, body = crate::server::http::problem::Problem)))]
pub async fn checkin(
    State(state): State<AppState>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<SignedRequest>,
) -> DomainResult<Response> {
    let answer = installations::checkin::checkin(&state, &meta, body).await?;
    Ok(json_response(StatusCode::OK, answer))
}

/// Frees the seat of an uninstalled stack (the installer calls this after `uninstall`).
#[utoipa::path(post, path = "/api/v1/installations/remove", operation_id = "remove_installation", tag = "agents", request_body = RemoveRequest,
    responses((status = 200, body = Removed), (status = 401, body = crate::server::http::problem::Problem),
              (status = 403, body = crate::server::http::problem::Problem), (status = 404, body = crate::server::http::problem::Problem)))]
pub async fn remove(
    State(state): State<AppState>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<RemoveRequest>,
) -> DomainResult<Response> {
    let answer = installations::remove(&state, &meta, body).await?;
    Ok(json_response(StatusCode::OK, answer))
}

/// A license's installations, the versions they run and the usage they reported.
#[utoipa::path(get, path = "/api/v1/licenses/{id}/usage", tag = "licenses", security(("token" = [])),
    params(("id" = String, Path, description = "License id")),
    responses((status = 200, body = LicenseUsage), (status = 404, body = crate::server::http::problem::Problem)))]
pub async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> DomainResult<Response> {
    let answer = installations::usage::usage(&state, &caller, id).await?;
    Ok(json_response(StatusCode::OK, answer))
}

/// A customer's installations, versions in use and usage, over all its licenses.
#[utoipa::path(get, path = "/api/v1/customers/{customer}/usage", tag = "customers", security(("token" = [])),
    params(("customer" = String, Path, description = "Customer slug")),
    responses((status = 200, body = CustomerUsage), (status = 404, body = crate::server::http::problem::Problem)))]
pub async fn customer_usage(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(customer): ApiPath<String>,
) -> DomainResult<Response> {
    let answer = installations::usage::customer_usage(&state, &caller, customer).await?;
    Ok(json_response(StatusCode::OK, answer))
}

/// Imports the usage an air-gapped agent exported (`license-agent usage export`); answers the
/// acknowledgement the agent takes back (`license-agent usage ack`). Importing a file again
/// counts nothing twice.
#[utoipa::path(post, path = "/api/v1/usage/import", tag = "licenses", security(("token" = [])),
    request_body(content = Object, description = "The file `license-agent usage export` wrote"),
    responses((status = 200, body = Object, description = "The acknowledgement for `license-agent usage ack`"),
              (status = 403, body = crate::server::http::problem::Problem), (status = 404, body = crate::server::http::problem::Problem),
              (status = 409, body = crate::server::http::problem::Problem), (status = 422, body = crate::server::http::problem::Problem)))]
pub async fn import_usage(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(export): ApiJson<license::checkin::UsageExport>,
) -> DomainResult<Response> {
    let ack = installations::import::import(&state, &caller, export).await?;
    Ok(json_response(StatusCode::OK, ack))
}

/// Billing-ready usage: per customer, license and dimension, per hour, day or month, with the
/// overage of each quota. CSV (`format=csv`, the default) or JSON.
#[utoipa::path(get, path = "/api/v1/usage/export", tag = "licenses", security(("token" = [])),
    params(crate::server::domain::installations::billing::ExportQuery),
    responses((status = 200, body = crate::server::domain::installations::billing::UsageExport,
               description = "JSON, or text/csv with the same fields per row"),
              (status = 422, body = crate::server::http::problem::Problem)))]
pub async fn export_usage(
    State(state): State<AppState>,
    caller: Caller,
    crate::server::http::extract::ApiQuery(query): crate::server::http::extract::ApiQuery<
        crate::server::domain::installations::billing::ExportQuery,
    >,
) -> DomainResult<Response> {
    use crate::server::domain::installations::billing;
    use axum::response::IntoResponse as _;
    let csv = match query.format.as_deref().unwrap_or("csv") {
        "csv" => true,
        "json" => false,
        other => {
            return Err(crate::server::domain::error::DomainError::invalid(format!(
                "format {other:?} is not csv or json"
            )));
        }
    };
    let export = billing::export(&state, &caller, &query).await?;
    if !csv {
        return Ok(json_response(StatusCode::OK, export));
    }
    let name = format!(
        "attachment; filename=\"usage-{}-{}.csv\"",
        export.granularity,
        export.from.get(..10).unwrap_or("from")
    );
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/csv; charset=utf-8".to_owned(),
            ),
            (axum::http::header::CONTENT_DISPOSITION, name),
        ],
        billing::to_csv(&export),
    )
        .into_response())
}
