//! The marketplace: a catalogue of every vendor's listed apps (search, filters, sort) and each
//! app's page, with what its plans entitle, its releases, and what a release creates in the
//! buyer's account and may do there, drawn as a diagram.

use askama::Template;

use crate::server::domain::catalog::market::{self, CatalogueQuery, Listing, PAGE_SIZE};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use sqlx::Row as _;

use super::{Page, PageParts, WebError, render, svg};
use crate::server::domain::releases::Release;
use crate::server::state::AppState;

#[derive(Template)]
#[template(path = "catalogue.html")]
struct CataloguePage {
    page: Page,
    query: CatalogueQuery,
    listings: Vec<Listing>,
    total: i64,
    categories: Vec<String>,
    vendors: Vec<(String, String)>,
    previous: Option<String>,
    next: Option<String>,
}

/// `GET /`: the catalogue.
pub async fn catalogue(
    State(state): State<AppState>,
    parts: PageParts,
    Query(query): Query<CatalogueQuery>,
) -> Result<Response, WebError> {
    let page = query.page.parse::<i64>().unwrap_or(1).clamp(1, 10_000);
    let (total, listings) = market::listing_page(&state, &query, page).await?;
    let (categories, vendors) = market::facets(&state).await?;
    let link = |p: i64| {
        format!(
            "/?q={}&category={}&vendor={}&sort={}&page={p}",
            super::encode(&query.q),
            super::encode(&query.category),
            super::encode(&query.vendor),
            super::encode(&query.sort)
        )
    };
    let previous = (page > 1).then(|| link(page - 1));
    let next = (page * PAGE_SIZE < total).then(|| link(page + 1));
    let title = if query.q.trim().is_empty() {
        "Marketplace".to_owned()
    } else {
        format!("Apps matching “{}”", query.q.trim())
    };
    Ok(render(&CataloguePage {
        page: Page::new(&parts, "market", title),
        query,
        listings,
        total,
        categories,
        vendors,
        previous,
        next,
    }))
}

/// A plan as buyers see it.
#[derive(Debug)]
pub struct PlanView {
    /// Slug.
    pub slug: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// A trial plan.
    pub trial: bool,
    /// Days a license lasts.
    pub days: i64,
    /// What it entitles, one line each.
    pub entitles: Vec<String>,
}

/// What a plan's entitlements give, in words.
pub fn entitlement_lines(entitlements: &serde_json::Value) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(features) = entitlements.get("features").and_then(|f| f.as_array()) {
        let names: Vec<&str> = features.iter().filter_map(|f| f.as_str()).collect();
        if !names.is_empty() {
            lines.push(format!("Features: {}", names.join(", ")));
        }
    }
    if let Some(limits) = entitlements.get("limits").and_then(|l| l.as_object()) {
        for (name, limit) in limits {
            let max = limit.get("max").and_then(|m| m.as_u64()).unwrap_or(0);
            match limit.get("overage").and_then(|o| o.as_u64()) {
                Some(over) if over > 0 => {
                    lines.push(format!("Up to {max} {name} (+{over} overage)"));
                }
                _ => lines.push(format!("Up to {max} {name}")),
            }
        }
    }
    if let Some(quotas) = entitlements.get("quotas").and_then(|q| q.as_object()) {
        for (name, quota) in quotas {
            let amount = quota.get("amount").and_then(|a| a.as_u64()).unwrap_or(0);
            let period = quota
                .get("period")
                .and_then(|p| p.as_str())
                .unwrap_or("period");
            lines.push(format!("{amount} {name} per {period}"));
        }
    }
    if let Some(seats) = entitlements
        .get("max_installations")
        .and_then(|m| m.as_u64())
    {
        lines.push(format!(
            "{seats} installation{}",
            if seats == 1 { "" } else { "s" }
        ));
    }
    if let Some(grace) = entitlements.get("offline_grace").and_then(|g| g.as_u64()) {
        lines.push(format!(
            "Runs {} days without reaching the portal",
            grace / 86_400
        ));
    }
    lines
}

/// A release as buyers see it.
#[derive(Debug)]
pub struct ReleaseView {
    /// Version.
    pub version: String,
    /// Channels.
    pub channels: String,
    /// Release notes.
    pub notes: String,
    /// Published (date).
    pub published: String,
    /// Why it was yanked.
    pub yanked: Option<String>,
}

/// A permission row.
#[derive(Debug)]
pub struct PermissionView {
    /// The role.
    pub principal: String,
    /// The IAM action.
    pub action: String,
    /// On what.
    pub resource: String,
}

#[derive(Template)]
#[template(path = "app.html")]
struct AppPage {
    page: Page,
    vendor: String,
    vendor_name: String,
    slug: String,
    name: String,
    summary: String,
    description: String,
    categories: Vec<String>,
    plans: Vec<PlanView>,
    releases: Vec<ReleaseView>,
    latest: Option<String>,
    resources: Vec<(String, String)>,
    actions: Vec<String>,
    permissions: Vec<PermissionView>,
    diagram: String,
    /// One graph per state machine of the newest release.
    state_machines: Vec<String>,
    functions: Vec<FunctionView>,
    signed_in: bool,
    trial_plans: Vec<(String, String)>,
    portal: String,
    /// Where sign-up and sign-in return to: this page's trial form.
    back_here: String,
    /// The vendor's root fingerprint, for `--trust-root` in the install commands.
    root: String,
    /// Shown to the vendor's own members while the listing is off the marketplace.
    unpublished: bool,
}

/// `GET /apps/{vendor}/{app}`: an app's page.
pub async fn app_page(
    State(state): State<AppState>,
    parts: PageParts,
    headers: axum::http::HeaderMap,
    Path((vendor, slug)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let mut conn = state.db.pool.acquire().await?;
    // A listed app for everyone; an unlisted one only for its own vendor's members.
    let own = parts.viewer.member_vendor.clone().unwrap_or_default();
    let row = sqlx::query(
        "SELECT a.id, a.name, a.summary, a.description, a.categories, a.listed, v.id AS vendor_id, \
         v.name AS vendor_name FROM apps a JOIN vendors v ON v.id = a.vendor_id \
         WHERE v.slug = $1 AND a.slug = $2 AND (a.listed = 1 OR v.slug = $3)",
    )
    .bind(&vendor)
    .bind(&slug)
    .bind(&own)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| WebError::not_found("app on the marketplace"))?;
    let unpublished = row.try_get::<i64, _>("listed")? == 0;
    let vendor_id: String = row.try_get("vendor_id")?;
    let root = crate::server::domain::keys::current_keyset(&mut conn, &vendor_id)
        .await
        .map(|(keyset, _)| keyset.root.fingerprint())
        .unwrap_or_default();
    let app_id: String = row.try_get("id")?;
    let categories: String = row.try_get("categories")?;
    let plans = plan_views(&mut conn, &app_id).await?;
    let published: Vec<Release> = crate::server::domain::releases::releases_of(&mut conn, &app_id)
        .await?
        .into_iter()
        .filter(|r| r.state == "published")
        .collect();
    let newest = published.iter().find(|r| r.yanked.is_none());
    let summary = newest.map(|r| r.summary.clone()).unwrap_or_default();
    let resources = resource_views(&summary);
    let permissions = permission_views(&summary);
    let actions: Vec<String> = permissions
        .iter()
        .map(|p| p.action.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let diagram = match newest {
        Some(r) => svg::architecture(&r.summary, &format!("{} {}", slug, r.version)),
        None => String::new(),
    };
    let functions = function_views(&summary);
    let state_machines = state_machine_views(&summary);
    let releases = published
        .iter()
        .map(|r| ReleaseView {
            version: r.version.clone(),
            channels: r.channels.join(", "),
            notes: r.release_notes.clone(),
            published: r.published_at.map(super::date).unwrap_or_default(),
            yanked: r.yanked.clone(),
        })
        .collect();
    // A trial needs something to install: none is offered before the first release.
    let trial_plans = plans
        .iter()
        .filter(|p| p.trial && newest.is_some())
        .map(|p| (p.slug.clone(), format!("{} ({} days)", p.name, p.days)))
        .collect();
    let name: String = row.try_get("name")?;
    let back_here = super::encode(&format!("/apps/{vendor}/{slug}#trial"));
    Ok(render(&AppPage {
        signed_in: parts.viewer.buyer.is_some(),
        page: Page::new(&parts, "market", name.clone()),
        vendor,
        vendor_name: row.try_get("vendor_name")?,
        slug,
        name,
        summary: row.try_get("summary")?,
        description: row.try_get("description")?,
        categories: serde_json::from_str(&categories).unwrap_or_default(),
        plans,
        releases,
        latest: newest.map(|r| r.version.clone()),
        resources,
        actions,
        permissions,
        diagram,
        state_machines,
        functions,
        trial_plans,
        portal: portal_url(&headers),
        back_here,
        root,
        unpublished,
    }))
}

/// A function of a release, as the app page lists it.
struct FunctionView {
    name: String,
    /// `source` or `compiled`.
    kind: String,
    runtime: String,
    size: String,
    digest: String,
}

/// The functions a release's summary lists (releases staged before functions had a kind show
/// them as source, which is what they were).
fn function_views(summary: &serde_json::Value) -> Vec<FunctionView> {
    let text = |f: &serde_json::Value, key: &str| {
        f.get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    summary
        .get("functions")
        .and_then(|f| f.as_array())
        .into_iter()
        .flatten()
        .map(|f| FunctionView {
            name: text(f, "name"),
            kind: f
                .get("kind")
                .and_then(|v| v.as_str())
                .unwrap_or("source")
                .to_owned(),
            runtime: text(f, "runtime"),
            size: f
                .get("size")
                .and_then(serde_json::Value::as_u64)
                .map(license::process::human_size)
                .unwrap_or_default(),
            digest: text(f, "digest"),
        })
        .collect()
}

/// The graphs of a release's state machines, each task that invokes a function of the bundle
/// noted with that function's name and how it ships.
fn state_machine_views(summary: &serde_json::Value) -> Vec<String> {
    let machines: Vec<bundles::workflow::StateMachine> = summary
        .get("workflows")
        .cloned()
        .and_then(|w| serde_json::from_value(w).ok())
        .unwrap_or_default();
    let notes: svg::FunctionNotes = summary
        .get("function_notes")
        .cloned()
        .and_then(|c| serde_json::from_value(c).ok())
        .unwrap_or_default();
    machines
        .iter()
        .map(|m| svg::state_machine(m, &notes))
        .collect()
}

/// An app's plans as the listing shows them.
async fn plan_views(
    conn: &mut sqlx::AnyConnection,
    app_id: &str,
) -> Result<Vec<PlanView>, WebError> {
    let mut plans = Vec::new();
    for p in sqlx::query(
        "SELECT slug, name, description, trial, duration_days, entitlements FROM plans WHERE app_id = $1 ORDER BY trial DESC, duration_days, slug",
    )
    .bind(app_id)
    .fetch_all(conn)
    .await?
    {
        let entitlements: String = p.try_get("entitlements")?;
        let value: serde_json::Value = serde_json::from_str(&entitlements).unwrap_or_default();
        plans.push(PlanView {
            slug: p.try_get("slug")?,
            name: p.try_get("name")?,
            description: p.try_get("description")?,
            trial: p.try_get::<i64, _>("trial")? != 0,
            days: p.try_get("duration_days")?,
            entitles: entitlement_lines(&value),
        });
    }
    Ok(plans)
}

/// The AWS resources (logical id, type) a release's summary lists.
fn resource_views(summary: &serde_json::Value) -> Vec<(String, String)> {
    summary
        .get("resources")
        .and_then(|r| r.as_array())
        .map(|list| {
            list.iter()
                .map(|r| {
                    (
                        r.get("logical_id")
                            .and_then(|v| v.as_str())
                            .unwrap_or_default()
                            .to_owned(),
                        r.get("type")
                            .and_then(|v| v.as_str())
                            .unwrap_or_default()
                            .to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The IAM permissions a release's summary lists.
fn permission_views(summary: &serde_json::Value) -> Vec<PermissionView> {
    summary
        .get("permissions")
        .and_then(|p| p.as_array())
        .map(|list| {
            list.iter()
                .map(|p| {
                    let field = |k: &str| {
                        p.get(k)
                            .and_then(|v| v.as_str())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    PermissionView {
                        principal: field("principal"),
                        action: field("action"),
                        resource: field("resource"),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The portal's own URL as the browser reached it, for the commands pages show.
pub fn portal_url(headers: &axum::http::HeaderMap) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        })
        .unwrap_or("localhost:8080");
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}
