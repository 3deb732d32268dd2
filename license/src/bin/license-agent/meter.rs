//! Metering that loses nothing and counts nothing twice.
//!
//! - The journal (`journal.log`) is append-only: one JSON line per usage event, written and
//!   flushed to disk (fdatasync) before `POST /v1/usage` answers. One writer thread batches
//!   whatever arrived while the disk was busy into one write and one sync (group commit), so
//!   concurrent callers share the cost.
//! - Sealing folds the events not yet sealed into usage records per dimension and hour, chained
//!   by hash and signed with the installation key, and saves them with the journal position
//!   they cover in one atomic file replace (`records.json`); only then may the journal forget
//!   those events. A crash at any point leaves either the events or the records that hold them.
//! - Records stay pending until the portal says it holds them; the portal stores each id once,
//!   so sending one again after a crash changes nothing.
//!
//! A torn last line (a crash in the middle of a write that was never acknowledged) is dropped
//! when the journal is opened.
//!
//! With a state table (in Lambda, see `table.rs`) the journal is the table: each batch is one
//! conditional put of a `jrn#` item, and sealing takes the batches of every environment of the
//! installation into records in the transaction that moves the chain head and deletes them.
//!
//! An event may carry an id. A caller that did not get an answer (the agent was killed, say)
//! sends the event again with the same id; an id the agent already holds is answered as a
//! duplicate and not counted again. Ids are remembered for events not yet sealed and for the
//! last [`KEEP_IDS`] sealed ones, which covers any retry that follows a restart.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use anyhow::{Context as _, Result};
use license::SigningKey;
use license::UnixTime;
use license::checkin::{GENESIS, MAX_RECORD_QUANTITY, RecordBody, UsageRecord};
use license::claims::LicenseId;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::home::write_atomic;
use crate::table::{Snapshot, Table};

/// Totals are kept this long, for quotas up to a year.
const KEEP_TOTALS: u64 = 367 * 86_400;
/// Totals are kept by the hour this long (hourly and daily quotas), by the day beyond.
const KEEP_HOURS: u64 = 48 * 3600;
/// Ids of sealed events remembered for recognising retries.
pub const KEEP_IDS: usize = 4096;
/// With a state table, ids are kept as 64-bit digests (11 characters), so that as many fit in
/// the state item at 57 KB.
const KEEP_TABLE_IDS: usize = KEEP_IDS;
/// The most events in one journal batch (a table item is at most 400 KB).
const MAX_BATCH: usize = 1000;
/// The most records one table batch may need (well within what one seal puts in one item).
const MAX_GROUPS: usize = 80;

/// Whether `id` may name an event: 1 to 128 of `A-Z a-z 0-9 _ - . :`.
pub fn valid_event_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
}

/// One usage event as journaled.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Position in the journal, from 1.
    pub seq: u64,
    /// When it was taken.
    pub at: UnixTime,
    /// The dimension.
    pub dimension: String,
    /// Units.
    pub quantity: u64,
    /// The caller's id for the event, for recognising a retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// The sealed side: the chain head, the records not yet acknowledged and the hourly totals.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ledger {
    /// Every journal event up to this one is in a record.
    pub sealed_through: u64,
    /// The number of the last record sealed.
    pub head_n: u64,
    /// Its hash ([`GENESIS`] before the first).
    pub head_hash: String,
    /// Sealed records the portal has not acknowledged, oldest first.
    pub pending: Vec<UsageRecord>,
    /// Units per dimension and hour (sealed events only), for quotas.
    pub totals: BTreeMap<String, BTreeMap<u64, u64>>,
    /// Ids of the last sealed events, oldest first.
    #[serde(default)]
    pub recent_ids: Vec<String>,
}

struct Shared {
    /// Acknowledged events not sealed yet (this environment's).
    unsealed: Vec<Event>,
    /// Other environments' events not sealed yet, as of the last round (state table only).
    others: Vec<Event>,
    /// This environment's journal batches in the table not yet seen sealed: first seq → last.
    batches: BTreeMap<u64, u64>,
    /// The highest seq acknowledged.
    last_seq: u64,
    /// Event ids held (unsealed events and the last sealed ones), with the seq of each (0 for
    /// sealed ones).
    ids: std::collections::HashMap<String, u64>,
}

impl Shared {
    fn remember_ids(&mut self, recent: &[String]) {
        self.ids = recent.iter().map(|id| (id.clone(), 0)).collect();
        for e in &self.unsealed {
            if let Some(id) = &e.id {
                self.ids.insert(id.clone(), e.seq);
            }
        }
    }
}

/// What recording an event did.
pub enum Recorded {
    /// Journaled with this seq.
    New(u64),
    /// An event with the same id is already held.
    Duplicate,
}

/// Where the journal and the ledger live.
enum Backend {
    /// `journal.log` and `records.json` in the state directory.
    Files(PathBuf),
    /// The state table.
    Table(Arc<Table>),
}

/// What the journal writer appends to.
enum Sink {
    File {
        file: File,
        path: PathBuf,
    },
    Table {
        table: Arc<Table>,
        runtime: tokio::runtime::Handle,
    },
}

impl Sink {
    fn append(&mut self, events: &[Event]) -> Result<(), String> {
        match self {
            Sink::File { file, .. } => {
                let mut bytes = Vec::new();
                for event in events {
                    let line = serde_json::to_vec(event).map_err(|e| e.to_string())?;
                    bytes.extend_from_slice(&line);
                    bytes.push(b'\n');
                }
                file.write_all(&bytes)
                    .and_then(|()| file.sync_data())
                    .map_err(|e| e.to_string())
            }
            Sink::Table { table, runtime } => runtime
                .block_on(table.put_batch(events))
                .map_err(|e| license::process::error_sentence(&e)),
        }
    }

    /// Whether a failed append leaves the journal's end unknown (a file's does).
    fn breaks_on_failure(&self) -> bool {
        matches!(self, Sink::File { .. })
    }

    fn compact(&mut self, through: u64) {
        if let Sink::File { file, path } = self
            && let Err(e) = compact(file, path, through)
        {
            tracing::warn!(error = %e, "the journal could not be compacted; it keeps growing until the next try");
        }
    }
}

/// The short digest an event id is kept as with a state table (64 bits, base64url).
fn id_digest(id: &str) -> String {
    use base64::Engine as _;
    let digest = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest.as_ref()[..8])
}

/// What a round with the state table writes: the ledger moved on, the records it sealed and the
/// journal batches they hold.
pub struct TablePlan {
    /// The ledger after sealing (pending records included).
    pub ledger: Ledger,
    /// New records to put.
    pub records: Vec<UsageRecord>,
    /// Journal batches sealed into them, to delete.
    pub sealed: Vec<String>,
    /// Batches left for another seal.
    pub more: bool,
}

/// Folds `events` into records continuing `ledger`'s chain: one per dimension and hour (split
/// at the portal's bound), signed by `key`. Events whose id the ledger already sealed, or
/// that repeat an id, are left out. Returns the ledger moved on; its new pending records are
/// the ones past the old head.
pub fn fold(
    ledger: &Ledger,
    events: &[Event],
    agent: &str,
    license: &LicenseId,
    key: &SigningKey,
    keep_ids: usize,
) -> Result<Ledger> {
    let mut seen: std::collections::HashSet<&str> =
        ledger.recent_ids.iter().map(String::as_str).collect();
    let mut groups: BTreeMap<(u64, String), (u64, u64)> = BTreeMap::new();
    let mut next = ledger.clone();
    for e in events {
        if let Some(id) = &e.id {
            if !seen.insert(id) {
                continue;
            }
            next.recent_ids.push(id.clone());
        }
        let hour = e.at.as_secs() - e.at.as_secs() % 3600;
        let entry = groups.entry((hour, e.dimension.clone())).or_default();
        entry.0 = entry.0.saturating_add(e.quantity);
        entry.1 += 1;
    }
    for ((hour, dimension), (quantity, count)) in groups {
        for (part, events) in split(quantity, count) {
            let n = next.head_n + 1;
            let record = UsageRecord::seal(
                RecordBody {
                    id: format!("{agent}:{n}"),
                    agent: agent.to_owned(),
                    license: license.clone(),
                    n,
                    dimension: dimension.clone(),
                    hour: UnixTime::from_secs(hour).unwrap_or(UnixTime::now()),
                    quantity: part,
                    events,
                    prev: next.head_hash.clone(),
                },
                key,
            )?;
            next.head_n = n;
            next.head_hash.clone_from(&record.hash);
            next.pending.push(record);
        }
        let total = next
            .totals
            .entry(dimension)
            .or_default()
            .entry(hour)
            .or_default();
        *total = total.saturating_add(quantity);
    }
    if let Some(last) = events.last() {
        next.sealed_through = next.sealed_through.max(last.seq);
    }
    let excess = next.recent_ids.len().saturating_sub(keep_ids);
    next.recent_ids.drain(..excess);
    coarsen(&mut next.totals, UnixTime::now());
    Ok(next)
}

/// Keeps totals by the hour for [`KEEP_HOURS`], by the UTC day up to [`KEEP_TOTALS`], and
/// none older: every quota period starts on an hour within the first or on a day.
fn coarsen(totals: &mut BTreeMap<String, BTreeMap<u64, u64>>, now: UnixTime) {
    let now = now.as_secs();
    let cutoff = now.saturating_sub(KEEP_TOTALS);
    let hourly = now.saturating_sub(KEEP_HOURS);
    for hours in totals.values_mut() {
        let old: Vec<(u64, u64)> = hours.range(..hourly).map(|(h, q)| (*h, *q)).collect();
        for (hour, quantity) in old {
            let day = hour - hour % 86_400;
            if day == hour {
                continue;
            }
            hours.remove(&hour);
            let total = hours.entry(day).or_default();
            *total = total.saturating_add(quantity);
        }
        hours.retain(|h, _| *h >= cutoff);
    }
    totals.retain(|_, hours| !hours.is_empty());
}

enum Job {
    Append {
        dimension: String,
        quantity: u64,
        at: UnixTime,
        id: Option<String>,
        done: oneshot::Sender<Result<Recorded, String>>,
    },
    Compact {
        through: u64,
    },
}

/// The meter: the journal's writer and the ledger.
pub struct Meter {
    backend: Backend,
    /// `None` once the meter is being dropped.
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Option<std::thread::JoinHandle<()>>,
    shared: Arc<Mutex<Shared>>,
    ledger: Mutex<Ledger>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reads the journal, dropping a torn last line; returns the events and the good length.
fn read_journal(path: &Path) -> Result<(Vec<Event>, u64)> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut events = Vec::new();
    let mut good = 0u64;
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        match serde_json::from_slice::<Event>(&line) {
            Ok(event) => events.push(event),
            // Nothing after a bad line was acknowledged after it: the writer never writes past
            // a line it could not complete.
            Err(_) => break,
        }
        good += n as u64;
    }
    Ok((events, good))
}

impl Meter {
    /// Opens the journal and ledger in `dir` and starts the writer thread.
    pub fn open(dir: &Path) -> Result<Self> {
        let journal = dir.join("journal.log");
        let ledger_path = dir.join("records.json");
        let ledger: Ledger = match std::fs::read(&ledger_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} is damaged; it holds usage not yet sent to the vendor, so it was left as it is: restore it from a backup or move it away to start a new ledger",
                    ledger_path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ledger::default(),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", ledger_path.display()));
            }
        };
        let (events, good_len) = read_journal(&journal)?;
        let file = crate::home::open_private_append(&journal)
            .with_context(|| format!("cannot open {}", journal.display()))?;
        if file.metadata().map(|m| m.len()).unwrap_or(0) > good_len {
            file.set_len(good_len)
                .with_context(|| format!("cannot repair {}", journal.display()))?;
        }
        let last_seq = events
            .last()
            .map_or(ledger.sealed_through, |e| e.seq.max(ledger.sealed_through));
        let unsealed: Vec<Event> = events
            .into_iter()
            .filter(|e| e.seq > ledger.sealed_through)
            .collect();
        Self::start(
            Backend::Files(dir.to_owned()),
            Sink::File {
                file,
                path: journal,
            },
            ledger,
            unsealed,
            last_seq,
        )
    }

    /// Meters into the state table, starting from `snapshot` (read at start-up).
    pub fn open_table(table: Arc<Table>, snapshot: &Snapshot) -> Result<Self> {
        let sink = Sink::Table {
            table: Arc::clone(&table),
            runtime: tokio::runtime::Handle::current(),
        };
        let meter = Self::start(
            Backend::Table(table),
            sink,
            Ledger::default(),
            Vec::new(),
            0,
        )?;
        meter.refresh(snapshot, &BTreeMap::new());
        Ok(meter)
    }

    fn start(
        backend: Backend,
        sink: Sink,
        ledger: Ledger,
        unsealed: Vec<Event>,
        last_seq: u64,
    ) -> Result<Self> {
        let mut state = Shared {
            unsealed,
            others: Vec::new(),
            batches: BTreeMap::new(),
            last_seq,
            ids: std::collections::HashMap::new(),
        };
        state.remember_ids(&ledger.recent_ids);
        let shared = Arc::new(Mutex::new(state));
        let (tx, rx) = mpsc::channel();
        let writer_shared = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || writer(sink, rx, &writer_shared))
            .context("cannot start the journal writer")?;
        Ok(Self {
            backend,
            jobs: Mutex::new(Some(tx)),
            writer: Some(handle),
            shared,
            ledger: Mutex::new(ledger),
        })
    }

    fn keep_ids(&self) -> usize {
        match self.backend {
            Backend::Files(_) => KEEP_IDS,
            Backend::Table(_) => KEEP_TABLE_IDS,
        }
    }

    /// Journals one event; resolves once it is on disk (or in the table).
    pub async fn record(
        &self,
        dimension: String,
        quantity: u64,
        at: UnixTime,
        id: Option<String>,
    ) -> Result<Recorded> {
        let id = match self.backend {
            Backend::Files(_) => id,
            Backend::Table(_) => id.as_deref().map(id_digest),
        };
        let (done, wait) = oneshot::channel();
        lock(&self.jobs)
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the journal is closing"))?
            .send(Job::Append {
                dimension,
                quantity,
                at,
                id,
                done,
            })
            .map_err(|_| anyhow::anyhow!("the journal writer stopped"))?;
        match wait.await {
            Ok(Ok(recorded)) => Ok(recorded),
            Ok(Err(e)) => Err(anyhow::anyhow!("the usage journal cannot be written: {e}")),
            Err(_) => Err(anyhow::anyhow!("the journal writer stopped")),
        }
    }

    /// Units of `dimension` used from `since` on (sealed and unsealed; with a state table,
    /// every environment's as of the last round, and this one's since).
    pub fn used_since(&self, dimension: &str, since: UnixTime) -> u64 {
        let hour = since.as_secs() - since.as_secs() % 3600;
        let sealed: u64 = lock(&self.ledger)
            .totals
            .get(dimension)
            .map(|hours| hours.range(hour..).map(|(_, q)| *q).sum())
            .unwrap_or(0);
        let shared = lock(&self.shared);
        let unsealed: u64 = shared
            .unsealed
            .iter()
            .chain(&shared.others)
            .filter(|e| e.dimension == dimension && e.at >= since)
            .map(|e| e.quantity)
            .sum();
        sealed.saturating_add(unsealed)
    }

    /// Seals every acknowledged event into records signed by `key`; returns how many records.
    /// State directory only: with a state table, see [`Meter::plan`].
    pub fn seal(&self, agent: &str, license: &LicenseId, key: &SigningKey) -> Result<usize> {
        let Backend::Files(dir) = &self.backend else {
            return Ok(0);
        };
        let mut ledger = lock(&self.ledger);
        let events = lock(&self.shared).unsealed.clone();
        if events.is_empty() {
            return Ok(0);
        }
        let next = fold(&ledger, &events, agent, license, key, KEEP_IDS)?;
        let sealed = next.pending.len() - ledger.pending.len();
        write_atomic(&dir.join("records.json"), &serde_json::to_vec(&next)?)?;
        *ledger = next;
        {
            let mut shared = lock(&self.shared);
            shared.unsealed.retain(|e| e.seq > ledger.sealed_through);
            shared.remember_ids(&ledger.recent_ids);
        }
        if let Some(jobs) = lock(&self.jobs).as_ref() {
            let _ = jobs.send(Job::Compact {
                through: ledger.sealed_through,
            });
        }
        Ok(sealed)
    }

    /// This environment's journal batches written so far (to tell, after a snapshot, which of
    /// them another environment sealed).
    pub fn written(&self) -> BTreeMap<u64, u64> {
        lock(&self.shared).batches.clone()
    }

    /// Takes the table's view: the sealed side from the state item, pending records, other
    /// environments' unsealed events; this environment's batches no longer in the table (of
    /// those in `written`, taken before the snapshot was read) were sealed.
    pub fn refresh(&self, snapshot: &Snapshot, written: &BTreeMap<u64, u64>) {
        let ledger = snapshot.ledger();
        let Backend::Table(table) = &self.backend else {
            return;
        };
        let mine: std::collections::HashSet<u64> = snapshot
            .batches
            .iter()
            .filter(|b| b.env == table.env())
            .filter_map(|b| b.events.first().map(|e| e.seq))
            .collect();
        let mut shared = lock(&self.shared);
        for (first, last) in written {
            if !mine.contains(first) {
                shared.batches.remove(first);
                shared.unsealed.retain(|e| e.seq < *first || e.seq > *last);
            }
        }
        shared.others = snapshot
            .batches
            .iter()
            .filter(|b| b.env != table.env())
            .flat_map(|b| b.events.iter().cloned())
            .collect();
        shared.remember_ids(&ledger.recent_ids);
        *lock(&self.ledger) = ledger;
    }

    /// Seals the journal batches of `snapshot` (every environment's) into records continuing
    /// its chain, as many as one transaction can take.
    pub fn plan(
        &self,
        snapshot: &Snapshot,
        agent: &str,
        license: &LicenseId,
        key: &SigningKey,
    ) -> Result<TablePlan> {
        let ledger = snapshot.ledger();
        // The records of one seal go in one item: take batches while the records they need (an
        // upper bound: one per dimension and hour, more past the portal's bound per record) fit.
        let mut groups: BTreeMap<(u64, &str), u64> = BTreeMap::new();
        let mut taken = 0;
        for batch in &snapshot.batches {
            let mut trial = groups.clone();
            for e in &batch.events {
                let hour = e.at.as_secs() - e.at.as_secs() % 3600;
                let q = trial.entry((hour, e.dimension.as_str())).or_default();
                *q = q.saturating_add(e.quantity);
            }
            let records: usize = trial.values().map(|q| split(*q, 1).len()).sum();
            if records > crate::table::MAX_RECORDS_PER_ITEM
                || taken >= crate::table::MAX_BATCHES_PER_SEAL
            {
                break;
            }
            groups = trial;
            taken += 1;
        }
        let chosen = &snapshot.batches[..taken];
        let events: Vec<Event> = chosen
            .iter()
            .flat_map(|b| b.events.iter().cloned())
            .collect();
        let next = fold(&ledger, &events, agent, license, key, self.keep_ids())?;
        let records = next.pending[ledger.pending.len()..].to_vec();
        let more = taken < snapshot.batches.len();
        Ok(TablePlan {
            ledger: next,
            records,
            sealed: chosen.iter().map(|b| b.sk.clone()).collect(),
            more,
        })
    }

    /// The records waiting for the portal, oldest first, at most `max`.
    pub fn pending(&self, max: usize) -> Vec<UsageRecord> {
        lock(&self.ledger)
            .pending
            .iter()
            .take(max)
            .cloned()
            .collect()
    }

    /// Events acknowledged and not sealed yet (this environment's).
    pub fn unsealed(&self) -> Vec<Event> {
        lock(&self.shared).unsealed.clone()
    }

    /// Forgets pending records up to number `through`, which the portal holds. With a state
    /// table, returns the numbers forgotten, whose items the next state write deletes.
    pub fn acknowledged(&self, through: u64) -> Result<Vec<u64>> {
        let mut ledger = lock(&self.ledger);
        let gone: Vec<u64> = ledger
            .pending
            .iter()
            .map(|r| r.body.n)
            .filter(|n| *n <= through)
            .collect();
        if gone.is_empty() {
            return Ok(gone);
        }
        let mut next = ledger.clone();
        next.pending.retain(|r| r.body.n > through);
        if let Backend::Files(dir) = &self.backend {
            write_atomic(&dir.join("records.json"), &serde_json::to_vec(&next)?)?;
        }
        *ledger = next;
        Ok(gone)
    }
}

impl Default for Ledger {
    /// An empty ledger at the start of the chain.
    fn default() -> Self {
        Self {
            sealed_through: 0,
            head_n: 0,
            head_hash: GENESIS.into(),
            pending: Vec::new(),
            totals: BTreeMap::new(),
            recent_ids: Vec::new(),
        }
    }
}

impl Drop for Meter {
    /// Lets the writer finish what it was given (a compaction included) before the journal can
    /// be opened again.
    fn drop(&mut self) {
        lock(&self.jobs).take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// The writer thread: appends batches, syncs once per batch, then acknowledges the batch.
fn writer(mut sink: Sink, jobs: mpsc::Receiver<Job>, shared: &Mutex<Shared>) {
    let mut broken: Option<String> = None;
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        // A table batch is sealed whole, its records in one item: keep them few.
        let mut groups: BTreeMap<(u64, String), u64> = BTreeMap::new();
        let mut parts = |job: &Job| {
            if let Job::Append {
                dimension,
                quantity,
                at,
                ..
            } = job
            {
                let hour = at.as_secs() - at.as_secs() % 3600;
                let q = groups.entry((hour, dimension.clone())).or_default();
                *q = q.saturating_add(*quantity);
            }
            groups.values().map(|q| split(*q, 1).len()).sum::<usize>()
        };
        parts(&batch[0]);
        while let Ok(more) = jobs.try_recv() {
            let needed = parts(&more);
            batch.push(more);
            if batch.len() >= MAX_BATCH
                || (matches!(sink, Sink::Table { .. }) && needed >= MAX_GROUPS)
            {
                break;
            }
        }
        let mut appended = Vec::new();
        let mut next_seq = lock(shared).last_seq;
        let mut batch_ids = std::collections::HashSet::new();
        for job in batch {
            match job {
                Job::Append {
                    dimension,
                    quantity,
                    at,
                    id,
                    done,
                } => {
                    if let Some(id) = &id
                        && (lock(shared).ids.contains_key(id) || !batch_ids.insert(id.clone()))
                    {
                        let _ = done.send(Ok(Recorded::Duplicate));
                        continue;
                    }
                    next_seq += 1;
                    let event = Event {
                        seq: next_seq,
                        at,
                        dimension,
                        quantity,
                        id,
                    };
                    appended.push((event, done));
                }
                Job::Compact { through } => sink.compact(through),
            }
        }
        if appended.is_empty() {
            continue;
        }
        let events: Vec<Event> = appended.iter().map(|(e, _)| e.clone()).collect();
        let written = match &broken {
            Some(e) => Err(e.clone()),
            None => sink.append(&events),
        };
        if let Err(e) = &written
            && sink.breaks_on_failure()
        {
            // After a failed write the file's end is unknown: refuse everything from here on
            // rather than acknowledge events that might not be there.
            broken = Some(e.clone());
        }
        let mut state = lock(shared);
        if written.is_ok()
            && let (Some(first), Some(last)) = (events.first(), events.last())
        {
            state.batches.insert(first.seq, last.seq);
        }
        for (event, done) in appended {
            let answer = match &written {
                Ok(()) => {
                    state.last_seq = event.seq;
                    let seq = event.seq;
                    if let Some(id) = &event.id {
                        state.ids.insert(id.clone(), seq);
                    }
                    state.unsealed.push(event);
                    Ok(Recorded::New(seq))
                }
                Err(e) => Err(e.clone()),
            };
            let _ = done.send(answer);
        }
    }
}

/// Rewrites the journal without the events up to `through` (they are in sealed records).
fn compact(file: &mut File, path: &Path, through: u64) -> Result<()> {
    let (events, _) = read_journal(path)?;
    let keep: Vec<&Event> = events.iter().filter(|e| e.seq > through).collect();
    if keep.len() == events.len() {
        return Ok(());
    }
    let mut bytes = Vec::new();
    for e in keep {
        bytes.extend_from_slice(&serde_json::to_vec(e)?);
        bytes.push(b'\n');
    }
    write_atomic(path, &bytes)?;
    *file = OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("cannot reopen {}", path.display()))?;
    Ok(())
}

/// One hour's units of a dimension as records the portal accepts: at most
/// [`MAX_RECORD_QUANTITY`] units each, the event count on the last.
fn split(quantity: u64, events: u64) -> Vec<(u64, u64)> {
    let mut parts = Vec::new();
    let mut left = quantity;
    while left > MAX_RECORD_QUANTITY {
        parts.push((MAX_RECORD_QUANTITY, 0));
        left -= MAX_RECORD_QUANTITY;
    }
    parts.push((left, events.min(MAX_RECORD_QUANTITY)));
    parts
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn an_hour_over_the_record_limit_becomes_several_records() {
        let max = MAX_RECORD_QUANTITY;
        assert_eq!(split(7, 3), [(7, 3)]);
        assert_eq!(split(max, 1), [(max, 1)]);
        assert_eq!(split(2 * max + 5, 4), [(max, 0), (max, 0), (5, 4)]);
        let parts = split(10 * max + 1, 9);
        assert_eq!(parts.len(), 11);
        assert_eq!(parts.iter().map(|p| p.0).sum::<u64>(), 10 * max + 1);
        assert!(parts.iter().all(|p| p.0 <= max));
    }

    #[test]
    fn old_hourly_totals_become_daily_and_quota_periods_still_sum_right() {
        let now = at(1_800_000_000 - 1_800_000_000 % 86_400 + 10 * 3600); // 10:00 UTC
        let day = now.as_secs() - now.as_secs() % 86_400;
        let mut totals = BTreeMap::from([(
            "api-calls".to_owned(),
            BTreeMap::from([
                (day - 5 * 86_400 + 3 * 3600, 7),  // five days ago, 03:00
                (day - 5 * 86_400 + 20 * 3600, 5), // five days ago, 20:00
                (day - 400 * 86_400, 9),           // beyond a year: dropped
                (day + 9 * 3600, 2),               // this morning, kept by the hour
            ]),
        )]);
        coarsen(&mut totals, now);
        let hours = &totals["api-calls"];
        assert_eq!(hours.get(&(day - 5 * 86_400)), Some(&12));
        assert_eq!(hours.get(&(day + 9 * 3600)), Some(&2));
        assert_eq!(hours.len(), 2);
    }

    #[test]
    fn an_id_sealed_before_or_twice_in_one_seal_is_counted_once() {
        let key = SigningKey::generate().unwrap();
        let license = LicenseId::new("lic_1").unwrap();
        let event = |seq, id: &str| Event {
            seq,
            at: at(1_800_000_000),
            dimension: "api-calls".into(),
            quantity: 10,
            id: Some(id.into()),
        };
        // The same event journaled by two environments (a retry after the first one died).
        let first = fold(
            &Ledger::default(),
            &[event(1, "a"), event(1, "b"), event(2, "a")],
            "agt_x",
            &license,
            &key,
            KEEP_IDS,
        )
        .unwrap();
        assert_eq!(
            first.pending.iter().map(|r| r.body.quantity).sum::<u64>(),
            20
        );
        // And once more after it was sealed.
        let second = fold(
            &first,
            &[event(3, "b"), event(4, "c")],
            "agt_x",
            &license,
            &key,
            KEEP_IDS,
        )
        .unwrap();
        assert_eq!(second.pending.len(), first.pending.len() + 1);
        assert_eq!(second.pending.last().unwrap().body.quantity, 10);
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn at(secs: u64) -> UnixTime {
        UnixTime::from_secs(secs).unwrap()
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_acknowledged_events_survive() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime();
        {
            let meter = Meter::open(dir.path()).unwrap();
            for q in [1, 2, 3] {
                rt.block_on(meter.record("api-calls".into(), q, at(1_800_000_000), None))
                    .unwrap();
            }
        }
        // A crash in the middle of a fourth write that was never acknowledged.
        let journal = dir.path().join("journal.log");
        let mut f = OpenOptions::new().append(true).open(&journal).unwrap();
        f.write_all(br#"{"seq":4,"at":1800000000,"dimen"#).unwrap();
        drop(f);
        let meter = Meter::open(dir.path()).unwrap();
        let events = meter.unsealed();
        assert_eq!(events.iter().map(|e| e.quantity).sum::<u64>(), 6);
        // The next event takes seq 4 and lands on a whole line.
        let seq = rt
            .block_on(meter.record("api-calls".into(), 4, at(1_800_000_000), None))
            .unwrap();
        assert!(matches!(seq, Recorded::New(4)));
        let (events, _) = read_journal(&journal).unwrap();
        assert_eq!(events.len(), 4);
    }

    #[test]
    fn sealing_chains_records_compacts_the_journal_and_remembers_ids() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime();
        let key = SigningKey::generate().unwrap();
        let license = LicenseId::new("lic_1").unwrap();
        let hour = 1_800_000_000; // on the hour
        {
            let meter = Meter::open(dir.path()).unwrap();
            for (i, (dimension, secs)) in [("a", hour), ("b", hour), ("a", hour + 3600)]
                .into_iter()
                .enumerate()
            {
                rt.block_on(meter.record(dimension.into(), 5, at(secs), Some(format!("ev-{i}"))))
                    .unwrap();
            }
            assert_eq!(meter.seal("agt_x", &license, &key).unwrap(), 3);
            let records = meter.pending(10);
            assert_eq!(records[0].body.prev, GENESIS);
            assert_eq!(records[1].body.prev, records[0].hash);
            assert_eq!(records[2].body.prev, records[1].hash);
            for r in &records {
                r.verify(&key.public_key()).unwrap();
            }
            meter.acknowledged(2).unwrap();
            assert_eq!(meter.pending(10).len(), 1);
            assert_eq!(meter.used_since("a", at(hour)), 10);
        }
        let meter = Meter::open(dir.path()).unwrap();
        // The journal forgot the sealed events; the ledger kept the chain and the totals.
        assert!(meter.unsealed().is_empty());
        assert_eq!(meter.pending(10).len(), 1);
        assert_eq!(meter.used_since("a", at(hour)), 10);
        // A retry of a sealed event is recognised after the restart.
        let again = rt
            .block_on(meter.record("a".into(), 5, at(hour), Some("ev-0".into())))
            .unwrap();
        assert!(matches!(again, Recorded::Duplicate));
        let fresh = rt
            .block_on(meter.record("a".into(), 5, at(hour), Some("ev-9".into())))
            .unwrap();
        assert!(matches!(fresh, Recorded::New(4)));
        assert_eq!(meter.seal("agt_x", &license, &key).unwrap(), 1);
        let records = meter.pending(10);
        assert_eq!(records[1].body.n, 4);
        assert_eq!(records[1].body.prev, records[0].hash);
    }
}
