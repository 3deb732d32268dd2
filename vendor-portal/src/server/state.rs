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
}

impl AppState {
    /// Wraps the parts.
    pub fn new(db: Database, blobs: Blobs, master: MasterKey, limits: Limits) -> Self {
        Self(Arc::new(Inner {
            db,
            blobs,
            master,
            limits,
            metrics: Metrics::default(),
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}
