//! Issuing a license: from a plan with overrides, signed with the vendor's license-signing key
//! outside any lock, then stored by the group-commit issuer (`domain::issuer`).

use license::{LicenseRequest, UnixTime, sign_license};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{License, secs};
use crate::server::domain::access::{Caller, Role};
use crate::server::domain::catalog::{LicenseSource, find_for_license};
use crate::server::domain::error::{DomainError, DomainResult};
use crate::server::domain::idempotency::IdempotencyContext;
use crate::server::domain::issuer::NewLicense;
use crate::server::domain::keys;
use crate::server::domain::tx::AuditRecord;
use crate::server::state::AppState;

/// Licenses last a year unless the plan or the request says otherwise.
pub const DEFAULT_DAYS: u32 = 365;

/// A request to issue a license.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LicenseIssue {
    /// The customer's slug.
    pub customer: String,
    /// The app's slug.
    pub app: String,
    /// The plan's slug; without one the license carries only what the request gives.
    #[serde(default)]
    pub plan: Option<String>,
    /// Features, replacing the plan's.
    #[serde(default)]
    pub features: Option<Vec<String>>,
    /// Limits, merged over the plan's.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub limits: Option<serde_json::Map<String, serde_json::Value>>,
    /// Expiry, Unix seconds; else the plan's duration from now.
    #[serde(default)]
    pub expires_at: Option<u64>,
    /// AWS accounts it is bound to; the customer's accounts by default.
    #[serde(default)]
    pub aws_accounts: Option<Vec<String>>,
    /// AWS regions it is bound to; the plan's (or any) by default.
    #[serde(default)]
    pub regions: Option<Vec<String>>,
    /// Maximum simultaneous installations; the plan's by default.
    #[serde(default)]
    pub max_installations: Option<u32>,
    /// Release channels it may install from; `["stable"]` by default.
    #[serde(default)]
    pub channels: Option<Vec<String>>,
    /// The versions it may install (a semver requirement such as `>=1.0, <2`); any by default.
    #[serde(default)]
    pub versions: Option<String>,
    /// Only releases published before this time (Unix seconds); no cut-off by default.
    #[serde(default)]
    pub published_before: Option<u64>,
    /// Whether grants, activations and check-ins must prove their AWS account: `required`,
    /// `optional`, or `default` (required when the license names accounts or is a trial).
    #[serde(default)]
    pub account_proof: Option<String>,
}

/// A license issued and stored, with its JSON answer (serialised once, for the reply and the
/// idempotency record).
pub struct Issued {
    /// The license.
    pub license: License,
    /// `license` as JSON.
    pub json: String,
}

/// Issues a license: reads the customer, app, plan and signing key (cached), builds and signs the
/// claims before the vendor's write lock is taken, and hands the row to the group-commit issuer.
pub async fn issue(
    state: &AppState,
    caller: &Caller,
    idem: Option<&IdempotencyContext>,
    body: LicenseIssue,
) -> DomainResult<Issued> {
    caller.require(Role::Publisher)?;
    let now_t = UnixTime::now();
    let (customer, app, plan, stored_key) = source(state, caller, &body).await?;
    // The license's own setting, else its plan's.
    let account_proof = body
        .account_proof
        .clone()
        .or_else(|| plan.as_ref().map(|p| p.account_proof.clone()))
        .unwrap_or_else(|| "default".into());
    if !crate::server::domain::proofs::SETTINGS.contains(&account_proof.as_str()) {
        return Err(DomainError::invalid(format!(
            "account_proof must be one of {}",
            crate::server::domain::proofs::SETTINGS.join(", ")
        )));
    }
    let request = license_request(body, &customer, plan.as_ref(), now_t);
    let bytes = serde_json::to_vec(&request).map_err(DomainError::internal)?;
    let issuer =
        license::claims::Slug::new(caller.vendor_slug.clone()).map_err(DomainError::internal)?;
    let claims = LicenseRequest::from_json(&bytes)
        .and_then(|r| r.into_claims(Some(&issuer), now_t))
        .map_err(|e| DomainError::invalid(format!("this license cannot be issued: {e}")))?;
    let Some((kid, sealed, key_expiry)) = stored_key else {
        return Err(DomainError::conflict(
            "the portal holds no license-signing key valid now: rotate or register keys",
        ));
    };
    if secs(claims.exp) > key_expiry {
        return Err(keys::key_expires_first(&kid, secs(claims.exp), key_expiry));
    }
    let key = state
        .master
        .open_signing_key(&keys::seal_context(&caller.vendor_id, &kid), &sealed)?;
    let armored = sign_license(&claims, &kid, &key)
        .map_err(|e| DomainError::invalid(format!("this license cannot be signed: {e}")))?;
    let audit = AuditRecord::by(
        caller,
        "license.issue",
        claims.jti.as_str(),
        serde_json::json!({"customer": customer.slug, "app": app.slug, "plan": claims.plan, "seq": claims.seq, "exp": claims.exp, "kid": kid, "trial": claims.trial}),
    );
    let license = License {
        id: claims.jti.to_string(),
        customer: customer.slug,
        app: app.slug,
        plan: plan.as_ref().map(|p| p.slug.clone()),
        state: license::status::LicenseState::Active,
        seq: i64::try_from(claims.seq).unwrap_or(1),
        kid: kid.clone(),
        issued_at: secs(claims.iat),
        expires_at: secs(claims.exp),
        claims: serde_json::to_value(&claims).map_err(DomainError::internal)?,
        license: armored,
    };
    let json = serde_json::to_string(&license).map_err(DomainError::internal)?;
    state
        .issuer
        .submit(NewLicense {
            vendor_id: caller.vendor_id.clone(),
            id: license.id.clone(),
            app_id: app.id,
            customer_id: customer.id,
            plan_id: plan.map(|p| p.id),
            seq: license.seq,
            kid,
            claims: license.claims.to_string(),
            armored: license.license.clone(),
            issued_at: license.issued_at,
            expires_at: license.expires_at,
            account_proof,
            audit,
            idempotency: idem.cloned(),
            response: json.clone(),
        })
        .await?;
    Ok(Issued { license, json })
}

/// The customer, app and plan `body` names and the vendor's signing key, from the short-lived
/// cache or one query.
async fn source(
    state: &AppState,
    caller: &Caller,
    body: &LicenseIssue,
) -> DomainResult<LicenseSource> {
    let key = (
        caller.vendor_id.clone(),
        body.customer.clone(),
        body.app.clone(),
        body.plan.clone(),
    );
    if let Some(hit) = state.catalog.get(&key) {
        return Ok(hit);
    }
    let mut conn = state.db.pool.acquire().await?;
    let found = find_for_license(
        &mut conn,
        &caller.vendor_id,
        &body.customer,
        &body.app,
        body.plan.as_deref(),
    )
    .await?;
    state.catalog.put(key, found.clone());
    Ok(found)
}

/// The license request (`license::LicenseRequest`'s JSON): the plan's entitlements, overridden
/// by the request's fields, bound to the customer's accounts by default.
fn license_request(
    body: LicenseIssue,
    customer: &crate::server::domain::catalog::Customer,
    plan: Option<&crate::server::domain::catalog::Plan>,
    now_t: UnixTime,
) -> serde_json::Map<String, serde_json::Value> {
    let mut request = plan.map(|p| p.entitlements.clone()).unwrap_or_default();
    let days = plan.map_or(DEFAULT_DAYS, |p| p.duration_days);
    let exp = body
        .expires_at
        .unwrap_or(now_t.as_secs() + u64::from(days) * 86_400);
    request.insert("sub".into(), customer.slug.clone().into());
    request.insert("aud".into(), body.app.into());
    request.insert("exp".into(), exp.into());
    if let Some(plan) = plan {
        request.insert("plan".into(), plan.slug.clone().into());
        request.insert("trial".into(), plan.trial.into());
    }
    if let Some(features) = body.features {
        request.insert("features".into(), features.into());
    }
    if let Some(limits) = body.limits {
        let merged = request
            .entry("limits")
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        if let Some(map) = merged.as_object_mut() {
            map.extend(limits);
        }
    }
    let accounts = body
        .aws_accounts
        .unwrap_or_else(|| customer.aws_accounts.clone());
    if !accounts.is_empty() {
        request.insert("aws_accounts".into(), accounts.into());
    }
    let optional = [
        ("regions", body.regions.map(serde_json::Value::from)),
        ("max_installations", body.max_installations.map(Into::into)),
        ("channels", body.channels.map(Into::into)),
        ("versions", body.versions.map(Into::into)),
        ("published_before", body.published_before.map(Into::into)),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            request.insert(name.into(), value);
        }
    }
    request
}
