//! Customers: who licenses are issued to, and the AWS accounts they are bound to by default.

use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;
use sqlx::{AnyConnection, Row as _};
use utoipa::ToSchema;

use super::{check_customer, check_slug};
use crate::server::base::db::is_unique_violation;
use crate::server::base::now;
use crate::server::base::secrets::new_id;
use crate::server::domain::access::{Caller, Role};
use crate::server::domain::error::{DomainError, DomainResult};
use crate::server::domain::idempotency::IdempotencyContext;
use crate::server::domain::tx::VendorTx;
use crate::server::state::AppState;

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

pub(crate) fn customer_from(row: &sqlx::any::AnyRow) -> DomainResult<Customer> {
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

pub(crate) const CUSTOMER_COLUMNS: &str = "id, slug, name, email, aws_accounts, created_at";

/// Finds a customer of the vendor by slug.
pub async fn find_customer(
    conn: &mut AnyConnection,
    vendor_id: &str,
    slug: &str,
) -> DomainResult<Customer> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {CUSTOMER_COLUMNS} FROM customers WHERE vendor_id = $1 AND slug = $2"
    )))
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
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {CUSTOMER_COLUMNS} FROM customers WHERE vendor_id = $1 ORDER BY slug"
    )))
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
