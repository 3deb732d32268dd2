//! The agent's state in a DynamoDB table of the customer's own account, for Lambda, where each
//! execution environment has its own `/tmp` and lives only as long as Lambda keeps it.
//!
//! Every environment of an installation's functions shares one partition (`pk` =
//! `agent#STACK`) and with it one agent: one installation key, one memory, one chain of usage
//! records. The partition holds:
//!
//! - `state`: the memory, the pinned root and keyset seq, the installation, the installation
//!   key, the newest license revision, the sealed side of the meter (chain head, quota
//!   totals) and the sealed batches not deleted yet, with a version `v`. Every write of it is conditional on the version it
//!   read, so two environments never overwrite each other: the loser reads again, merges and
//!   retries.
//! - `ids`: the digests of the last event ids sealed, written only by a seal (the state item,
//!   written every round, stays a few KB).
//! - `rec#N`: the usage records one seal made, from number N, not yet all acknowledged by the
//!   portal (deleted once they are).
//! - `jrn#ENV#SEQ`: a batch of usage events that environment ENV acknowledged (one conditional
//!   put per batch, before the caller's `POST /v1/usage` is answered). Any environment's
//!   check-in round seals the batches of all of them: one transaction puts the new records and
//!   the state item with the chain head moved and the sealed batches named (`sealed`), so an
//!   event is sealed exactly once, whichever environment took it and whether or not that
//!   environment still lives. The sealed batches are deleted afterwards; until they are gone,
//!   their names in the state item keep them from being sealed again.
//!
//! The entitlement check never touches the table: it reads the agent in memory.

use std::collections::HashMap;

use anyhow::{Context as _, Result};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, Put, TransactWriteItem, WriteRequest,
};
use license::checkin::UsageRecord;
use serde::{Deserialize, Serialize};

use crate::home::Saved;
use crate::meter::{Event, Ledger};

/// DynamoDB's limit on one item is 400 KB; the state item is kept below this.
const MAX_STATE_BYTES: usize = 350 * 1024;
/// The most records one seal puts in one `rec#` item (each is under 1 KB; an item is at most
/// 400 KB).
pub const MAX_RECORDS_PER_ITEM: usize = 300;
/// The most batches one seal takes (their names go in the state item until they are deleted).
pub const MAX_BATCHES_PER_SEAL: usize = 500;

/// What the `state` item holds.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stored {
    /// Memory, root, keyset seq, installation.
    #[serde(default)]
    pub saved: Saved,
    /// The installation key (PEM), shared by every environment of the installation.
    pub key: String,
    /// The newest license revision taken (a renewal from the portal), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// The sealed side of the meter, its pending records and recent ids aside (they are
    /// `rec#N` items and the `ids` item).
    #[serde(default)]
    pub ledger: Ledger,
    /// Journal batches already sealed whose items may not be deleted yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sealed: Vec<String>,
}

impl Stored {
    /// Trims the oldest quota totals until the item fits DynamoDB's item limit.
    fn fit(&mut self) -> Result<Vec<u8>> {
        loop {
            let bytes = serde_json::to_vec(self)?;
            if bytes.len() <= MAX_STATE_BYTES {
                return Ok(bytes);
            }
            let oldest = self
                .ledger
                .totals
                .iter()
                .filter_map(|(dimension, hours)| Some((*hours.keys().next()?, dimension.clone())))
                .min();
            let Some((hour, dimension)) = oldest else {
                anyhow::bail!(
                    "the agent's state is over {MAX_STATE_BYTES} bytes even without quota totals: the memory holds too many tamper reports or too large a license; delete the `state` item to start over (the agent then counts as never checked in until its next round)"
                )
            };
            if let Some(hours) = self.ledger.totals.get_mut(&dimension) {
                hours.remove(&hour);
                if hours.is_empty() {
                    self.ledger.totals.remove(&dimension);
                }
            }
            tracing::warn!(%dimension, "quota totals trimmed to keep the agent's state within DynamoDB's item limit");
        }
    }
}

/// A batch of usage events one environment acknowledged.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Its sort key.
    pub sk: String,
    /// The environment that wrote it.
    pub env: String,
    /// Its events.
    pub events: Vec<Event>,
}

/// The whole partition, read at once.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The state item's version (0: there is none yet).
    pub version: u64,
    /// The state item.
    pub state: Option<Stored>,
    /// Records not yet acknowledged, by number.
    pub records: Vec<UsageRecord>,
    /// The `rec#` items: each one's sort key and the highest record number in it.
    pub record_items: Vec<(String, u64)>,
    /// Batches not yet sealed, oldest environment and seq first.
    pub batches: Vec<Batch>,
    /// Batches sealed but not deleted yet.
    pub stale: Vec<String>,
    /// The digests of the last event ids sealed.
    pub ids: Vec<String>,
}

impl Snapshot {
    /// The ledger as the table holds it: the state item's sealed side with the pending
    /// records.
    pub fn ledger(&self) -> Ledger {
        let mut ledger = self
            .state
            .as_ref()
            .map(|s| s.ledger.clone())
            .unwrap_or_default();
        ledger.pending = self.records.clone();
        ledger.recent_ids = self.ids.clone();
        ledger
    }
}

/// A write lost to another environment's.
#[derive(Debug)]
pub struct Conflict;

/// The table.
pub struct Table {
    client: Client,
    name: String,
    pk: String,
    /// This execution environment's name in journal keys.
    env: String,
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn text<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

/// The sort key of record `n`.
pub fn record_key(n: u64) -> String {
    format!("rec#{n:020}")
}

impl Table {
    /// The table `name` (from `CONSIGN_AGENT_STATE_TABLE`) in `region` (else the
    /// environment's), partition of `stack`.
    pub async fn open(name: &str, region: Option<&str>, stack: &str) -> Result<Self> {
        let mut loader = aws_config::from_env();
        if let Some(region) = region {
            loader = loader.region(aws_config::Region::new(region.to_owned()));
        }
        let config = loader.load().await;
        let env = license::checkin::fresh_nonce()
            .map_err(|e| anyhow::anyhow!("cannot name this environment: {e}"))?;
        Ok(Self {
            client: Client::new(&config),
            name: name.to_owned(),
            pk: format!("agent#{stack}"),
            env: env
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(16)
                .collect(),
        })
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This execution environment's name in journal keys.
    pub fn env(&self) -> &str {
        &self.env
    }

    fn key(&self, sk: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([("pk".to_owned(), s(&self.pk)), ("sk".to_owned(), s(sk))])
    }

    fn failed(
        &self,
        what: &str,
        e: impl aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error,
    ) -> anyhow::Error {
        anyhow::anyhow!(
            "cannot {what} the agent's state in DynamoDB table {} ({}): check the table's name and region, and that the agent's role allows dynamodb:Query, PutItem and DeleteItem on it",
            self.name,
            crate::aws_phrase(&e)
        )
    }

    /// Reads the whole partition (strongly consistent).
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let mut snapshot = Snapshot::default();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.name)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(&self.pk))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| self.failed("read", e))?;
            for item in page.items() {
                self.take(item, &mut snapshot)?;
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                break;
            }
        }
        snapshot.records.sort_by_key(|r| r.body.n);
        if let Some(state) = &snapshot.state {
            let (stale, live) = std::mem::take(&mut snapshot.batches)
                .into_iter()
                .partition(|b| state.sealed.contains(&b.sk));
            snapshot.batches = live;
            snapshot.stale = stale.into_iter().map(|b: Batch| b.sk).collect();
        }
        Ok(snapshot)
    }

    fn take(&self, item: &HashMap<String, AttributeValue>, into: &mut Snapshot) -> Result<()> {
        let sk = text(item, "sk").unwrap_or_default();
        let body = text(item, "body").unwrap_or_default();
        let damaged = || {
            format!(
                "item {sk} of DynamoDB table {} is damaged; it holds the agent's state, so it was left as it is",
                self.name
            )
        };
        if sk == "ids" {
            into.ids = serde_json::from_str(body).with_context(damaged)?;
        } else if sk == "state" {
            into.version = item
                .get("v")
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok())
                .with_context(damaged)?;
            into.state = Some(serde_json::from_str(body).with_context(damaged)?);
        } else if sk.starts_with("rec#") {
            let records: Vec<UsageRecord> = serde_json::from_str(body).with_context(damaged)?;
            let last = records.iter().map(|r| r.body.n).max().unwrap_or(0);
            into.record_items.push((sk.to_owned(), last));
            into.records.extend(records);
        } else if let Some(rest) = sk.strip_prefix("jrn#") {
            let env = rest.split('#').next().unwrap_or_default().to_owned();
            into.batches.push(Batch {
                sk: sk.to_owned(),
                env,
                events: serde_json::from_str(body).with_context(damaged)?,
            });
        }
        Ok(())
    }

    /// Journals a batch of this environment's events: one conditional put.
    pub async fn put_batch(&self, events: &[Event]) -> Result<()> {
        let first = events.first().map_or(0, |e| e.seq);
        let mut item = self.key(&format!("jrn#{}#{first:020}", self.env));
        item.insert("body".into(), s(&serde_json::to_string(events)?));
        self.client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(|e| self.failed("journal usage in", e))?;
        Ok(())
    }

    /// Writes the state item over `version` (0: none yet), with `records` (a new `rec#` item)
    /// and the recent event ids `ids` in the same transaction when there are records.
    /// `Conflict` when another environment wrote the state first.
    pub async fn commit(
        &self,
        version: u64,
        stored: &mut Stored,
        records: &[UsageRecord],
        ids: &[String],
    ) -> Result<std::result::Result<(), Conflict>> {
        stored.ledger.recent_ids.clear();
        let mut item = self.key("state");
        item.insert("v".into(), AttributeValue::N((version + 1).to_string()));
        item.insert("body".into(), s(&String::from_utf8(stored.fit()?)?));
        let (condition, values) = if version == 0 {
            ("attribute_not_exists(pk)", None)
        } else {
            (
                "v = :v",
                Some(HashMap::from([(
                    ":v".to_owned(),
                    AttributeValue::N(version.to_string()),
                )])),
            )
        };
        let Some(first) = records.first() else {
            let written = self
                .client
                .put_item()
                .table_name(&self.name)
                .set_item(Some(item))
                .condition_expression(condition)
                .set_expression_attribute_values(values)
                .send()
                .await;
            return match written {
                Ok(_) => Ok(Ok(())),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                {
                    Ok(Err(Conflict))
                }
                Err(e) => Err(self.failed("write", e)),
            };
        };
        let state = Put::builder()
            .table_name(&self.name)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_values(values)
            .build()?;
        let mut sealed = self.key(&record_key(first.body.n));
        sealed.insert("body".into(), s(&serde_json::to_string(records)?));
        let sealed = Put::builder()
            .table_name(&self.name)
            .set_item(Some(sealed))
            .condition_expression("attribute_not_exists(pk)")
            .build()?;
        let mut recent = self.key("ids");
        recent.insert("body".into(), s(&serde_json::to_string(ids)?));
        let recent = Put::builder()
            .table_name(&self.name)
            .set_item(Some(recent))
            .build()?;
        let written = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(state).build())
            .transact_items(TransactWriteItem::builder().put(sealed).build())
            .transact_items(TransactWriteItem::builder().put(recent).build())
            .send()
            .await;
        match written {
            Ok(_) => Ok(Ok(())),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_transaction_canceled_exception()) =>
            {
                Ok(Err(Conflict))
            }
            Err(e) => Err(self.failed("write", e)),
        }
    }

    /// Deletes items no longer needed (sealed batches, acknowledged records), 25 a call. They
    /// are named in the state or past the acknowledged record, so deleting them twice or late
    /// is harmless.
    pub async fn delete(&self, sks: &[String]) -> Result<()> {
        for chunk in sks.chunks(25) {
            let mut requests = Vec::new();
            for sk in chunk {
                let gone = DeleteRequest::builder()
                    .set_key(Some(self.key(sk)))
                    .build()?;
                requests.push(WriteRequest::builder().delete_request(gone).build());
            }
            let mut left = HashMap::from([(self.name.clone(), requests)]);
            for _ in 0..3 {
                let out = self
                    .client
                    .batch_write_item()
                    .set_request_items(Some(left))
                    .send()
                    .await
                    .map_err(|e| self.failed("clean up", e))?;
                left = out.unprocessed_items.unwrap_or_default();
                if left.values().all(Vec::is_empty) {
                    break;
                }
            }
        }
        Ok(())
    }
}
