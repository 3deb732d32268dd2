//! Sending webhook deliveries: every portal process runs one sender. A sender claims due
//! deliveries with a lease (one conditional update, so two processes never send the same
//! delivery at once), posts each with its Standard Webhooks headers, and records the attempt:
//! acknowledged (2xx) → delivered; anything else → retried after [`RETRY_AFTER`], then failed.
//!
//! A process killed mid-send leaves the lease to run out, and the delivery is sent again by
//! whichever process claims it next, with the same `webhook-id`: deliveries are at least once,
//! and the id lets the receiver count each event once.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use sqlx::Row as _;

use super::{is_public, secret_key, signature};
use crate::server::base::now;
use crate::server::base::secrets::new_id;
use crate::server::domain::error::{DomainError, DomainResult};
use crate::server::state::AppState;

/// Seconds to wait after each failed attempt: the Standard Webhooks schedule, about 27 hours
/// in all, then the delivery is marked failed (and can be redelivered by hand).
pub const RETRY_AFTER: [i64; 7] = [5, 300, 1800, 7200, 18_000, 36_000, 36_000];
/// How long a claim holds a delivery; longer than an attempt can take.
const LEASE: i64 = 60;
/// Deliveries claimed in one round.
const BATCH: i64 = 64;
/// Deliveries in flight at once per process.
const IN_FLIGHT: usize = 16;
/// How long an attempt may take, connection included.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// The most of an answer kept for the delivery log.
const MAX_ERROR: usize = 300;

static WAKE: LazyLock<tokio::sync::Notify> = LazyLock::new(tokio::sync::Notify::new);

/// Tells this process's sender that deliveries were queued.
pub fn wake() {
    WAKE.notify_one();
}

/// The HTTP client deliveries are sent with.
#[derive(Clone, Debug)]
pub struct Sender {
    http: reqwest::Client,
    allow_private: bool,
}

impl Sender {
    /// A sender; with `allow_private`, endpoints on private addresses are reached too.
    pub fn new(allow_private: bool) -> anyhow::Result<Self> {
        Ok(Self {
            http: crate::server::base::outbound::client(
                allow_private,
                ATTEMPT_TIMEOUT,
                IN_FLIGHT,
                concat!("consign-webhooks/", env!("CARGO_PKG_VERSION")),
            )?,
            allow_private,
        })
    }
}

/// Sends due deliveries until the process ends; `sweep_every` also raises noticed events
/// ([`super::raise`]).
pub async fn run(state: AppState, sender: Sender, sweep_every: Duration) {
    let mut last_sweep: Option<Instant> = None;
    loop {
        if last_sweep.is_none_or(|at| at.elapsed() >= sweep_every) {
            last_sweep = Some(Instant::now());
            if let Err(e) = super::raise::sweep(&state).await {
                tracing::warn!(error = %e.detail, "raising noticed webhook events failed");
            }
        }
        let sent = match round(&state, &sender).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e.detail, "sending webhook deliveries failed; retrying");
                0
            }
        };
        if sent == 0 {
            let pause = sweep_every.min(Duration::from_secs(1));
            let _ = tokio::time::timeout(pause, WAKE.notified()).await;
        }
    }
}

/// One claimed delivery.
struct Claimed {
    id: String,
    event_id: String,
    attempts: i64,
    payload: String,
    url: String,
    endpoint_id: String,
    secret_sealed: String,
    /// The claim this round holds on it.
    token: String,
}

/// Claims up to [`BATCH`] due deliveries and sends them; how many were claimed.
pub async fn round(state: &AppState, sender: &Sender) -> DomainResult<usize> {
    let claimed = claim(state).await?;
    let n = claimed.len();
    futures_util::stream::iter(claimed)
        .for_each_concurrent(IN_FLIGHT, |c| async move {
            let outcome = attempt(state, sender, &c).await;
            if let Err(e) = record(state, &c, outcome).await {
                tracing::warn!(delivery = %c.id, error = %e.detail, "a webhook attempt could not be recorded; it will be sent again");
            }
        })
        .await;
    Ok(n)
}

async fn claim(state: &AppState) -> DomainResult<Vec<Claimed>> {
    let at = now();
    let token = new_id("clm")?;
    let until = at + LEASE;
    {
        let _turn = state.write_turn().await;
        // The outer conditions are checked again on the row as it is when updated: of two
        // processes that picked the same row, the second finds it leased and skips it.
        sqlx::query(
            "UPDATE webhook_deliveries SET locked_until = $1, claimed_by = $2 \
             WHERE id IN (SELECT id FROM webhook_deliveries WHERE state = 'pending' \
             AND next_attempt_at <= $3 AND locked_until < $3 ORDER BY next_attempt_at LIMIT $4) \
             AND state = 'pending' AND locked_until < $3",
        )
        .bind(until)
        .bind(&token)
        .bind(at)
        .bind(BATCH)
        .execute(&state.db.pool)
        .await?;
    }
    let rows = sqlx::query(
        "SELECT d.id, d.event_id, d.attempts, e.payload, w.url, w.id AS endpoint_id, w.secret_sealed \
         FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id \
         JOIN webhook_endpoints w ON w.id = d.endpoint_id WHERE d.claimed_by = $1",
    )
    .bind(&token)
    .fetch_all(&state.db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Claimed {
                id: r.try_get("id")?,
                event_id: r.try_get("event_id")?,
                attempts: r.try_get("attempts")?,
                payload: r.try_get("payload")?,
                url: r.try_get("url")?,
                endpoint_id: r.try_get("endpoint_id")?,
                secret_sealed: r.try_get("secret_sealed")?,
                token: token.clone(),
            })
        })
        .collect()
}

/// What one attempt came to.
struct Outcome {
    status: Option<u16>,
    error: Option<String>,
    took: Duration,
}

async fn attempt(state: &AppState, sender: &Sender, c: &Claimed) -> Outcome {
    let started = Instant::now();
    let failed = |error: String| Outcome {
        status: None,
        error: Some(error),
        took: started.elapsed(),
    };
    let secret = match state
        .master
        .open(&super::seal_context(&c.endpoint_id), &c.secret_sealed)
    {
        Ok(secret) => secret,
        Err(e) => return failed(format!("the endpoint's secret cannot be opened: {e}")),
    };
    let Some(key) = std::str::from_utf8(&secret).ok().and_then(secret_key) else {
        return failed("the endpoint's secret is damaged".into());
    };
    if !sender.allow_private
        && let Some(ip) = url::Url::parse(&c.url).ok().and_then(|u| match u.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        })
        && !is_public(ip)
    {
        return failed(format!("{ip} is a private address"));
    }
    let timestamp = now();
    let response = sender
        .http
        .post(&c.url)
        .header("content-type", "application/json")
        .header("webhook-id", &c.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header(
            "webhook-signature",
            signature(&key, &c.event_id, timestamp, &c.payload),
        )
        .body(c.payload.clone())
        .send()
        .await;
    match response {
        Ok(response) => {
            let status = response.status();
            let error = if status.is_success() {
                None
            } else {
                let text = response.text().await.unwrap_or_default();
                Some(format!(
                    "HTTP {}: {}",
                    status.as_u16(),
                    text.chars().take(MAX_ERROR).collect::<String>()
                ))
            };
            Outcome {
                status: Some(status.as_u16()),
                error,
                took: started.elapsed(),
            }
        }
        Err(e) => failed(describe(&e)),
    }
}

/// A reqwest error with its causes, which say what actually went wrong.
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.chars().take(MAX_ERROR).collect()
}

async fn record(state: &AppState, c: &Claimed, outcome: Outcome) -> DomainResult<()> {
    let at = now();
    let attempts = c.attempts + 1;
    let delivered = outcome.error.is_none();
    let (next_state, next_at) = if delivered {
        ("delivered", at)
    } else {
        match usize::try_from(c.attempts)
            .ok()
            .and_then(|n| RETRY_AFTER.get(n))
        {
            Some(wait) => ("pending", at + wait),
            None => ("failed", at),
        }
    };
    let _turn = state.write_turn().await;
    let mut tx = state.db.pool.begin().await?;
    let updated = sqlx::query(
        "UPDATE webhook_deliveries SET state = $2, attempts = $3, next_attempt_at = $4, locked_until = 0, \
         claimed_by = NULL, last_status = $5, last_error = $6, delivered_at = $7 \
         WHERE id = $1 AND claimed_by = $8 AND state = 'pending'",
    )
    .bind(&c.id)
    .bind(next_state)
    .bind(attempts)
    .bind(next_at)
    .bind(outcome.status.map(i64::from))
    .bind(&outcome.error)
    .bind(delivered.then_some(at))
    .bind(&c.token)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 1 {
        sqlx::query(
            "INSERT INTO webhook_attempts (id, delivery_id, at, status, error, duration_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(new_id("wha")?)
        .bind(&c.id)
        .bind(at)
        .bind(outcome.status.map(i64::from))
        .bind(&outcome.error)
        .bind(i64::try_from(outcome.took.as_millis()).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await.map_err(DomainError::from)?;
    if delivered {
        state.metrics.count("consign_webhook_deliveries_total");
    } else {
        state.metrics.count("consign_webhook_failures_total");
    }
    Ok(())
}
