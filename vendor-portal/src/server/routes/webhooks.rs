//! Webhook endpoints and their delivery log over HTTP; see [`crate::server::domain::webhooks`].

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::server::domain::error::DomainResult;
use crate::server::domain::webhooks::{self, Delivery, Endpoint, NewEndpoint};
use crate::server::http::auth::Caller;
use crate::server::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::server::http::reply::json_response;
use crate::server::state::AppState;

type Problem = crate::server::http::problem::Problem;

/// Adds an endpoint (owners only). The answer carries its signing secret, shown once.
#[utoipa::path(post, path = "/api/v1/webhooks", operation_id = "add_webhook", tag = "webhooks", security(("token" = [])),
    request_body = NewEndpoint, responses((status = 201, body = Endpoint), (status = 403, body = Problem),
    (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn add(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewEndpoint>,
) -> DomainResult<Response> {
    let answer = webhooks::add(&state, &caller, body).await?;
    Ok(json_response(StatusCode::CREATED, answer))
}

/// Lists the vendor's endpoints, with deliveries pending and failed.
#[utoipa::path(get, path = "/api/v1/webhooks", operation_id = "list_webhooks", tag = "webhooks", security(("token" = [])),
    responses((status = 200, body = Vec<Endpoint>)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> DomainResult<Response> {
    let answer = webhooks::list(&state, &caller).await?;
    Ok(json_response(StatusCode::OK, answer))
}

/// Removes an endpoint (owners only); its pending deliveries are cancelled.
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", operation_id = "remove_webhook", tag = "webhooks", security(("token" = [])),
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, body = Endpoint), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> DomainResult<Response> {
    let answer = webhooks::remove(&state, &caller, &id).await?;
    Ok(json_response(StatusCode::OK, answer))
}

/// Which deliveries to show.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// At most this many, newest first (default 50, at most 200).
    pub limit: Option<i64>,
}

/// The delivery log of an endpoint: each event sent to it, its state and every attempt.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", operation_id = "list_webhook_deliveries", tag = "webhooks",
    security(("token" = [])), params(("id" = String, Path, description = "Endpoint id"), DeliveriesQuery),
    responses((status = 200, body = Vec<Delivery>), (status = 404, body = Problem)))]
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<DeliveriesQuery>,
) -> DomainResult<Response> {
    let answer = webhooks::deliveries(&state, &caller, &id, query.limit).await?;
    Ok(json_response(StatusCode::OK, answer))
}

/// A delivery queued.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Queued {
    /// The delivery's id.
    pub delivery: String,
}

/// Sends a `webhook.test` event to an endpoint (publishers and owners).
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/test", operation_id = "test_webhook", tag = "webhooks", security(("token" = [])),
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 202, body = Queued), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> DomainResult<Response> {
    let delivery = webhooks::test(&state, &caller, &id).await?;
    Ok(json_response(StatusCode::ACCEPTED, Queued { delivery }))
}

/// Sends a delivery again now, with the same `webhook-id` (publishers and owners).
#[utoipa::path(post, path = "/api/v1/webhooks/deliveries/{id}/redeliver", operation_id = "redeliver_webhook", tag = "webhooks",
    security(("token" = [])), params(("id" = String, Path, description = "Delivery id")),
    responses((status = 202, body = Queued), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn redeliver(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> DomainResult<Response> {
    webhooks::redeliver(&state, &caller, &id).await?;
    Ok(json_response(StatusCode::ACCEPTED, Queued { delivery: id }))
}

/// An event type.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventType {
    /// Its name.
    pub name: String,
    /// When it happens.
    pub description: String,
}

/// Every event type an endpoint can receive.
#[utoipa::path(get, path = "/api/v1/webhooks/event-types", operation_id = "list_webhook_event_types", tag = "webhooks",
    security(("token" = [])), responses((status = 200, body = Vec<EventType>)))]
pub async fn event_types(_caller: Caller) -> DomainResult<Response> {
    let types: Vec<EventType> = webhooks::EVENT_TYPES
        .iter()
        .map(|(name, description)| EventType {
            name: (*name).to_owned(),
            description: (*description).to_owned(),
        })
        .collect();
    Ok(json_response(StatusCode::OK, types))
}
