//! Check-ins: signed with the agent's key, carrying usage records that extend its hash chain.

use license::checkin::{
    CHECKIN, Checkin, CheckinAnswer, MAX_HOUR_QUANTITY, MAX_RECORDS_PER_CHECKIN, MAX_REPORT_CODE,
    MAX_REPORT_DETAIL, UsageRecord,
};
use sqlx::{AnyConnection, Row as _};

use crate::server::base::now;
use crate::server::domain::access::RequestMeta;
use crate::server::domain::error::{DomainError, DomainResult, Kind};
use crate::server::domain::licenses::license_record;
use crate::server::domain::licenses::status::signed_status;
use crate::server::domain::proofs;
use crate::server::domain::tx::VendorTx;
use crate::server::domain::webhooks::raise;
use crate::server::state::AppState;

use super::{MAX_REPORTS, SignedRequest, bad_signature, check_nonce, refused, renewal};

/// What the portal knows of an agent.
pub(super) struct AgentRow {
    pub(super) vendor_id: String,
    pub(super) vendor_slug: String,
    pub(super) installation_id: String,
    pub(super) license_id: String,
    pub(super) public_key: license::PublicKey,
    pub(super) removed: bool,
    /// The installation's AWS account.
    pub(super) aws_account: String,
}

pub(super) async fn find_agent(conn: &mut AnyConnection, id: &str) -> DomainResult<AgentRow> {
    let row = sqlx::query(
        "SELECT a.vendor_id, v.slug, a.installation_id, a.license_id, a.public_key, i.removed_at, i.aws_account \
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
        aws_account: row.try_get("aws_account")?,
    })
}

/// Stores `records` in order, extending the agent's chain; returns the new head.
pub(super) async fn store_records(
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
        check_hour_bound(tx, agent, record).await?;
        insert_record(tx, agent_id, agent, record, at).await?;
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

/// Refuses a record that would take its (license, dimension, hour) group past
/// `MAX_HOUR_QUANTITY`.
async fn check_hour_bound(
    tx: &mut VendorTx,
    agent: &AgentRow,
    record: &UsageRecord,
) -> DomainResult<()> {
    let b = &record.body;
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
    Ok(())
}

/// Stores one usage record.
async fn insert_record(
    tx: &mut VendorTx,
    agent_id: &str,
    agent: &AgentRow,
    record: &UsageRecord,
    at: i64,
) -> DomainResult<()> {
    let b = &record.body;
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
    Ok(())
}

/// A check-in: usage records in, signed status (and any renewed license) out.
pub async fn checkin(
    state: &AppState,
    meta: &RequestMeta,
    body: SignedRequest,
) -> DomainResult<CheckinAnswer> {
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
    check_checkin(&checkin, &agent)?;
    let record = license_record(&mut conn, &agent.vendor_id, &agent.license_id).await?;
    let policy = proofs::policy(
        &mut conn,
        &agent.vendor_id,
        &agent.license_id,
        &record.claims,
    )
    .await?;
    drop(conn);
    // The installation's account, proven again on every check-in the license requires it of.
    let (_, proven) = proofs::account_of(
        state,
        &policy,
        &agent.license_id,
        checkin.account_proof.as_ref(),
        Some(&agent.aws_account),
    )
    .await?;
    if let Some(proven) = &proven {
        let owner = (
            agent.vendor_id.as_str(),
            record.app_id.as_str(),
            agent.license_id.as_str(),
        );
        proofs::bind(state, &policy, owner, proven).await?;
    }

    let at = now();
    let mut tx = VendorTx::begin(state, &agent.vendor_id).await?;
    let through = match store_records(&mut tx, &checkin.agent, &agent, &checkin.records).await {
        Ok(through) => through,
        Err(refusal) if refusal.kind == Kind::Conflict => {
            // Changed or missing records: nothing is stored, and the vendor's audit log says why.
            drop(tx);
            audit_refused_usage(state, meta, &checkin, &agent, &refusal).await;
            return Err(refusal);
        }
        Err(e) => return Err(e),
    };
    raise::over_quota(
        &mut tx,
        &agent.vendor_id,
        &agent.license_id,
        &record.claims,
        &checkin.records,
    )
    .await?;
    sqlx::query("UPDATE agents SET version = $2, last_checkin_at = $3 WHERE id = $1")
        .bind(&checkin.agent)
        .bind(&checkin.version)
        .bind(at)
        .execute(tx.conn())
        .await?;
    sqlx::query(
        "UPDATE installations SET version = $2, last_seen_at = $3, proven_arn = COALESCE($4, proven_arn) WHERE id = $1",
    )
        .bind(&agent.installation_id)
        .bind(&checkin.version)
        .bind(at)
        .bind(proven.as_ref().map(|p| p.arn.as_str()))
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
    let (_, status) =
        signed_status(state, &agent.vendor_slug, &agent.license_id, &checkin.nonce).await?;
    state.metrics.count("consign_checkins_total");
    Ok(CheckinAnswer {
        status,
        license: renewal(&record, checkin.license_seq),
        records_through: through,
    })
}

/// Refuses a check-in that does not fit its agent (another license, an uninstalled stack) or is
/// malformed (version, report sizes, record count), and records not signed by the agent.
fn check_checkin(checkin: &Checkin, agent: &AgentRow) -> DomainResult<()> {
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
    Ok(())
}

/// Records `usage.refuse` in the vendor's audit log (best effort: the refusal is answered
/// whether or not it could be recorded).
async fn audit_refused_usage(
    state: &AppState,
    meta: &RequestMeta,
    checkin: &Checkin,
    agent: &AgentRow,
    refusal: &DomainError,
) {
    let audited = async {
        let mut tx = VendorTx::begin(state, &agent.vendor_id).await?;
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
}
