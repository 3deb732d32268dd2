//! Apps (the listing data the marketplace shows), their plans, and customers.

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row as _};
use utoipa::ToSchema;

use super::access::{Caller, Role};
use super::error::{DomainError, DomainResult};
use super::idempotency::IdempotencyContext;
use super::tx::VendorTx;
use crate::server::base::db::is_unique_violation;
use crate::server::base::now;
use crate::server::base::secrets::new_id;
use crate::server::state::AppState;

/// Checks a slug: 1 to 63 of `a-z 0-9 -`, starting with a letter or digit (what licenses accept).
pub fn check_slug(what: &str, slug: &str) -> DomainResult<()> {
    license::claims::Slug::new(slug)
        .map(|_| ())
        .map_err(|reason| {
            DomainError::invalid(format!("the {what} slug {slug:?} is not valid: {reason}"))
        })
}

fn check_text(what: &str, text: &str, max: usize) -> DomainResult<()> {
    if text.chars().count() > max || text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(DomainError::invalid(format!(
            "the {what} must be at most {max} characters without control characters"
        )));
    }
    Ok(())
}

fn check_listing(
    name: &str,
    summary: &str,
    description: &str,
    categories: &[String],
) -> DomainResult<()> {
    check_text("name", name, 100)?;
    check_text("summary", summary, 300)?;
    check_text("description", description, 20_000)?;
    if name.trim().is_empty() {
        return Err(DomainError::invalid("the app needs a name"));
    }
    if categories.len() > 10 || categories.iter().any(|c| c.is_empty() || c.len() > 40) {
        return Err(DomainError::invalid(
            "at most 10 categories of 1 to 40 characters",
        ));
    }
    Ok(())
}

fn check_customer(name: &str, email: Option<&str>, aws_accounts: &[String]) -> DomainResult<()> {
    check_text("name", name, 200)?;
    if name.trim().is_empty() {
        return Err(DomainError::invalid("the customer needs a name"));
    }
    if let Some(email) = email {
        check_text("email", email, 254)?;
    }
    if aws_accounts.len() > 100 {
        return Err(DomainError::invalid(
            "at most 100 AWS accounts per customer",
        ));
    }
    for account in aws_accounts {
        license::claims::AwsAccountId::new(account.clone())
            .map_err(|reason| DomainError::invalid(format!("AWS account {account:?}: {reason}")))?;
    }
    Ok(())
}

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

fn app_from(row: &sqlx::any::AnyRow) -> DomainResult<App> {
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

const APP_COLUMNS: &str = "id, slug, name, summary, description, categories, listed, created_at";

/// Finds an app of the vendor by slug (404 otherwise, whoever owns it).
pub async fn find_app(conn: &mut AnyConnection, vendor_id: &str, slug: &str) -> DomainResult<App> {
    let row = sqlx::query(&format!(
        "SELECT {APP_COLUMNS} FROM apps WHERE vendor_id = $1 AND slug = $2"
    ))
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
    Ok(response)
}

/// Lists the vendor's apps.
pub async fn list_apps(state: &AppState, caller: &Caller) -> DomainResult<Vec<App>> {
    let rows = sqlx::query(&format!(
        "SELECT {APP_COLUMNS} FROM apps WHERE vendor_id = $1 ORDER BY slug"
    ))
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
    if let Some(listed) = body.listed {
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
        "app.update",
        &app.id,
        serde_json::json!({"slug": app.slug, "changed": changed}),
    )
    .await?;
    tx.commit_answer(None, 200, &app).await?;
    let response = app;
    state.catalog.clear();
    state.facets.clear();
    Ok(response)
}

/// A new plan: what a license on it gets.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanCreate {
    /// Unique within the app; licenses name it as `plan`.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// For the listing.
    #[serde(default)]
    pub description: String,
    /// Whether licenses on it are trials.
    #[serde(default)]
    pub trial: bool,
    /// How long licenses on it last unless the issuer says otherwise.
    pub duration_days: u32,
    /// Entitlements and policies, in the fields of a license request (`features`, `limits`,
    /// `quotas`, `max_installations`, `channels`, `versions`, `checkin_interval`,
    /// `offline_grace`, `regions`, ...).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub entitlements: serde_json::Map<String, serde_json::Value>,
}

/// A plan.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Plan {
    /// Id.
    pub id: String,
    /// The app's slug.
    pub app: String,
    /// Slug.
    pub slug: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Whether it is a trial.
    pub trial: bool,
    /// Default license length.
    pub duration_days: u32,
    /// Entitlements and policies.
    #[schema(value_type = Object)]
    pub entitlements: serde_json::Map<String, serde_json::Value>,
}

/// Fields a plan may set: those of a license request that are not per-license.
const PLAN_FIELDS: &[&str] = &[
    "features",
    "limits",
    "quotas",
    "aws_accounts",
    "regions",
    "max_installations",
    "channels",
    "versions",
    "published_before",
    "checkin_interval",
    "checkin_required",
    "offline_grace",
    "expiry_warning",
];

fn check_entitlements(map: &serde_json::Map<String, serde_json::Value>) -> DomainResult<()> {
    if let Some(bad) = map.keys().find(|k| !PLAN_FIELDS.contains(&k.as_str())) {
        return Err(DomainError::invalid(format!(
            "a plan cannot set {bad:?}; it may set {}",
            PLAN_FIELDS.join(", ")
        )));
    }
    // Let the license format judge the values: a plan that could not make a license is refused now.
    let mut probe = map.clone();
    probe.insert("sub".into(), "probe".into());
    probe.insert("aud".into(), "probe".into());
    probe.insert("exp".into(), serde_json::Value::from(4_000_000_000u64));
    let bytes = serde_json::to_vec(&probe).map_err(DomainError::internal)?;
    license::LicenseRequest::from_json(&bytes)
        .map_err(|e| DomainError::invalid(format!("the plan's entitlements are not valid: {e}")))?;
    Ok(())
}

fn plan_from(row: &sqlx::any::AnyRow, app: &str) -> DomainResult<Plan> {
    let entitlements: String = row.try_get("entitlements")?;
    let trial: i64 = row.try_get("trial")?;
    let days: i64 = row.try_get("duration_days")?;
    Ok(Plan {
        id: row.try_get("id")?,
        app: app.to_owned(),
        slug: row.try_get("slug")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        trial: trial != 0,
        duration_days: u32::try_from(days).unwrap_or(0),
        entitlements: serde_json::from_str(&entitlements).unwrap_or_default(),
    })
}

/// Finds a plan of an app.
pub async fn find_plan(conn: &mut AnyConnection, app: &App, slug: &str) -> DomainResult<Plan> {
    let row = sqlx::query(
        "SELECT id, slug, name, description, trial, duration_days, entitlements FROM plans WHERE app_id = $1 AND slug = $2",
    )
    .bind(&app.id)
    .bind(slug)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| DomainError::not_found("plan", slug))?;
    plan_from(&row, &app.slug)
}

/// Adds a plan to an app.
pub async fn create_plan(
    state: &AppState,
    caller: &Caller,
    idem: Option<&IdempotencyContext>,
    app_slug: String,
    body: PlanCreate,
) -> DomainResult<Plan> {
    caller.require(Role::Publisher)?;
    check_slug("plan", &body.slug)?;
    check_text("name", &body.name, 100)?;
    check_text("description", &body.description, 5_000)?;
    if body.duration_days == 0 || body.duration_days > 3650 {
        return Err(DomainError::invalid("duration_days must be 1 to 3650"));
    }
    check_entitlements(&body.entitlements)?;
    let mut tx = VendorTx::begin(state, &caller.vendor_id).await?;
    let app = find_app(tx.conn(), &caller.vendor_id, &app_slug).await?;
    let plan = Plan {
        id: new_id("pln")?,
        app: app.slug.clone(),
        slug: body.slug,
        name: body.name,
        description: body.description,
        trial: body.trial,
        duration_days: body.duration_days,
        entitlements: body.entitlements,
    };
    let inserted = sqlx::query(
        "INSERT INTO plans (id, vendor_id, app_id, slug, name, description, trial, duration_days, entitlements, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&plan.id)
    .bind(&caller.vendor_id)
    .bind(&app.id)
    .bind(&plan.slug)
    .bind(&plan.name)
    .bind(&plan.description)
    .bind(i64::from(plan.trial))
    .bind(i64::from(plan.duration_days))
    .bind(serde_json::to_string(&plan.entitlements).map_err(DomainError::internal)?)
    .bind(now())
    .execute(tx.conn())
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => {
            return Err(DomainError::conflict(format!(
                "app {} has a plan {:?} already",
                app.slug, plan.slug
            )));
        }
        other => other?,
    };
    tx.audit(
        caller,
        "plan.create",
        &plan.id,
        serde_json::json!({"app": app.slug, "slug": plan.slug}),
    )
    .await?;
    tx.commit_answer(idem, 201, &plan).await?;
    let response = plan;
    state.catalog.clear();
    Ok(response)
}

/// Lists an app's plans.
pub async fn list_plans(
    state: &AppState,
    caller: &Caller,
    app_slug: String,
) -> DomainResult<Vec<Plan>> {
    let mut conn = state.db.pool.acquire().await?;
    let app = find_app(&mut conn, &caller.vendor_id, &app_slug).await?;
    let rows = sqlx::query(
        "SELECT id, slug, name, description, trial, duration_days, entitlements FROM plans WHERE app_id = $1 ORDER BY slug",
    )
    .bind(&app.id)
    .fetch_all(&mut *conn)
    .await?;
    let plans = rows
        .iter()
        .map(|r| plan_from(r, &app.slug))
        .collect::<DomainResult<Vec<_>>>()?;
    Ok(plans)
}

/// A new customer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerCreate {
    /// Unique within the vendor; licenses name it as `sub`.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Contact email.
    #[serde(default)]
    pub email: Option<String>,
    /// The customer's AWS account ids (12 digits); licenses are bound to them by default.
    #[serde(default)]
    pub aws_accounts: Vec<String>,
}

/// A customer.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Customer {
    /// Id.
    pub id: String,
    /// Slug.
    pub slug: String,
    /// Name.
    pub name: String,
    /// Contact email.
    pub email: Option<String>,
    /// AWS account ids.
    pub aws_accounts: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
}

fn customer_from(row: &sqlx::any::AnyRow) -> DomainResult<Customer> {
    let accounts: String = row.try_get("aws_accounts")?;
    Ok(Customer {
        id: row.try_get("id")?,
        slug: row.try_get("slug")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        aws_accounts: serde_json::from_str(&accounts).unwrap_or_default(),
        created_at: row.try_get("created_at")?,
    })
}

const CUSTOMER_COLUMNS: &str = "id, slug, name, email, aws_accounts, created_at";

/// Finds a customer of the vendor by slug.
pub async fn find_customer(
    conn: &mut AnyConnection,
    vendor_id: &str,
    slug: &str,
) -> DomainResult<Customer> {
    let row = sqlx::query(&format!(
        "SELECT {CUSTOMER_COLUMNS} FROM customers WHERE vendor_id = $1 AND slug = $2"
    ))
    .bind(vendor_id)
    .bind(slug)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| DomainError::not_found("customer", slug))?;
    customer_from(&row)
}

/// Creates a customer.
pub async fn create_customer(
    state: &AppState,
    caller: &Caller,
    idem: Option<&IdempotencyContext>,
    body: CustomerCreate,
) -> DomainResult<Customer> {
    create_customer_of(state, caller, idem, body, None).await
}

/// Creates a customer, linked to marketplace buyer `buyer_id` when there is one (a trial).
pub async fn create_customer_of(
    state: &AppState,
    caller: &Caller,
    idem: Option<&IdempotencyContext>,
    body: CustomerCreate,
    buyer_id: Option<&str>,
) -> DomainResult<Customer> {
    caller.require(Role::Publisher)?;
    check_slug("customer", &body.slug)?;
    check_customer(&body.name, body.email.as_deref(), &body.aws_accounts)?;
    let customer = Customer {
        id: new_id("cus")?,
        slug: body.slug,
        name: body.name,
        email: body.email,
        aws_accounts: body.aws_accounts,
        created_at: now(),
    };
    let mut tx = VendorTx::begin(state, &caller.vendor_id).await?;
    let inserted = sqlx::query(
        "INSERT INTO customers (id, vendor_id, slug, name, email, aws_accounts, created_at, buyer_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&customer.id)
    .bind(&caller.vendor_id)
    .bind(&customer.slug)
    .bind(&customer.name)
    .bind(&customer.email)
    .bind(serde_json::to_string(&customer.aws_accounts).map_err(DomainError::internal)?)
    .bind(customer.created_at)
    .bind(buyer_id)
    .execute(tx.conn())
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => {
            return Err(DomainError::conflict(format!(
                "a customer {:?} exists already",
                customer.slug
            )));
        }
        other => other?,
    };
    tx.audit(
        caller,
        "customer.create",
        &customer.id,
        serde_json::json!({"slug": customer.slug, "aws_accounts": customer.aws_accounts}),
    )
    .await?;
    tx.commit_answer(idem, 201, &customer).await?;
    let response = customer;
    state.catalog.clear();
    Ok(response)
}

/// Lists the vendor's customers.
pub async fn list_customers(state: &AppState, caller: &Caller) -> DomainResult<Vec<Customer>> {
    let rows = sqlx::query(&format!(
        "SELECT {CUSTOMER_COLUMNS} FROM customers WHERE vendor_id = $1 ORDER BY slug"
    ))
    .bind(&caller.vendor_id)
    .fetch_all(&state.db.pool)
    .await?;
    let customers = rows
        .iter()
        .map(customer_from)
        .collect::<DomainResult<Vec<_>>>()?;
    Ok(customers)
}

/// Shows a customer.
pub async fn show_customer(
    state: &AppState,
    caller: &Caller,
    slug: String,
) -> DomainResult<Customer> {
    let mut conn = state.db.pool.acquire().await?;
    let customer = find_customer(&mut conn, &caller.vendor_id, &slug).await?;
    Ok(customer)
}

/// Changes to a customer; absent fields stay as they are. Licenses already issued keep the
/// accounts they were bound to; new ones get the new accounts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerUpdate {
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Contact email.
    #[serde(default)]
    pub email: Option<String>,
    /// The customer's AWS account ids, replacing the current list.
    #[serde(default)]
    pub aws_accounts: Option<Vec<String>>,
}

/// Updates a customer.
pub async fn update_customer(
    state: &AppState,
    caller: &Caller,
    slug: String,
    body: CustomerUpdate,
) -> DomainResult<Customer> {
    caller.require(Role::Publisher)?;
    let mut tx = VendorTx::begin(state, &caller.vendor_id).await?;
    let mut customer = find_customer(tx.conn(), &caller.vendor_id, &slug).await?;
    let mut changed = Vec::new();
    if let Some(name) = body.name {
        customer.name = name;
        changed.push("name");
    }
    if let Some(email) = body.email {
        customer.email = Some(email);
        changed.push("email");
    }
    if let Some(accounts) = body.aws_accounts {
        customer.aws_accounts = accounts;
        changed.push("aws_accounts");
    }
    check_customer(
        &customer.name,
        customer.email.as_deref(),
        &customer.aws_accounts,
    )?;
    sqlx::query("UPDATE customers SET name = $3, email = $4, aws_accounts = $5 WHERE vendor_id = $1 AND id = $2")
        .bind(&caller.vendor_id)
        .bind(&customer.id)
        .bind(&customer.name)
        .bind(&customer.email)
        .bind(serde_json::to_string(&customer.aws_accounts).map_err(DomainError::internal)?)
        .execute(tx.conn())
        .await?;
    tx.audit(
        caller,
        "customer.update",
        &customer.id,
        serde_json::json!({"slug": customer.slug, "changed": changed, "aws_accounts": customer.aws_accounts}),
    )
    .await?;
    tx.commit_answer(None, 200, &customer).await?;
    let response = customer;
    state.catalog.clear();
    Ok(response)
}

/// The vendor's current license-signing key as stored: id, sealed private half, expiry.
pub type StoredKey = (String, String, i64);

/// What a license is issued from.
pub type LicenseSource = (Customer, App, Option<Plan>, Option<StoredKey>);

/// The customer, app and plan a license names and the vendor's current license-signing key, in
/// one query (issuance is a hot path); when one of them is missing, the individual lookups say
/// which.
pub async fn find_for_license(
    conn: &mut AnyConnection,
    vendor_id: &str,
    customer: &str,
    app: &str,
    plan: Option<&str>,
) -> DomainResult<LicenseSource> {
    let key = |column: &str| {
        format!(
            "(SELECT k.{column} FROM vendor_keys k WHERE k.vendor_id = c.vendor_id AND k.role = 'license' \
             AND k.sealed_private IS NOT NULL AND k.not_before <= $5 AND k.not_after > $5 \
             ORDER BY k.generation DESC, k.not_before DESC, k.kid LIMIT 1) AS k_{column}"
        )
    };
    let sql = format!(
        "SELECT {}, {}, {}, c.id AS c_id, c.slug AS c_slug, c.name AS c_name, c.email AS c_email, c.aws_accounts AS c_accounts, \
                c.created_at AS c_created, a.id AS a_id, a.slug AS a_slug, a.name AS a_name, a.summary AS a_summary, \
                a.description AS a_description, a.categories AS a_categories, a.listed AS a_listed, a.created_at AS a_created, \
                p.id AS p_id, p.slug AS p_slug, p.name AS p_name, p.description AS p_description, p.trial AS p_trial, \
                p.duration_days AS p_days, p.entitlements AS p_entitlements \
         FROM customers c JOIN apps a ON a.vendor_id = c.vendor_id \
         LEFT JOIN plans p ON p.app_id = a.id AND p.slug = $4 \
         WHERE c.vendor_id = $1 AND c.slug = $2 AND a.slug = $3",
        key("kid"),
        key("sealed_private"),
        key("not_after"),
    );
    let row = sqlx::query(&sql)
        .bind(vendor_id)
        .bind(customer)
        .bind(app)
        .bind(plan.unwrap_or(""))
        .bind(now() + license::verify::DEFAULT_LEEWAY as i64)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else {
        find_customer(&mut *conn, vendor_id, customer).await?;
        let found = find_app(&mut *conn, vendor_id, app).await?;
        return Err(DomainError::not_found("app", &found.slug));
    };
    let accounts: String = row.try_get("c_accounts")?;
    let categories: String = row.try_get("a_categories")?;
    let customer = Customer {
        id: row.try_get("c_id")?,
        slug: row.try_get("c_slug")?,
        name: row.try_get("c_name")?,
        email: row.try_get("c_email")?,
        aws_accounts: serde_json::from_str(&accounts).unwrap_or_default(),
        created_at: row.try_get("c_created")?,
    };
    let app = App {
        id: row.try_get("a_id")?,
        slug: row.try_get("a_slug")?,
        name: row.try_get("a_name")?,
        summary: row.try_get("a_summary")?,
        description: row.try_get("a_description")?,
        categories: serde_json::from_str(&categories).unwrap_or_default(),
        listed: row.try_get::<i64, _>("a_listed")? != 0,
        created_at: row.try_get("a_created")?,
    };
    let plan = match (plan, row.try_get::<Option<String>, _>("p_id")?) {
        (None, _) => None,
        (Some(slug), None) => return Err(DomainError::not_found("plan", slug)),
        (Some(_), Some(id)) => {
            let entitlements: String = row.try_get("p_entitlements")?;
            let trial: i64 = row.try_get("p_trial")?;
            let days: i64 = row.try_get("p_days")?;
            Some(Plan {
                id,
                app: app.slug.clone(),
                slug: row.try_get("p_slug")?,
                name: row.try_get("p_name")?,
                description: row.try_get("p_description")?,
                trial: trial != 0,
                duration_days: u32::try_from(days).unwrap_or(0),
                entitlements: serde_json::from_str(&entitlements).unwrap_or_default(),
            })
        }
    };
    let key = match (
        row.try_get::<Option<String>, _>("k_kid")?,
        row.try_get::<Option<String>, _>("k_sealed_private")?,
        row.try_get::<Option<i64>, _>("k_not_after")?,
    ) {
        (Some(kid), Some(sealed), Some(not_after)) => Some((kid, sealed, not_after)),
        _ => None,
    };
    Ok((customer, app, plan, key))
}
