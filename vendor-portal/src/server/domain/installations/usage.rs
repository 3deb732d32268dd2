//! The vendor's view: installations, versions in use and usage per license and per customer.

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row as _};
use utoipa::ToSchema;

use crate::server::base::now;
use crate::server::domain::access::Caller;
use crate::server::domain::error::{DomainError, DomainResult};
use crate::server::domain::licenses::license_record;
use crate::server::state::AppState;

/// One installation as the vendor sees it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InstallationView {
    /// Its id.
    pub id: String,
    /// The AWS account.
    pub aws_account: String,
    /// The region.
    pub region: String,
    /// The stack.
    pub stack: String,
    /// The version last reported.
    pub version: String,
    /// When it was activated (Unix seconds).
    pub created_at: i64,
    /// The last activation or check-in of any of its agents.
    pub last_seen_at: i64,
    /// When it was uninstalled.
    pub removed_at: Option<i64>,
    /// How many agents (execution environments) have checked in for it.
    pub agents: i64,
}

/// A version and how many live installations run it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionInUse {
    /// The version.
    pub version: String,
    /// Live installations running it.
    pub installations: i64,
}

/// Usage of one dimension in one hour.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HourUsage {
    /// The hour's first second.
    pub hour: i64,
    /// Units.
    pub quantity: i64,
}

/// Usage of one dimension.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DimensionUsage {
    /// The dimension.
    pub dimension: String,
    /// Units over all time.
    pub total: i64,
    /// Records it was reported in.
    pub records: i64,
    /// Units per hour, oldest first (the last 90 days).
    pub hours: Vec<HourUsage>,
}

/// A license's installations and usage.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LicenseUsage {
    /// The license.
    pub license: String,
    /// Seats the license allows (none: unlimited).
    pub max_installations: Option<u32>,
    /// Live installations.
    pub seats_in_use: i64,
    /// Every installation, newest first.
    pub installations: Vec<InstallationView>,
    /// Versions in use by live installations.
    pub versions: Vec<VersionInUse>,
    /// Usage per dimension.
    pub usage: Vec<DimensionUsage>,
}

/// A license's installations, the versions they run and the usage they reported.
pub async fn usage(state: &AppState, caller: &Caller, id: String) -> DomainResult<LicenseUsage> {
    let mut conn = state.db.pool.acquire().await?;
    let usage = license_usage(&mut conn, &caller.vendor_id, id).await?;
    Ok(usage)
}

/// A customer's licenses, each with its installations and usage, and the customer's totals.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CustomerUsage {
    /// The customer's slug.
    pub customer: String,
    /// Live installations over all its licenses.
    pub seats_in_use: i64,
    /// Units per dimension over all its licenses.
    pub totals: Vec<DimensionTotal>,
    /// Each license, newest first.
    pub licenses: Vec<LicenseUsage>,
}

/// Units of one dimension.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DimensionTotal {
    /// The dimension.
    pub dimension: String,
    /// Units.
    pub total: i64,
}

/// A customer's installations, versions in use and usage, over all its licenses.
pub async fn customer_usage(
    state: &AppState,
    caller: &Caller,
    customer: String,
) -> DomainResult<CustomerUsage> {
    let mut conn = state.db.pool.acquire().await?;
    let usage = customer_usage_of(&mut conn, &caller.vendor_id, customer).await?;
    Ok(usage)
}

/// The usage of the vendor's customer `customer` (a slug), over all its licenses.
pub async fn customer_usage_of(
    conn: &mut AnyConnection,
    vendor_id: &str,
    customer: String,
) -> DomainResult<CustomerUsage> {
    let known = sqlx::query("SELECT id FROM customers WHERE vendor_id = $1 AND slug = $2")
        .bind(vendor_id)
        .bind(&customer)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| DomainError::not_found("customer", &customer))?;
    let customer_id: String = known.try_get("id")?;
    let ids = sqlx::query(
        "SELECT id FROM licenses WHERE vendor_id = $1 AND customer_id = $2 ORDER BY issued_at DESC, id",
    )
    .bind(vendor_id)
    .bind(&customer_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut licenses = Vec::with_capacity(ids.len());
    for row in ids {
        licenses.push(license_usage(&mut *conn, vendor_id, row.try_get("id")?).await?);
    }
    let mut totals: Vec<DimensionTotal> = Vec::new();
    for d in licenses.iter().flat_map(|l| &l.usage) {
        match totals.iter_mut().find(|t| t.dimension == d.dimension) {
            Some(t) => t.total = t.total.saturating_add(d.total),
            None => totals.push(DimensionTotal {
                dimension: d.dimension.clone(),
                total: d.total,
            }),
        }
    }
    totals.sort_by(|a, b| a.dimension.cmp(&b.dimension));
    Ok(CustomerUsage {
        customer,
        seats_in_use: licenses.iter().map(|l| l.seats_in_use).sum(),
        totals,
        licenses,
    })
}

/// License `id`'s installations, versions in use and usage.
pub async fn license_usage(
    conn: &mut AnyConnection,
    vendor_id: &str,
    id: String,
) -> DomainResult<LicenseUsage> {
    let record = license_record(&mut *conn, vendor_id, &id)
        .await
        .map_err(|_| DomainError::not_found("license", &id))?;
    let rows = sqlx::query(
        "SELECT i.id, i.aws_account, i.region, i.stack, i.version, i.created_at, i.last_seen_at, \
         i.removed_at, (SELECT COUNT(*) FROM agents a WHERE a.installation_id = i.id) AS agents \
         FROM installations i WHERE i.license_id = $1 AND i.vendor_id = $2 \
         ORDER BY i.created_at DESC, i.id",
    )
    .bind(&id)
    .bind(vendor_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut installations = Vec::with_capacity(rows.len());
    for row in rows {
        installations.push(InstallationView {
            id: row.try_get("id")?,
            aws_account: row.try_get("aws_account")?,
            region: row.try_get("region")?,
            stack: row.try_get("stack")?,
            version: row.try_get("version")?,
            created_at: row.try_get("created_at")?,
            last_seen_at: row.try_get("last_seen_at")?,
            removed_at: row.try_get("removed_at")?,
            agents: row.try_get("agents")?,
        });
    }
    let versions = versions_in_use(&installations);
    let usage = usage_by_dimension(&mut *conn, vendor_id, &id).await?;
    Ok(LicenseUsage {
        license: id,
        max_installations: record.claims.bindings.max_installations,
        seats_in_use: installations
            .iter()
            .filter(|i| i.removed_at.is_none())
            .count() as i64,
        installations,
        versions,
        usage,
    })
}

/// The versions the live installations run, newest first, with how many run each.
fn versions_in_use(installations: &[InstallationView]) -> Vec<VersionInUse> {
    let mut versions: Vec<VersionInUse> = Vec::new();
    for i in installations.iter().filter(|i| i.removed_at.is_none()) {
        match versions.iter_mut().find(|v| v.version == i.version) {
            Some(v) => v.installations += 1,
            None => versions.push(VersionInUse {
                version: i.version.clone(),
                installations: 1,
            }),
        }
    }
    versions.sort_by(|a, b| {
        let parse = |v: &str| semver::Version::parse(v).ok();
        parse(&b.version).cmp(&parse(&a.version))
    });
    versions
}

/// A license's usage per dimension: all-time totals and record counts, and the hours of the last
/// 90 days.
async fn usage_by_dimension(
    conn: &mut AnyConnection,
    vendor_id: &str,
    id: &str,
) -> DomainResult<Vec<DimensionUsage>> {
    let since = now() - 90 * 86_400;
    let rows = sqlx::query(
        "SELECT dimension, hour, CAST(SUM(quantity) AS BIGINT) AS quantity, COUNT(*) AS records FROM usage_records \
         WHERE license_id = $1 AND vendor_id = $2 GROUP BY dimension, hour ORDER BY dimension, hour",
    )
    .bind(id)
    .bind(vendor_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut usage: Vec<DimensionUsage> = Vec::new();
    for row in rows {
        let dimension: String = row.try_get("dimension")?;
        let hour: i64 = row.try_get("hour")?;
        let quantity: i64 = row.try_get("quantity")?;
        let records: i64 = row.try_get("records")?;
        if usage.last().is_none_or(|d| d.dimension != dimension) {
            usage.push(DimensionUsage {
                dimension,
                total: 0,
                records: 0,
                hours: Vec::new(),
            });
        }
        if let Some(d) = usage.last_mut() {
            d.total = d.total.saturating_add(quantity);
            d.records = d.records.saturating_add(records);
            if hour >= since {
                d.hours.push(HourUsage { hour, quantity });
            }
        }
    }
    Ok(usage)
}
