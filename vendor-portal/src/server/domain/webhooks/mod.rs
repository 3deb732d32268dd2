//! Webhooks: the vendor's endpoints, the events they hear and the outbox they are sent from.
//!
//! - An event is written with the change that made it, in the same transaction: every event is
//!   derived from an audit entry ([`events_of`]), and [`VendorTx`] writes the audit entry, the
//!   event and one delivery per listening endpoint together. A change that rolls back raises
//!   nothing; a change that commits is delivered even if the process dies the next instant.
//! - Deliveries follow the Standard Webhooks convention ([`signature`]); the event's id is the
//!   `webhook-id` of every attempt, so a receiver that sees it twice knows it is a retry.
//! - [`deliver`] sends them, retrying with backoff for a day; [`raise`] notices what nobody tells
//!   the portal (a license about to expire, an installation gone silent).
//! - Endpoints on private or loopback addresses, and plain `http`, are refused unless the
//!   operator allows them (`serve --webhook-allow-private`, for tests and private networks).

pub mod deliver;
pub mod raise;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row as _};
use utoipa::ToSchema;

use crate::server::base::db::values_clause;
use crate::server::base::now;
use crate::server::base::outbound;
pub use crate::server::base::outbound::is_public;
use crate::server::base::secrets::{fill_random, new_id};
use crate::server::domain::access::{Caller, Role};
use crate::server::domain::error::{DomainError, DomainResult, Kind};
use crate::server::domain::tx::{AuditRecord, VendorTx};
use crate::server::state::AppState;

/// Every event type a vendor can subscribe to, and when it happens.
pub const EVENT_TYPES: &[(&str, &str)] = &[
    ("license.issued", "a license was issued (trials included)"),
    ("license.renewed", "a license was renewed"),
    ("license.suspended", "a license was suspended"),
    ("license.reinstated", "a suspended license was reinstated"),
    ("license.revoked", "a license was revoked"),
    (
        "license.expiring",
        "a license entered its expiry warning (its policy's expiry_warning before it ends)",
    ),
    (
        "trial.started",
        "a buyer started a trial on the marketplace",
    ),
    (
        "installation.activated",
        "an installation's license agent took a seat",
    ),
    ("installation.removed", "an installation was uninstalled"),
    (
        "installation.silent",
        "a live installation has not checked in for twice its check-in interval",
    ),
    (
        "usage.over_limit",
        "usage passed a quota of the license in a period",
    ),
    (
        "usage.refused",
        "usage records were refused (changed, missing or reordered)",
    ),
    (
        "grant.refused",
        "an installer was refused a grant to install a release",
    ),
    (
        "tamper.reported",
        "a license agent reported something that should not happen",
    ),
    (
        "webhook.test",
        "a test event sent with `vendor-portal webhook test`",
    ),
];

/// The most endpoints one vendor may have.
pub const MAX_ENDPOINTS: i64 = 20;
/// The longest description.
const MAX_DESCRIPTION: usize = 200;
/// Deliveries the delivery log shows at most.
const MAX_LOG: i64 = 200;
/// How the audit log names the portal when it acts on its own.
pub fn system_actor() -> serde_json::Value {
    serde_json::json!({"system": "portal"})
}

/// The webhook event types an audit entry raises.
pub fn events_of(action: &str, detail: &serde_json::Value) -> Vec<&'static str> {
    let one = match action {
        "license.issue" => {
            if detail.get("trial").and_then(serde_json::Value::as_bool) == Some(true) {
                return vec!["license.issued", "trial.started"];
            }
            "license.issued"
        }
        "license.renew" => "license.renewed",
        "license.suspend" => "license.suspended",
        "license.reinstate" => "license.reinstated",
        "license.revoke" => "license.revoked",
        "license.expiring" => "license.expiring",
        "installation.activate" => "installation.activated",
        "installation.remove" => "installation.removed",
        "installation.silent" => "installation.silent",
        "usage.over_limit" => "usage.over_limit",
        "usage.refuse" => "usage.refused",
        "grant.refuse" => "grant.refused",
        "agent.report" => "tamper.reported",
        _ => return Vec::new(),
    };
    vec![one]
}

/// The Standard Webhooks signature of a delivery: `v1,` and the base64 of HMAC-SHA256 with the
/// endpoint's secret over `id.timestamp.body`.
pub fn signature(secret: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(tag.as_ref()))
}

/// The key bytes of a `whsec_` secret.
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    STANDARD.decode(secret.strip_prefix("whsec_")?).ok()
}

/// Settled deliveries (delivered, failed, cancelled) stay in the delivery log this long.
pub const KEEP_DELIVERIES: i64 = 30 * 86_400;

/// Deletes deliveries settled more than [`KEEP_DELIVERIES`] ago, their attempts, and events
/// left with no delivery (housekeeping; idempotent).
pub async fn forget_old(pool: &sqlx::AnyPool, now: i64) -> Result<(), sqlx::Error> {
    let before = now - KEEP_DELIVERIES;
    sqlx::query(
        "DELETE FROM webhook_attempts WHERE delivery_id IN \
         (SELECT id FROM webhook_deliveries WHERE state <> 'pending' AND created_at < $1)",
    )
    .bind(before)
    .execute(pool)
    .await?;
    sqlx::query("DELETE FROM webhook_deliveries WHERE state <> 'pending' AND created_at < $1")
        .bind(before)
        .execute(pool)
        .await?;
    sqlx::query(
        "DELETE FROM webhook_events WHERE created_at < $1 AND NOT EXISTS \
         (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = webhook_events.id)",
    )
    .bind(before)
    .execute(pool)
    .await?;
    Ok(())
}

/// An event as its endpoints receive it.
fn payload(kind: &str, at: i64, data: serde_json::Value) -> String {
    let timestamp = jiff::Timestamp::from_second(at)
        .map(|t| t.to_string())
        .unwrap_or_default();
    serde_json::json!({"type": kind, "timestamp": timestamp, "data": data}).to_string()
}

/// An event's data: the audit entry's particulars, what it concerns and who acted.
fn data_of(record: &AuditRecord) -> serde_json::Value {
    let mut data = serde_json::Map::new();
    data.insert("id".into(), record.target.clone().into());
    data.insert("actor".into(), record.actor.clone());
    if let Some(detail) = record.detail.as_object() {
        for (k, v) in detail {
            data.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    serde_json::Value::Object(data)
}

/// Writes the events `records` raise, and a delivery of each to every endpoint of `vendor_id`
/// listening for it, in the caller's transaction. Whether anything is to be sent.
pub async fn enqueue(
    conn: &mut AnyConnection,
    vendor_id: &str,
    at: i64,
    records: &[AuditRecord],
) -> DomainResult<bool> {
    let raised: Vec<(&'static str, &AuditRecord)> = records
        .iter()
        .flat_map(|r| {
            events_of(&r.action, &r.detail)
                .into_iter()
                .map(move |t| (t, r))
        })
        .collect();
    if raised.is_empty() {
        return Ok(false);
    }
    let endpoints = listening(conn, vendor_id).await?;
    let mut events = Vec::new();
    for (kind, record) in raised {
        let to: Vec<&str> = endpoints
            .iter()
            .filter(|(_, listens)| listens_for(listens, kind))
            .map(|(id, _)| id.as_str())
            .collect();
        if !to.is_empty() {
            events.push((kind, payload(kind, at, data_of(record)), to));
        }
    }
    write_events(conn, vendor_id, at, &events).await
}

/// The vendor's live endpoints and the events each listens for.
async fn listening(
    conn: &mut AnyConnection,
    vendor_id: &str,
) -> DomainResult<Vec<(String, String)>> {
    let rows = sqlx::query(
        "SELECT id, events FROM webhook_endpoints WHERE vendor_id = $1 AND removed_at IS NULL",
    )
    .bind(vendor_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("events")?)))
        .collect()
}

fn listens_for(events: &str, kind: &str) -> bool {
    events == "*" || events.split(' ').any(|e| e == kind)
}

/// Writes events and their deliveries; whether there were any.
async fn write_events(
    conn: &mut AnyConnection,
    vendor_id: &str,
    at: i64,
    events: &[(&str, String, Vec<&str>)],
) -> DomainResult<bool> {
    if events.is_empty() {
        return Ok(false);
    }
    let mut deliveries = Vec::new();
    let mut event_rows = Vec::with_capacity(events.len());
    for (kind, body, to) in events {
        let id = new_id("msg")?;
        for endpoint in to {
            deliveries.push((new_id("dlv")?, id.clone(), *endpoint));
        }
        event_rows.push((id, *kind, body.as_str()));
    }
    let sql = format!(
        "INSERT INTO webhook_events (id, vendor_id, type, payload, created_at) VALUES {}",
        values_clause(event_rows.len(), 5)
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
    for (id, kind, body) in &event_rows {
        query = query
            .bind(id)
            .bind(vendor_id)
            .bind(*kind)
            .bind(*body)
            .bind(at);
    }
    query.execute(&mut *conn).await?;
    let sql = format!(
        "INSERT INTO webhook_deliveries (id, vendor_id, event_id, endpoint_id, state, attempts, \
         next_attempt_at, locked_until, created_at) VALUES {}",
        values_clause(deliveries.len(), 9)
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
    for (id, event, endpoint) in &deliveries {
        query = query
            .bind(id)
            .bind(vendor_id)
            .bind(event)
            .bind(*endpoint)
            .bind("pending")
            .bind(0_i64)
            .bind(at)
            .bind(0_i64)
            .bind(at);
    }
    query.execute(&mut *conn).await?;
    Ok(true)
}

/// A webhook endpoint as the vendor sees it (never its secret, after creation).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Endpoint {
    /// Its id (`whk_...`).
    pub id: String,
    /// Where events are sent.
    pub url: String,
    /// The event types it receives (`*`: all).
    pub events: Vec<String>,
    /// What it is for.
    pub description: String,
    /// When it was added (Unix seconds).
    pub created_at: i64,
    /// Deliveries waiting to be sent or retried.
    pub pending: i64,
    /// Deliveries that used every retry without an acknowledgement.
    pub failed: i64,
    /// The signing secret, shown once when the endpoint is added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// A new endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndpoint {
    /// An `https` URL on a public address.
    pub url: String,
    /// Event types to receive; all when empty or absent.
    #[serde(default)]
    pub events: Vec<String>,
    /// What it is for.
    #[serde(default)]
    pub description: String,
}

/// Checks an endpoint URL: `https` (or `http` where private addresses are allowed), no user or
/// password, and a host that resolves only to public addresses unless those are allowed.
pub async fn check_url(text: &str, allow_private: bool) -> DomainResult<url::Url> {
    outbound::check_url(text, allow_private, &WEBHOOK_URLS).await
}

/// What webhook endpoint URLs are checked for.
const WEBHOOK_URLS: outbound::UrlRules = outbound::UrlRules {
    bad_code: "bad_webhook_url",
    private_code: "private_webhook_url",
    what: "webhook endpoints",
    why_https: "deliveries carry your customers' data",
    flag: "--webhook-allow-private",
};

fn check_events(events: &[String]) -> DomainResult<String> {
    if events.is_empty() || events.iter().any(|e| e == "*") {
        return Ok("*".into());
    }
    let mut known = Vec::new();
    for e in events {
        match EVENT_TYPES.iter().find(|(name, _)| name == e) {
            Some((name, _)) if !known.contains(name) => known.push(*name),
            Some(_) => {}
            None => {
                return Err(DomainError::new(
                    Kind::Invalid,
                    "unknown_event_type",
                    format!(
                        "{e:?} is not an event type; the types are {}",
                        EVENT_TYPES
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
    }
    Ok(known.join(" "))
}

/// A new `whsec_` secret: 32 random bytes.
fn new_webhook_secret() -> DomainResult<zeroize::Zeroizing<String>> {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    fill_random(bytes.as_mut())?;
    Ok(zeroize::Zeroizing::new(format!(
        "whsec_{}",
        STANDARD.encode(bytes.as_ref())
    )))
}

/// The sealing context of endpoint `id`'s secret (a sealed secret opens only as its own).
fn seal_context(id: &str) -> String {
    format!("webhook-secret:{id}")
}

/// Adds an endpoint (owners only); the answer shows its secret once.
pub async fn add(state: &AppState, caller: &Caller, body: NewEndpoint) -> DomainResult<Endpoint> {
    caller.require(Role::Owner)?;
    if body.description.chars().count() > MAX_DESCRIPTION {
        return Err(DomainError::invalid(format!(
            "the description is at most {MAX_DESCRIPTION} characters"
        )));
    }
    let events = check_events(&body.events)?;
    let url = check_url(body.url.trim(), state.limits.webhook_allow_private).await?;
    let id = new_id("whk")?;
    let secret = new_webhook_secret()?;
    let sealed = state
        .master
        .seal(&seal_context(&id), secret.as_bytes())
        .map_err(DomainError::internal)?;
    let at = now();
    let mut tx = VendorTx::begin(state, &caller.vendor_id).await?;
    let count: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM webhook_endpoints WHERE vendor_id = $1 AND removed_at IS NULL",
    )
    .bind(&caller.vendor_id)
    .fetch_one(tx.conn())
    .await?
    .try_get("n")?;
    if count >= MAX_ENDPOINTS {
        return Err(DomainError::conflict(format!(
            "{} already has {MAX_ENDPOINTS} webhook endpoints: remove one first",
            caller.vendor_slug
        )));
    }
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, vendor_id, url, events, description, secret_sealed, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(&caller.vendor_id)
    .bind(url.as_str())
    .bind(&events)
    .bind(body.description.trim())
    .bind(&sealed)
    .bind(at)
    .execute(tx.conn())
    .await?;
    tx.audit(
        caller,
        "webhook.add",
        &id,
        serde_json::json!({"url": url.as_str(), "events": events}),
    )
    .await?;
    tx.commit_all(&[]).await?;
    Ok(Endpoint {
        id,
        url: url.to_string(),
        events: events.split(' ').map(str::to_owned).collect(),
        description: body.description.trim().to_owned(),
        created_at: at,
        pending: 0,
        failed: 0,
        secret: Some(secret.to_string()),
    })
}

/// The vendor's live endpoints.
pub async fn list(state: &AppState, caller: &Caller) -> DomainResult<Vec<Endpoint>> {
    let rows = sqlx::query(
        "SELECT w.id, w.url, w.events, w.description, w.created_at, \
         (SELECT COUNT(*) FROM webhook_deliveries d WHERE d.endpoint_id = w.id AND d.state = 'pending') AS pending, \
         (SELECT COUNT(*) FROM webhook_deliveries d WHERE d.endpoint_id = w.id AND d.state = 'failed') AS failed \
         FROM webhook_endpoints w WHERE w.vendor_id = $1 AND w.removed_at IS NULL ORDER BY w.created_at, w.id",
    )
    .bind(&caller.vendor_id)
    .fetch_all(&state.db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            let events: String = r.try_get("events")?;
            Ok(Endpoint {
                id: r.try_get("id")?,
                url: r.try_get("url")?,
                events: events.split(' ').map(str::to_owned).collect(),
                description: r.try_get("description")?,
                created_at: r.try_get("created_at")?,
                pending: r.try_get("pending")?,
                failed: r.try_get("failed")?,
                secret: None,
            })
        })
        .collect()
}

/// Removes an endpoint (owners only): nothing more is sent to it, and its pending deliveries are
/// cancelled.
pub async fn remove(state: &AppState, caller: &Caller, id: &str) -> DomainResult<Endpoint> {
    caller.require(Role::Owner)?;
    let mut endpoint = list(state, caller)
        .await?
        .into_iter()
        .find(|e| e.id == id)
        .ok_or_else(|| DomainError::not_found("webhook endpoint", id))?;
    let mut tx = VendorTx::begin(state, &caller.vendor_id).await?;
    sqlx::query("UPDATE webhook_endpoints SET removed_at = $3 WHERE id = $1 AND vendor_id = $2")
        .bind(id)
        .bind(&caller.vendor_id)
        .bind(now())
        .execute(tx.conn())
        .await?;
    sqlx::query(
        "UPDATE webhook_deliveries SET state = 'cancelled' WHERE endpoint_id = $1 AND state = 'pending'",
    )
    .bind(id)
    .execute(tx.conn())
    .await?;
    tx.audit(
        caller,
        "webhook.remove",
        id,
        serde_json::json!({"url": endpoint.url}),
    )
    .await?;
    tx.commit_all(&[]).await?;
    endpoint.pending = 0;
    Ok(endpoint)
}

/// One attempt to deliver.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    /// When (Unix seconds).
    pub at: i64,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<i64>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: i64,
}

/// One event sent (or to be sent) to one endpoint.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    /// Its id (`dlv_...`), for redelivery.
    pub id: String,
    /// The event's id: the `webhook-id` header of every attempt.
    pub event: String,
    /// The event type.
    pub r#type: String,
    /// `pending`, `delivered`, `failed` or `cancelled`.
    pub state: String,
    /// Attempts since it was (re)queued.
    pub attempts: i64,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<i64>,
    /// When the receiver acknowledged it.
    pub delivered_at: Option<i64>,
    /// When the event happened.
    pub created_at: i64,
    /// The event as sent.
    pub payload: serde_json::Value,
    /// Every attempt, oldest first.
    pub history: Vec<Attempt>,
}

/// The newest deliveries to endpoint `id`, newest first.
pub async fn deliveries(
    state: &AppState,
    caller: &Caller,
    id: &str,
    limit: Option<i64>,
) -> DomainResult<Vec<Delivery>> {
    let owned = sqlx::query("SELECT id FROM webhook_endpoints WHERE id = $1 AND vendor_id = $2")
        .bind(id)
        .bind(&caller.vendor_id)
        .fetch_optional(&state.db.pool)
        .await?;
    if owned.is_none() {
        return Err(DomainError::not_found("webhook endpoint", id));
    }
    let limit = limit.unwrap_or(50).clamp(1, MAX_LOG);
    let rows = sqlx::query(
        "SELECT d.id, d.event_id, e.type, e.payload, d.state, d.attempts, d.next_attempt_at, \
         d.delivered_at, d.created_at FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id \
         WHERE d.endpoint_id = $1 ORDER BY d.created_at DESC, d.id DESC LIMIT $2",
    )
    .bind(id)
    .bind(limit)
    .fetch_all(&state.db.pool)
    .await?;
    // Every attempt of these deliveries, in one query.
    let mut attempts: std::collections::HashMap<String, Vec<Attempt>> = Default::default();
    for a in sqlx::query(
        "SELECT delivery_id, at, status, error, duration_ms FROM webhook_attempts WHERE delivery_id IN \
         (SELECT id FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2) \
         ORDER BY at, id",
    )
    .bind(id)
    .bind(limit)
    .fetch_all(&state.db.pool)
    .await?
    {
        attempts
            .entry(a.try_get("delivery_id")?)
            .or_default()
            .push(Attempt {
                at: a.try_get("at")?,
                status: a.try_get("status")?,
                error: a.try_get("error")?,
                duration_ms: a.try_get("duration_ms")?,
            });
    }
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let delivery: String = r.try_get("id")?;
        let history = attempts.remove(&delivery).unwrap_or_default();
        let state_text: String = r.try_get("state")?;
        let payload: String = r.try_get("payload")?;
        out.push(Delivery {
            id: delivery,
            event: r.try_get("event_id")?,
            r#type: r.try_get("type")?,
            next_attempt_at: if state_text == "pending" {
                Some(r.try_get("next_attempt_at")?)
            } else {
                None
            },
            state: state_text,
            attempts: r.try_get("attempts")?,
            delivered_at: r.try_get("delivered_at")?,
            created_at: r.try_get("created_at")?,
            payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
            history,
        });
    }
    Ok(out)
}

/// Sends a delivery again now, with the same `webhook-id` (publishers and owners).
pub async fn redeliver(state: &AppState, caller: &Caller, id: &str) -> DomainResult<()> {
    caller.require(Role::Publisher)?;
    let mut tx = VendorTx::begin(state, &caller.vendor_id).await?;
    let row = sqlx::query(
        "SELECT w.removed_at FROM webhook_deliveries d JOIN webhook_endpoints w ON w.id = d.endpoint_id \
         WHERE d.id = $1 AND d.vendor_id = $2",
    )
    .bind(id)
    .bind(&caller.vendor_id)
    .fetch_optional(tx.conn())
    .await?
    .ok_or_else(|| DomainError::not_found("webhook delivery", id))?;
    if row.try_get::<Option<i64>, _>("removed_at")?.is_some() {
        return Err(DomainError::conflict(
            "its endpoint was removed: add the endpoint again to receive new events",
        ));
    }
    sqlx::query(
        "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_attempt_at = $2, \
         locked_until = 0, claimed_by = NULL WHERE id = $1",
    )
    .bind(id)
    .bind(now())
    .execute(tx.conn())
    .await?;
    tx.audit(caller, "webhook.redeliver", id, serde_json::json!({}))
        .await?;
    tx.notify_webhooks();
    tx.commit_all(&[]).await
}

/// Queues a `webhook.test` event to endpoint `id` (publishers and owners); the delivery's id.
pub async fn test(state: &AppState, caller: &Caller, id: &str) -> DomainResult<String> {
    caller.require(Role::Publisher)?;
    let mut tx = VendorTx::begin(state, &caller.vendor_id).await?;
    let live = sqlx::query(
        "SELECT id FROM webhook_endpoints WHERE id = $1 AND vendor_id = $2 AND removed_at IS NULL",
    )
    .bind(id)
    .bind(&caller.vendor_id)
    .fetch_optional(tx.conn())
    .await?;
    if live.is_none() {
        return Err(DomainError::not_found("webhook endpoint", id));
    }
    let at = now();
    let body = payload(
        "webhook.test",
        at,
        serde_json::json!({"id": id, "actor": caller.actor()}),
    );
    write_events(
        tx.conn(),
        &caller.vendor_id,
        at,
        &[("webhook.test", body, vec![id])],
    )
    .await?;
    let delivery: String = sqlx::query(
        "SELECT id FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .bind(id)
    .fetch_one(tx.conn())
    .await?
    .try_get("id")?;
    tx.audit(
        caller,
        "webhook.test",
        id,
        serde_json::json!({"delivery": delivery}),
    )
    .await?;
    tx.notify_webhooks();
    tx.commit_all(&[]).await?;
    Ok(delivery)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification.
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = signature(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn audit_actions_map_to_event_types() {
        let trial = serde_json::json!({"trial": true});
        assert_eq!(
            events_of("license.issue", &trial),
            vec!["license.issued", "trial.started"]
        );
        assert_eq!(events_of("member.add", &trial), Vec::<&str>::new());
        for (action, _) in [("agent.report", ()), ("grant.refuse", ())] {
            let kinds = events_of(action, &serde_json::Value::Null);
            assert!(EVENT_TYPES.iter().any(|(n, _)| *n == kinds[0]));
        }
    }
}
