//! The console's customer pages: licenses, installations, the usage chart, issuing and changing
//! licenses.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use sqlx::Row as _;

use super::*;
use super::{Page, PageParts, WebError, WebForm, render, see_other, svg};
use crate::server::base::now;
use crate::server::domain;
use crate::server::domain::catalog;
use crate::server::domain::installations;
use crate::server::domain::installations::usage::CustomerUsage;
use crate::server::domain::licenses::change::{self, Change};
use crate::server::domain::licenses::issue::LicenseIssue;
use crate::server::domain::licenses::standing_word;
use crate::server::domain::support;
use crate::server::http::extract::ApiPath;
use crate::server::state::AppState;
use license::status::LicenseState;

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
pub(crate) struct CustomersPage {
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
    /// How far behind the newest release its license may install (`up to date`, `2 behind…`).
    pub behind: String,
}

/// Fills each row's `behind` from its (license, version); removed installations show `-`.
pub(crate) async fn set_behind(
    conn: &mut sqlx::AnyConnection,
    rows: &mut [InstallationRow],
    running: &[(String, String)],
) -> Result<(), WebError> {
    let described = installations::behind::describe_all(conn, running).await?;
    for (row, behind) in rows.iter_mut().zip(described) {
        row.behind = if row.state == "removed" {
            "-".into()
        } else {
            behind
        };
    }
    Ok(())
}

pub(crate) fn installation_state(last_seen: i64, removed: Option<i64>) -> String {
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
pub(crate) struct CustomerPage {
    page: Page,
    slug: String,
    email: String,
    accounts: String,
    licenses: Vec<LicenseRow>,
    installations: Vec<InstallationRow>,
    charts: Vec<Chart>,
    plans: Vec<(String, String)>,
    /// Support bundles the customer sent: (id, stack, account and region, size, when).
    bundles: Vec<(String, String, String, String, String)>,
}

/// Days the usage charts cover.
pub(crate) const CHART_DAYS: i64 = 30;

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
    let licenses = license_rows(&mut conn, &caller.vendor_id, &customer.id, &usage).await?;
    let mut installations: Vec<InstallationRow> = Vec::new();
    let mut running = Vec::new();
    for l in &usage.licenses {
        for i in &l.installations {
            running.push((l.license.clone(), i.version.clone()));
            installations.push(InstallationRow {
                customer: slug.clone(),
                version: i.version.clone(),
                region: i.region.clone(),
                account: i.aws_account.clone(),
                stack: i.stack.clone(),
                last_seen: crate::server::web::datetime(i.last_seen_at),
                state: installation_state(i.last_seen_at, i.removed_at),
                behind: String::new(),
            });
        }
    }
    set_behind(&mut conn, &mut installations, &running).await?;
    let charts = usage_charts(&usage);
    let plans = plan_choices(&mut conn, &caller.vendor_id).await?;
    drop(conn);
    let bundles = support::list(&state, &caller, Some(&slug))
        .await?
        .into_iter()
        .map(|b| {
            (
                b.id,
                b.stack,
                format!("{} {}", b.aws_account, b.region),
                format!("{} KiB", (b.size + 1023) / 1024),
                crate::server::web::datetime(b.created_at),
            )
        })
        .collect();
    Ok(render(&CustomerPage {
        page: Page::new(&parts, "console", customer.name.clone()),
        slug,
        email: customer.email.unwrap_or_default(),
        accounts: customer.aws_accounts.join(", "),
        licenses,
        installations,
        charts,
        plans,
        bundles,
    }))
}

/// The customer's licenses as the page lists them (an active license past its expiry shows as
/// expired), with their seats in use.
async fn license_rows(
    conn: &mut sqlx::AnyConnection,
    vendor_id: &str,
    customer_id: &str,
    usage: &CustomerUsage,
) -> Result<Vec<LicenseRow>, WebError> {
    let mut licenses = Vec::new();
    for row in sqlx::query(
        "SELECT l.id, l.state, l.expires_at, a.slug AS app, p.slug AS plan FROM licenses l JOIN apps a ON a.id = l.app_id \
         LEFT JOIN plans p ON p.id = l.plan_id WHERE l.vendor_id = $1 AND l.customer_id = $2 ORDER BY l.issued_at DESC, l.id",
    )
    .bind(vendor_id)
    .bind(customer_id)
    .fetch_all(&mut *conn)
    .await?
    {
        let id: String = row.try_get("id")?;
        let expires_at: i64 = row.try_get("expires_at")?;
        let license_state = standing_word(&row.try_get::<String, _>("state")?, expires_at, now())?
            .to_owned();
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
            expires: crate::server::web::date(expires_at),
            seats,
        });
    }
    Ok(licenses)
}

/// One usage chart per dimension: daily totals over the last `CHART_DAYS` days.
fn usage_charts(usage: &CustomerUsage) -> Vec<Chart> {
    let mut by_dimension: std::collections::BTreeMap<String, Vec<(i64, i64)>> = Default::default();
    for d in usage.licenses.iter().flat_map(|l| &l.usage) {
        by_dimension
            .entry(d.dimension.clone())
            .or_default()
            .extend(d.hours.iter().map(|h| (h.hour, h.quantity)));
    }
    usage
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
        .collect()
}

/// The plans a license can be issued from, as `app/plan` and a label.
async fn plan_choices(
    conn: &mut sqlx::AnyConnection,
    vendor_id: &str,
) -> Result<Vec<(String, String)>, WebError> {
    let mut plans = Vec::new();
    for row in sqlx::query(
        "SELECT a.slug AS app, a.name AS app_name, p.slug, p.name FROM plans p JOIN apps a ON a.id = p.app_id \
         WHERE p.vendor_id = $1 ORDER BY a.slug, p.slug",
    )
    .bind(vendor_id)
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
    Ok(plans)
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
        crate::server::web::encode(&customer)
    )))
}

/// A license action's form.
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    /// Why (suspend, revoke).
    #[serde(default)]
    pub reason: String,
    /// `yes` once the member has confirmed a suspension or revocation on the page that says
    /// what it does.
    #[serde(default)]
    pub confirm: String,
}

#[derive(Template)]
#[template(path = "console_confirm.html")]
struct ConfirmPage {
    page: Page,
    license: String,
    customer: String,
    app: String,
    action: String,
    consequence: String,
    button: &'static str,
    reason: String,
}

/// `POST /console/licenses/{id}/{action}`: renew, suspend, reinstate or revoke.
pub async fn license_action(
    State(state): State<AppState>,
    parts: PageParts,
    Member(caller): Member,
    ApiPath((id, action)): ApiPath<(String, String)>,
    WebForm(form): WebForm<ActionForm>,
) -> Result<Response, WebError> {
    // Suspending and revoking stop the customer's installations: first a page that says so.
    let drastic = match action.as_str() {
        "revoke" => Some((
            "Revoke the license for good",
            "Revoking cannot be undone. Installations refuse every check from their next check-in, the installer refuses to deploy with it, and the customer's page shows it revoked with your reason.",
        )),
        "suspend" => Some((
            "Suspend the license",
            "Installations refuse new checks from their next check-in and the installer refuses to deploy with it, until you reinstate it.",
        )),
        _ => None,
    };
    if let Some((button, consequence)) = drastic
        && form.confirm != "yes"
    {
        let license = domain::licenses::show(&state, &caller, id.clone()).await?;
        return Ok(render(&ConfirmPage {
            page: Page::new(&parts, "console", format!("{button}: {id}?")),
            license: id,
            customer: license.customer,
            app: license.app,
            action,
            consequence: consequence.to_owned(),
            button,
            reason: form.reason,
        }));
    }
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
        crate::server::web::encode(&customer)
    )))
}
