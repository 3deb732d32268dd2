//! `serve --demo`: a vendor with portal-held keys, the reference app with trial, standard and
//! enterprise plans, a customer and a license, so that a first run has something to show. The
//! data goes through the same API handlers as everything else. Starting again on the same
//! database seeds nothing twice; it only prints a fresh token.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::state::AppState;
use super::{app, create_vendor, now, routes};
use anyhow::{Context as _, Result, bail};

/// The demo vendor's slug.
pub const VENDOR: &str = "acme";
/// The demo owner's email.
pub const OWNER: &str = "owner@acme.example";

/// What the demo seeded, to print.
#[derive(Debug)]
pub struct Demo {
    /// The owner's password, when the vendor was created now.
    pub password: Option<String>,
    /// A fresh API token.
    pub token: String,
    /// The demo license id.
    pub license_id: Option<String>,
}

async fn call(
    state: &AppState,
    token: &str,
    method: Method,
    path: &str,
    body: Value,
) -> Result<Value> {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))?;
    let mut request = request;
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            0,
        ))));
    let response = app(state.clone()).oneshot(request).await?;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    if !status.is_success() {
        bail!(
            "seeding {path} failed ({status}): {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Seeds the demo data (once) and returns what to print.
pub async fn seed(state: &AppState) -> Result<Demo> {
    let existing = sqlx::query("SELECT v.id AS vendor_id, m.id AS member_id FROM vendors v JOIN members m ON m.vendor_id = v.id WHERE v.slug = $1 AND m.email = $2")
        .bind(VENDOR)
        .bind(OWNER)
        .fetch_optional(&state.db.pool)
        .await?;
    if let Some(row) = existing {
        use sqlx::Row as _;
        let vendor_id: String = row.try_get("vendor_id")?;
        let member_id: String = row.try_get("member_id")?;
        let mut tx = super::tx::VendorTx::begin(state, &vendor_id)
            .await
            .map_err(|e| anyhow::anyhow!(e.detail))?;
        let name = format!("demo {}", now());
        let token = routes::vendor::insert_token(tx.conn(), &vendor_id, &member_id, &name, None)
            .await
            .map_err(|e| anyhow::anyhow!(e.detail))?;
        tx.audit_as(
            json!({"admin": "serve --demo"}),
            "localhost",
            "-",
            "token.create",
            &token.info.id,
            json!({"name": name}),
        )
        .await
        .map_err(|e| anyhow::anyhow!(e.detail))?;
        tx.commit(None, StatusCode::CREATED, &json!({}))
            .await
            .map_err(|e| anyhow::anyhow!(e.detail))?;
        return Ok(Demo {
            password: None,
            token: token.token,
            license_id: None,
        });
    }
    let vendor = create_vendor(state, VENDOR, "Acme Serverless", OWNER)
        .await
        .map_err(|e| anyhow::anyhow!(e.detail))
        .context("cannot create the demo vendor")?;
    let t = vendor.token.clone();
    call(state, &t, Method::POST, "/api/v1/apps", json!({
        "slug": "serverless-blog",
        "name": "Serverless Blog",
        "summary": "A blog on Lambda, API Gateway, DynamoDB and S3 that runs in your own AWS account.",
        "description": "Posts by user, a user list and a static front page. Every function checks its entitlement with the local license agent; nothing leaves your account.",
        "categories": ["content", "web"],
    })).await?;
    let policies = json!({"checkin_interval": 86400, "offline_grace": 604800});
    for (slug, name, trial, days, features, extra) in [
        (
            "trial",
            "14-day trial",
            true,
            14,
            json!(["posts", "users"]),
            json!({"limits": {"users": {"max": 5}}, "max_installations": 1}),
        ),
        (
            "standard",
            "Standard",
            false,
            365,
            json!(["posts", "users"]),
            json!({"limits": {"users": {"max": 100}}, "max_installations": 3}),
        ),
        (
            "enterprise",
            "Enterprise",
            false,
            365,
            json!(["posts", "users", "sso"]),
            json!({"limits": {"users": {"max": 10000, "overage": 1000}}, "quotas": {"posts": {"amount": 100000, "period": "month"}}}),
        ),
    ] {
        let mut entitlements = extra;
        if let (Some(map), Some(p)) = (entitlements.as_object_mut(), policies.as_object()) {
            map.insert("features".into(), features);
            map.extend(p.clone());
        }
        call(state, &t, Method::POST, "/api/v1/apps/serverless-blog/plans", json!({
            "slug": slug, "name": name, "trial": trial, "duration_days": days, "entitlements": entitlements,
        })).await?;
    }
    call(state, &t, Method::POST, "/api/v1/customers", json!({
        "slug": "globex", "name": "Globex Corporation", "email": "cloud-team@globex.example", "aws_accounts": ["123456789012"],
    })).await?;
    let license = call(
        state,
        &t,
        Method::POST,
        "/api/v1/licenses",
        json!({
            "customer": "globex", "app": "serverless-blog", "plan": "standard",
        }),
    )
    .await?;
    Ok(Demo {
        password: Some(vendor.owner_password),
        token: vendor.token,
        license_id: license.get("id").and_then(Value::as_str).map(str::to_owned),
    })
}
