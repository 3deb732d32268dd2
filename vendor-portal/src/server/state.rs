//! What every handler shares: the database, the blob store, the master key, limits and metrics.
//! Nothing here is state another portal process would miss: it is configuration, connections
//! and this process's own metrics.

use std::sync::Arc;

use super::blobs::Blobs;
use super::db::Database;
use super::metrics::Metrics;
use super::secrets::MasterKey;

/// Rate limits, per minute; 0 turns one off.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Licenses issued (or changed) per vendor.
    pub license_writes_per_minute: u64,
    /// Failed authentications per source address.
    pub auth_failures_per_minute: u64,
    /// Login attempts per source address.
    pub logins_per_minute: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            license_writes_per_minute: 1200,
            auth_failures_per_minute: 30,
            logins_per_minute: 10,
        }
    }
}

/// The shared state.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

/// The contents of [`AppState`].
#[derive(Debug)]
pub struct Inner {
    /// The database.
    pub db: Database,
    /// The blob store.
    pub blobs: Blobs,
    /// Seals vendors' private keys.
    pub master: MasterKey,
    /// Rate limits.
    pub limits: Limits,
    /// Request metrics.
    pub metrics: Metrics,
    /// On SQLite, write transactions take turns here rather than in SQLite's busy handler,
    /// which sleeps in steps of up to 100 ms. (SQLite serves one portal process; PostgreSQL
    /// serialises a vendor's writes with a row lock instead.)
    pub writer: Arc<tokio::sync::Mutex<()>>,
    /// Recently read license states for the status endpoint.
    pub statuses: StatusCache,
    /// Writes new licenses in shared transactions.
    pub issuer: super::issuer::Issuer,
}

/// A license's state as read from the database, for the signed status endpoint.
#[derive(Clone, Debug)]
pub struct CachedStatus {
    /// The vendor's id.
    pub vendor_id: String,
    /// `active`, `suspended` or `revoked`.
    pub state: String,
    /// The license's seq.
    pub seq: i64,
    /// The signing key to use and its sealed private half.
    pub kid: Option<(String, String)>,
    /// When it was read, Unix seconds: the time the signed status states.
    pub read_at: i64,
    fetched: std::time::Instant,
}

/// License states read in the last [`StatusCache::TTL`]: agents poll the status endpoint far more
/// often than licenses change, and a database round trip costs more than the signature. An
/// answer is never older than the TTL, says in its signed `time` when the state was read, and
/// this process forgets a license's entry the moment it changes the license itself; another
/// process sees the change within the TTL.
#[derive(Debug, Default)]
pub struct StatusCache {
    entries: std::sync::Mutex<std::collections::HashMap<(String, String), CachedStatus>>,
}

impl StatusCache {
    /// How long an entry serves.
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(1);
    const MAX_ENTRIES: usize = 100_000;

    /// A fresh entry for (vendor slug, license id).
    pub fn get(&self, vendor: &str, license: &str) -> Option<CachedStatus> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(&(vendor.to_owned(), license.to_owned()))
            .filter(|e| e.fetched.elapsed() < Self::TTL)
            .cloned()
    }

    /// Remembers what was just read.
    pub fn put(&self, vendor: &str, license: &str, vendor_id: String, state: String, seq: i64, kid: Option<(String, String)>, read_at: i64) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= Self::MAX_ENTRIES {
                entries.retain(|_, e| e.fetched.elapsed() < Self::TTL);
                if entries.len() >= Self::MAX_ENTRIES {
                    entries.clear();
                }
            }
            entries.insert(
                (vendor.to_owned(), license.to_owned()),
                CachedStatus { vendor_id, state, seq, kid, read_at, fetched: std::time::Instant::now() },
            );
        }
    }

    /// Forgets a license (this process just changed it).
    pub fn forget(&self, vendor: &str, license: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&(vendor.to_owned(), license.to_owned()));
        }
    }
}

impl Inner {
    /// The turn to write, on SQLite; nothing on PostgreSQL.
    pub async fn write_turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match self.db.backend {
            super::db::Backend::Sqlite => Some(self.writer.clone().lock_owned().await),
            super::db::Backend::Postgres => None,
        }
    }
}

impl AppState {
    /// Wraps the parts.
    pub fn new(db: Database, blobs: Blobs, master: MasterKey, limits: Limits) -> Self {
        let writer = Arc::new(tokio::sync::Mutex::new(()));
        let issuer = super::issuer::Issuer::start(db.clone(), writer.clone(), limits);
        Self(Arc::new(Inner {
            db,
            blobs,
            master,
            limits,
            metrics: Metrics::default(),
            writer,
            statuses: StatusCache::default(),
            issuer,
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}
