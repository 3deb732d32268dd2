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
use sqlx::AssertSqlSafe;
use sqlx::Row as _;

use super::{Page, PageParts, WebError, WebForm, render, see_other, svg};
use crate::server::domain::sessions::{self, Login};
use crate::server::http::auth::{Caller, SESSION_COOKIE};
use crate::server::http::auth::{clear_session_cookie, session_secret, set_session_cookie};
use crate::server::http::extract::RequestMeta;
use crate::server::state::AppState;
use crate::server::web::buyer::LoginPage;

mod apps;
mod customers;

pub use self::apps::{app_page, release_action, set_listed, update_app};
use self::customers::{InstallationRow, installation_state};
pub use self::customers::{customer_page, customers, issue_license, license_action};

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
                crate::server::web::encode(parts.uri.path())
            ))),
        }
    }
}

/// `GET /console/login`.
pub async fn login_form(
    parts: PageParts,
    axum::extract::Query(query): axum::extract::Query<crate::server::web::buyer::NextQuery>,
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

/// Who did it, in words: a member and how (console or API token), a marketplace buyer, the
/// portal's operator, a license agent, or a customer's installation.
fn actor_words(actor: &serde_json::Value) -> String {
    let text = |key: &str| actor.get(key).and_then(|v| v.as_str());
    if let Some(admin) = text("admin") {
        return format!("{admin}, on the portal's machine");
    }
    if let Some(agent) = text("agent") {
        return format!(
            "license agent {agent} (license {})",
            text("license").unwrap_or("unknown")
        );
    }
    if let Some(member) = text("member") {
        let email = text("email").unwrap_or(member);
        if member.starts_with("buyer:") {
            return format!("{email}, a marketplace buyer");
        }
        let role = text("role").unwrap_or("member");
        let how = if text("token").is_some() {
            "API token"
        } else {
            "console"
        };
        return format!("{email} ({role}, {how})");
    }
    if let Some(customer) = text("customer") {
        return format!(
            "customer {customer}'s installation (license {})",
            text("license").unwrap_or("unknown")
        );
    }
    actor.to_string()
}

async fn audit_rows(
    state: &AppState,
    vendor_id: &str,
    limit: i64,
) -> Result<Vec<AuditRow>, WebError> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT seq, at, action, entry FROM audit_log WHERE vendor_id = $1 ORDER BY seq DESC LIMIT {limit}"
    )))
    .bind(vendor_id)
    .fetch_all(&state.db.pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let entry: String = row.try_get("entry")?;
        let entry: serde_json::Value = serde_json::from_str(&entry).unwrap_or_default();
        let actor = actor_words(&entry.get("actor").cloned().unwrap_or_default());
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

async fn count(state: &AppState, sql: &'static str, vendor_id: &str) -> Result<i64, WebError> {
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
    let mut running = Vec::new();
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
        running.push((row.try_get("license_id")?, row.try_get("version")?));
        rows.push(InstallationRow {
            customer: row.try_get("customer")?,
            version: row.try_get("version")?,
            region: row.try_get("region")?,
            account: row.try_get("aws_account")?,
            stack: row.try_get("stack")?,
            last_seen: super::datetime(last_seen),
            state: installation_state(last_seen, row.try_get("removed_at")?),
            behind: String::new(),
        });
    }
    let mut conn = state.db.pool.acquire().await?;
    customers::set_behind(&mut conn, &mut rows, &running).await?;
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
