//! Usage a vendor can bill from: per customer, license and dimension, per hour, day or month,
//! with the overage of each quota, as CSV or JSON.
//!
//! Overage is computed hour by hour within each quota's own period (a monthly quota of 1000
//! counts from the first of the month, whatever range is exported): an hour's overage is how
//! far it took the period's running total past the quota, less how far the total was past it
//! before. A row's overage is the sum of its hours', so the rows of any range add up to the
//! periods' overage, and exporting hour by hour never bills an hour twice. Each row has a
//! stable `id` (license, dimension, granularity and start) to use as an idempotency key.

use std::collections::BTreeMap;

use license::UnixTime;
use license::claims::{Claims, Quota};
use license::entitlements::period_bounds;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row as _};
use utoipa::{IntoParams, ToSchema};

use crate::server::base::now;
use crate::server::domain::access::Caller;
use crate::server::domain::error::{DomainError, DomainResult};
use crate::server::state::AppState;

/// The most rows one export may have.
pub const MAX_ROWS: usize = 100_000;
/// The default range: the last 31 days.
const DEFAULT_DAYS: i64 = 31;

/// What to export.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `hour`, `day` (default) or `month`.
    pub granularity: Option<String>,
    /// From this time: RFC 3339, YYYY-MM-DD or Unix seconds (default: 31 days ago).
    pub from: Option<String>,
    /// Until this time, exclusive (default: now).
    pub to: Option<String>,
    /// Only this customer (slug).
    pub customer: Option<String>,
    /// Only this license.
    pub license: Option<String>,
    /// `csv` (default) or `json`.
    pub format: Option<String>,
}

/// One row: a dimension's usage of one license in one hour, day or month.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageRow {
    /// `license:dimension:granularity:start`, stable across exports (an idempotency key for
    /// Stripe meter events or Marketplace metering).
    pub id: String,
    /// The customer's slug.
    pub customer: String,
    /// The license.
    pub license: String,
    /// The app's slug.
    pub app: String,
    /// The plan's slug.
    pub plan: String,
    /// The metered dimension.
    pub dimension: String,
    /// `hour`, `day` or `month`.
    pub granularity: String,
    /// The row's first second (RFC 3339, UTC).
    pub start: String,
    /// Its end, exclusive.
    pub end: String,
    /// Units used.
    pub quantity: u64,
    /// Usage records they came in.
    pub records: u64,
    /// The quota on this dimension, if any: its amount per period.
    pub quota: Option<u64>,
    /// The quota's period (`hour`, `day`, `month`, `year`).
    pub quota_period: Option<String>,
    /// Units within the quota.
    pub included: u64,
    /// Units past the quota: what an invoice line bills.
    pub overage: u64,
}

/// An export as JSON.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageExport {
    /// The granularity.
    pub granularity: String,
    /// The range's start (RFC 3339).
    pub from: String,
    /// Its end, exclusive.
    pub to: String,
    /// Rows by customer, license, dimension and time.
    pub rows: Vec<UsageRow>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Granularity {
    Hour,
    Day,
    Month,
}

impl Granularity {
    fn parse(text: Option<&str>) -> DomainResult<Self> {
        match text.unwrap_or("day") {
            "hour" => Ok(Self::Hour),
            "day" => Ok(Self::Day),
            "month" => Ok(Self::Month),
            other => Err(DomainError::invalid(format!(
                "granularity {other:?} is not hour, day or month"
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Month => "month",
        }
    }

    /// The row `hour` falls in: its start and end.
    fn bucket(self, hour: u64) -> (u64, u64) {
        let period = match self {
            Self::Hour => license::claims::Period::Hour,
            Self::Day => license::claims::Period::Day,
            Self::Month => license::claims::Period::Month,
        };
        let at = UnixTime::from_secs(hour).unwrap_or_else(UnixTime::now);
        let (start, end) = period_bounds(period, at);
        (start.as_secs(), end.as_secs())
    }
}

fn rfc3339(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn time_param(text: Option<&str>, name: &str, default: i64) -> DomainResult<i64> {
    match text {
        None => Ok(default),
        Some(t) => UnixTime::parse(t)
            .and_then(|u| i64::try_from(u.as_secs()).ok())
            .ok_or_else(|| {
                DomainError::invalid(format!(
                    "{name} {t:?} is not RFC 3339, YYYY-MM-DD or Unix seconds"
                ))
            }),
    }
}

/// One license's facts for its rows.
struct LicenseFacts {
    customer: String,
    app: String,
    claims: Claims,
}

async fn facts(conn: &mut AnyConnection, vendor_id: &str, id: &str) -> DomainResult<LicenseFacts> {
    let row = sqlx::query(
        "SELECT c.slug AS customer, a.slug AS app, l.claims FROM licenses l \
         JOIN customers c ON c.id = l.customer_id JOIN apps a ON a.id = l.app_id \
         WHERE l.id = $1 AND l.vendor_id = $2",
    )
    .bind(id)
    .bind(vendor_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(LicenseFacts {
        customer: row.try_get("customer")?,
        app: row.try_get("app")?,
        claims: serde_json::from_str(&row.try_get::<String, _>("claims")?)
            .map_err(DomainError::internal)?,
    })
}

/// Units of `dimension` used under `license` from `since` until `until`.
async fn used_between(
    conn: &mut AnyConnection,
    license: &str,
    dimension: &str,
    (since, until): (i64, i64),
) -> DomainResult<u64> {
    let used: i64 = sqlx::query(
        "SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT) AS used FROM usage_records \
         WHERE license_id = $1 AND dimension = $2 AND hour >= $3 AND hour < $4",
    )
    .bind(license)
    .bind(dimension)
    .bind(since)
    .bind(until)
    .fetch_one(&mut *conn)
    .await?
    .try_get("used")?;
    Ok(u64::try_from(used).unwrap_or(0))
}

/// The export's rows.
pub async fn export(
    state: &AppState,
    caller: &Caller,
    query: &ExportQuery,
) -> DomainResult<UsageExport> {
    let granularity = Granularity::parse(query.granularity.as_deref())?;
    let now = now();
    let to = time_param(query.to.as_deref(), "to", now)?;
    let from = time_param(query.from.as_deref(), "from", to - DEFAULT_DAYS * 86_400)?;
    if from >= to {
        return Err(DomainError::invalid("from must be before to"));
    }
    // Whole rows: the range starts at its first row's start.
    let from = i64::try_from(granularity.bucket(u64::try_from(from).unwrap_or(0)).0)
        .map_err(DomainError::internal)?;
    let mut conn = state.db.pool.acquire().await?;
    let rows = sqlx::query(
        "SELECT u.license_id, u.dimension, u.hour, CAST(SUM(u.quantity) AS BIGINT) AS quantity, \
         COUNT(*) AS records FROM usage_records u JOIN licenses l ON l.id = u.license_id \
         JOIN customers c ON c.id = l.customer_id \
         WHERE u.vendor_id = $1 AND u.hour >= $2 AND u.hour < $3 \
         AND ($4 = '' OR c.slug = $4) AND ($5 = '' OR u.license_id = $5) \
         GROUP BY u.license_id, u.dimension, u.hour ORDER BY u.license_id, u.dimension, u.hour",
    )
    .bind(&caller.vendor_id)
    .bind(from)
    .bind(to)
    .bind(query.customer.as_deref().unwrap_or(""))
    .bind(query.license.as_deref().unwrap_or(""))
    .fetch_all(&mut *conn)
    .await?;
    let mut licenses: BTreeMap<String, LicenseFacts> = BTreeMap::new();
    // (license, dimension) → rows by start, built hour by hour.
    let mut out: BTreeMap<(String, String), BTreeMap<u64, UsageRow>> = BTreeMap::new();
    // The running total of the current quota period, and that period's end.
    let mut running: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    let mut row_count = 0usize;
    for row in rows {
        let license: String = row.try_get("license_id")?;
        let dimension: String = row.try_get("dimension")?;
        let hour = u64::try_from(row.try_get::<i64, _>("hour")?).unwrap_or(0);
        let quantity = u64::try_from(row.try_get::<i64, _>("quantity")?).unwrap_or(0);
        let records = u64::try_from(row.try_get::<i64, _>("records")?).unwrap_or(0);
        if !licenses.contains_key(&license) {
            let f = facts(&mut conn, &caller.vendor_id, &license).await?;
            licenses.insert(license.clone(), f);
        }
        let Some(f) = licenses.get(&license) else {
            continue;
        };
        let quota: Option<&Quota> = f
            .claims
            .entitlements
            .quotas
            .iter()
            .find(|(name, _)| name.as_str() == dimension)
            .map(|(_, q)| q);
        let key = (license.clone(), dimension.clone());
        let overage = match quota {
            None => 0,
            Some(q) => {
                let at = UnixTime::from_secs(hour).unwrap_or_else(UnixTime::now);
                let (p_start, p_end) = period_bounds(q.period, at);
                let (p_start, p_end) = (p_start.as_secs(), p_end.as_secs());
                let before = match running.get(&key) {
                    Some((total, end)) if *end == p_end => *total,
                    // A new period: what it used before the range, if it began before.
                    _ => {
                        let since = i64::try_from(p_start).unwrap_or(0);
                        let until = i64::try_from(hour).unwrap_or(0).min(from.max(since));
                        if until > since {
                            used_between(&mut conn, &license, &dimension, (since, until)).await?
                        } else {
                            0
                        }
                    }
                };
                let after = before.saturating_add(quantity);
                running.insert(key.clone(), (after, p_end));
                after.saturating_sub(q.amount) - before.saturating_sub(q.amount)
            }
        };
        let (start, end) = granularity.bucket(hour);
        let rows_of = out.entry(key).or_default();
        if !rows_of.contains_key(&start) {
            row_count += 1;
            if row_count > MAX_ROWS {
                return Err(DomainError::invalid(format!(
                    "the export would have over {MAX_ROWS} rows: narrow the range (from, to), choose a customer or license, or a coarser granularity"
                )));
            }
        }
        let entry = rows_of.entry(start).or_insert_with(|| UsageRow {
            id: format!("{license}:{dimension}:{}:{start}", granularity.name()),
            customer: f.customer.clone(),
            license: license.clone(),
            app: f.app.clone(),
            plan: f.claims.plan.as_str().to_owned(),
            dimension: dimension.clone(),
            granularity: granularity.name().into(),
            start: rfc3339(start),
            end: rfc3339(end),
            quantity: 0,
            records: 0,
            quota: quota.map(|q| q.amount),
            quota_period: quota.map(|q| q.period.to_string()),
            included: 0,
            overage: 0,
        });
        entry.quantity = entry.quantity.saturating_add(quantity);
        entry.records = entry.records.saturating_add(records);
        entry.overage = entry.overage.saturating_add(overage);
        entry.included = entry.quantity - entry.overage;
    }
    let mut rows: Vec<UsageRow> = out.into_values().flat_map(BTreeMap::into_values).collect();
    rows.sort_by(|a, b| {
        (&a.customer, &a.license, &a.dimension, &a.start).cmp(&(
            &b.customer,
            &b.license,
            &b.dimension,
            &b.start,
        ))
    });
    Ok(UsageExport {
        granularity: granularity.name().into(),
        from: rfc3339(u64::try_from(from).unwrap_or(0)),
        to: rfc3339(u64::try_from(to).unwrap_or(0)),
        rows,
    })
}

/// The CSV columns, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "id",
    "customer",
    "license",
    "app",
    "plan",
    "dimension",
    "granularity",
    "start",
    "end",
    "quantity",
    "records",
    "quota",
    "quota_period",
    "included",
    "overage",
];

/// A CSV field, quoted when it holds a comma, quote or line break; a leading `=`, `+`, `-` or
/// `@` is prefixed with `'` so that a spreadsheet never runs it as a formula.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// The export as CSV (RFC 4180, CRLF line ends).
pub fn to_csv(export: &UsageExport) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push_str("\r\n");
    for r in &export.rows {
        let fields = [
            r.id.clone(),
            r.customer.clone(),
            r.license.clone(),
            r.app.clone(),
            r.plan.clone(),
            r.dimension.clone(),
            r.granularity.clone(),
            r.start.clone(),
            r.end.clone(),
            r.quantity.to_string(),
            r.records.to_string(),
            r.quota.map(|q| q.to_string()).unwrap_or_default(),
            r.quota_period.clone().unwrap_or_default(),
            r.included.to_string(),
            r.overage.to_string(),
        ];
        out.push_str(
            &fields
                .iter()
                .map(|f| csv_field(f))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("-1+1"), "'-1+1");
    }

    #[test]
    fn rows_fall_in_their_granularity() {
        // 2026-03-15T10:00:00Z
        let hour = 1_773_568_800;
        assert_eq!(Granularity::Hour.bucket(hour), (hour, hour + 3600));
        assert_eq!(Granularity::Day.bucket(hour).0, hour - 10 * 3600);
        assert_eq!(
            rfc3339(Granularity::Month.bucket(hour).0),
            "2026-03-01T00:00:00Z"
        );
    }
}
