//! Plumbing under everything else: the clock, the database, secrets and ids, the blob store.
//! Nothing here imports the domain, a route or a page.

pub mod blobs;
pub mod db;
pub mod secrets;

/// Now, in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
