//! Plans: what a license issued from one gets.

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row as _};
use utoipa::ToSchema;

use super::apps::{App, find_app};
use super::{check_slug, check_text};
use crate::server::base::db::is_unique_violation;
use crate::server::base::now;
use crate::server::base::secrets::new_id;
use crate::server::domain::access::{Caller, Role};
use crate::server::domain::error::{DomainError, DomainResult};
use crate::server::domain::idempotency::IdempotencyContext;
use crate::server::domain::tx::VendorTx;
use crate::server::state::AppState;

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
    /// Whether its licenses' grants, activations and check-ins must prove their AWS account:
    /// `required`, `optional`, or `default` (required when a license names accounts or is a
    /// trial). A license issued on the plan can say otherwise.
    #[serde(default)]
    pub account_proof: Option<String>,
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
    /// Whether its licenses must prove their AWS account (`default`, `required`, `optional`).
    pub account_proof: String,
}

/// Fields a plan may set: those of a license request that are not per-license.
pub(crate) const PLAN_FIELDS: &[&str] = &[
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

pub(crate) fn check_entitlements(
    map: &serde_json::Map<String, serde_json::Value>,
) -> DomainResult<()> {
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

pub(crate) fn plan_from(row: &sqlx::any::AnyRow, app: &str) -> DomainResult<Plan> {
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
        account_proof: row
            .try_get("account_proof")
            .unwrap_or_else(|_| "default".to_owned()),
    })
}

/// Finds a plan of an app.
pub async fn find_plan(conn: &mut AnyConnection, app: &App, slug: &str) -> DomainResult<Plan> {
    let row = sqlx::query(
        "SELECT id, slug, name, description, trial, duration_days, entitlements, account_proof FROM plans WHERE app_id = $1 AND slug = $2",
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
    let account_proof = body.account_proof.unwrap_or_else(|| "default".into());
    if !crate::server::domain::proofs::SETTINGS.contains(&account_proof.as_str()) {
        return Err(DomainError::invalid(format!(
            "account_proof must be one of {}",
            crate::server::domain::proofs::SETTINGS.join(", ")
        )));
    }
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
        account_proof,
    };
    let inserted = sqlx::query(
        "INSERT INTO plans (id, vendor_id, app_id, slug, name, description, trial, duration_days, entitlements, created_at, account_proof) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
    .bind(&plan.account_proof)
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
    state.listings.clear();
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
        "SELECT id, slug, name, description, trial, duration_days, entitlements, account_proof FROM plans WHERE app_id = $1 ORDER BY slug",
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
