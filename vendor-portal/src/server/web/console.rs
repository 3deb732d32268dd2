//! The vendor console: sign in as a member, then apps and their listings, releases and channels,
//! customers and their licenses, installations, usage charts and the audit log. Every action
//! here calls the API's own handler with the member's session, so the console can do nothing
//! the API and CLI cannot, and the audit log records it the same way.

use askama::Template;
use axum::extract::{FromRequestParts as _, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use sqlx::Row as _;

use super::buyer::LoginPage;
use super::{Page, PageParts, WebError, WebForm, render, see_other, svg};
use crate::server::base::now;
use crate::server::domain;
use crate::server::domain::catalog;
use crate::server::domain::installations;
use crate::server::domain::licenses::change::{self, Change};
use crate::server::domain::licenses::issue::LicenseIssue;
use crate::server::domain::sessions::{self, Login};
use crate::server::http::auth::{Caller, SESSION_COOKIE};
use crate::server::http::auth::{clear_session_cookie, session_secret, set_session_cookie};
use crate::server::http::extract::{ApiPath, RequestMeta};
use crate::server::state::AppState;
use license::status::LicenseState;

/// The signed-in member, if the request carries a valid console session.
pub async fn current_member(state: &AppState, parts: &mut Parts) -> Option<Caller> {
    super::cookie(&parts.headers, SESSION_COOKIE)?;
    Caller::from_request_parts(parts, state).await.ok()
}

/// The signed-in member, or a redirect to the console's sign-in page.
pub struct Member(pub Caller);

impl axum::extract::FromRequestParts<AppState> for Member {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        match current_member(state, parts).await {
            Some(caller) => Ok(Member(caller)),
            None => Err(WebError::redirect(format!(
                "/console/login?next={}",
                super::encode(parts.uri.path())
            ))),
        }
    }
}

/// `GET /console/login`.
pub async fn login_form(
    parts: PageParts,
    axum::extract::Query(query): axum::extract::Query<super::buyer::NextQuery>,
) -> Response {
    render(&LoginPage {
        page: Page::new(&parts, "console", "Vendor console sign in"),
        action: "/console/login",
        vendor_field: true,
        vendor: "",
        email: "",
        next: &query.next,
        error: None,
    })
}

/// The console's sign-in form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    /// The vendor's slug.
    #[serde(default)]
    pub vendor: String,
    /// The member's email.
    #[serde(default)]
    pub email: String,
    /// The password.
    #[serde(default)]
    pub password: String,
    /// Where to go afterwards.
    #[serde(default)]
    pub next: String,
}

/// `POST /console/login`: the API's session login.
pub async fn login(
    State(state): State<AppState>,
    parts: PageParts,
    meta: RequestMeta,
    WebForm(form): WebForm<LoginForm>,
) -> Result<Response, WebError> {
    let body = Login {
        vendor: form.vendor.trim().to_owned(),
        email: form.email.trim().to_owned(),
        password: form.password.clone(),
    };
    match sessions::login(&state, &meta, body).await {
        Ok((_, secret)) => {
            let to = if form.next.starts_with("/console") && !form.next.starts_with("//") {
                form.next.as_str()
            } else {
                "/console"
            };
            let mut response = see_other(to);
            if let Ok(cookie) = HeaderValue::from_str(&set_session_cookie(&secret)) {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
            Ok(response)
        }
        Err(e) if e.status() == StatusCode::UNAUTHORIZED => {
            let mut response = render(&LoginPage {
                page: Page::new(&parts, "console", "Vendor console sign in"),
                action: "/console/login",
                vendor_field: true,
                vendor: &form.vendor,
                email: &form.email,
                next: &form.next,
                error: Some("The vendor, email or password is wrong."),
            });
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            Ok(response)
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /console/logout`.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    if let Some(secret) = session_secret(&headers) {
        sessions::logout(&state, &secret).await?;
    }
    let mut response = see_other("/");
    if let Ok(cookie) = HeaderValue::from_str(&clear_session_cookie()) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// An app in the console's lists.
#[derive(Debug)]
pub struct AppRow {
    /// Slug.
    pub slug: String,
    /// Name.
    pub name: String,
    /// On the marketplace.
    pub listed: bool,
    /// Published releases.
    pub releases: i64,
}

/// An audit entry.
#[derive(Debug)]
pub struct AuditRow {
    /// Sequence number.
    pub seq: i64,
    /// When.
    pub at: String,
    /// What.
    pub action: String,
    /// Who.
    pub actor: String,
    /// On what.
    pub target: String,
}

async fn audit_rows(
    state: &AppState,
    vendor_id: &str,
    limit: i64,
) -> Result<Vec<AuditRow>, WebError> {
    let rows = sqlx::query(&format!(
        "SELECT seq, at, action, entry FROM audit_log WHERE vendor_id = $1 ORDER BY seq DESC LIMIT {limit}"
    ))
    .bind(vendor_id)
    .fetch_all(&state.db.pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let entry: String = row.try_get("entry")?;
        let entry: serde_json::Value = serde_json::from_str(&entry).unwrap_or_default();
        let actor = entry.get("actor").cloned().unwrap_or_default();
        let actor = actor
            .get("email")
            .or_else(|| actor.get("admin"))
            .or_else(|| actor.get("agent"))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| actor.to_string());
        out.push(AuditRow {
            seq: row.try_get("seq")?,
            at: super::datetime(row.try_get("at")?),
            action: row.try_get("action")?,
            actor,
            target: entry
                .get("target")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned(),
        });
    }
    Ok(out)
}

#[derive(Template)]
#[template(path = "console.html")]
struct OverviewPage {
    page: Page,
    vendor: String,
    apps: Vec<AppRow>,
    customers: i64,
    active_licenses: i64,
    live_installations: i64,
    audit: Vec<AuditRow>,
}

async fn count(state: &AppState, sql: &str, vendor_id: &str) -> Result<i64, WebError> {
    Ok(sqlx::query(sql)
        .bind(vendor_id)
        .fetch_one(&state.db.pool)
        .await?
        .try_get("n")?)
}

/// `GET /console`.
pub async fn overview(
    State(state): State<AppState>,
    parts: PageParts,
    Member(caller): Member,
) -> Result<Response, WebError> {
    let mut apps = Vec::new();
    for row in sqlx::query(
        "SELECT a.slug, a.name, a.listed, (SELECT COUNT(*) FROM releases r WHERE r.app_id = a.id AND r.state = 'published') AS releases \
         FROM apps a WHERE a.vendor_id = $1 ORDER BY a.slug",
    )
    .bind(&caller.vendor_id)
    .fetch_all(&state.db.pool)
    .await?
    {
        apps.push(AppRow {
            slug: row.try_get("slug")?,
            name: row.try_get("name")?,
            listed: row.try_get::<i64, _>("listed")? != 0,
            releases: row.try_get("releases")?,
        });
    }
    let page = OverviewPage {
        page: Page::new(&parts, "console", format!("{} console", caller.vendor_slug)),
        vendor: caller.vendor_slug.clone(),
        apps,
        customers: count(
            &state,
            "SELECT COUNT(*) AS n FROM customers WHERE vendor_id = $1",
            &caller.vendor_id,
        )
        .await?,
        active_licenses: count(
            &state,
            "SELECT COUNT(*) AS n FROM licenses WHERE vendor_id = $1 AND state = 'active'",
            &caller.vendor_id,
        )
        .await?,
        live_installations: count(
            &state,
            "SELECT COUNT(*) AS n FROM installations WHERE vendor_id = $1 AND removed_at IS NULL",
            &caller.vendor_id,
        )
        .await?,
        audit: audit_rows(&state, &caller.vendor_id, 10).await?,
    };
    Ok(render(&page))
}

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
}

#[derive(Template)]
#[template(path = "console_app.html")]
struct AppPage {
    page: Page,
    vendor: String,
    app: catalog::App,
    categories: String,
    plans: Vec<super::market::PlanView>,
    releases: Vec<ReleaseRow>,
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
        plans.push(super::market::PlanView {
            slug: p.try_get("slug")?,
            name: p.try_get("name")?,
            description: p.try_get("description")?,
            trial: p.try_get::<i64, _>("trial")? != 0,
            days: p.try_get("duration_days")?,
            entitles: super::market::entitlement_lines(
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
            published: r.published_at.map(super::date).unwrap_or_default(),
            yanked: r.yanked,
            required: r.required,
        })
        .collect();
    Ok(render(&AppPage {
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
async fn patch_app(
    state: AppState,
    caller: Caller,
    slug: String,
    changes: catalog::AppUpdate,
    done: &str,
) -> Result<Response, WebError> {
    catalog::update_app(&state, &caller, slug.clone(), changes).await?;
    Ok(see_other(&format!(
        "/console/apps/{}?done={done}",
        super::encode(&slug)
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

/// A customer in the console.
#[derive(Debug)]
pub struct CustomerRow {
    /// Slug.
    pub slug: String,
    /// Name.
    pub name: String,
    /// Email.
    pub email: String,
    /// AWS accounts.
    pub accounts: String,
    /// Licenses.
    pub licenses: i64,
    /// Came from a marketplace trial.
    pub marketplace: bool,
}

#[derive(Template)]
#[template(path = "console_customers.html")]
struct CustomersPage {
    page: Page,
    customers: Vec<CustomerRow>,
}

/// `GET /console/customers`.
pub async fn customers(
    State(state): State<AppState>,
    parts: PageParts,
    Member(caller): Member,
) -> Result<Response, WebError> {
    let mut customers = Vec::new();
    for row in sqlx::query(
        "SELECT c.slug, c.name, c.email, c.aws_accounts, c.buyer_id, \
         (SELECT COUNT(*) FROM licenses l WHERE l.customer_id = c.id) AS licenses \
         FROM customers c WHERE c.vendor_id = $1 ORDER BY c.created_at DESC, c.slug",
    )
    .bind(&caller.vendor_id)
    .fetch_all(&state.db.pool)
    .await?
    {
        let accounts: String = row.try_get("aws_accounts")?;
        customers.push(CustomerRow {
            slug: row.try_get("slug")?,
            name: row.try_get("name")?,
            email: row
                .try_get::<Option<String>, _>("email")?
                .unwrap_or_default(),
            accounts: serde_json::from_str::<Vec<String>>(&accounts)
                .unwrap_or_default()
                .join(", "),
            licenses: row.try_get("licenses")?,
            marketplace: row.try_get::<Option<String>, _>("buyer_id")?.is_some(),
        });
    }
    Ok(render(&CustomersPage {
        page: Page::new(&parts, "console", "Customers"),
        customers,
    }))
}

/// A license on the customer's page.
#[derive(Debug)]
pub struct LicenseRow {
    /// Id.
    pub id: String,
    /// App.
    pub app: String,
    /// Plan.
    pub plan: String,
    /// State (`expired` when active but past expiry).
    pub state: String,
    /// Expiry.
    pub expires: String,
    /// Seats in use / allowed.
    pub seats: String,
}

/// An installation row.
#[derive(Debug)]
pub struct InstallationRow {
    /// Customer slug.
    pub customer: String,
    /// License id.
    pub license: String,
    /// Version.
    pub version: String,
    /// Region.
    pub region: String,
    /// Account.
    pub account: String,
    /// Stack.
    pub stack: String,
    /// Last check-in.
    pub last_seen: String,
    /// `live`, `silent` (no check-in for two days) or `removed`.
    pub state: String,
}

fn installation_state(last_seen: i64, removed: Option<i64>) -> String {
    match removed {
        Some(_) => "removed".into(),
        None if last_seen < now() - 2 * 86_400 => "silent".into(),
        None => "live".into(),
    }
}

/// A usage chart.
#[derive(Debug)]
pub struct Chart {
    /// The dimension.
    pub dimension: String,
    /// Units in all.
    pub total: i64,
    /// The SVG.
    pub svg: String,
}

#[derive(Template)]
#[template(path = "console_customer.html")]
struct CustomerPage {
    page: Page,
    slug: String,
    email: String,
    accounts: String,
    licenses: Vec<LicenseRow>,
    installations: Vec<InstallationRow>,
    charts: Vec<Chart>,
    plans: Vec<(String, String)>,
}

/// Days the usage charts cover.
const CHART_DAYS: i64 = 30;

/// `GET /console/customers/{customer}`: licenses with their actions, installations and usage.
pub async fn customer_page(
    State(state): State<AppState>,
    parts: PageParts,
    Member(caller): Member,
    ApiPath(slug): ApiPath<String>,
) -> Result<Response, WebError> {
    let mut conn = state.db.pool.acquire().await?;
    let customer = catalog::find_customer(&mut conn, &caller.vendor_id, &slug).await?;
    let usage =
        installations::usage::customer_usage_of(&mut conn, &caller.vendor_id, slug.clone()).await?;
    let mut licenses = Vec::new();
    for row in sqlx::query(
        "SELECT l.id, l.state, l.expires_at, a.slug AS app, p.slug AS plan FROM licenses l JOIN apps a ON a.id = l.app_id \
         LEFT JOIN plans p ON p.id = l.plan_id WHERE l.vendor_id = $1 AND l.customer_id = $2 ORDER BY l.issued_at DESC, l.id",
    )
    .bind(&caller.vendor_id)
    .bind(&customer.id)
    .fetch_all(&mut *conn)
    .await?
    {
        let id: String = row.try_get("id")?;
        let expires_at: i64 = row.try_get("expires_at")?;
        let mut license_state: String = row.try_get("state")?;
        if license_state == "active" && expires_at <= now() {
            license_state = "expired".into();
        }
        let seats = usage
            .licenses
            .iter()
            .find(|l| l.license == id)
            .map(|l| match l.max_installations {
                Some(max) => format!("{} of {max}", l.seats_in_use),
                None => format!("{} (no limit)", l.seats_in_use),
            })
            .unwrap_or_default();
        licenses.push(LicenseRow {
            id,
            app: row.try_get("app")?,
            plan: row.try_get::<Option<String>, _>("plan")?.unwrap_or_else(|| "custom".into()),
            state: license_state,
            expires: super::date(expires_at),
            seats,
        });
    }
    let installations = usage
        .licenses
        .iter()
        .flat_map(|l| {
            l.installations.iter().map(|i| InstallationRow {
                customer: slug.clone(),
                license: l.license.clone(),
                version: i.version.clone(),
                region: i.region.clone(),
                account: i.aws_account.clone(),
                stack: i.stack.clone(),
                last_seen: super::datetime(i.last_seen_at),
                state: installation_state(i.last_seen_at, i.removed_at),
            })
        })
        .collect();
    let mut by_dimension: std::collections::BTreeMap<String, Vec<(i64, i64)>> = Default::default();
    for d in usage.licenses.iter().flat_map(|l| &l.usage) {
        by_dimension
            .entry(d.dimension.clone())
            .or_default()
            .extend(d.hours.iter().map(|h| (h.hour, h.quantity)));
    }
    let charts = usage
        .totals
        .iter()
        .map(|t| {
            let days = svg::daily(
                by_dimension.get(&t.dimension).cloned().unwrap_or_default(),
                now(),
                CHART_DAYS,
            );
            Chart {
                dimension: t.dimension.clone(),
                total: t.total,
                svg: svg::usage_chart(&t.dimension, &days),
            }
        })
        .collect();
    let mut plans = Vec::new();
    for row in sqlx::query(
        "SELECT a.slug AS app, a.name AS app_name, p.slug, p.name FROM plans p JOIN apps a ON a.id = p.app_id \
         WHERE p.vendor_id = $1 ORDER BY a.slug, p.slug",
    )
    .bind(&caller.vendor_id)
    .fetch_all(&mut *conn)
    .await?
    {
        let app: String = row.try_get("app")?;
        let plan: String = row.try_get("slug")?;
        let label = format!(
            "{} — {}",
            row.try_get::<String, _>("app_name")?,
            row.try_get::<String, _>("name")?
        );
        plans.push((format!("{app}/{plan}"), label));
    }
    Ok(render(&CustomerPage {
        page: Page::new(&parts, "console", customer.name.clone()),
        slug,
        email: customer.email.unwrap_or_default(),
        accounts: customer.aws_accounts.join(", "),
        licenses,
        installations,
        charts,
        plans,
    }))
}

/// The issue form: `app/plan`.
#[derive(Debug, Deserialize)]
pub struct IssueForm {
    /// `app/plan`.
    #[serde(default)]
    pub plan: String,
}

/// `POST /console/customers/{customer}/licenses`: issues a license from a plan.
pub async fn issue_license(
    State(state): State<AppState>,
    Member(caller): Member,
    ApiPath(customer): ApiPath<String>,
    WebForm(form): WebForm<IssueForm>,
) -> Result<Response, WebError> {
    let (app, plan) = form.plan.split_once('/').ok_or_else(|| {
        WebError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Pick a plan",
            "Choose the app and plan to issue from.",
        )
    })?;
    let body = LicenseIssue {
        customer: customer.clone(),
        app: app.to_owned(),
        plan: Some(plan.to_owned()),
        ..LicenseIssue::default()
    };
    domain::licenses::issue::issue(&state, &caller, None, body).await?;
    Ok(see_other(&format!(
        "/console/customers/{}?done=issue",
        super::encode(&customer)
    )))
}

/// A license action's form.
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    /// Why (suspend, revoke).
    #[serde(default)]
    pub reason: String,
}

/// `POST /console/licenses/{id}/{action}`: renew, suspend, reinstate or revoke.
pub async fn license_action(
    State(state): State<AppState>,
    Member(caller): Member,
    ApiPath((id, action)): ApiPath<(String, String)>,
    WebForm(form): WebForm<ActionForm>,
) -> Result<Response, WebError> {
    let reason = Some(form.reason.trim().to_owned()).filter(|r| !r.is_empty());
    let change = match action.as_str() {
        "renew" => Change::Renew(None),
        "suspend" => Change::State(LicenseState::Suspended, reason),
        "reinstate" => Change::State(LicenseState::Active, reason),
        "revoke" => Change::State(LicenseState::Revoked, reason),
        _ => return Err(WebError::not_found("license action")),
    };
    let license = change::change(&state, &caller, None, &id, change).await?;
    let customer = license.customer;
    Ok(see_other(&format!(
        "/console/customers/{}?done={action}",
        super::encode(&customer)
    )))
}

#[derive(Template)]
#[template(path = "console_installations.html")]
struct InstallationsPage {
    page: Page,
    installations: Vec<InstallationRow>,
    versions: Vec<(String, i64)>,
}

/// `GET /console/installations`: every installation, with the versions in use.
pub async fn installations(
    State(state): State<AppState>,
    parts: PageParts,
    Member(caller): Member,
) -> Result<Response, WebError> {
    let mut rows = Vec::new();
    for row in sqlx::query(
        "SELECT i.license_id, i.version, i.region, i.aws_account, i.stack, i.last_seen_at, i.removed_at, c.slug AS customer \
         FROM installations i JOIN licenses l ON l.id = i.license_id JOIN customers c ON c.id = l.customer_id \
         WHERE i.vendor_id = $1 ORDER BY i.last_seen_at DESC LIMIT 500",
    )
    .bind(&caller.vendor_id)
    .fetch_all(&state.db.pool)
    .await?
    {
        let last_seen: i64 = row.try_get("last_seen_at")?;
        rows.push(InstallationRow {
            customer: row.try_get("customer")?,
            license: row.try_get("license_id")?,
            version: row.try_get("version")?,
            region: row.try_get("region")?,
            account: row.try_get("aws_account")?,
            stack: row.try_get("stack")?,
            last_seen: super::datetime(last_seen),
            state: installation_state(last_seen, row.try_get("removed_at")?),
        });
    }
    let mut versions: std::collections::BTreeMap<String, i64> = Default::default();
    for i in rows.iter().filter(|i| i.state != "removed") {
        *versions.entry(i.version.clone()).or_default() += 1;
    }
    Ok(render(&InstallationsPage {
        page: Page::new(&parts, "console", "Installations"),
        installations: rows,
        versions: versions.into_iter().collect(),
    }))
}

#[derive(Template)]
#[template(path = "console_audit.html")]
struct AuditPage {
    page: Page,
    entries: Vec<AuditRow>,
}

/// `GET /console/audit`: the newest 200 entries of the audit log.
pub async fn audit(
    State(state): State<AppState>,
    parts: PageParts,
    Member(caller): Member,
) -> Result<Response, WebError> {
    Ok(render(&AuditPage {
        page: Page::new(&parts, "console", "Audit log"),
        entries: audit_rows(&state, &caller.vendor_id, 200).await?,
    }))
}
