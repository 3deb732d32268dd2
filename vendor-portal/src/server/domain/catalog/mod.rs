//! Apps (the listing data the marketplace shows), their plans, and customers.

use sqlx::AssertSqlSafe;
use sqlx::{AnyConnection, Row as _};

use crate::server::base::now;
use crate::server::domain::error::{DomainError, DomainResult};

pub mod apps;
pub mod customers;
pub mod market;
pub mod plans;

pub use self::apps::{
    App, AppCreate, AppUpdate, create_app, find_app, list_apps, show_app, update_app,
};
pub use self::customers::{
    Customer, CustomerCreate, CustomerUpdate, create_customer, create_customer_of, find_customer,
    list_customers, show_customer, update_customer,
};
pub use self::plans::{Plan, PlanCreate, create_plan, find_plan, list_plans};

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
                p.duration_days AS p_days, p.entitlements AS p_entitlements, p.account_proof AS p_account_proof \
         FROM customers c JOIN apps a ON a.vendor_id = c.vendor_id \
         LEFT JOIN plans p ON p.app_id = a.id AND p.slug = $4 \
         WHERE c.vendor_id = $1 AND c.slug = $2 AND a.slug = $3",
        key("kid"),
        key("sealed_private"),
        key("not_after"),
    );
    let row = sqlx::query(AssertSqlSafe(sql.as_str()))
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
                account_proof: row.try_get("p_account_proof")?,
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
