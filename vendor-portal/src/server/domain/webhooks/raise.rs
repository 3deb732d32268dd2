//! Events the portal notices rather than is told: a license entering its expiry warning, a live
//! installation gone silent, usage past a quota. Each is raised once per subject and occasion
//! (a license's revision, an installation's last check-in, a quota's period): the row in
//! `raised_events`, the audit entry and the webhook event are written in one transaction, and
//! the row's key makes a second process (or a second sweep) raise nothing.

use std::collections::BTreeSet;

use license::UnixTime;
use license::checkin::UsageRecord;
use license::claims::Claims;
use license::entitlements::period_bounds;
use sqlx::Row as _;

use super::system_actor;
use crate::server::base::now;
use crate::server::domain::error::{DomainError, DomainResult};
use crate::server::domain::tx::VendorTx;
use crate::server::state::AppState;

/// Candidates looked at per sweep and kind, nearest first (the soonest to expire, the longest
/// silent), so that candidates not due yet never crowd out those that are.
const SWEEP_BATCH: i64 = 500;
/// Expiry warnings longer than this are raised this long before the end.
const MAX_WARNING: i64 = 90 * 86_400;
/// How long before its end a trial is said to be ending.
pub const TRIAL_WARNING: i64 = 3 * 86_400;
/// The shortest silence noticed when the operator sets none: an hour.
const MIN_SILENCE: i64 = 3600;

/// Records that `kind` happened to `subject` on `occasion` in `tx`; whether it is new.
pub async fn mark(
    tx: &mut VendorTx,
    vendor_id: &str,
    kind: &str,
    subject: &str,
    occasion: &str,
) -> DomainResult<bool> {
    let inserted = sqlx::query(
        "INSERT INTO raised_events (kind, subject, occasion, vendor_id, at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT DO NOTHING",
    )
    .bind(kind)
    .bind(subject)
    .bind(occasion)
    .bind(vendor_id)
    .bind(now())
    .execute(tx.conn())
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Raises `action` on `target` once per (`subject`, `occasion`), in its own transaction.
async fn raise_once(
    state: &AppState,
    vendor_id: &str,
    (subject, occasion): (&str, &str),
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> DomainResult<()> {
    let mut tx = VendorTx::begin(state, vendor_id).await?;
    if mark(&mut tx, vendor_id, action, subject, occasion).await? {
        tx.audit_as(system_actor(), "portal", "-", action, target, detail)
            .await?;
    }
    tx.commit_all(&[]).await
}

fn claims_of(text: &str) -> DomainResult<Claims> {
    serde_json::from_str(text).map_err(DomainError::internal)
}

/// One sweep: licenses entering their expiry warning, trials in their last three days, and
/// installations gone silent.
pub async fn sweep(state: &AppState) -> DomainResult<()> {
    expiring(state).await?;
    trials_ending(state).await?;
    silent(state).await
}

/// Trials in their last [`TRIAL_WARNING`]: `trial.ending` once per license and seq (the buyer
/// hears of it by mail, whatever the plan's expiry warning).
async fn trials_ending(state: &AppState) -> DomainResult<()> {
    let at = now();
    let rows = sqlx::query(
        "SELECT l.id, l.vendor_id, l.seq, l.expires_at, l.claims FROM licenses l \
         WHERE l.state = 'active' AND l.expires_at > $1 AND l.expires_at <= $2 \
         AND NOT EXISTS (SELECT 1 FROM raised_events r WHERE r.kind = 'trial.ending' \
         AND r.subject = l.id AND r.occasion = CAST(l.seq AS TEXT)) ORDER BY l.expires_at LIMIT $3",
    )
    .bind(at)
    .bind(at + TRIAL_WARNING)
    .bind(SWEEP_BATCH)
    .fetch_all(&state.db.pool)
    .await?;
    for row in rows {
        let claims = claims_of(&row.try_get::<String, _>("claims")?)?;
        if !claims.trial {
            continue;
        }
        let id: String = row.try_get("id")?;
        let seq: i64 = row.try_get("seq")?;
        let expires_at: i64 = row.try_get("expires_at")?;
        raise_once(
            state,
            &row.try_get::<String, _>("vendor_id")?,
            (&id, &seq.to_string()),
            "trial.ending",
            &id,
            serde_json::json!({"app": claims.aud.as_str(), "plan": claims.plan.as_str(), "seq": seq,
                "expires_at": expires_at, "days_left": (expires_at - at) / 86_400}),
        )
        .await?;
    }
    Ok(())
}

async fn expiring(state: &AppState) -> DomainResult<()> {
    let at = now();
    let rows = sqlx::query(
        "SELECT l.id, l.vendor_id, l.seq, l.expires_at, l.claims, c.slug AS customer FROM licenses l \
         JOIN customers c ON c.id = l.customer_id \
         WHERE l.state = 'active' AND l.expires_at > $1 AND l.expires_at <= $2 \
         AND NOT EXISTS (SELECT 1 FROM raised_events r WHERE r.kind = 'license.expiring' \
         AND r.subject = l.id AND r.occasion = CAST(l.seq AS TEXT)) ORDER BY l.expires_at LIMIT $3",
    )
    .bind(at)
    .bind(at + MAX_WARNING)
    .bind(SWEEP_BATCH)
    .fetch_all(&state.db.pool)
    .await?;
    for row in rows {
        let claims = claims_of(&row.try_get::<String, _>("claims")?)?;
        let expires_at: i64 = row.try_get("expires_at")?;
        let warning = i64::try_from(claims.policy.expiry_warning)
            .unwrap_or(MAX_WARNING)
            .min(MAX_WARNING);
        if expires_at - at > warning {
            continue;
        }
        let id: String = row.try_get("id")?;
        let seq: i64 = row.try_get("seq")?;
        let customer: String = row.try_get("customer")?;
        raise_once(
            state,
            &row.try_get::<String, _>("vendor_id")?,
            (&id, &seq.to_string()),
            "license.expiring",
            &id,
            serde_json::json!({"customer": customer, "app": claims.aud.as_str(), "plan": claims.plan.as_str(),
                "seq": seq, "expires_at": expires_at, "days_left": (expires_at - at) / 86_400,
                "trial": claims.trial}),
        )
        .await?;
    }
    Ok(())
}

async fn silent(state: &AppState) -> DomainResult<()> {
    let at = now();
    let floor = state
        .limits
        .silent_after
        .map_or(MIN_SILENCE, |s| i64::try_from(s).unwrap_or(i64::MAX));
    let rows = sqlx::query(
        "SELECT i.id, i.vendor_id, i.license_id, i.last_seen_at, i.aws_account, i.region, i.stack, \
         i.version, l.claims FROM installations i JOIN licenses l ON l.id = i.license_id \
         WHERE i.removed_at IS NULL AND i.last_seen_at < $1 \
         AND NOT EXISTS (SELECT 1 FROM raised_events r WHERE r.kind = 'installation.silent' \
         AND r.subject = i.id AND r.occasion = CAST(i.last_seen_at AS TEXT)) ORDER BY i.last_seen_at LIMIT $2",
    )
    .bind(at - floor)
    .bind(SWEEP_BATCH)
    .fetch_all(&state.db.pool)
    .await?;
    for row in rows {
        let claims = claims_of(&row.try_get::<String, _>("claims")?)?;
        let last_seen: i64 = row.try_get("last_seen_at")?;
        // Twice the check-in interval, unless the operator chose the silence to notice.
        let allowed = match state.limits.silent_after {
            Some(_) => floor,
            None => i64::try_from(claims.policy.checkin_interval.saturating_mul(2))
                .unwrap_or(i64::MAX)
                .max(MIN_SILENCE),
        };
        if at - last_seen <= allowed {
            continue;
        }
        let id: String = row.try_get("id")?;
        raise_once(
            state,
            &row.try_get::<String, _>("vendor_id")?,
            (&id, &last_seen.to_string()),
            "installation.silent",
            &id,
            serde_json::json!({"license": row.try_get::<String, _>("license_id")?,
                "aws_account": row.try_get::<String, _>("aws_account")?,
                "region": row.try_get::<String, _>("region")?,
                "stack": row.try_get::<String, _>("stack")?,
                "version": row.try_get::<String, _>("version")?,
                "last_seen_at": last_seen, "silent_for": at - last_seen}),
        )
        .await?;
    }
    Ok(())
}

/// After `records` were stored for `license_id` in `tx`: raises `usage.over_limit` for each
/// quota they took past its amount in its period, once per quota and period.
pub async fn over_quota(
    tx: &mut VendorTx,
    vendor_id: &str,
    license_id: &str,
    claims: &Claims,
    records: &[UsageRecord],
) -> DomainResult<()> {
    let touched: BTreeSet<(String, u64, u64)> = records
        .iter()
        .filter_map(|r| {
            let (name, quota) = claims
                .entitlements
                .quotas
                .iter()
                .find(|(name, _)| name.as_str() == r.body.dimension)?;
            let hour = UnixTime::from_secs(r.body.hour.as_secs())?;
            let (start, end) = period_bounds(quota.period, hour);
            Some((name.as_str().to_owned(), start.as_secs(), end.as_secs()))
        })
        .collect();
    for (dimension, start, end) in touched {
        let Some(quota) = claims
            .entitlements
            .quotas
            .iter()
            .find(|(name, _)| name.as_str() == dimension)
            .map(|(_, q)| q)
        else {
            continue;
        };
        let start = i64::try_from(start).map_err(DomainError::internal)?;
        let end = i64::try_from(end).map_err(DomainError::internal)?;
        let used: i64 = sqlx::query(
            "SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT) AS used FROM usage_records \
             WHERE license_id = $1 AND dimension = $2 AND hour >= $3 AND hour < $4",
        )
        .bind(license_id)
        .bind(&dimension)
        .bind(start)
        .bind(end)
        .fetch_one(tx.conn())
        .await?
        .try_get("used")?;
        let amount = i64::try_from(quota.amount).unwrap_or(i64::MAX);
        if used <= amount {
            continue;
        }
        let subject = format!("{license_id}:{dimension}");
        if mark(
            tx,
            vendor_id,
            "usage.over_limit",
            &subject,
            &start.to_string(),
        )
        .await?
        {
            tx.audit_as(
                system_actor(),
                "portal",
                "-",
                "usage.over_limit",
                license_id,
                serde_json::json!({"dimension": dimension, "period": quota.period.to_string(),
                    "period_start": start, "period_end": end, "used": used, "amount": quota.amount,
                    "overage_allowed": quota.overage.unwrap_or(0), "over_by": used - amount}),
            )
            .await?;
        }
    }
    Ok(())
}
