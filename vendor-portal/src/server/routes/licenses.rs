//! Licenses: issued from a plan with overrides, signed with the vendor's license-signing key,
//! and changed only by renew, suspend, reinstate and revoke, each of which raises `seq` and
//! re-signs the file. The signed status endpoint tells running installs about the changes.

use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use license::status::{LicenseState, StatusClaims, sign_status, valid_nonce};
use license::{Claims, LicenseRequest, UnixTime, sign_license};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row as _};
use utoipa::{IntoParams, ToSchema};

use super::catalog::{find_app, find_for_license, find_plan};
use crate::server::base::now;
use crate::server::domain;
use crate::server::domain::error::{DomainError, DomainResult};
use crate::server::domain::issuer::NewLicense;
use crate::server::domain::ratelimit;
use crate::server::domain::tx::{AuditRecord, VendorTx};
use crate::server::http::auth::{Caller, Role};
use crate::server::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::server::http::idempotency::IdempotencyContext;
use crate::server::http::reply::CommitReply as _;
use crate::server::http::reply::json_response;
use crate::server::state::{AppState, CachedStatus};

/// Licenses last a year unless the plan or the request says otherwise.
const DEFAULT_DAYS: u32 = 365;

/// A request to issue a license.
#[derive(Debug, Deserialize, ToSchema)]
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
}

/// A license.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct License {
    /// The license id (`jti`).
    pub id: String,
    /// The customer's slug.
    pub customer: String,
    /// The app's slug.
    pub app: String,
    /// The plan's slug, if issued from one.
    pub plan: Option<String>,
    /// `active`, `suspended` or `revoked`.
    pub state: String,
    /// The current revision.
    pub seq: i64,
    /// The key that signed the current file.
    pub kid: String,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// The signed claims.
    #[schema(value_type = Object)]
    pub claims: serde_json::Value,
    /// The armoured license file.
    pub license: String,
}

const LICENSE_SELECT: &str = "SELECT l.id, c.slug AS customer, a.slug AS app, p.slug AS plan, l.state, l.seq, l.kid, \
    l.issued_at, l.expires_at, l.claims, l.armored FROM licenses l \
    JOIN customers c ON c.id = l.customer_id JOIN apps a ON a.id = l.app_id LEFT JOIN plans p ON p.id = l.plan_id";

fn license_from(row: &sqlx::any::AnyRow) -> DomainResult<License> {
    let claims: String = row.try_get("claims")?;
    Ok(License {
        id: row.try_get("id")?,
        customer: row.try_get("customer")?,
        app: row.try_get("app")?,
        plan: row.try_get("plan")?,
        state: row.try_get("state")?,
        seq: row.try_get("seq")?,
        kid: row.try_get("kid")?,
        issued_at: row.try_get("issued_at")?,
        expires_at: row.try_get("expires_at")?,
        claims: serde_json::from_str(&claims).map_err(DomainError::internal)?,
        license: row.try_get("armored")?,
    })
}

async fn find_license(
    conn: &mut AnyConnection,
    vendor_id: &str,
    id: &str,
) -> DomainResult<License> {
    let row = sqlx::query(&format!(
        "{LICENSE_SELECT} WHERE l.vendor_id = $1 AND l.id = $2"
    ))
    .bind(vendor_id)
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| DomainError::not_found("license", id))?;
    license_from(&row)
}

fn secs(t: UnixTime) -> i64 {
    i64::try_from(t.as_secs()).unwrap_or(i64::MAX)
}

/// Issues a license.
#[utoipa::path(post, path = "/api/v1/licenses", tag = "licenses", security(("token" = [])), request_body = LicenseIssue, responses(
    (status = 201, body = License), (status = 404, body = crate::server::http::problem::Problem),
    (status = 422, body = crate::server::http::problem::Problem), (status = 429, body = crate::server::http::problem::Problem)))]
pub async fn issue(
    State(state): State<AppState>,
    caller: Caller,
    idem: Option<Extension<IdempotencyContext>>,
    ApiJson(body): ApiJson<LicenseIssue>,
) -> DomainResult<Response> {
    caller.require(Role::Publisher)?;
    let now_t = UnixTime::now();
    // Everything that only reads, and the signature, happens before the vendor's write lock is
    // taken, so the locked part is a few inserts.
    let source_key = (
        caller.vendor_id.clone(),
        body.customer.clone(),
        body.app.clone(),
        body.plan.clone(),
    );
    let (customer, app, plan, stored_key) = match state.catalog.get(&source_key) {
        Some(hit) => hit,
        None => {
            let mut conn = state.db.pool.acquire().await?;
            let found = find_for_license(
                &mut conn,
                &caller.vendor_id,
                &body.customer,
                &body.app,
                body.plan.as_deref(),
            )
            .await?;
            state.catalog.put(source_key, found.clone());
            found
        }
    };
    let mut request = plan
        .as_ref()
        .map(|p| p.entitlements.clone())
        .unwrap_or_default();
    let days = plan.as_ref().map_or(DEFAULT_DAYS, |p| p.duration_days);
    let exp = body
        .expires_at
        .unwrap_or(now_t.as_secs() + u64::from(days) * 86_400);
    request.insert("sub".into(), customer.slug.clone().into());
    request.insert("aud".into(), app.slug.clone().into());
    request.insert("exp".into(), exp.into());
    if let Some(plan) = &plan {
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
    if let Some(regions) = body.regions {
        request.insert("regions".into(), regions.into());
    }
    if let Some(max) = body.max_installations {
        request.insert("max_installations".into(), max.into());
    }
    if let Some(channels) = body.channels {
        request.insert("channels".into(), channels.into());
    }
    if let Some(versions) = body.versions {
        request.insert("versions".into(), versions.into());
    }
    if let Some(before) = body.published_before {
        request.insert("published_before".into(), before.into());
    }
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
        return Err(domain::keys::key_expires_first(
            &kid,
            secs(claims.exp),
            key_expiry,
        ));
    }
    let key = state.master.open_signing_key(
        &domain::keys::seal_context(&caller.vendor_id, &kid),
        &sealed,
    )?;
    let armored = sign_license(&claims, &kid, &key)
        .map_err(|e| DomainError::invalid(format!("this license cannot be signed: {e}")))?;
    let claims_json = serde_json::to_value(&claims).map_err(DomainError::internal)?;
    let audit = AuditRecord::by(
        &caller,
        "license.issue",
        claims.jti.as_str(),
        serde_json::json!({"customer": customer.slug, "app": app.slug, "plan": claims.plan, "seq": claims.seq, "exp": claims.exp, "kid": kid}),
    );
    let out = License {
        id: claims.jti.to_string(),
        customer: customer.slug,
        app: app.slug,
        plan: plan.as_ref().map(|p| p.slug.clone()),
        state: "active".into(),
        seq: i64::try_from(claims.seq).unwrap_or(1),
        kid: kid.clone(),
        issued_at: secs(claims.iat),
        expires_at: secs(claims.exp),
        claims: claims_json,
        license: armored,
    };
    let response = serde_json::to_string(&out).map_err(DomainError::internal)?;
    state
        .issuer
        .submit(NewLicense {
            vendor_id: caller.vendor_id.clone(),
            id: out.id.clone(),
            app_id: app.id,
            customer_id: customer.id,
            plan_id: plan.map(|p| p.id),
            seq: out.seq,
            kid,
            claims: out.claims.to_string(),
            armored: out.license.clone(),
            issued_at: out.issued_at,
            expires_at: out.expires_at,
            audit,
            idempotency: idem.map(|Extension(ctx)| ctx),
            response: response.clone(),
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        response,
    )
        .into_response())
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

/// Filters for listing licenses.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LicenseFilter {
    /// Only this customer's.
    pub customer: Option<String>,
    /// Only this app's.
    pub app: Option<String>,
    /// Only in this state.
    pub state: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
    /// Skip this many.
    pub offset: Option<u32>,
}

/// Lists licenses, newest first.
#[utoipa::path(get, path = "/api/v1/licenses", tag = "licenses", security(("token" = [])), params(LicenseFilter),
    responses((status = 200, body = Vec<License>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(filter): ApiQuery<LicenseFilter>,
) -> DomainResult<Response> {
    let limit = i64::from(filter.limit.unwrap_or(100).clamp(1, 1000));
    let offset = i64::from(filter.offset.unwrap_or(0));
    let rows = sqlx::query(&format!(
        "{LICENSE_SELECT} WHERE l.vendor_id = $1 AND ($2 = '' OR c.slug = $2) AND ($3 = '' OR a.slug = $3) \
         AND ($4 = '' OR l.state = $4) ORDER BY l.issued_at DESC, l.id LIMIT $5 OFFSET $6"
    ))
    .bind(&caller.vendor_id)
    .bind(filter.customer.unwrap_or_default())
    .bind(filter.app.unwrap_or_default())
    .bind(filter.state.unwrap_or_default())
    .bind(limit)
    .bind(offset)
    .fetch_all(&state.db.pool)
    .await?;
    let licenses = rows
        .iter()
        .map(license_from)
        .collect::<DomainResult<Vec<_>>>()?;
    Ok(json_response(StatusCode::OK, licenses))
}

/// Shows a license.
#[utoipa::path(get, path = "/api/v1/licenses/{id}", tag = "licenses", security(("token" = [])),
    params(("id" = String, Path, description = "License id")), responses((status = 200, body = License), (status = 404, body = crate::server::http::problem::Problem)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> DomainResult<Response> {
    let mut conn = state.db.pool.acquire().await?;
    let license = find_license(&mut conn, &caller.vendor_id, &id).await?;
    Ok(json_response(StatusCode::OK, license))
}

/// Downloads the current license file.
#[utoipa::path(get, path = "/api/v1/licenses/{id}/file", tag = "licenses", security(("token" = [])),
    params(("id" = String, Path, description = "License id")), responses((status = 200, description = "The armoured license", body = String, content_type = "application/vnd.consign.license"), (status = 404, body = crate::server::http::problem::Problem)))]
pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> DomainResult<Response> {
    let mut conn = state.db.pool.acquire().await?;
    let license = find_license(&mut conn, &caller.vendor_id, &id).await?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "application/vnd.consign.license".to_owned(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}.lic\"", license.id),
            ),
        ],
        license.license,
    )
        .into_response())
}

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

enum Change {
    Renew(Option<u64>),
    State(LicenseState, Option<String>),
}

async fn change(
    state: &AppState,
    caller: &Caller,
    idem: Option<&IdempotencyContext>,
    id: &str,
    change: Change,
) -> DomainResult<Response> {
    caller.require(Role::Publisher)?;
    let mut tx = VendorTx::begin(state, &caller.vendor_id).await?;
    license_rate_limit(state, &mut tx, caller).await?;
    let current = find_license(tx.conn(), &caller.vendor_id, id).await?;
    let current_state = LicenseState::parse(&current.state)
        .ok_or_else(|| DomainError::internal("unknown license state"))?;
    let mut claims =
        Claims::from_json(current.claims.to_string().as_bytes()).map_err(DomainError::internal)?;
    let now_t = UnixTime::now();
    let (new_state, action, reason) = match change {
        Change::Renew(expires_at) => {
            if current_state == LicenseState::Revoked {
                return Err(DomainError::conflict(format!(
                    "license {id} is revoked; issue a new one"
                )));
            }
            let days = match &current.plan {
                Some(plan) => {
                    let app = find_app(tx.conn(), &caller.vendor_id, &current.app).await?;
                    find_plan(tx.conn(), &app, plan).await?.duration_days
                }
                None => DEFAULT_DAYS,
            };
            let base = claims.exp.max(now_t);
            let exp = match expires_at {
                Some(t) => UnixTime::from_secs(t)
                    .ok_or_else(|| DomainError::invalid("expires_at is after the year 9999"))?,
                None => base.plus(u64::from(days) * 86_400),
            };
            if exp <= now_t {
                return Err(DomainError::invalid("expires_at must be in the future"));
            }
            // Keep the grace period between the end of the term and the hard expiry.
            let grace = claims
                .exp
                .as_secs()
                .saturating_sub(claims.term.end.as_secs());
            claims.exp = exp;
            claims.term.end = exp.minus(grace).max(claims.term.start);
            (current_state, "license.renew", None)
        }
        Change::State(target, reason) => {
            let allowed = matches!(
                (current_state, target),
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
                    current_state.as_str(),
                    target.as_str()
                )));
            }
            let action = match target {
                LicenseState::Suspended => "license.suspend",
                LicenseState::Revoked => "license.revoke",
                _ => "license.reinstate",
            };
            (target, action, reason)
        }
    };
    if reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
        return Err(DomainError::invalid("a reason is at most 500 characters"));
    }
    claims.seq += 1;
    claims.iat = now_t;
    let (kid, key) = domain::keys::private_key(
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
        state: new_state.as_str().into(),
        seq,
        kid,
        expires_at: secs(claims.exp),
        claims: claims_json,
        license: armored,
        ..current
    };
    let response = tx.commit(idem, StatusCode::OK, &out).await?;
    state
        .statuses
        .forget(&(caller.vendor_slug.clone(), id.to_owned()));
    Ok(response)
}

/// Extends a license; the new file has a higher `seq`.
#[utoipa::path(post, path = "/api/v1/licenses/{id}/renew", tag = "licenses", security(("token" = [])), request_body = LicenseRenew,
    params(("id" = String, Path, description = "License id")), responses((status = 200, body = License), (status = 404, body = crate::server::http::problem::Problem), (status = 409, body = crate::server::http::problem::Problem)))]
pub async fn renew(
    State(state): State<AppState>,
    caller: Caller,
    idem: Option<Extension<IdempotencyContext>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<LicenseRenew>,
) -> DomainResult<Response> {
    change(
        &state,
        &caller,
        idem.as_deref(),
        &id,
        Change::Renew(body.expires_at),
    )
    .await
}

/// Suspends a license: the status endpoint reports it, installs restrict until reinstated.
#[utoipa::path(post, path = "/api/v1/licenses/{id}/suspend", tag = "licenses", security(("token" = [])), request_body = LicenseReason,
    params(("id" = String, Path, description = "License id")), responses((status = 200, body = License), (status = 404, body = crate::server::http::problem::Problem), (status = 409, body = crate::server::http::problem::Problem)))]
pub async fn suspend(
    State(state): State<AppState>,
    caller: Caller,
    idem: Option<Extension<IdempotencyContext>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<LicenseReason>,
) -> DomainResult<Response> {
    change(
        &state,
        &caller,
        idem.as_deref(),
        &id,
        Change::State(LicenseState::Suspended, body.reason),
    )
    .await
}

/// Reinstates a suspended license.
#[utoipa::path(post, path = "/api/v1/licenses/{id}/reinstate", tag = "licenses", security(("token" = [])), request_body = LicenseReason,
    params(("id" = String, Path, description = "License id")), responses((status = 200, body = License), (status = 404, body = crate::server::http::problem::Problem), (status = 409, body = crate::server::http::problem::Problem)))]
pub async fn reinstate(
    State(state): State<AppState>,
    caller: Caller,
    idem: Option<Extension<IdempotencyContext>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<LicenseReason>,
) -> DomainResult<Response> {
    change(
        &state,
        &caller,
        idem.as_deref(),
        &id,
        Change::State(LicenseState::Active, body.reason),
    )
    .await
}

/// Revokes a license for good.
#[utoipa::path(post, path = "/api/v1/licenses/{id}/revoke", tag = "licenses", security(("token" = [])), request_body = LicenseReason,
    params(("id" = String, Path, description = "License id")), responses((status = 200, body = License), (status = 404, body = crate::server::http::problem::Problem), (status = 409, body = crate::server::http::problem::Problem)))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    idem: Option<Extension<IdempotencyContext>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<LicenseReason>,
) -> DomainResult<Response> {
    change(
        &state,
        &caller,
        idem.as_deref(),
        &id,
        Change::State(LicenseState::Revoked, body.reason),
    )
    .await
}

/// The nonce a status request carries.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    /// 16 to 128 characters of `[A-Za-z0-9_-]`, fresh for each request.
    pub nonce: String,
}

/// A signed status.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatusResponse {
    /// The license id.
    pub license: String,
    /// `active`, `suspended` or `revoked`.
    pub state: String,
    /// The current revision.
    pub seq: i64,
    /// The portal's clock, Unix seconds.
    pub time: i64,
    /// The nonce, echoed.
    pub nonce: String,
    /// The same, as a compact JWS (`typ` `consign-status+jwt`) signed by a license-signing key
    /// of the vendor's keyset: verify this, not the fields beside it.
    pub signed: String,
}

/// The signed status of a license, for agents and installers (no credentials: license ids are
/// unguessable and the answer reveals only the state).
#[utoipa::path(get, path = "/api/v1/vendors/{vendor}/licenses/{id}/status", tag = "public", params(
    ("vendor" = String, Path, description = "Vendor slug"), ("id" = String, Path, description = "License id"), StatusQuery),
    responses((status = 200, body = StatusResponse), (status = 400, body = crate::server::http::problem::Problem), (status = 404, body = crate::server::http::problem::Problem)))]
pub async fn status(
    State(state): State<AppState>,
    ApiPath((vendor, id)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<StatusQuery>,
) -> DomainResult<Response> {
    if !valid_nonce(&query.nonce) {
        return Err(DomainError::bad_request(
            "nonce must be 16 to 128 characters of A-Z a-z 0-9 _ -",
        ));
    }
    let (claims, signed) = signed_status(&state, &vendor, &id, &query.nonce).await?;
    let (state_text, seq, now_t) = (claims.state.as_str().to_owned(), claims.seq, claims.time);
    Ok(json_response(
        StatusCode::OK,
        StatusResponse {
            license: id,
            state: state_text,
            seq: i64::try_from(seq).unwrap_or(i64::MAX),
            time: secs(now_t),
            nonce: query.nonce,
            signed,
        },
    ))
}

/// The signed status of license `id` of vendor `vendor` over `nonce`: what the status endpoint,
/// activations and check-ins answer with.
pub async fn signed_status(
    state: &AppState,
    vendor: &str,
    id: &str,
    nonce: &str,
) -> DomainResult<(StatusClaims, String)> {
    let cache_key = (vendor.to_owned(), id.to_owned());
    let cached = match state.statuses.get(&cache_key) {
        Some(hit) => hit,
        None => {
            // One query: the license's state and the key to sign with.
            let read_at = now();
            let row = sqlx::query(
                "SELECT l.state, l.seq, v.id AS vendor_id, k.kid, k.sealed_private \
                 FROM licenses l JOIN vendors v ON v.id = l.vendor_id \
                 LEFT JOIN vendor_keys k ON k.vendor_id = v.id AND k.role = 'license' \
                      AND k.sealed_private IS NOT NULL AND k.not_before <= $3 AND k.not_after > $3 \
                 WHERE v.slug = $1 AND l.id = $2 \
                 ORDER BY k.generation DESC, k.not_before DESC, k.kid LIMIT 1",
            )
            .bind(vendor)
            .bind(id)
            .bind(read_at + license::verify::DEFAULT_LEEWAY as i64)
            .fetch_optional(&state.db.pool)
            .await?
            .ok_or_else(|| DomainError::not_found("license", id))?;
            let kid = match (
                row.try_get::<Option<String>, _>("kid")?,
                row.try_get::<Option<String>, _>("sealed_private")?,
            ) {
                (Some(kid), Some(sealed)) => Some((kid, sealed)),
                _ => None,
            };
            let fresh = CachedStatus {
                vendor_id: row.try_get("vendor_id")?,
                state: row.try_get("state")?,
                seq: row.try_get("seq")?,
                kid,
                read_at,
            };
            state.statuses.put(cache_key, fresh.clone());
            fresh
        }
    };
    let Some((kid, sealed)) = &cached.kid else {
        return Err(DomainError::unavailable(
            "the vendor has no license-signing key valid now; the vendor must rotate keys",
        ));
    };
    let key = state
        .master
        .open_signing_key(&domain::keys::seal_context(&cached.vendor_id, kid), sealed)?;
    let kid = kid.clone();
    // The signed time is when the state was read, so the statement is exact.
    let now_t = UnixTime::from_secs(u64::try_from(cached.read_at).unwrap_or(0))
        .unwrap_or_else(UnixTime::now);
    let claims = StatusClaims {
        iss: license::claims::Slug::new(vendor.to_owned()).map_err(DomainError::internal)?,
        jti: license::claims::LicenseId::new(id.to_owned()).map_err(DomainError::internal)?,
        state: LicenseState::parse(&cached.state)
            .ok_or_else(|| DomainError::internal("unknown license state"))?,
        seq: u64::try_from(cached.seq).unwrap_or(0),
        time: now_t,
        nonce: nonce.to_owned(),
    };
    let signed = sign_status(&claims, &kid, &key).map_err(DomainError::internal)?;
    Ok((claims, signed))
}
