//! Apps, plans and customers over HTTP; the rules are [`crate::server::domain::catalog`]'s.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use crate::server::domain::catalog::{
    self, App, AppCreate, AppUpdate, Customer, CustomerCreate, CustomerUpdate, Plan, PlanCreate,
};
use crate::server::domain::error::DomainResult;
use crate::server::http::auth::Caller;
use crate::server::http::extract::{ApiJson, ApiPath};
use crate::server::http::idempotency::IdempotencyContext;
use crate::server::http::reply::json_response;
use crate::server::state::AppState;

/// Creates an app.
#[utoipa::path(post, path = "/api/v1/apps", tag = "apps", security(("token" = [])), request_body = AppCreate, responses(
    (status = 201, body = App), (status = 409, body = crate::server::http::problem::Problem), (status = 422, body = crate::server::http::problem::Problem)))]
pub async fn create_app(
    State(state): State<AppState>,
    caller: Caller,
    idem: Option<Extension<IdempotencyContext>>,
    ApiJson(body): ApiJson<AppCreate>,
) -> DomainResult<Response> {
    let answer = catalog::create_app(&state, &caller, idem.as_deref(), body).await?;
    Ok(json_response(StatusCode::CREATED, answer))
}

/// Lists the vendor's apps.
#[utoipa::path(get, path = "/api/v1/apps", tag = "apps", security(("token" = [])), responses((status = 200, body = Vec<App>)))]
pub async fn list_apps(State(state): State<AppState>, caller: Caller) -> DomainResult<Response> {
    let answer = catalog::list_apps(&state, &caller).await?;
    Ok(json_response(StatusCode::OK, answer))
}

/// Shows an app.
#[utoipa::path(get, path = "/api/v1/apps/{app}", tag = "apps", security(("token" = [])),
    params(("app" = String, Path, description = "App slug")), responses((status = 200, body = App), (status = 404, body = crate::server::http::problem::Problem)))]
pub async fn show_app(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(slug): ApiPath<String>,
) -> DomainResult<Response> {
    let answer = catalog::show_app(&state, &caller, slug).await?;
    Ok(json_response(StatusCode::OK, answer))
}

/// Updates an app's listing.
#[utoipa::path(patch, path = "/api/v1/apps/{app}", tag = "apps", security(("token" = [])), request_body = AppUpdate,
    params(("app" = String, Path, description = "App slug")), responses((status = 200, body = App), (status = 404, body = crate::server::http::problem::Problem), (status = 422, body = crate::server::http::problem::Problem)))]
pub async fn update_app(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(slug): ApiPath<String>,
    ApiJson(body): ApiJson<AppUpdate>,
) -> DomainResult<Response> {
    let answer = catalog::update_app(&state, &caller, slug, body).await?;
    Ok(json_response(StatusCode::OK, answer))
}

/// Adds a plan to an app.
#[utoipa::path(post, path = "/api/v1/apps/{app}/plans", tag = "apps", security(("token" = [])), request_body = PlanCreate,
    params(("app" = String, Path, description = "App slug")), responses((status = 201, body = Plan), (status = 404, body = crate::server::http::problem::Problem), (status = 422, body = crate::server::http::problem::Problem)))]
pub async fn create_plan(
    State(state): State<AppState>,
    caller: Caller,
    idem: Option<Extension<IdempotencyContext>>,
    ApiPath(app_slug): ApiPath<String>,
    ApiJson(body): ApiJson<PlanCreate>,
) -> DomainResult<Response> {
    let answer = catalog::create_plan(&state, &caller, idem.as_deref(), app_slug, body).await?;
    Ok(json_response(StatusCode::CREATED, answer))
}

/// Lists an app's plans.
#[utoipa::path(get, path = "/api/v1/apps/{app}/plans", tag = "apps", security(("token" = [])),
    params(("app" = String, Path, description = "App slug")), responses((status = 200, body = Vec<Plan>), (status = 404, body = crate::server::http::problem::Problem)))]
pub async fn list_plans(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(app_slug): ApiPath<String>,
) -> DomainResult<Response> {
    let answer = catalog::list_plans(&state, &caller, app_slug).await?;
    Ok(json_response(StatusCode::OK, answer))
}

/// Creates a customer.
#[utoipa::path(post, path = "/api/v1/customers", tag = "customers", security(("token" = [])), request_body = CustomerCreate, responses(
    (status = 201, body = Customer), (status = 409, body = crate::server::http::problem::Problem), (status = 422, body = crate::server::http::problem::Problem)))]
pub async fn create_customer(
    State(state): State<AppState>,
    caller: Caller,
    idem: Option<Extension<IdempotencyContext>>,
    ApiJson(body): ApiJson<CustomerCreate>,
) -> DomainResult<Response> {
    let answer = catalog::create_customer(&state, &caller, idem.as_deref(), body).await?;
    Ok(json_response(StatusCode::CREATED, answer))
}

/// Lists the vendor's customers.
#[utoipa::path(get, path = "/api/v1/customers", tag = "customers", security(("token" = [])), responses((status = 200, body = Vec<Customer>)))]
pub async fn list_customers(
    State(state): State<AppState>,
    caller: Caller,
) -> DomainResult<Response> {
    let answer = catalog::list_customers(&state, &caller).await?;
    Ok(json_response(StatusCode::OK, answer))
}

/// Shows a customer.
#[utoipa::path(get, path = "/api/v1/customers/{customer}", tag = "customers", security(("token" = [])),
    params(("customer" = String, Path, description = "Customer slug")), responses((status = 200, body = Customer), (status = 404, body = crate::server::http::problem::Problem)))]
pub async fn show_customer(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(slug): ApiPath<String>,
) -> DomainResult<Response> {
    let answer = catalog::show_customer(&state, &caller, slug).await?;
    Ok(json_response(StatusCode::OK, answer))
}

/// Updates a customer.
#[utoipa::path(patch, path = "/api/v1/customers/{customer}", tag = "customers", security(("token" = [])), request_body = CustomerUpdate,
    params(("customer" = String, Path, description = "Customer slug")), responses((status = 200, body = Customer), (status = 404, body = crate::server::http::problem::Problem), (status = 422, body = crate::server::http::problem::Problem)))]
pub async fn update_customer(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(slug): ApiPath<String>,
    ApiJson(body): ApiJson<CustomerUpdate>,
) -> DomainResult<Response> {
    let answer = catalog::update_customer(&state, &caller, slug, body).await?;
    Ok(json_response(StatusCode::OK, answer))
}
