//! Apps: the listing data the marketplace shows.

use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;
use sqlx::{AnyConnection, Row as _};
use utoipa::ToSchema;

use super::{check_listing, check_slug};
use crate::server::base::db::is_unique_violation;
use crate::server::base::now;
use crate::server::base::secrets::new_id;
use crate::server::domain::access::{Caller, Role};
use crate::server::domain::error::{DomainError, DomainResult};
use crate::server::domain::idempotency::IdempotencyContext;
use crate::server::domain::tx::VendorTx;
use crate::server::state::AppState;

/// A new app listing.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppCreate {
    /// Unique within the vendor; licenses name it as `aud`.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// One line for listings.
    #[serde(default)]
    pub summary: String,
    /// Markdown for the listing page.
    #[serde(default)]
    pub description: String,
    /// Marketplace categories.
    #[serde(default)]
    pub categories: Vec<String>,
    /// Whether the listing is on the marketplace (false until the vendor publishes it).
    #[serde(default)]
    pub listed: bool,
}

/// An app.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct App {
    /// Id.
    pub id: String,
    /// Slug.
    pub slug: String,
    /// Name.
    pub name: String,
    /// Summary.
    pub summary: String,
    /// Description.
    pub description: String,
    /// Categories.
    pub categories: Vec<String>,
    /// Whether the listing is on the marketplace.
    #[serde(default)]
    pub listed: bool,
    /// Unix seconds.
    pub created_at: i64,
}

pub(crate) fn app_from(row: &sqlx::any::AnyRow) -> DomainResult<App> {
    let categories: String = row.try_get("categories")?;
    Ok(App {
        id: row.try_get("id")?,
        slug: row.try_get("slug")?,
        name: row.try_get("name")?,
        summary: row.try_get("summary")?,
        description: row.try_get("description")?,
        categories: serde_json::from_str(&categories).unwrap_or_default(),
        listed: row.try_get::<i64, _>("listed")? != 0,
        created_at: row.try_get("created_at")?,
    })
}

pub(crate) const APP_COLUMNS: &str =
    "id, slug, name, summary, description, categories, listed, created_at";

/// Finds an app of the vendor by slug (404 otherwise, whoever owns it).
pub async fn find_app(conn: &mut AnyConnection, vendor_id: &str, slug: &str) -> DomainResult<App> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {APP_COLUMNS} FROM apps WHERE vendor_id = $1 AND slug = $2"
    )))
    .bind(vendor_id)
    .bind(slug)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| DomainError::not_found("app", slug))?;
    app_from(&row)
}

/// Creates an app.
pub async fn create_app(
    state: &AppState,
    caller: &Caller,
    idem: Option<&IdempotencyContext>,
    body: AppCreate,
) -> DomainResult<App> {
    caller.require(Role::Publisher)?;
    check_slug("app", &body.slug)?;
    check_listing(
        &body.name,
        &body.summary,
        &body.description,
        &body.categories,
    )?;
    let app = App {
        id: new_id("app")?,
        slug: body.slug,
        name: body.name,
        summary: body.summary,
        description: body.description,
        categories: body.categories,
        listed: body.listed,
        created_at: now(),
    };
    let mut tx = VendorTx::begin(state, &caller.vendor_id).await?;
    let inserted = sqlx::query(
        "INSERT INTO apps (id, vendor_id, slug, name, summary, description, categories, listed, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $9, $8, $8)",
    )
    .bind(&app.id)
    .bind(&caller.vendor_id)
    .bind(&app.slug)
    .bind(&app.name)
    .bind(&app.summary)
    .bind(&app.description)
    .bind(serde_json::to_string(&app.categories).map_err(DomainError::internal)?)
    .bind(app.created_at)
    .bind(i64::from(app.listed))
    .execute(tx.conn())
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => {
            return Err(DomainError::conflict(format!(
                "an app {:?} exists already",
                app.slug
            )));
        }
        other => other?,
    };
    tx.audit(
        caller,
        "app.create",
        &app.id,
        serde_json::json!({"slug": app.slug, "name": app.name}),
    )
    .await?;
    tx.commit_answer(idem, 201, &app).await?;
    let response = app;
    state.catalog.clear();
    state.facets.clear();
    state.listings.clear();
    Ok(response)
}

/// Lists the vendor's apps.
pub async fn list_apps(state: &AppState, caller: &Caller) -> DomainResult<Vec<App>> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {APP_COLUMNS} FROM apps WHERE vendor_id = $1 ORDER BY slug"
    )))
    .bind(&caller.vendor_id)
    .fetch_all(&state.db.pool)
    .await?;
    let apps = rows
        .iter()
        .map(app_from)
        .collect::<DomainResult<Vec<_>>>()?;
    Ok(apps)
}

/// Shows an app.
pub async fn show_app(state: &AppState, caller: &Caller, slug: String) -> DomainResult<App> {
    let mut conn = state.db.pool.acquire().await?;
    let app = find_app(&mut conn, &caller.vendor_id, &slug).await?;
    Ok(app)
}

/// Changes to an app's listing; absent fields stay as they are. The slug never changes: licenses
/// name it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppUpdate {
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// One line for listings.
    #[serde(default)]
    pub summary: Option<String>,
    /// Markdown for the listing page.
    #[serde(default)]
    pub description: Option<String>,
    /// Marketplace categories.
    #[serde(default)]
    pub categories: Option<Vec<String>>,
    /// Publish (true) or unpublish (false) the listing on the marketplace.
    #[serde(default)]
    pub listed: Option<bool>,
}

/// Updates an app's listing.
pub async fn update_app(
    state: &AppState,
    caller: &Caller,
    slug: String,
    body: AppUpdate,
) -> DomainResult<App> {
    caller.require(Role::Publisher)?;
    let mut tx = VendorTx::begin(state, &caller.vendor_id).await?;
    let mut app = find_app(tx.conn(), &caller.vendor_id, &slug).await?;
    let mut changed = Vec::new();
    if let Some(name) = body.name {
        app.name = name;
        changed.push("name");
    }
    if let Some(summary) = body.summary {
        app.summary = summary;
        changed.push("summary");
    }
    if let Some(description) = body.description {
        app.description = description;
        changed.push("description");
    }
    if let Some(categories) = body.categories {
        app.categories = categories;
        changed.push("categories");
    }
    // Putting a listing on the marketplace or taking it off is its own entry in the audit log.
    let mut action = "app.update";
    if let Some(listed) = body.listed {
        if listed != app.listed {
            action = if listed {
                "app.publish"
            } else {
                "app.unpublish"
            };
        }
        app.listed = listed;
        changed.push(if listed { "listed" } else { "unlisted" });
    }
    check_listing(&app.name, &app.summary, &app.description, &app.categories)?;
    sqlx::query(
        "UPDATE apps SET name = $3, summary = $4, description = $5, categories = $6, updated_at = $7, listed = $8 \
         WHERE vendor_id = $1 AND id = $2",
    )
    .bind(&caller.vendor_id)
    .bind(&app.id)
    .bind(&app.name)
    .bind(&app.summary)
    .bind(&app.description)
    .bind(serde_json::to_string(&app.categories).map_err(DomainError::internal)?)
    .bind(now())
    .bind(i64::from(app.listed))
    .execute(tx.conn())
    .await?;
    tx.audit(
        caller,
        action,
        &app.id,
        serde_json::json!({"slug": app.slug, "changed": changed}),
    )
    .await?;
    tx.commit_answer(None, 200, &app).await?;
    let response = app;
    state.catalog.clear();
    state.facets.clear();
    state.listings.clear();
    Ok(response)
}
