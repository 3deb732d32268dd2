//! Changing a license: renew, suspend, reinstate, revoke. Each raises `seq` and re-signs the
//! file; the signed status endpoint tells running installs.

use license::status::LicenseState;
use license::{Claims, UnixTime, sign_license};
use serde::Deserialize;
use utoipa::ToSchema;

use super::issue::DEFAULT_DAYS;
use super::{License, find_license, secs};
use crate::server::base::now;
use crate::server::domain::access::{Caller, Role};
use crate::server::domain::catalog::{find_app, find_plan};
use crate::server::domain::error::{DomainError, DomainResult};
use crate::server::domain::idempotency::IdempotencyContext;
use crate::server::domain::tx::VendorTx;
use crate::server::domain::{keys, ratelimit};
use crate::server::state::AppState;

/// A renewal.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LicenseRenew {
    /// The new expiry, Unix seconds; else the plan's duration (or a year) from the later of now
    /// and the current expiry.
    #[serde(default)]
    pub expires_at: Option<u64>,
}

/// Why a license is suspended or revoked.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LicenseReason {
    /// Recorded in the audit log.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A change to a license.
pub enum Change {
    /// Extend to this expiry (Unix seconds), or by the plan's duration.
    Renew(Option<u64>),
    /// Move to this state, for this reason.
    State(LicenseState, Option<String>),
}

/// The plan's duration in days, for a renewal without a date (a year without a plan).
async fn plan_days(tx: &mut VendorTx, vendor_id: &str, current: &License) -> DomainResult<u32> {
    Ok(match &current.plan {
        Some(plan) => {
            let app = find_app(tx.conn(), vendor_id, &current.app).await?;
            find_plan(tx.conn(), &app, plan).await?.duration_days
        }
        None => DEFAULT_DAYS,
    })
}

/// Extends `claims` to `expires_at`, or by `days` from the later of now and the current expiry,
/// keeping the grace period between the end of the term and the hard expiry. A revoked license
/// is not renewed.
fn renew(
    claims: &mut Claims,
    id: &str,
    state: LicenseState,
    expires_at: Option<u64>,
    days: u32,
    now_t: UnixTime,
) -> DomainResult<()> {
    if state == LicenseState::Revoked {
        return Err(DomainError::conflict(format!(
            "license {id} is revoked; issue a new one"
        )));
    }
    let base = claims.exp.max(now_t);
    let exp = match expires_at {
        Some(t) => UnixTime::from_secs(t)
            .ok_or_else(|| DomainError::invalid("expires_at is after the year 9999"))?,
        None => base.plus(u64::from(days) * 86_400),
    };
    if exp <= now_t {
        return Err(DomainError::invalid("expires_at must be in the future"));
    }
    let grace = claims
        .exp
        .as_secs()
        .saturating_sub(claims.term.end.as_secs());
    claims.exp = exp;
    claims.term.end = exp.minus(grace).max(claims.term.start);
    Ok(())
}

/// The audit action of a state change, if the change is allowed: active ↔ suspended, and
/// either to revoked (for good).
fn transition(id: &str, from: LicenseState, to: LicenseState) -> DomainResult<&'static str> {
    let allowed = matches!(
        (from, to),
        (LicenseState::Active, LicenseState::Suspended)
            | (LicenseState::Suspended, LicenseState::Active)
            | (
                LicenseState::Active | LicenseState::Suspended,
                LicenseState::Revoked
            )
    );
    if !allowed {
        return Err(DomainError::conflict(format!(
            "license {id} is {}; it cannot become {}",
            from.as_str(),
            to.as_str()
        )));
    }
    Ok(match to {
        LicenseState::Suspended => "license.suspend",
        LicenseState::Revoked => "license.revoke",
        _ => "license.reinstate",
    })
}

/// Applies `change` to license `id`: checks the transition, re-signs with a higher `seq`,
/// stores, audits, and forgets the cached status.
pub async fn change(
    state: &AppState,
    caller: &Caller,
    idem: Option<&IdempotencyContext>,
    id: &str,
    change: Change,
) -> DomainResult<License> {
    caller.require(Role::Publisher)?;
    let mut tx = VendorTx::begin(state, &caller.vendor_id).await?;
    license_rate_limit(state, &mut tx, caller).await?;
    let current = find_license(tx.conn(), &caller.vendor_id, id).await?;
    let current_state = current.state;
    let mut claims =
        Claims::from_json(current.claims.to_string().as_bytes()).map_err(DomainError::internal)?;
    let now_t = UnixTime::now();
    let (new_state, action, reason) = match change {
        Change::Renew(expires_at) => {
            let days = plan_days(&mut tx, &caller.vendor_id, &current).await?;
            renew(&mut claims, id, current_state, expires_at, days, now_t)?;
            (current_state, "license.renew", None)
        }
        Change::State(target, reason) => (target, transition(id, current_state, target)?, reason),
    };
    if reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
        return Err(DomainError::invalid("a reason is at most 500 characters"));
    }
    claims.seq += 1;
    claims.iat = now_t;
    let (kid, key) = keys::private_key(
        tx.conn(),
        &state.master,
        &caller.vendor_id,
        "license",
        Some(secs(claims.exp)),
    )
    .await?;
    let armored = sign_license(&claims, &kid, &key)
        .map_err(|e| DomainError::invalid(format!("cannot re-sign the license: {e}")))?;
    let claims_json = serde_json::to_value(&claims).map_err(DomainError::internal)?;
    let seq = i64::try_from(claims.seq).unwrap_or(i64::MAX);
    sqlx::query(
        "UPDATE licenses SET state = $3, seq = $4, kid = $5, claims = $6, armored = $7, expires_at = $8, updated_at = $9 \
         WHERE vendor_id = $1 AND id = $2",
    )
    .bind(&caller.vendor_id)
    .bind(id)
    .bind(new_state.as_str())
    .bind(seq)
    .bind(&kid)
    .bind(claims_json.to_string())
    .bind(&armored)
    .bind(secs(claims.exp))
    .bind(now())
    .execute(tx.conn())
    .await?;
    tx.audit(
        caller,
        action,
        id,
        serde_json::json!({"seq": seq, "state": new_state.as_str(), "exp": claims.exp, "reason": reason}),
    )
    .await?;
    let out = License {
        state: new_state,
        seq,
        kid,
        expires_at: secs(claims.exp),
        claims: claims_json,
        license: armored,
        ..current
    };
    tx.commit_answer(idem, 200, &out).await?;
    state
        .statuses
        .forget(&(caller.vendor_slug.clone(), id.to_owned()));
    Ok(out)
}

async fn license_rate_limit(
    state: &AppState,
    tx: &mut VendorTx,
    caller: &Caller,
) -> DomainResult<()> {
    ratelimit::hit(
        tx.conn(),
        &format!("license-write:{}", caller.vendor_id),
        60,
        state.limits.license_writes_per_minute,
        "license changes for this vendor",
    )
    .await
}
