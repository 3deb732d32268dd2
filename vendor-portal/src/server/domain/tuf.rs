//! An app's TUF repository in the database: every version of every role (`tuf_metadata`), the
//! portal's online key per vendor (`tuf_keys`), and publishing: checking a vendor's new root or
//! targets and answering it with a new snapshot and timestamp signed by the online key.
//!
//! Every write happens inside a [`VendorTx`], which locks the vendor's row: publishers in several
//! portal processes take turns, and the `(app, role, version)` primary key refuses a version
//! written twice.

use std::sync::Arc;

use license::{PublicKey, SigningKey};
use sqlx::{AnyConnection, Row as _};
use tough::schema::{Root, Signed, Snapshot, Targets, Timestamp};

use crate::server::base::now;
use crate::server::base::secrets::{MasterKey, hex};
use crate::server::domain::error::{DomainError, DomainResult};
use crate::server::domain::tx::VendorTx;
use crate::server::state::AppState;
use crate::tuf;

fn seal_context(vendor_id: &str) -> String {
    format!("tuf-online:{vendor_id}")
}

/// The vendor's online key, created on first use.
pub async fn online_key(
    conn: &mut AnyConnection,
    master: &MasterKey,
    vendor_id: &str,
) -> DomainResult<(PublicKey, Arc<SigningKey>)> {
    if let Some(found) = load_online_key(conn, master, vendor_id).await? {
        return Ok(found);
    }
    let key = SigningKey::generate().map_err(DomainError::internal)?;
    let public = key.public_key();
    let sealed = master
        .seal(&seal_context(vendor_id), key.to_pem().as_bytes())
        .map_err(DomainError::internal)?;
    let key_id = tuf::key_id(&public).map_err(DomainError::internal)?;
    // Two processes may race to create it; the primary key keeps the first.
    sqlx::query(
        "INSERT INTO tuf_keys (vendor_id, key_id, public_key, sealed_private, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (vendor_id) DO NOTHING",
    )
    .bind(vendor_id)
    .bind(hex(key_id.as_ref()))
    .bind(hex(public.as_bytes()))
    .bind(sealed)
    .bind(now())
    .execute(&mut *conn)
    .await?;
    load_online_key(conn, master, vendor_id)
        .await?
        .ok_or_else(|| DomainError::internal("the online key vanished after it was created"))
}

async fn load_online_key(
    conn: &mut AnyConnection,
    master: &MasterKey,
    vendor_id: &str,
) -> DomainResult<Option<(PublicKey, Arc<SigningKey>)>> {
    let Some(row) = sqlx::query("SELECT sealed_private FROM tuf_keys WHERE vendor_id = $1")
        .bind(vendor_id)
        .fetch_optional(conn)
        .await?
    else {
        return Ok(None);
    };
    let sealed: String = row.try_get("sealed_private")?;
    let key = master.open_signing_key(&seal_context(vendor_id), &sealed)?;
    Ok(Some((key.public_key(), key)))
}

/// The newest version of `role` for `app_id`: its version and served bytes.
pub async fn latest(
    conn: &mut AnyConnection,
    app_id: &str,
    role: &str,
) -> DomainResult<Option<(u64, String)>> {
    let row = sqlx::query(
        "SELECT version, body FROM tuf_metadata WHERE app_id = $1 AND role = $2 \
         ORDER BY version DESC LIMIT 1",
    )
    .bind(app_id)
    .bind(role)
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok((
            u64::try_from(r.try_get::<i64, _>("version")?).unwrap_or(0),
            r.try_get("body")?,
        ))
    })
    .transpose()
}

/// One stored version of `role`.
pub async fn version(
    conn: &mut AnyConnection,
    app_id: &str,
    role: &str,
    version: u64,
) -> DomainResult<Option<String>> {
    let row = sqlx::query(
        "SELECT body FROM tuf_metadata WHERE app_id = $1 AND role = $2 AND version = $3",
    )
    .bind(app_id)
    .bind(role)
    .bind(i64::try_from(version).unwrap_or(i64::MAX))
    .fetch_optional(conn)
    .await?;
    row.map(|r| r.try_get("body").map_err(DomainError::from))
        .transpose()
}

async fn insert(
    conn: &mut AnyConnection,
    app_id: &str,
    role: &str,
    version: u64,
    expires: i64,
    body: &[u8],
) -> DomainResult<()> {
    let text = std::str::from_utf8(body).map_err(DomainError::internal)?;
    let inserted = sqlx::query(
        "INSERT INTO tuf_metadata (app_id, role, version, body, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(app_id)
    .bind(role)
    .bind(i64::try_from(version).unwrap_or(i64::MAX))
    .bind(text)
    .bind(expires)
    .bind(now())
    .execute(conn)
    .await;
    match inserted {
        Err(e) if crate::server::base::db::is_unique_violation(&e) => {
            Err(DomainError::conflict(format!(
                "{role} version {version} was published by someone else meanwhile; fetch the current metadata and try again"
            )))
        }
        other => other.map(|_| ()).map_err(DomainError::from),
    }
}

/// The app's current root, parsed.
pub async fn current_root(
    conn: &mut AnyConnection,
    app_id: &str,
) -> DomainResult<Option<(u64, Signed<Root>)>> {
    let Some((version, body)) = latest(conn, app_id, "root").await? else {
        return Ok(None);
    };
    let root = tuf::parse::<Root>(body.as_bytes(), "root").map_err(DomainError::internal)?;
    Ok(Some((version, root)))
}

fn invalid(e: anyhow::Error) -> DomainError {
    DomainError::invalid(format!("{e:#}"))
}

/// Accepts a new root for the app: version one up, signed by the previous root's keys and by
/// its own, naming the vendor's root key from its keyset and the portal's online key for
/// snapshot and timestamp. When the previous root is anchored in another root key (the vendor
/// has since moved from portal-held keys to its own), only the new root's own signature is
/// required: the app's trust is re-anchored, and customers re-pin as they do for the keyset.
pub async fn put_root(
    tx: &mut VendorTx,
    master: &MasterKey,
    vendor_id: &str,
    app_id: &str,
    vendor_root: &PublicKey,
    body: &[u8],
) -> DomainResult<u64> {
    let new = tuf::parse::<Root>(body, "root").map_err(invalid)?;
    let previous = current_root(tx.conn(), app_id).await?;
    let expected = previous.as_ref().map_or(1, |(v, _)| v + 1);
    if new.signed.version.get() != expected {
        return Err(DomainError::conflict(format!(
            "the new root must be version {expected}, not {}; fetch the current metadata and try again",
            new.signed.version
        )));
    }
    let mut reanchored = false;
    if let Some((_, old)) = &previous {
        // The chain continues under the same root key. The one exception: the vendor moved from
        // portal-held keys to its own (`keys register`), so its keyset's root changed and its
        // customers re-pin anyway; the app's metadata is re-anchored in the new root.
        reanchored = tuf::root_fingerprints(&old.signed) != [vendor_root.fingerprint()];
        if !reanchored {
            tuf::verify(&old.signed, &new).map_err(|e| {
                DomainError::invalid(format!(
                    "the new root is not signed by the current root's key ({e:#}): sign it with the root key the app's customers trust"
                ))
            })?;
        }
    }
    tuf::verify(&new.signed, &new).map_err(invalid)?;
    let fingerprints = tuf::root_fingerprints(&new.signed);
    if fingerprints != [vendor_root.fingerprint()] {
        return Err(DomainError::invalid(format!(
            "the root must name exactly the vendor's root key {} (the keyset's), not {}",
            vendor_root.fingerprint(),
            fingerprints.join(", ")
        )));
    }
    let (online, _) = online_key(tx.conn(), master, vendor_id).await?;
    let online_id = tuf::key_id(&online).map_err(DomainError::internal)?;
    for role in [
        tough::schema::RoleType::Snapshot,
        tough::schema::RoleType::Timestamp,
    ] {
        let ids = new.signed.roles.get(&role).map(|r| r.keyids.clone());
        if ids != Some(vec![online_id.clone()]) {
            return Err(DomainError::invalid(format!(
                "the root's {role} role must name exactly the portal's online key {}",
                hex(online_id.as_ref())
            )));
        }
    }
    if !new.signed.consistent_snapshot {
        return Err(DomainError::invalid(
            "the root must enable consistent snapshots",
        ));
    }
    let version = new.signed.version.get();
    if reanchored {
        tracing::info!(app = %app_id, version, "TUF root re-anchored in the vendor's own root key");
    }
    insert(
        tx.conn(),
        app_id,
        "root",
        version,
        new.signed.expires.as_second(),
        body,
    )
    .await?;
    Ok(version)
}

/// Checks new targets metadata against the current root and targets: one version up, signed by
/// the root's targets keys. Returns the parsed targets.
pub async fn check_targets(
    conn: &mut AnyConnection,
    app_id: &str,
    body: &[u8],
) -> DomainResult<Signed<Targets>> {
    let new = tuf::parse::<Targets>(body, "targets").map_err(invalid)?;
    let (_, root) = current_root(conn, app_id).await?.ok_or_else(|| {
        DomainError::conflict("the app has no TUF root yet: `release push` creates it")
    })?;
    let expected = latest(conn, app_id, "targets")
        .await?
        .map_or(1, |(v, _)| v + 1);
    if new.signed.version.get() != expected {
        return Err(DomainError::conflict(format!(
            "the new targets must be version {expected}, not {}; fetch the current metadata and try again",
            new.signed.version
        )));
    }
    tuf::verify(&root.signed, &new).map_err(|e| {
        DomainError::invalid(format!(
            "{e:#}: targets must be signed with a release key the app's root names"
        ))
    })?;
    if new
        .signed
        .delegations
        .as_ref()
        .is_some_and(|d| !d.roles.is_empty())
    {
        return Err(DomainError::invalid("delegated targets are not supported"));
    }
    Ok(new)
}

/// Stores accepted targets and publishes a snapshot and timestamp for them.
pub async fn store_targets(
    tx: &mut VendorTx,
    master: &MasterKey,
    vendor_id: &str,
    app_id: &str,
    targets: &Signed<Targets>,
    body: &[u8],
) -> DomainResult<(u64, u64)> {
    let version = targets.signed.version.get();
    insert(
        tx.conn(),
        app_id,
        "targets",
        version,
        targets.signed.expires.as_second(),
        body,
    )
    .await?;
    publish_snapshot(tx, master, vendor_id, app_id, version).await
}

/// Signs and stores a new snapshot naming targets `targets_version`, and a timestamp for it.
pub async fn publish_snapshot(
    tx: &mut VendorTx,
    master: &MasterKey,
    vendor_id: &str,
    app_id: &str,
    targets_version: u64,
) -> DomainResult<(u64, u64)> {
    let (_, key) = online_key(tx.conn(), master, vendor_id).await?;
    let version = latest(tx.conn(), app_id, "snapshot")
        .await?
        .map_or(1, |(v, _)| v + 1);
    let expires = now() + tuf::SNAPSHOT_LIFETIME;
    let snapshot =
        tuf::snapshot(version, expires, targets_version).map_err(DomainError::internal)?;
    let signed = tuf::sign(snapshot, &[&key]).map_err(DomainError::internal)?;
    let bytes = tuf::to_bytes(&signed).map_err(DomainError::internal)?;
    insert(tx.conn(), app_id, "snapshot", version, expires, &bytes).await?;
    let timestamp = publish_timestamp(tx, &key, app_id, version, &bytes).await?;
    Ok((version, timestamp))
}

async fn publish_timestamp(
    tx: &mut VendorTx,
    key: &SigningKey,
    app_id: &str,
    snapshot_version: u64,
    snapshot_bytes: &[u8],
) -> DomainResult<u64> {
    let version = latest(tx.conn(), app_id, "timestamp")
        .await?
        .map_or(1, |(v, _)| v + 1);
    let expires = now() + tuf::TIMESTAMP_LIFETIME;
    let ts = tuf::timestamp_role(version, expires, snapshot_version, snapshot_bytes)
        .map_err(DomainError::internal)?;
    let signed = tuf::sign(ts, &[key]).map_err(DomainError::internal)?;
    let bytes = tuf::to_bytes(&signed).map_err(DomainError::internal)?;
    insert(tx.conn(), app_id, "timestamp", version, expires, &bytes).await?;
    Ok(version)
}

/// Re-signs snapshots and timestamps that expire soon, for every app (run by housekeeping in
/// every process: the vendor lock and the version keys make concurrent refreshes safe, and a
/// refresh that lost the race is simply skipped).
pub async fn refresh(state: &AppState) -> anyhow::Result<usize> {
    refresh_at(state, now()).await
}

/// [`refresh`] as if the time were `at` (tests look ahead with it).
pub async fn refresh_at(state: &AppState, at: i64) -> anyhow::Result<usize> {
    let due = sqlx::query(
        "SELECT a.id AS app_id, a.vendor_id FROM apps a \
         JOIN tuf_metadata t ON t.app_id = a.id AND t.role = 'timestamp' \
         WHERE t.version = (SELECT MAX(version) FROM tuf_metadata m WHERE m.app_id = a.id AND m.role = 'timestamp') \
           AND t.expires_at < $1",
    )
    .bind(at + tuf::TIMESTAMP_RENEW)
    .fetch_all(&state.db.pool)
    .await?;
    let mut refreshed = 0;
    for row in due {
        let app_id: String = row.try_get("app_id")?;
        let vendor_id: String = row.try_get("vendor_id")?;
        match refresh_app(state, &vendor_id, &app_id, at).await {
            Ok(()) => refreshed += 1,
            Err(e) => tracing::warn!(app = %app_id, error = %e.detail, "TUF refresh skipped"),
        }
    }
    Ok(refreshed)
}

async fn refresh_app(state: &AppState, vendor_id: &str, app_id: &str, at: i64) -> DomainResult<()> {
    let mut tx = VendorTx::begin(state, vendor_id).await?;
    let snapshot = latest(tx.conn(), app_id, "snapshot").await?;
    let timestamp = latest(tx.conn(), app_id, "timestamp").await?;
    let (Some((snap_version, snap_body)), Some((_, ts_body))) = (snapshot, timestamp) else {
        return Ok(());
    };
    let ts =
        tuf::parse::<Timestamp>(ts_body.as_bytes(), "timestamp").map_err(DomainError::internal)?;
    if ts.signed.expires.as_second() >= at + tuf::TIMESTAMP_RENEW {
        return Ok(()); // another process refreshed it
    }
    let snap =
        tuf::parse::<Snapshot>(snap_body.as_bytes(), "snapshot").map_err(DomainError::internal)?;
    if snap.signed.expires.as_second() < at + tuf::SNAPSHOT_RENEW {
        let targets_version = latest(tx.conn(), app_id, "targets")
            .await?
            .map_or(1, |(v, _)| v);
        publish_snapshot(&mut tx, &state.master, vendor_id, app_id, targets_version).await?;
    } else {
        let (_, key) = online_key(tx.conn(), &state.master, vendor_id).await?;
        publish_timestamp(&mut tx, &key, app_id, snap_version, snap_body.as_bytes()).await?;
    }
    tx.commit_all(&[]).await
}

async fn public_app_id(conn: &mut AnyConnection, vendor: &str, app: &str) -> DomainResult<String> {
    let row = sqlx::query(
        "SELECT a.id FROM apps a JOIN vendors v ON v.id = a.vendor_id WHERE v.slug = $1 AND a.slug = $2",
    )
    .bind(vendor)
    .bind(app)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| DomainError::not_found("app", app))?;
    Ok(row.try_get("id")?)
}

/// An app's TUF metadata: `timestamp.json`, `N.root.json`, `N.snapshot.json`, `N.targets.json`.
pub async fn metadata(
    state: &AppState,
    (vendor, app, file): (String, String, String),
) -> DomainResult<(String, bool)> {
    let mut conn = state.db.pool.acquire().await?;
    let app_id = public_app_id(&mut conn, &vendor, &app).await?;
    let not_found = || DomainError::not_found("metadata", &file);
    if file == "timestamp.json" {
        let (_, body) = latest(&mut conn, &app_id, "timestamp")
            .await?
            .ok_or_else(not_found)?;
        return Ok((body, false));
    }
    let (number, role) = file
        .strip_suffix(".json")
        .and_then(|f| f.split_once('.'))
        .ok_or_else(not_found)?;
    let number: u64 = number.parse().map_err(|_| not_found())?;
    if !["root", "snapshot", "targets"].contains(&role) {
        return Err(not_found());
    }
    let body = version(&mut conn, &app_id, role, number)
        .await?
        .ok_or_else(not_found)?;
    Ok((body, true))
}

/// A TUF target (a release's signed manifest), by `<sha256 hex>.<target name>`.
pub async fn target(
    state: &AppState,
    (vendor, app, file): (String, String, String),
) -> DomainResult<String> {
    let mut conn = state.db.pool.acquire().await?;
    let app_id = public_app_id(&mut conn, &vendor, &app).await?;
    let not_found = || DomainError::not_found("target", &file);
    let (hash, _) = file.split_once('.').ok_or_else(not_found)?;
    let row = sqlx::query(
        "SELECT manifest FROM releases WHERE app_id = $1 AND manifest_digest = $2 AND state = 'published'",
    )
    .bind(&app_id)
    .bind(format!("sha256:{hash}"))
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(not_found)?;
    Ok(row.try_get("manifest")?)
}
