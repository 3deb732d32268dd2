//! Routing in one place, and the OpenAPI document generated from the handlers' annotations.

// utoipa's generated code names types by their full paths.
#![allow(unused_qualifications)]

pub mod audit;
pub mod catalog;
pub mod grants;
pub mod health;
pub mod installations;
pub mod keys;
pub mod licenses;
pub mod members;
pub mod proofs;
pub mod releases;
pub mod sso;
pub mod support;
pub mod vendor;
pub mod webhooks;

use axum::Router;
use axum::routing::{get, patch, post, put};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::state::AppState;

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Consign vendor portal",
        description = "Apps, customers, licenses and keys of vendors selling customer-hosted serverless applications. \
                       Errors are application/problem+json; every POST honours Idempotency-Key.",
        license(name = "Apache-2.0")
    ),
    paths(
        health::healthz, health::readyz, health::metrics,
        vendor::show, vendor::add_member, vendor::list_members,
        members::update, members::reset_password, members::remove,
        vendor::create_token, vendor::list_tokens, vendor::revoke_token,
        vendor::login, vendor::logout,
        catalog::create_app, catalog::list_apps, catalog::show_app, catalog::update_app,
        catalog::create_plan, catalog::list_plans,
        catalog::create_customer, catalog::list_customers, catalog::show_customer, catalog::update_customer,
        licenses::issue, licenses::list, licenses::show, licenses::download,
        licenses::renew, licenses::suspend, licenses::reinstate, licenses::revoke,
        licenses::status,
        keys::show, keys::register, keys::rotate, keys::public_keyset,
        audit::list,
        releases::missing, releases::upload_object, releases::upload_part, releases::list_parts, releases::complete_upload, releases::stage, releases::list, releases::show,
        releases::tuf_state, releases::put_root, releases::put_targets, releases::sign_change, releases::metadata, releases::target,
        grants::grant, grants::kit_keys, grants::download,
        installations::activate, installations::checkin, installations::remove, installations::usage,
        installations::customer_usage, installations::import_usage, installations::export_usage,
        proofs::nonce, proofs::prove,
        webhooks::add, webhooks::list, webhooks::remove, webhooks::deliveries, webhooks::test,
        webhooks::redeliver, webhooks::event_types,
        support::set_key, support::public_key, support::upload, support::list, support::download,
        sso::show, sso::set, sso::remove,
    ),
    components(schemas(crate::server::http::problem::Problem)),
    modifiers(&BearerToken),
    tags(
        (name = "vendor", description = "The calling vendor, its members, tokens, sessions and audit log"),
        (name = "apps", description = "App listings and their plans"),
        (name = "customers", description = "The vendor's customers"),
        (name = "licenses", description = "Issuing and changing licenses"),
        (name = "keys", description = "The vendor's signing keys"),
        (name = "releases", description = "Pushing, publishing and listing releases; TUF metadata"),
        (name = "public", description = "What verifiers fetch without credentials"),
        (name = "agents", description = "License agents: activation, check-ins, usage; signed with the agent's installation key"),
        (name = "webhooks", description = "Endpoints that hear the vendor's events, signed per Standard Webhooks, and their delivery log"),
        (name = "support", description = "Support bundles: sealed on the customer's side to the vendor's support key, stored unread"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
pub struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "token",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
    }
}

/// The OpenAPI document as pretty JSON.
///
/// OpenAPI requires a description on every response; a handler's annotation names the status and
/// the body, so the status's reason phrase is filled in where it gave none.
pub fn openapi_json() -> String {
    let Ok(mut doc) = serde_json::to_value(ApiDoc::openapi()) else {
        return String::new();
    };
    let operations = doc
        .get_mut("paths")
        .and_then(serde_json::Value::as_object_mut)
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(serde_json::Value::as_object_mut)
        .flat_map(|item| item.values_mut());
    for operation in operations {
        let responses = operation
            .get_mut("responses")
            .and_then(serde_json::Value::as_object_mut)
            .into_iter()
            .flat_map(|responses| responses.iter_mut());
        for (status, response) in responses {
            let Some(response) = response.as_object_mut() else {
                continue;
            };
            let missing = response
                .get("description")
                .and_then(serde_json::Value::as_str)
                .is_none_or(str::is_empty);
            if missing {
                let phrase = status
                    .parse::<u16>()
                    .ok()
                    .and_then(|code| axum::http::StatusCode::from_u16(code).ok())
                    .and_then(|code| code.canonical_reason())
                    .unwrap_or("Response");
                response.insert("description".into(), phrase.into());
            }
        }
    }
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

async fn openapi() -> axum::response::Response {
    use axum::response::IntoResponse as _;
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        openapi_json(),
    )
        .into_response()
}

/// Every route.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/vendor", get(vendor::show))
        .route(
            "/api/v1/members",
            get(vendor::list_members).post(vendor::add_member),
        )
        .route(
            "/api/v1/tokens",
            get(vendor::list_tokens).post(vendor::create_token),
        )
        .route(
            "/api/v1/members/{id}",
            patch(members::update).delete(members::remove),
        )
        .route(
            "/api/v1/members/{id}/password",
            post(members::reset_password),
        )
        .route("/api/v1/tokens/{id}/revoke", post(vendor::revoke_token))
        .route(
            "/api/v1/session",
            post(vendor::login).delete(vendor::logout),
        )
        .route(
            "/api/v1/apps",
            get(catalog::list_apps).post(catalog::create_app),
        )
        .route(
            "/api/v1/apps/{app}",
            get(catalog::show_app).patch(catalog::update_app),
        )
        .route(
            "/api/v1/apps/{app}/plans",
            get(catalog::list_plans).post(catalog::create_plan),
        )
        .route(
            "/api/v1/customers",
            get(catalog::list_customers).post(catalog::create_customer),
        )
        .route(
            "/api/v1/customers/{customer}",
            get(catalog::show_customer).patch(catalog::update_customer),
        )
        .route(
            "/api/v1/licenses",
            get(licenses::list).post(licenses::issue),
        )
        .route("/api/v1/licenses/{id}", get(licenses::show))
        .route("/api/v1/licenses/{id}/file", get(licenses::download))
        .route("/api/v1/licenses/{id}/renew", post(licenses::renew))
        .route("/api/v1/licenses/{id}/suspend", post(licenses::suspend))
        .route("/api/v1/licenses/{id}/reinstate", post(licenses::reinstate))
        .route("/api/v1/licenses/{id}/revoke", post(licenses::revoke))
        .route("/api/v1/keys", get(keys::show))
        .route("/api/v1/keys/register", post(keys::register))
        .route("/api/v1/keys/rotate", post(keys::rotate))
        .route("/api/v1/vendors/{vendor}/keyset", get(keys::public_keyset))
        .route(
            "/api/v1/vendors/{vendor}/licenses/{id}/status",
            get(licenses::status),
        )
        .route("/api/v1/audit", get(audit::list))
        .route("/api/v1/apps/{app}/releases", get(releases::list))
        .route(
            "/api/v1/apps/{app}/releases/missing",
            post(releases::missing),
        )
        .route("/api/v1/apps/{app}/tuf", get(releases::tuf_state))
        .route("/api/v1/apps/{app}/tuf/root", put(releases::put_root))
        .route("/tuf/{vendor}/{app}/{file}", get(releases::metadata))
        .route("/tuf/{vendor}/{app}/targets/{file}", get(releases::target))
        .route("/api/v1/proofs/nonce", post(proofs::nonce))
        .route("/api/v1/proofs", post(proofs::prove))
        .route("/api/v1/grants", post(grants::grant))
        .route("/api/v1/licenses/{id}/kit-keys", post(grants::kit_keys))
        .route("/api/v1/licenses/{id}/usage", get(installations::usage))
        .route(
            "/api/v1/customers/{customer}/usage",
            get(installations::customer_usage),
        )
        .route("/api/v1/installations", post(installations::activate))
        .route(
            "/api/v1/installations/checkin",
            post(installations::checkin),
        )
        .route("/api/v1/installations/remove", post(installations::remove))
        .route("/api/v1/usage/export", get(installations::export_usage))
        .route("/api/v1/support/key", put(support::set_key))
        .route(
            "/api/v1/vendors/{vendor}/support-key",
            get(support::public_key),
        )
        .route("/api/v1/support/bundles", get(support::list))
        .route(
            "/api/v1/sso",
            get(sso::show).put(sso::set).delete(sso::remove),
        )
        .route("/api/v1/webhooks", get(webhooks::list).post(webhooks::add))
        .route("/api/v1/webhooks/event-types", get(webhooks::event_types))
        .route(
            "/api/v1/webhooks/{id}",
            axum::routing::delete(webhooks::remove),
        )
        .route(
            "/api/v1/webhooks/{id}/deliveries",
            get(webhooks::deliveries),
        )
        .route("/api/v1/webhooks/{id}/test", post(webhooks::test))
        .route(
            "/api/v1/webhooks/deliveries/{id}/redeliver",
            post(webhooks::redeliver),
        )
}

/// Routes that stream large bodies: no request timeout, and their own body limits.
pub fn streaming_router() -> Router<AppState> {
    use axum::extract::DefaultBodyLimit;
    Router::new()
        .route(
            "/api/v1/objects/{digest}",
            put(releases::upload_object).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/api/v1/vendors/{vendor}/objects/{digest}",
            get(grants::download),
        )
        .route(
            "/api/v1/objects/{digest}/parts/{n}",
            put(releases::upload_part).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/v1/objects/{digest}/parts", get(releases::list_parts))
        .route(
            "/api/v1/objects/{digest}/complete",
            post(releases::complete_upload),
        )
        .route(
            "/api/v1/apps/{app}/releases/{version}",
            get(releases::show)
                .put(releases::stage)
                .layer(DefaultBodyLimit::max(
                    crate::server::domain::releases::MAX_STAGE_BODY,
                )),
        )
        .route(
            "/api/v1/apps/{app}/releases/{version}/change",
            post(releases::sign_change),
        )
        .route(
            "/api/v1/support/bundles",
            post(support::upload).layer(DefaultBodyLimit::max(
                crate::server::domain::support::MAX_UPLOAD_BODY,
            )),
        )
        .route("/api/v1/support/bundles/{id}", get(support::download))
        .route(
            "/api/v1/usage/import",
            post(installations::import_usage).layer(DefaultBodyLimit::max(
                crate::server::domain::installations::import::MAX_IMPORT_BODY,
            )),
        )
        .route(
            "/api/v1/apps/{app}/tuf/targets",
            put(releases::put_targets).layer(DefaultBodyLimit::max(crate::tuf::MAX_METADATA_LEN)),
        )
}
