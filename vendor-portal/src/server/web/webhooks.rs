//! The console's webhooks page: endpoints with their recent deliveries; owners add and remove
//! endpoints, publishers send a test event and redeliver. The same domain functions as the API
//! (`domain::webhooks`), so the console can do nothing the API cannot.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use super::console::Member;
use super::{Page, PageParts, WebError, WebForm, datetime, render, see_other};
use crate::server::domain::webhooks::{self, EVENT_TYPES, Endpoint, NewEndpoint};
use crate::server::http::auth::{Caller, Role};
use crate::server::http::extract::ApiPath;
use crate::server::state::AppState;

/// Deliveries shown per endpoint.
const SHOWN: i64 = 20;

/// A delivery as the page shows it.
struct DeliveryRow {
    id: String,
    kind: String,
    state: String,
    attempts: i64,
    outcome: String,
    created: String,
}

struct EndpointView {
    endpoint: Endpoint,
    deliveries: Vec<DeliveryRow>,
}

#[derive(Template)]
#[template(path = "console_webhooks.html")]
struct WebhooksPage {
    page: Page,
    endpoints: Vec<EndpointView>,
    owner: bool,
    publisher: bool,
    types: Vec<(&'static str, &'static str)>,
    /// A new endpoint's secret, shown once: (endpoint id, secret).
    secret: Option<(String, String)>,
}

async fn show(
    state: &AppState,
    parts: &PageParts,
    caller: &Caller,
    secret: Option<(String, String)>,
) -> Result<Response, WebError> {
    let mut endpoints = Vec::new();
    for endpoint in webhooks::list(state, caller).await? {
        let deliveries = webhooks::deliveries(state, caller, &endpoint.id, Some(SHOWN))
            .await?
            .into_iter()
            .map(|d| {
                let outcome = d.history.last().map_or_else(String::new, |a| {
                    a.error.clone().unwrap_or_else(|| match a.status {
                        Some(status) => format!("HTTP {status}"),
                        None => String::new(),
                    })
                });
                DeliveryRow {
                    id: d.id,
                    kind: d.r#type,
                    state: d.state,
                    attempts: d.attempts,
                    outcome: outcome.chars().take(120).collect(),
                    created: datetime(d.created_at),
                }
            })
            .collect();
        endpoints.push(EndpointView {
            endpoint,
            deliveries,
        });
    }
    Ok(render(&WebhooksPage {
        page: Page::new(parts, "console", "Webhooks"),
        endpoints,
        owner: caller.role == Role::Owner,
        publisher: caller.role >= Role::Publisher,
        types: EVENT_TYPES.to_vec(),
        secret,
    }))
}

/// `GET /console/webhooks`.
pub async fn page(
    State(state): State<AppState>,
    parts: PageParts,
    Member(caller): Member,
) -> Result<Response, WebError> {
    show(&state, &parts, &caller, None).await
}

/// The add form's fields.
#[derive(Debug, Deserialize)]
pub struct AddForm {
    /// The endpoint URL.
    #[serde(default)]
    pub url: String,
    /// One event type, or empty for all.
    #[serde(default)]
    pub event: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
}

/// `POST /console/webhooks`: adds an endpoint and shows its secret once.
pub async fn add(
    State(state): State<AppState>,
    parts: PageParts,
    Member(caller): Member,
    WebForm(form): WebForm<AddForm>,
) -> Result<Response, WebError> {
    let events = if form.event.is_empty() {
        Vec::new()
    } else {
        vec![form.event]
    };
    let endpoint = webhooks::add(
        &state,
        &caller,
        NewEndpoint {
            url: form.url,
            events,
            description: form.description,
        },
    )
    .await?;
    let secret = endpoint.secret.map(|s| (endpoint.id, s));
    show(&state, &parts, &caller, secret).await
}

/// The action forms carry nothing but the CSRF token.
#[derive(Debug, Deserialize)]
pub struct ActionForm {}

/// `POST /console/webhooks/{id}/{action}`: `test` or `remove` an endpoint, or `redeliver` a
/// delivery.
pub async fn action(
    State(state): State<AppState>,
    Member(caller): Member,
    ApiPath((id, action)): ApiPath<(String, String)>,
    WebForm(_form): WebForm<ActionForm>,
) -> Result<Response, WebError> {
    match action.as_str() {
        "test" => {
            webhooks::test(&state, &caller, &id).await?;
        }
        "remove" => {
            webhooks::remove(&state, &caller, &id).await?;
        }
        "redeliver" => webhooks::redeliver(&state, &caller, &id).await?,
        _ => return Err(WebError::not_found("webhook action")),
    }
    Ok(see_other(&format!(
        "/console/webhooks?done=webhook-{action}"
    )))
}
