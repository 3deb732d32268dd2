//! The console's app pages: releases, the listing, publishing and unpublishing.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use sqlx::Row as _;

use super::*;
use super::{Page, PageParts, WebError, WebForm, render, see_other};
use crate::server::domain;
use crate::server::domain::catalog;
use crate::server::http::auth::Caller;
use crate::server::http::extract::ApiPath;
use crate::server::state::AppState;

/// A release in the console.
#[derive(Debug)]
pub struct ReleaseRow {
    /// Version.
    pub version: String,
    /// `staged` or `published`.
    pub state: String,
    /// Channels.
    pub channels: String,
    /// Published date.
    pub published: String,
    /// Why yanked.
    pub yanked: Option<String>,
    /// Required.
    pub required: bool,
    /// The release notes from its signed manifest.
    pub notes: String,
}

#[derive(Template)]
#[template(path = "console_app.html")]
pub(crate) struct AppPage {
    page: Page,
    vendor: String,
    app: catalog::App,
    categories: String,
    plans: Vec<crate::server::web::market::PlanView>,
    releases: Vec<ReleaseRow>,
    /// The portal holds this vendor's release key (a new or demo vendor): it signs promotions
    /// and yanks itself.
    portal_signs: bool,
}

/// `GET /console/apps/{app}`: the listing, its plans, releases and channels.
pub async fn app_page(
    State(state): State<AppState>,
    parts: PageParts,
    Member(caller): Member,
    ApiPath(slug): ApiPath<String>,
) -> Result<Response, WebError> {
    let mut conn = state.db.pool.acquire().await?;
    let app = catalog::find_app(&mut conn, &caller.vendor_id, &slug).await?;
    let mut plans = Vec::new();
    for p in sqlx::query(
        "SELECT slug, name, description, trial, duration_days, entitlements FROM plans WHERE app_id = $1 ORDER BY slug",
    )
    .bind(&app.id)
    .fetch_all(&mut *conn)
    .await?
    {
        let entitlements: String = p.try_get("entitlements")?;
        plans.push(crate::server::web::market::PlanView {
            slug: p.try_get("slug")?,
            name: p.try_get("name")?,
            description: p.try_get("description")?,
            trial: p.try_get::<i64, _>("trial")? != 0,
            days: p.try_get("duration_days")?,
            entitles: crate::server::web::market::entitlement_lines(
                &serde_json::from_str(&entitlements).unwrap_or_default(),
            ),
        });
    }
    let releases = domain::releases::releases_of(&mut conn, &app.id)
        .await?
        .into_iter()
        .map(|r| ReleaseRow {
            version: r.version,
            state: r.state,
            channels: r.channels.join(", "),
            published: r
                .published_at
                .map(crate::server::web::date)
                .unwrap_or_default(),
            yanked: r.yanked,
            required: r.required,
            notes: r.release_notes,
        })
        .collect();
    let portal_signs =
        domain::keys::custody(&mut conn, &caller.vendor_id).await? == domain::keys::CUSTODY_PORTAL;
    Ok(render(&AppPage {
        portal_signs,
        page: Page::new(&parts, "console", app.name.clone()),
        vendor: caller.vendor_slug.clone(),
        categories: app.categories.join(", "),
        app,
        plans,
        releases,
    }))
}

/// The listing form.
#[derive(Debug, Deserialize)]
pub struct ListingForm {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Summary.
    #[serde(default)]
    pub summary: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Comma-separated categories.
    #[serde(default)]
    pub categories: String,
}

/// `POST /console/apps/{app}`: saves the listing (`PATCH /api/v1/apps/{app}`).
pub async fn update_app(
    State(state): State<AppState>,
    Member(caller): Member,
    ApiPath(slug): ApiPath<String>,
    WebForm(form): WebForm<ListingForm>,
) -> Result<Response, WebError> {
    let categories: Vec<String> = form
        .categories
        .split(',')
        .map(|c| c.trim().to_lowercase())
        .filter(|c| !c.is_empty())
        .collect();
    let changes = catalog::AppUpdate {
        name: Some(form.name.trim().to_owned()),
        summary: Some(form.summary.trim().to_owned()),
        description: Some(form.description.replace("\r\n", "\n")),
        categories: Some(categories),
        listed: None,
    };
    patch_app(state, caller, slug, changes, "saved").await
}

/// Changes an app (the domain's [`catalog::update_app`], as `PATCH /api/v1/apps/{app}`), then
/// back to its page with the notice `done`.
pub(crate) async fn patch_app(
    state: AppState,
    caller: Caller,
    slug: String,
    changes: catalog::AppUpdate,
    done: &str,
) -> Result<Response, WebError> {
    catalog::update_app(&state, &caller, slug.clone(), changes).await?;
    Ok(see_other(&format!(
        "/console/apps/{}?done={done}",
        crate::server::web::encode(&slug)
    )))
}

/// Publish or unpublish.
#[derive(Debug, Deserialize)]
pub struct ListedForm {
    /// `true` or `false`.
    #[serde(default)]
    pub listed: bool,
}

/// `POST /console/apps/{app}/listing`: publishes or unpublishes the listing.
pub async fn set_listed(
    State(state): State<AppState>,
    Member(caller): Member,
    ApiPath(slug): ApiPath<String>,
    WebForm(form): WebForm<ListedForm>,
) -> Result<Response, WebError> {
    let done = if form.listed { "listed" } else { "unlisted" };
    patch_app(
        state,
        caller,
        slug,
        catalog::AppUpdate {
            listed: Some(form.listed),
            ..catalog::AppUpdate::default()
        },
        done,
    )
    .await
}

/// A release change from the console, for a vendor whose release key the portal holds.
#[derive(Debug, Deserialize)]
pub struct ReleaseForm {
    /// The channel to promote to.
    #[serde(default)]
    pub channel: String,
    /// Why it is yanked (installers show it).
    #[serde(default)]
    pub reason: String,
}

/// `POST /console/apps/{app}/releases/{version}/{promote|yank}`: the portal signs the change
/// with the release key it holds ([`domain::releases::publish::sign_change`], as
/// `POST /api/v1/apps/{app}/releases/{version}/change`); refused once the vendor holds its own.
pub async fn release_action(
    State(state): State<AppState>,
    Member(caller): Member,
    ApiPath((slug, version, action)): ApiPath<(String, String, String)>,
    WebForm(form): WebForm<ReleaseForm>,
) -> Result<Response, WebError> {
    use domain::releases::publish::{ReleaseChange, sign_change};
    let (change, done) = match action.as_str() {
        "promote" => (
            ReleaseChange {
                promote: Some(form.channel.trim().to_owned()),
                ..ReleaseChange::default()
            },
            "promoted",
        ),
        "yank" => (
            ReleaseChange {
                yank: Some(form.reason.trim().to_owned()),
                ..ReleaseChange::default()
            },
            "yanked",
        ),
        _ => return Err(WebError::not_found("release action")),
    };
    sign_change(&state, &caller, slug.clone(), version, change).await?;
    Ok(see_other(&format!(
        "/console/apps/{}?done={done}",
        crate::server::web::encode(&slug)
    )))
}
