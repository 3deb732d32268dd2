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

pub mod behind;
pub mod billing;
pub mod checkin;
pub mod import;
pub mod usage;

use license::checkin::{ACTIVATION, Activation, ActivationAnswer, GENESIS, Signed, agent_key_id};
use license::status::valid_nonce;
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use utoipa::ToSchema;

use crate::server::base::now;
use crate::server::base::secrets::new_id;
use crate::server::domain::access::RequestMeta;
use crate::server::domain::error::{DomainError, DomainResult, Kind};
use crate::server::domain::licenses::status::signed_status;
use crate::server::domain::licenses::{
    CheckedLicense, LicenseRecord, license_record, verify_license,
};
use crate::server::domain::proofs;
use crate::server::domain::ratelimit;
use crate::server::domain::tx::VendorTx;
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
        Err(DomainError::invalid(license::status::NONCE_RULE))
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
pub async fn activate(
    state: &AppState,
    meta: &RequestMeta,
    body: SignedRequest,
) -> DomainResult<ActivationAnswer> {
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
    record.in_force()?;
    let policy = proofs::policy(&mut conn, &license.vendor_id, &license_id, &record.claims).await?;
    drop(conn);
    // The seat's account is the proven one when the license requires a proof.
    let (_, proven) = proofs::account_of(
        state,
        &policy,
        &license_id,
        activation.account_proof.as_ref(),
        Some(&place.aws_account),
    )
    .await?;
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
    if let Some(proven) = &proven {
        let owner = (
            license.vendor_id.as_str(),
            record.app_id.as_str(),
            license_id.as_str(),
        );
        proofs::bind(state, &policy, owner, proven).await?;
    }

    let at = now();
    let mut tx = VendorTx::begin(state, &license.vendor_id).await?;
    ratelimit::hit(
        tx.conn(),
        &format!("activate:{}", meta.ip),
        60,
        ACTIVATIONS_PER_MINUTE,
        "activations from this address",
    )
    .await?;
    let seat = Seat {
        license: &license,
        place,
        max: bindings.max_installations,
        agent_id: &agent_id,
        at,
        proven_arn: proven.as_ref().map(|p| p.arn.as_str()),
    };
    let installation = take_seat(&mut tx, meta, &seat).await?;
    register_agent(&mut tx, &seat, &installation, &activation.public_key).await?;
    tx.commit_all(&[]).await?;
    let vendor = license.claims.iss.as_str();
    let (_, status) = signed_status(state, vendor, &license_id, &activation.nonce).await?;
    state.metrics.count("consign_activations_total");
    Ok(ActivationAnswer {
        installation,
        agent: agent_id,
        status,
        license: renewal(&record, license.claims.seq),
    })
}

/// An activation's claim on a seat: one (AWS account, region, stack) of a license.
struct Seat<'a> {
    license: &'a CheckedLicense,
    place: &'a license::checkin::Placement,
    /// The newest revision's `max_installations`.
    max: Option<u32>,
    agent_id: &'a str,
    at: i64,
    /// Who STS said activated it, when it proved its account.
    proven_arn: Option<&'a str>,
}

/// The installation of `seat`'s stack: the one already there, or a new one while the license
/// has a free seat (403 `seat_limit` when it has none).
async fn take_seat(tx: &mut VendorTx, meta: &RequestMeta, seat: &Seat<'_>) -> DomainResult<String> {
    let (license, place) = (seat.license, seat.place);
    let license_id = license.claims.jti.as_str();
    let existing = sqlx::query(
        "SELECT id FROM installations WHERE license_id = $1 AND aws_account = $2 AND region = $3 \
         AND stack = $4 AND removed_at IS NULL",
    )
    .bind(license_id)
    .bind(&place.aws_account)
    .bind(&place.region)
    .bind(&place.stack)
    .fetch_optional(tx.conn())
    .await?;
    if let Some(row) = existing {
        let id: String = row.try_get("id")?;
        if let Some(arn) = seat.proven_arn {
            sqlx::query("UPDATE installations SET proven_arn = $2 WHERE id = $1")
                .bind(&id)
                .bind(arn)
                .execute(tx.conn())
                .await?;
        }
        return Ok(id);
    }
    let in_use: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM installations WHERE license_id = $1 AND removed_at IS NULL",
    )
    .bind(license_id)
    .fetch_one(tx.conn())
    .await?
    .try_get("n")?;
    if let Some(max) = seat.max
        && in_use >= i64::from(max)
    {
        return Err(refused(
            "seat_limit",
            format!(
                "the license allows {} and all are in use: uninstall one (installer uninstall) or ask the vendor for more",
                license::process::count(u64::from(max), "installation", "installations")
            ),
        ));
    }
    let id = new_id("ins")?;
    sqlx::query(
        "INSERT INTO installations (id, vendor_id, license_id, aws_account, region, stack, \
         version, created_at, last_seen_at, proven_arn) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)",
    )
    .bind(&id)
    .bind(&license.vendor_id)
    .bind(license_id)
    .bind(&place.aws_account)
    .bind(&place.region)
    .bind(&place.stack)
    .bind(&place.version)
    .bind(seat.at)
    .bind(seat.proven_arn)
    .execute(tx.conn())
    .await?;
    tx.audit_as(
        serde_json::json!({"license": license_id, "customer": license.claims.sub.as_str()}),
        &meta.ip,
        &meta.request_id,
        "installation.activate",
        &id,
        serde_json::json!({"aws_account": place.aws_account, "region": place.region,
            "stack": place.stack, "version": place.version, "agent": seat.agent_id,
            "proven_arn": seat.proven_arn}),
    )
    .await?;
    Ok(id)
}

/// Registers the agent's installation key with `installation`, or moves a known key there (a
/// stack installed again under the same name: the agent's chain goes on). A key registered to
/// another license is refused.
async fn register_agent(
    tx: &mut VendorTx,
    seat: &Seat<'_>,
    installation: &str,
    public_key: &license::PublicKey,
) -> DomainResult<()> {
    let license_id = seat.license.claims.jti.as_str();
    let known = sqlx::query("SELECT license_id FROM agents WHERE id = $1")
        .bind(seat.agent_id)
        .fetch_optional(tx.conn())
        .await?;
    if let Some(row) = known {
        let bound: String = row.try_get("license_id")?;
        if bound != license_id {
            return Err(DomainError::conflict(
                "this installation key is registered to another license: give the agent a fresh state directory",
            ));
        }
        sqlx::query(
            "UPDATE agents SET installation_id = $2, version = $3, last_checkin_at = $4 WHERE id = $1",
        )
        .bind(seat.agent_id)
        .bind(installation)
        .bind(&seat.place.version)
        .bind(seat.at)
        .execute(tx.conn())
        .await?;
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO agents (id, vendor_id, installation_id, license_id, public_key, version, \
         records_through, chain_hash, created_at, last_checkin_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, $8)",
    )
    .bind(seat.agent_id)
    .bind(&seat.license.vendor_id)
    .bind(installation)
    .bind(license_id)
    .bind(public_key.to_base64url())
    .bind(&seat.place.version)
    .bind(GENESIS)
    .bind(seat.at)
    .execute(tx.conn())
    .await?;
    Ok(())
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
pub async fn remove(
    state: &AppState,
    meta: &RequestMeta,
    body: RemoveRequest,
) -> DomainResult<Removed> {
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
    let mut tx = VendorTx::begin(state, &license.vendor_id).await?;
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
    Ok(Removed { installation })
}
