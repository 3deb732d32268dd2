//! Group commit for license issuance. Handlers prepare and sign a license outside any lock, then
//! hand the rows to this process's issuer, which writes every license waiting for the same vendor
//! in one transaction: one lock of the vendor's row, one multi-row insert each for the licenses,
//! their hash-chained audit entries and their idempotency records, one commit (one fsync). A
//! request is answered only after its transaction committed. If a batch fails as a whole (an
//! idempotency race, say), each request is retried alone so one bad request fails only itself.
//!
//! Nothing waits to fill a batch: the issuer takes what is queued when it is free, so a lone
//! request goes through at once and a burst shares commits.

use sqlx::AssertSqlSafe;
use std::collections::BTreeMap;

use tokio::sync::{mpsc, oneshot};

use super::idempotency::{Answer, IdempotencyContext};
use crate::server::base::db::Database;
use crate::server::base::db::values_clause;
use crate::server::domain::error::{DomainError, DomainResult};
use crate::server::domain::ratelimit;
use crate::server::domain::tx::{AuditRecord, VendorTx};
use crate::server::state::{Limits, sqlite_turn};

/// Most licenses in one transaction (11 parameters each stays far below both databases' limits).
const MAX_BATCH: usize = 256;
/// Batches in flight at once.
const WRITERS: usize = 2;

/// A signed license ready to be stored.
#[derive(Debug)]
pub struct NewLicense {
    /// The vendor's id.
    pub vendor_id: String,
    /// The license id.
    pub id: String,
    /// The app's id.
    pub app_id: String,
    /// The customer's id.
    pub customer_id: String,
    /// The plan's id.
    pub plan_id: Option<String>,
    /// The revision (1).
    pub seq: i64,
    /// The signing key's id.
    pub kid: String,
    /// The claims as JSON text.
    pub claims: String,
    /// The armoured license.
    pub armored: String,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// `default`, `required` or `optional`: whether its grants and activations must prove their
    /// account (see `domain::proofs`).
    pub account_proof: String,
    /// Its audit entry.
    pub audit: AuditRecord,
    /// The request's idempotency key, if any.
    pub idempotency: Option<IdempotencyContext>,
    /// The response body to record under it.
    pub response: String,
}

struct Job {
    license: NewLicense,
    done: oneshot::Sender<DomainResult<()>>,
}

/// The handle handlers submit to.
#[derive(Debug, Clone)]
pub struct Issuer {
    queue: mpsc::Sender<Job>,
}

impl Issuer {
    /// Starts the issuer task for `db`.
    pub fn start(
        db: Database,
        writer: std::sync::Arc<tokio::sync::Mutex<()>>,
        limits: Limits,
    ) -> Self {
        let (queue, jobs) = mpsc::channel::<Job>(4 * MAX_BATCH);
        let jobs = std::sync::Arc::new(tokio::sync::Mutex::new(jobs));
        // A few writers take turns at the queue, so one batch's round trips and commit overlap
        // the next batch's start; batches for one vendor still serialise on its row lock.
        for _ in 0..WRITERS {
            let (db, writer, jobs, limits) =
                (db.clone(), writer.clone(), jobs.clone(), limits.clone());
            tokio::spawn(async move {
                loop {
                    let batch = {
                        let mut jobs = jobs.lock().await;
                        let Some(first) = jobs.recv().await else {
                            break;
                        };
                        let mut batch = vec![first];
                        while batch.len() < MAX_BATCH {
                            match jobs.try_recv() {
                                Ok(job) => batch.push(job),
                                Err(_) => break,
                            }
                        }
                        batch
                    };
                    let mut by_vendor: BTreeMap<String, Vec<Job>> = BTreeMap::new();
                    for job in batch {
                        by_vendor
                            .entry(job.license.vendor_id.clone())
                            .or_default()
                            .push(job);
                    }
                    let groups = by_vendor
                        .into_values()
                        .map(|group| commit_group(&db, &writer, limits.clone(), group));
                    futures_util::future::join_all(groups).await;
                }
            });
        }
        Self { queue }
    }

    /// Stores `license`; returns once it is committed (or failed).
    pub async fn submit(&self, license: NewLicense) -> DomainResult<()> {
        let (done, result) = oneshot::channel();
        self.queue
            .send(Job { license, done })
            .await
            .map_err(|_| DomainError::unavailable("the portal is shutting down; retry"))?;
        result
            .await
            .map_err(|_| DomainError::internal("the issuer dropped a license without an answer"))?
    }
}

async fn commit_group(
    db: &Database,
    writer: &std::sync::Arc<tokio::sync::Mutex<()>>,
    limits: Limits,
    mut jobs: Vec<Job>,
) {
    // The rate limit decides first, in arrival order.
    let vendor_id = jobs[0].license.vendor_id.clone();
    let turn = if limits.license_writes_per_minute > 0 {
        sqlite_turn(db, writer).await
    } else {
        None
    };
    let allowed = match ratelimit::hit_many(
        &db.pool,
        &format!("license-write:{vendor_id}"),
        60,
        limits.license_writes_per_minute,
        jobs.len(),
    )
    .await
    {
        Ok(n) => n,
        Err(e) => {
            answer_all(jobs, &e);
            return;
        }
    };
    drop(turn);
    for refused in jobs.split_off(allowed) {
        let _ = refused.done.send(Err(ratelimit::license_writes_refused(
            limits.license_writes_per_minute,
        )));
    }
    if jobs.is_empty() {
        return;
    }
    let licenses: Vec<&NewLicense> = jobs.iter().map(|j| &j.license).collect();
    match write(db, writer, &vendor_id, &licenses).await {
        Ok(()) => {
            for job in jobs {
                let _ = job.done.send(Ok(()));
            }
        }
        Err(_) if jobs.len() > 1 => {
            // One request spoiled the batch: write each alone so only that one fails.
            for job in jobs {
                let result = write(db, writer, &vendor_id, &[&job.license]).await;
                let _ = job.done.send(result);
            }
        }
        Err(e) => answer_all(jobs, &e),
    }
}

fn answer_all(jobs: Vec<Job>, error: &DomainError) {
    for job in jobs {
        let _ = job.done.send(Err(error.duplicate()));
    }
}

async fn write(
    db: &Database,
    writer: &std::sync::Arc<tokio::sync::Mutex<()>>,
    vendor_id: &str,
    licenses: &[&NewLicense],
) -> DomainResult<()> {
    let turn = sqlite_turn(db, writer).await;
    let tx = db.pool.begin().await?;
    let mut tx = VendorTx::lock(tx, vendor_id, turn).await?;
    let sql = format!(
        "INSERT INTO licenses (id, vendor_id, app_id, customer_id, plan_id, state, seq, kid, claims, armored, issued_at, expires_at, updated_at, account_proof) VALUES {}",
        values_clause(licenses.len(), 14)
    );
    let mut query = sqlx::query(AssertSqlSafe(sql.as_str()));
    for l in licenses {
        query = query
            .bind(&l.id)
            .bind(&l.vendor_id)
            .bind(&l.app_id)
            .bind(&l.customer_id)
            .bind(&l.plan_id)
            .bind("active")
            .bind(l.seq)
            .bind(&l.kid)
            .bind(&l.claims)
            .bind(&l.armored)
            .bind(l.issued_at)
            .bind(l.expires_at)
            .bind(l.issued_at)
            .bind(&l.account_proof);
    }
    query.execute(tx.conn()).await?;
    let audit: Vec<AuditRecord> = licenses.iter().map(|l| l.audit.clone()).collect();
    tx.audit_many(&audit).await?;
    let records: Vec<Answer<'_>> = licenses
        .iter()
        .filter_map(|l| {
            l.idempotency
                .as_ref()
                .map(|ctx| (ctx, 201, l.response.as_str()))
        })
        .collect();
    tx.commit_all(&records).await
}
