//! Usage brought back from air-gapped installations: the vendor imports the file the agent
//! wrote (`license-agent usage export`), and gives the customer the acknowledgement to take back
//! (`license-agent usage ack`). The records are checked as a check-in's are (each signed by the
//! installation key, the chain unbroken from what the portal already holds) and stored under
//! their ids, so importing a file twice counts each record once. An agent the portal has never
//! heard from takes its seat here, with the license's account and region checked offline: an
//! air-gapped installation cannot prove its account to the portal.

use license::UnixTime;
use license::checkin::{GENESIS, USAGE_ACK, UsageAck, UsageExport};
use sqlx::Row as _;

use super::checkin::{find_agent, store_records};
use super::{Seat, check_placement, register_agent, take_seat};
use crate::server::base::now;
use crate::server::base::secrets::{new_id, sha256_hex};
use crate::server::domain::access::{Caller, Role};
use crate::server::domain::error::{DomainError, DomainResult, Kind};
use crate::server::domain::licenses::{license_record, verify_license};
use crate::server::domain::tx::VendorTx;
use crate::server::domain::webhooks::raise;
use crate::server::state::AppState;

/// The largest usage export the portal reads: room for `MAX_EXPORT_RECORDS` records.
pub const MAX_IMPORT_BODY: usize = 64 * 1024 * 1024;

/// Imports an air-gapped agent's usage export; the acknowledgement for the agent.
pub async fn import(
    state: &AppState,
    caller: &Caller,
    export: UsageExport,
) -> DomainResult<UsageAck> {
    caller.require(Role::Publisher)?;
    let mut conn = state.db.pool.acquire().await?;
    let license = verify_license(&mut conn, &export.license).await?;
    let license_id = license.claims.jti.as_str().to_owned();
    if license.vendor_id != caller.vendor_id {
        return Err(DomainError::not_found("license", &license_id));
    }
    export.verify(&license.claims.jti).map_err(|e| {
        DomainError::new(
            Kind::Invalid,
            "bad_usage_export",
            format!("{e}: nothing was imported"),
        )
    })?;
    let place = &export.placement;
    check_placement(place)?;
    let record = license_record(&mut conn, &caller.vendor_id, &license_id).await?;
    // The account check an air-gapped installer makes, made again here.
    record
        .claims
        .check_placement(&place.aws_account, &place.region)
        .map_err(|denial| {
            DomainError::refused(
                denial.code(),
                format!("{denial}: this usage was metered where the license does not allow it"),
            )
        })?;
    drop(conn);

    let at = now();
    let mut tx = VendorTx::begin(state, &caller.vendor_id).await?;
    let known = sqlx::query("SELECT installation_id FROM agents WHERE id = $1")
        .bind(&export.agent)
        .fetch_optional(tx.conn())
        .await?;
    if known.is_none() {
        let seat = Seat {
            license: &license,
            place,
            max: record.claims.bindings.max_installations,
            agent_id: &export.agent,
            at,
            proven_arn: None,
        };
        let installation = take_seat(&mut tx, &caller.meta, &seat).await?;
        register_agent(&mut tx, &seat, &installation, &export.public_key).await?;
    }
    let agent = find_agent(tx.conn(), &export.agent).await?;
    if agent.license_id != license_id {
        return Err(DomainError::conflict(format!(
            "agent {} runs under license {}, not {license_id}",
            export.agent, agent.license_id
        )));
    }
    let before: i64 = sqlx::query("SELECT records_through FROM agents WHERE id = $1")
        .bind(&export.agent)
        .fetch_one(tx.conn())
        .await?
        .try_get("records_through")?;
    let before = u64::try_from(before).unwrap_or(0);
    let through = store_records(&mut tx, &export.agent, &agent, &export.records).await?;
    raise::over_quota(
        &mut tx,
        &caller.vendor_id,
        &license_id,
        &record.claims,
        &export.records,
    )
    .await?;
    let chain_hash: String = sqlx::query("SELECT chain_hash FROM agents WHERE id = $1")
        .bind(&export.agent)
        .fetch_one(tx.conn())
        .await?
        .try_get("chain_hash")?;
    sqlx::query("UPDATE installations SET version = $2, last_seen_at = $3 WHERE id = $1")
        .bind(&agent.installation_id)
        .bind(&place.version)
        .bind(at)
        .execute(tx.conn())
        .await?;
    let new_records = through.saturating_sub(before);
    let digest = sha256_hex(
        export
            .records
            .iter()
            .map(|r| r.hash.as_str())
            .collect::<Vec<_>>()
            .join("\n")
            .as_bytes(),
    );
    sqlx::query(
        "INSERT INTO usage_imports (id, vendor_id, license_id, agent_id, records, new_records, \
         records_through, digest, imported_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(new_id("imp")?)
    .bind(&caller.vendor_id)
    .bind(&license_id)
    .bind(&export.agent)
    .bind(i64::try_from(export.records.len()).map_err(DomainError::internal)?)
    .bind(i64::try_from(new_records).map_err(DomainError::internal)?)
    .bind(i64::try_from(through).map_err(DomainError::internal)?)
    .bind(&digest)
    .bind(at)
    .execute(tx.conn())
    .await?;
    tx.audit(
        caller,
        "usage.import",
        &agent.installation_id,
        serde_json::json!({"license": license_id, "agent": export.agent, "records": export.records.len(),
            "new_records": new_records, "records_through": through, "digest": digest}),
    )
    .await?;
    tx.commit_all(&[]).await?;
    Ok(UsageAck {
        format: USAGE_ACK.into(),
        agent: export.agent,
        license: license.claims.jti,
        records_through: through,
        chain_hash: if through == 0 {
            GENESIS.into()
        } else {
            chain_hash
        },
        new_records,
        imported_at: UnixTime::from_secs(u64::try_from(at).unwrap_or(0))
            .unwrap_or_else(UnixTime::now),
    })
}
