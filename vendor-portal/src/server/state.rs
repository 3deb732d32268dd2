//! What every handler shares: the database, the blob store, the master key, limits and metrics.
//! Nothing here is state another portal process would miss: it is configuration, connections
//! and this process's own metrics.

use std::sync::Arc;

use crate::server::base::blobs::Blobs;
use crate::server::base::db::Database;
use crate::server::base::secrets::MasterKey;
use crate::server::http::metrics::Metrics;

/// Rate limits, per minute; 0 turns one off. Per-address limits count the client's address,
/// which `X-Forwarded-For` gives only behind [`Limits::trusted_proxies`].
#[derive(Clone, Debug)]
pub struct Limits {
    /// Licenses issued (or changed) per vendor.
    pub license_writes_per_minute: u64,
    /// Failed authentications per source address.
    pub auth_failures_per_minute: u64,
    /// Login attempts per source address.
    pub logins_per_minute: u64,
    /// Marketplace sign-ups per source address per hour.
    pub signups_per_hour: u64,
    /// Marketplace trials started per source address per hour.
    pub trials_per_hour: u64,
    /// Account-proof nonces per source address per minute.
    pub proof_nonces_per_minute: u64,
    /// Reverse proxies whose `X-Forwarded-For` names the client (`--trusted-proxy`); empty:
    /// the header is ignored.
    pub trusted_proxies: Vec<crate::server::http::proxy::Cidr>,
    /// Webhook endpoints may be on private and loopback addresses, and plain `http`
    /// (`--webhook-allow-private`: tests and private networks).
    pub webhook_allow_private: bool,
    /// Identity providers may be on private and loopback addresses, and plain `http`
    /// (`--sso-allow-private`: tests and company networks).
    pub sso_allow_private: bool,
    /// Buyers verify their e-mail before a trial starts (on when mail is sent: `--smtp-url`).
    pub verify_buyer_email: bool,
    /// Seconds without a check-in after which a live installation is reported silent; none:
    /// twice its license's check-in interval, at least an hour.
    pub silent_after: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            license_writes_per_minute: 1200,
            auth_failures_per_minute: 30,
            logins_per_minute: 10,
            signups_per_hour: 20,
            trials_per_hour: 10,
            proof_nonces_per_minute: 120,
            trusted_proxies: Vec::new(),
            webhook_allow_private: false,
            sso_allow_private: false,
            verify_buyer_email: false,
            silent_after: None,
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
    /// Recently resolved credentials, by secret hash.
    pub credentials: TtlCache<String, crate::server::http::auth::Resolved>,
    /// What licenses were recently issued from: (vendor, customer, app, plan) to rows and key.
    pub catalog: TtlCache<
        (String, String, String, Option<String>),
        crate::server::domain::catalog::LicenseSource,
    >,
    /// The marketplace's filter choices: categories and (slug, name) of vendors with listings.
    pub facets: TtlCache<(), Facets>,
    /// Catalogue pages recently read: (words, category, vendor, sort, page) to the number of
    /// matches and the page's listings.
    pub listings: TtlCache<
        crate::server::domain::catalog::market::PageKey,
        crate::server::domain::catalog::market::ListingPage,
    >,
    /// Writes new licenses in shared transactions.
    pub issuer: crate::server::domain::issuer::Issuer,
    /// Sends account proofs to STS.
    pub sts: crate::server::base::sts::Sts,
    /// Identity providers' discovery and keys, and the client that reads them.
    pub oidc: crate::server::domain::sso::oidc::Providers,
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
}

/// Copies of database rows on hot paths (license status, token lookups, the catalog and key a
/// license is issued from), each at most [`TtlCache::TTL`] old. A process drops an entry the
/// moment it changes the row itself; another process sees the change within the TTL. This is
/// the only state a portal process keeps, and losing it costs only a database round trip.
#[derive(Debug)]
pub struct TtlCache<K, V> {
    entries: std::sync::Mutex<std::collections::HashMap<K, (std::time::Instant, V)>>,
    /// Reads under way, one per key: requests that miss the same entry together wait for one
    /// read instead of each running it (see [`TtlCache::read_once`]).
    flights: std::sync::Mutex<std::collections::HashMap<K, Arc<tokio::sync::Mutex<()>>>>,
}

impl<K, V> Default for TtlCache<K, V> {
    fn default() -> Self {
        Self {
            entries: std::sync::Mutex::new(std::collections::HashMap::new()),
            flights: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }
}

impl<K: std::hash::Hash + Eq, V: Clone> TtlCache<K, V> {
    /// How long an entry serves.
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(1);
    const MAX_ENTRIES: usize = 100_000;

    /// A fresh entry.
    pub fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < Self::TTL)
            .map(|(_, v)| v.clone())
    }

    /// An entry at most `max_age` old, and whether it is past the TTL; a stale one is marked
    /// fresh again at once, so that of the requests that find it stale only this one refreshes
    /// it while the rest are served the copy.
    pub fn get_or_claim(&self, key: &K, max_age: std::time::Duration) -> Option<(V, bool)>
    where
        K: Clone,
    {
        let mut entries = self.entries.lock().ok()?;
        let (at, value) = entries.get_mut(key)?;
        let age = at.elapsed();
        if age >= max_age {
            return None;
        }
        let stale = age >= Self::TTL;
        if stale {
            *at = std::time::Instant::now();
        }
        Some((value.clone(), stale))
    }

    /// The entry for `key` if one at most `max_age` old is there, else what `read` reads, which
    /// is remembered. Of the requests that miss the same key at once only the first runs `read`;
    /// the others wait and take its result (or, if it failed, each try again in turn).
    pub async fn read_once<E, F>(
        &self,
        key: &K,
        max_age: std::time::Duration,
        read: impl FnOnce() -> F,
    ) -> Result<V, E>
    where
        K: Clone,
        F: Future<Output = Result<V, E>>,
    {
        let flight = match self.flights.lock() {
            Ok(mut flights) => flights.entry(key.clone()).or_default().clone(),
            Err(_) => Arc::default(),
        };
        let turn = flight.lock().await;
        let found = match self.get_or_claim(key, max_age) {
            Some((hit, _)) => Ok(hit),
            None => read().await.inspect(|v| self.put(key.clone(), v.clone())),
        };
        drop(turn);
        if let Ok(mut flights) = self.flights.lock() {
            // Held by the map and by this request only: nobody else is waiting on it.
            if Arc::strong_count(&flight) == 2 {
                flights.remove(key);
            }
        }
        found
    }

    /// Remembers what was just read.
    pub fn put(&self, key: K, value: V) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= Self::MAX_ENTRIES {
                entries.retain(|_, (at, _)| at.elapsed() < Self::TTL);
                if entries.len() >= Self::MAX_ENTRIES {
                    entries.clear();
                }
            }
            entries.insert(key, (std::time::Instant::now(), value));
        }
    }

    /// Forgets one entry.
    pub fn forget(&self, key: &K) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(key);
        }
    }

    /// Forgets everything.
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

/// The marketplace's filter choices: categories, and (slug, name) of vendors with listings.
pub type Facets = (Vec<String>, Vec<(String, String)>);

/// License states by (vendor slug, license id).
pub type StatusCache = TtlCache<(String, String), CachedStatus>;

impl AppState {
    /// Wraps the parts.
    pub fn new(
        db: Database,
        blobs: Blobs,
        master: MasterKey,
        limits: Limits,
        sts: crate::server::base::sts::Sts,
    ) -> anyhow::Result<Self> {
        let writer = Arc::new(tokio::sync::Mutex::new(()));
        let issuer = crate::server::domain::issuer::Issuer::start(
            db.clone(),
            writer.clone(),
            limits.clone(),
        );
        let oidc = crate::server::domain::sso::oidc::Providers::new(limits.sso_allow_private)?;
        Ok(Self(Arc::new(Inner {
            db,
            blobs,
            master,
            limits,
            metrics: Metrics::default(),
            writer,
            statuses: StatusCache::default(),
            credentials: TtlCache::default(),
            catalog: TtlCache::default(),
            facets: TtlCache::default(),
            listings: TtlCache::default(),
            issuer,
            sts,
            oidc,
        })))
    }

    /// The portal's public URL ([`crate::server::base::public_url`]).
    pub fn public_url(&self) -> &'static str {
        crate::server::base::public_url()
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}
impl Inner {
    /// The turn to write, on SQLite; nothing on PostgreSQL.
    pub async fn write_turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        sqlite_turn(&self.db, &self.writer).await
    }
}

/// On SQLite, the turn to write (see [`Inner::writer`]); nothing on PostgreSQL.
pub async fn sqlite_turn(
    db: &Database,
    writer: &Arc<tokio::sync::Mutex<()>>,
) -> Option<tokio::sync::OwnedMutexGuard<()>> {
    match db.backend {
        crate::server::base::db::Backend::Sqlite => Some(writer.clone().lock_owned().await),
        crate::server::base::db::Backend::Postgres => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::TtlCache;

    /// Sixteen requests missing the same entry at once: one read, sixteen answers.
    #[tokio::test]
    async fn requests_missing_the_same_entry_share_one_read() {
        let cache: Arc<TtlCache<&'static str, u32>> = Arc::default();
        let reads = Arc::new(AtomicUsize::new(0));
        let mut waiting = Vec::new();
        for _ in 0..16 {
            let (cache, reads) = (cache.clone(), reads.clone());
            waiting.push(tokio::spawn(async move {
                cache
                    .read_once(&"page", Duration::from_secs(10), || async {
                        reads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, ()>(7)
                    })
                    .await
            }));
        }
        for answer in waiting {
            assert_eq!(answer.await.unwrap(), Ok(7));
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        // Nobody waits any more: the flight is gone, the entry stays.
        assert!(cache.flights.lock().unwrap().is_empty());
        assert_eq!(cache.get(&"page"), Some(7));
    }

    /// A read that fails is not remembered: the next request reads again.
    #[tokio::test]
    async fn a_failed_read_is_tried_again() {
        let cache: TtlCache<&'static str, u32> = TtlCache::default();
        let failed = cache
            .read_once(&"page", Duration::from_secs(10), || async { Err("down") })
            .await;
        assert_eq!(failed, Err("down"));
        let read = cache
            .read_once(&"page", Duration::from_secs(10), || async {
                Ok::<_, &str>(3)
            })
            .await;
        assert_eq!(read, Ok(3));
    }
}
