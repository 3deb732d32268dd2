//! Installations and their license agents.
//!
//! - Activation: an agent presents the license and its installation key, signed with that key.
//!   One seat is one (AWS account, region, stack); every agent of a stack (one per Lambda
//!   execution environment) shares it, so cold starts never use up seats. A new seat is refused
//!   once the license's `max_installations` seats are in use.
//! - Check-in: signed with the agent's key; answered with the license's signed status over the
//!   agent's nonce and the newest revision of the license when the agent runs an older one.
//!   Usage records ride along: each is stored once under its id (the same record again changes
//!   nothing; the same id with other contents is a conflict) and must extend the agent's hash
//!   chain, so a record that was deleted on the way shows as a gap.
//! - Removal: `installer uninstall` frees the stack's seat with the license.
//! - The vendor's view: installations, versions in use and usage per license.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use license::checkin::{
    ACTIVATION, Activation, ActivationAnswer, CHECKIN, Checkin, CheckinAnswer, GENESIS,
    MAX_HOUR_QUANTITY, MAX_RECORDS_PER_CHECKIN, MAX_REPORT_CODE, MAX_REPORT_DETAIL, Signed,
    UsageRecord, agent_key_id,
};
use license::status::valid_nonce;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row as _};
use utoipa::ToSchema;

use crate::server::base::now;
use crate::server::base::secrets::new_id;
use crate::server::domain::error::{DomainError, DomainResult, Kind};
use crate::server::domain::licenses::{
    CheckedLicense, LicenseRecord, license_record, verify_license,
};
use crate::server::domain::ratelimit;
use crate::server::domain::tx::VendorTx;
use crate::server::http::auth::Caller;
use crate::server::http::extract::{ApiJson, ApiPath, RequestMeta};
use crate::server::http::reply::json_response;
use crate::server::routes::licenses::signed_status;
use crate::server::state::AppState;

/// Activations per source address per minute.
const ACTIVATIONS_PER_MINUTE: u64 = 60;
/// Tamper reports one check-in may add to the audit log.
const MAX_REPORTS: usize = 32;

/// A request signed with an agent's installation key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignedRequest {
    /// The payload's JSON bytes, unpadded base64url: an activation or a check-in.
    pub payload: String,
    /// Ed25519 over the domain tag, a zero byte and the payload bytes (base64url).
    pub signature: String,
}

impl SignedRequest {
    fn into_signed(self) -> Signed {
        Signed {
            payload: self.payload,
            signature: self.signature,
        }
    }
}

fn refused(code: &'static str, detail: impl Into<String>) -> DomainError {
    DomainError::new(Kind::Forbidden, code, detail)
}

fn bad_signature(e: license::Error) -> DomainError {
    DomainError::new(
        Kind::Unauthorized,
        "bad_signature",
        format!("the request is not signed by the agent's installation key: {e}"),
    )
}

fn check_nonce(nonce: &str) -> DomainResult<()> {
    if valid_nonce(nonce) {
        Ok(())
    } else {
        Err(DomainError::invalid(
            "nonce must be 16 to 128 characters of A-Z a-z 0-9 _ -",
        ))
    }
}

fn check_placement(p: &license::checkin::Placement) -> DomainResult<()> {
    let account_ok = p.aws_account.len() == 12 && p.aws_account.bytes().all(|b| b.is_ascii_digit());
    let region_ok = license::claims::Region::new(p.region.clone()).is_ok();
    // CloudFormation stack names: a letter, then letters, digits and '-', at most 128.
    let stack_ok = (1..=128).contains(&p.stack.len())
        && p.stack.starts_with(|c: char| c.is_ascii_alphabetic())
        && p.stack
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let version_ok = semver::Version::parse(&p.version).is_ok() && p.version.len() <= 64;
    match (account_ok, region_ok, stack_ok, version_ok) {
        (false, ..) => Err(DomainError::invalid("aws_account must be 12 digits")),
        (_, false, ..) => Err(DomainError::invalid(
            "region must be an AWS region like eu-west-1",
        )),
        (_, _, false, _) => Err(DomainError::invalid(
            "stack must be a CloudFormation stack name (a letter, then letters, digits and '-', at most 128)",
        )),
        (.., false) => Err(DomainError::invalid("version must be a semver version")),
        _ => Ok(()),
    }
}

/// The newest revision when the caller runs an older one.
fn renewal(record: &LicenseRecord, running: u64) -> Option<String> {
    (record.seq > running).then(|| record.armored.clone())
}

/// Activates an agent: takes or joins the seat of its (account, region, stack).
#[utoipa::path(post, path = "/api/v1/installations", tag = "agents", request_body = SignedRequest,
    responses((status = 200, body = Object, description = "installation, agent, signed status and any renewed license"),
              (status = 401, body = crate::server::http::problem::Problem), (status = 403, body = crate::server::http::problem::Problem),
              (status = 422, body = crate::server::http::problem::Problem), (status = 429, body = crate::server::http::problem::Problem)))]
pub async fn activate(
    State(state): State<AppState>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<SignedRequest>,
) -> DomainResult<Response> {
    let signed = body.into_signed();
    let claimed: Activation = signed
        .peek()
        .map_err(|e| DomainError::invalid(format!("not an activation: {e}")))?;
    let activation: Activation = signed
        .open(ACTIVATION, &claimed.public_key)
        .map_err(bad_signature)?;
    check_nonce(&activation.nonce)?;
    let place = &activation.placement;
    check_placement(place)?;
    let agent_id = agent_key_id(&activation.public_key);

    let mut conn = state.db.pool.acquire().await?;
    let license: CheckedLicense = verify_license(&mut conn, &activation.license).await?;
    let license_id = license.claims.jti.as_str().to_owned();
    let record = license_record(&mut conn, &license.vendor_id, &license_id).await?;
    drop(conn);
    record.in_force()?;
    // The binding and the seat count come from the newest revision: a renewal can add seats.
    let bindings = &record.claims.bindings;
    record
        .claims
        .check_placement(&place.aws_account, &place.region)
        .map_err(|denial| {
            DomainError::refused(
                denial.code(),
                format!(
                    "{denial}: the license does not allow this placement; ask the vendor to add it"
                ),
            )
        })?;

    let at = now();
    let mut tx = VendorTx::begin(&state, &license.vendor_id).await?;
    ratelimit::hit(
        tx.conn(),
        &format!("activate:{}", meta.ip),
        60,
        ACTIVATIONS_PER_MINUTE,
        "activations from this address",
    )
    .await?;
    let seat = sqlx::query(
        "SELECT id FROM installations WHERE license_id = $1 AND aws_account = $2 AND region = $3 \
         AND stack = $4 AND removed_at IS NULL",
    )
    .bind(&license_id)
    .bind(&place.aws_account)
    .bind(&place.region)
    .bind(&place.stack)
    .fetch_optional(tx.conn())
    .await?;
    let installation = match seat {
        Some(row) => row.try_get::<String, _>("id")?,
        None => {
            let in_use: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM installations WHERE license_id = $1 AND removed_at IS NULL",
            )
            .bind(&license_id)
            .fetch_one(tx.conn())
            .await?
            .try_get("n")?;
            if let Some(max) = bindings.max_installations
                && in_use >= i64::from(max)
            {
                return Err(refused(
                    "seat_limit",
                    format!(
                        "the license allows {max} installation(s) and all are in use: uninstall one (installer uninstall) or ask the vendor for more"
                    ),
                ));
            }
            let id = new_id("ins")?;
            sqlx::query(
                "INSERT INTO installations (id, vendor_id, license_id, aws_account, region, stack, \
                 version, created_at, last_seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
            )
            .bind(&id)
            .bind(&license.vendor_id)
            .bind(&license_id)
            .bind(&place.aws_account)
            .bind(&place.region)
            .bind(&place.stack)
            .bind(&place.version)
            .bind(at)
            .execute(tx.conn())
            .await?;
            tx.audit_as(
                serde_json::json!({"license": license_id, "customer": license.claims.sub.as_str()}),
                &meta.ip,
                &meta.request_id,
                "installation.activate",
                &id,
                serde_json::json!({"aws_account": place.aws_account, "region": place.region,
                    "stack": place.stack, "version": place.version, "agent": agent_id}),
            )
            .await?;
            id
        }
    };
    let known = sqlx::query("SELECT license_id FROM agents WHERE id = $1")
        .bind(&agent_id)
        .fetch_optional(tx.conn())
        .await?;
    match known {
        Some(row) => {
            let bound: String = row.try_get("license_id")?;
            if bound != license_id {
                return Err(DomainError::conflict(
                    "this installation key is registered to another license: give the agent a fresh state directory",
                ));
            }
            // A stack installed again under the same name: the agent's chain goes on.
            sqlx::query(
                "UPDATE agents SET installation_id = $2, version = $3, last_checkin_at = $4 WHERE id = $1",
            )
            .bind(&agent_id)
            .bind(&installation)
            .bind(&place.version)
            .bind(at)
            .execute(tx.conn())
            .await?;
        }
        None => {
            sqlx::query(
                "INSERT INTO agents (id, vendor_id, installation_id, license_id, public_key, version, \
                 records_through, chain_hash, created_at, last_checkin_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, $8)",
            )
            .bind(&agent_id)
            .bind(&license.vendor_id)
            .bind(&installation)
            .bind(&license_id)
            .bind(activation.public_key.to_base64url())
            .bind(&place.version)
            .bind(GENESIS)
            .bind(at)
            .execute(tx.conn())
            .await?;
        }
    }
    tx.commit_all(&[]).await?;
    let vendor = license.claims.iss.as_str();
    let (_, status) = signed_status(&state, vendor, &license_id, &activation.nonce).await?;
    state.metrics.count("consign_activations_total");
    Ok(json_response(
        StatusCode::OK,
        ActivationAnswer {
            installation,
            agent: agent_id,
            status,
            license: renewal(&record, license.claims.seq),
        },
    ))
}

/// What the portal knows of an agent.
struct AgentRow {
    vendor_id: String,
    vendor_slug: String,
    installation_id: String,
    license_id: String,
    public_key: license::PublicKey,
    removed: bool,
}

async fn find_agent(conn: &mut AnyConnection, id: &str) -> DomainResult<AgentRow> {
    let row = sqlx::query(
        "SELECT a.vendor_id, v.slug, a.installation_id, a.license_id, a.public_key, i.removed_at \
         FROM agents a JOIN vendors v ON v.id = a.vendor_id \
         JOIN installations i ON i.id = a.installation_id WHERE a.id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| {
        DomainError::new(
            Kind::NotFound,
            "unknown_agent",
            "the portal does not know this agent: it must activate again",
        )
    })?;
    let key: String = row.try_get("public_key")?;
    let public_key = license::PublicKey::from_base64url(&key).map_err(DomainError::internal)?;
    Ok(AgentRow {
        vendor_id: row.try_get("vendor_id")?,
        vendor_slug: row.try_get("slug")?,
        installation_id: row.try_get("installation_id")?,
        license_id: row.try_get("license_id")?,
        public_key,
        removed: row.try_get::<Option<i64>, _>("removed_at")?.is_some(),
    })
}

/// Stores `records` in order, extending the agent's chain; returns the new head.
async fn store_records(
    tx: &mut VendorTx,
    agent_id: &str,
    agent: &AgentRow,
    records: &[UsageRecord],
) -> DomainResult<u64> {
    let head = sqlx::query("SELECT records_through, chain_hash FROM agents WHERE id = $1")
        .bind(agent_id)
        .fetch_one(tx.conn())
        .await?;
    let mut through = u64::try_from(head.try_get::<i64, _>("records_through")?).unwrap_or(0);
    let mut chain: String = head.try_get("chain_hash")?;
    let at = now();
    for record in records {
        let b = &record.body;
        if b.n <= through {
            let stored = sqlx::query("SELECT hash FROM usage_records WHERE id = $1")
                .bind(&b.id)
                .fetch_optional(tx.conn())
                .await?;
            match stored {
                Some(row) if row.try_get::<String, _>("hash")? == record.hash => continue,
                _ => {
                    return Err(DomainError::conflict(format!(
                        "usage record {} was received before with other contents: the agent's records were changed",
                        b.id
                    )));
                }
            }
        }
        if b.n > through + 1 {
            return Err(DomainError::conflict(format!(
                "usage records {}:{}..{} are missing before {}: records were deleted",
                agent_id,
                through + 1,
                b.n - 1,
                b.id
            )));
        }
        if b.prev != chain {
            return Err(DomainError::conflict(format!(
                "usage record {} does not follow record {}:{through} in the agent's hash chain: the records were changed",
                b.id, agent_id
            )));
        }
        // Every SQL sum groups by (license, dimension, hour) at the finest: keeping each group
        // below MAX_HOUR_QUANTITY keeps every sum, in SQL and in Rust, far from overflow.
        let held: i64 = sqlx::query(
            "SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT) AS held FROM usage_records \
             WHERE license_id = $1 AND dimension = $2 AND hour = $3",
        )
        .bind(&agent.license_id)
        .bind(&b.dimension)
        .bind(i64::try_from(b.hour.as_secs()).map_err(DomainError::internal)?)
        .fetch_one(tx.conn())
        .await?
        .try_get("held")?;
        let after = u64::try_from(held)
            .ok()
            .and_then(|held| held.checked_add(b.quantity));
        if after.is_none_or(|after| after > MAX_HOUR_QUANTITY) {
            return Err(DomainError::new(
                Kind::Invalid,
                "usage_over_bound",
                format!(
                    "usage record {} would take the license's {} units in the hour of {} past {MAX_HOUR_QUANTITY}: refused",
                    b.id, b.dimension, b.hour
                ),
            ));
        }
        let text = serde_json::to_string(record).map_err(DomainError::internal)?;
        sqlx::query(
            "INSERT INTO usage_records (id, vendor_id, license_id, installation_id, agent_id, n, \
             dimension, hour, quantity, hash, record, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&b.id)
        .bind(&agent.vendor_id)
        .bind(&agent.license_id)
        .bind(&agent.installation_id)
        .bind(agent_id)
        .bind(i64::try_from(b.n).map_err(DomainError::internal)?)
        .bind(&b.dimension)
        .bind(i64::try_from(b.hour.as_secs()).map_err(DomainError::internal)?)
        .bind(i64::try_from(b.quantity).map_err(|_| DomainError::invalid("quantity too large"))?)
        .bind(&record.hash)
        .bind(text)
        .bind(at)
        .execute(tx.conn())
        .await?;
        through = b.n;
        chain.clone_from(&record.hash);
    }
    sqlx::query("UPDATE agents SET records_through = $2, chain_hash = $3 WHERE id = $1")
        .bind(agent_id)
        .bind(i64::try_from(through).map_err(DomainError::internal)?)
        .bind(&chain)
        .execute(tx.conn())
        .await?;
    Ok(through)
}

/// A check-in: usage records in, signed status (and any renewed license) out.
#[utoipa::path(post, path = "/api/v1/installations/checkin", tag = "agents", request_body = SignedRequest,
    responses((status = 200, body = Object, description = "signed status, any renewed license, records stored"),
              (status = 401, body = crate::server::http::problem::Problem), (status = 403, body = crate::server::http::problem::Problem),
              (status = 404, body = crate::server::http::problem::Problem), (status = 409, body = crate::server::http::problem::Problem),
              (status = 410, body = crate::server::http::problem::Problem), (status = 422, body = crate::server::http::problem::Problem)))]
pub async fn checkin(
    State(state): State<AppState>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<SignedRequest>,
) -> DomainResult<Response> {
    let signed = body.into_signed();
    let claimed: Checkin = signed
        .peek()
        .map_err(|e| DomainError::invalid(format!("not a check-in: {e}")))?;
    let mut conn = state.db.pool.acquire().await?;
    let agent = find_agent(&mut conn, &claimed.agent).await?;
    let checkin: Checkin = signed
        .open(CHECKIN, &agent.public_key)
        .map_err(bad_signature)?;
    check_nonce(&checkin.nonce)?;
    if checkin.license.as_str() != agent.license_id {
        return Err(refused(
            "wrong_license",
            "the agent was activated with another license: activate again with this one",
        ));
    }
    if agent.removed {
        return Err(DomainError::new(
            Kind::Gone,
            "uninstalled",
            "this installation was uninstalled: the agent must activate again",
        ));
    }
    if checkin.version.len() > 64 || semver::Version::parse(&checkin.version).is_err() {
        return Err(DomainError::invalid(
            "version must be a semver version of at most 64 characters",
        ));
    }
    if checkin.reports.iter().any(|r| {
        r.code.chars().count() > MAX_REPORT_CODE || r.detail.chars().count() > MAX_REPORT_DETAIL
    }) {
        return Err(DomainError::invalid(format!(
            "a report's code is at most {MAX_REPORT_CODE} and its detail at most {MAX_REPORT_DETAIL} characters"
        )));
    }
    if checkin.records.len() > MAX_RECORDS_PER_CHECKIN {
        return Err(DomainError::invalid(format!(
            "a check-in carries at most {MAX_RECORDS_PER_CHECKIN} usage records"
        )));
    }
    for record in &checkin.records {
        if record.body.agent != checkin.agent || record.body.license != checkin.license {
            return Err(DomainError::invalid(format!(
                "usage record {} belongs to another agent or license",
                record.body.id
            )));
        }
        record.verify(&agent.public_key).map_err(|e| {
            DomainError::new(
                Kind::Invalid,
                "bad_record",
                format!("usage record {}: {e}", record.body.id),
            )
        })?;
    }
    let record = license_record(&mut conn, &agent.vendor_id, &agent.license_id).await?;
    drop(conn);

    let at = now();
    let mut tx = VendorTx::begin(&state, &agent.vendor_id).await?;
    let through = match store_records(&mut tx, &checkin.agent, &agent, &checkin.records).await {
        Ok(through) => through,
        Err(refusal) if refusal.status() == StatusCode::CONFLICT => {
            // Changed or missing records: nothing is stored, and the vendor's audit log says why.
            drop(tx);
            let audited = async {
                let mut tx = VendorTx::begin(&state, &agent.vendor_id).await?;
                tx.audit_as(
                    serde_json::json!({"agent": checkin.agent, "license": agent.license_id}),
                    &meta.ip,
                    &meta.request_id,
                    "usage.refuse",
                    &agent.installation_id,
                    serde_json::json!({"reason": refusal.detail}),
                )
                .await?;
                tx.commit_all(&[]).await
            };
            if let Err(e) = audited.await {
                tracing::warn!(error = %e.detail, "a refused usage upload could not be audited");
            }
            return Err(refusal);
        }
        Err(e) => return Err(e),
    };
    sqlx::query("UPDATE agents SET version = $2, last_checkin_at = $3 WHERE id = $1")
        .bind(&checkin.agent)
        .bind(&checkin.version)
        .bind(at)
        .execute(tx.conn())
        .await?;
    sqlx::query("UPDATE installations SET version = $2, last_seen_at = $3 WHERE id = $1")
        .bind(&agent.installation_id)
        .bind(&checkin.version)
        .bind(at)
        .execute(tx.conn())
        .await?;
    for report in checkin.reports.iter().take(MAX_REPORTS) {
        tx.audit_as(
            serde_json::json!({"agent": checkin.agent, "license": agent.license_id}),
            &meta.ip,
            &meta.request_id,
            "agent.report",
            &agent.installation_id,
            serde_json::json!({"code": report.code, "detail": report.detail, "at": report.at}),
        )
        .await?;
    }
    tx.commit_all(&[]).await?;
    let (_, status) = signed_status(
        &state,
        &agent.vendor_slug,
        &agent.license_id,
        &checkin.nonce,
    )
    .await?;
    state.metrics.count("consign_checkins_total");
    Ok(json_response(
        StatusCode::OK,
        CheckinAnswer {
            status,
            license: renewal(&record, checkin.license_seq),
            records_through: through,
        },
    ))
}

/// Which stack to free.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveRequest {
    /// The armoured license.
    pub license: String,
    /// The AWS account.
    pub aws_account: String,
    /// The region.
    pub region: String,
    /// The stack.
    pub stack: String,
}

/// What a removal did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Removed {
    /// The installation freed, if the stack had one.
    pub installation: Option<String>,
}

/// Frees the seat of an uninstalled stack (the installer calls this after `uninstall`).
#[utoipa::path(post, path = "/api/v1/installations/remove", tag = "agents", request_body = RemoveRequest,
    responses((status = 200, body = Removed), (status = 401, body = crate::server::http::problem::Problem),
              (status = 403, body = crate::server::http::problem::Problem), (status = 404, body = crate::server::http::problem::Problem)))]
pub async fn remove(
    State(state): State<AppState>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<RemoveRequest>,
) -> DomainResult<Response> {
    let mut conn = state.db.pool.acquire().await?;
    // A revoked or expired license may still free its seats; only a genuine one may.
    let license = verify_license(&mut conn, &body.license).await?;
    let license_id = license.claims.jti.as_str().to_owned();
    // The signature proves only who signed: the license must also be one this vendor issued on
    // this portal (a vendor could sign another vendor's license id with its own key).
    let issued = sqlx::query("SELECT id FROM licenses WHERE id = $1 AND vendor_id = $2")
        .bind(&license_id)
        .bind(&license.vendor_id)
        .fetch_optional(&mut *conn)
        .await?;
    drop(conn);
    if issued.is_none() {
        return Err(DomainError::new(
            Kind::NotFound,
            "no_such_license",
            format!(
                "license {license_id} was not issued by {} on this portal: there is no seat of it to free",
                license.claims.iss
            ),
        ));
    }
    let mut tx = VendorTx::begin(&state, &license.vendor_id).await?;
    let row = sqlx::query(
        "UPDATE installations SET removed_at = $5 WHERE license_id = $1 AND aws_account = $2 \
         AND region = $3 AND stack = $4 AND vendor_id = $6 AND removed_at IS NULL RETURNING id",
    )
    .bind(&license_id)
    .bind(&body.aws_account)
    .bind(&body.region)
    .bind(&body.stack)
    .bind(now())
    .bind(&license.vendor_id)
    .fetch_optional(tx.conn())
    .await?;
    let installation = match row {
        Some(row) => Some(row.try_get::<String, _>("id")?),
        None => None,
    };
    if let Some(id) = &installation {
        tx.audit_as(
            serde_json::json!({"license": license_id, "customer": license.claims.sub.as_str()}),
            &meta.ip,
            &meta.request_id,
            "installation.remove",
            id,
            serde_json::json!({"aws_account": body.aws_account, "region": body.region, "stack": body.stack}),
        )
        .await?;
    }
    tx.commit_all(&[]).await?;
    Ok(json_response(StatusCode::OK, Removed { installation }))
}

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
#[utoipa::path(get, path = "/api/v1/licenses/{id}/usage", tag = "licenses", security(("token" = [])),
    params(("id" = String, Path, description = "License id")),
    responses((status = 200, body = LicenseUsage), (status = 404, body = crate::server::http::problem::Problem)))]
pub async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> DomainResult<Response> {
    let mut conn = state.db.pool.acquire().await?;
    let usage = license_usage(&mut conn, &caller.vendor_id, id).await?;
    Ok(json_response(StatusCode::OK, usage))
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
#[utoipa::path(get, path = "/api/v1/customers/{customer}/usage", tag = "customers", security(("token" = [])),
    params(("customer" = String, Path, description = "Customer slug")),
    responses((status = 200, body = CustomerUsage), (status = 404, body = crate::server::http::problem::Problem)))]
pub async fn customer_usage(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(customer): ApiPath<String>,
) -> DomainResult<Response> {
    let mut conn = state.db.pool.acquire().await?;
    let usage = customer_usage_of(&mut conn, &caller.vendor_id, customer).await?;
    Ok(json_response(StatusCode::OK, usage))
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
    let since = now() - 90 * 86_400;
    let rows = sqlx::query(
        "SELECT dimension, hour, CAST(SUM(quantity) AS BIGINT) AS quantity, COUNT(*) AS records FROM usage_records \
         WHERE license_id = $1 AND vendor_id = $2 GROUP BY dimension, hour ORDER BY dimension, hour",
    )
    .bind(&id)
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
