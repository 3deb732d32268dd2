//! A vendor's keys on the portal. The portal always holds the license-signing key(s), sealed
//! under the master key, and the current public keyset. With portal custody (a vendor created
//! without registering keys, for trying Consign in one command) it also holds the root and
//! release keys; once the vendor registers its own keyset (`keys register`), the root and
//! release keys live only on the vendor's machine and a compromised portal can no longer sign a
//! keyset or a release.

use anyhow::Context as _;
use license::{KEYSET_TYPE, KeyEntry, Keyset, SigningKey, TrustPin, TrustedKeyset, UnixTime};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row as _};
use utoipa::ToSchema;

use super::access::{Caller, Role};
use super::idempotency::IdempotencyContext;
use super::tx::VendorTx;
use crate::server::state::AppState;

use crate::server::base::now;
use crate::server::base::secrets::MasterKey;
use crate::server::domain::error::{DomainError, DomainResult};

/// Validity of keys the portal makes: five years.
const VALIDITY: u64 = 5 * 365 * 86_400;

/// Key custody values.
pub const CUSTODY_PORTAL: &str = "portal";
/// The vendor registered its own keys.
pub const CUSTODY_VENDOR: &str = "vendor";

/// The context a vendor's key is sealed under (binds it to its row).
pub fn seal_context(vendor_id: &str, kid: &str) -> String {
    format!("vendor-key/{vendor_id}/{kid}")
}

fn unix(t: i64) -> UnixTime {
    UnixTime::from_secs(u64::try_from(t).unwrap_or(0)).unwrap_or(UnixTime::MAX)
}

fn secs(t: UnixTime) -> i64 {
    i64::try_from(t.as_secs()).unwrap_or(i64::MAX)
}

fn entry(key: &SigningKey, prefix: &str, now: UnixTime) -> KeyEntry {
    KeyEntry {
        kid: key.public_key().derive_kid(prefix),
        public_key: key.public_key(),
        not_before: now,
        not_after: now.plus(VALIDITY),
    }
}

async fn store_key(
    conn: &mut AnyConnection,
    master: &MasterKey,
    vendor_id: &str,
    role: &str,
    entry: &KeyEntry,
    private: Option<&SigningKey>,
    generation: u64,
) -> DomainResult<()> {
    let sealed = match private {
        Some(key) => Some(master.seal(
            &seal_context(vendor_id, &entry.kid),
            key.to_pem().as_bytes(),
        )?),
        None => None,
    };
    sqlx::query(
        "INSERT INTO vendor_keys (vendor_id, kid, role, public_key, sealed_private, not_before, not_after, generation, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $9, $8) \
         ON CONFLICT (vendor_id, kid) DO UPDATE SET sealed_private = COALESCE(excluded.sealed_private, vendor_keys.sealed_private), \
         generation = CASE WHEN excluded.sealed_private IS NULL THEN vendor_keys.generation ELSE excluded.generation END, \
         not_before = excluded.not_before, not_after = excluded.not_after",
    )
    .bind(vendor_id)
    .bind(&entry.kid)
    .bind(role)
    .bind(entry.public_key.fingerprint())
    .bind(sealed)
    .bind(secs(entry.not_before))
    .bind(secs(entry.not_after))
    .bind(now())
    .bind(i64::try_from(generation).unwrap_or(i64::MAX))
    .execute(conn)
    .await?;
    Ok(())
}

async fn store_keyset(
    conn: &mut AnyConnection,
    vendor_id: &str,
    keyset: &Keyset,
    text: &str,
) -> DomainResult<()> {
    sqlx::query(
        "INSERT INTO keysets (vendor_id, seq, root_fingerprint, document, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(vendor_id)
    .bind(i64::try_from(keyset.seq).unwrap_or(i64::MAX))
    .bind(keyset.root.fingerprint())
    .bind(text)
    .bind(now())
    .execute(conn)
    .await?;
    Ok(())
}

/// Creates portal-held root, license and release keys and keyset 1 for a new vendor.
pub async fn create_portal_keys(
    conn: &mut AnyConnection,
    master: &MasterKey,
    vendor_id: &str,
    slug: &str,
) -> DomainResult<Keyset> {
    let now = UnixTime::now();
    let root = SigningKey::generate().map_err(DomainError::internal)?;
    let signer = SigningKey::generate().map_err(DomainError::internal)?;
    let release = SigningKey::generate().map_err(DomainError::internal)?;
    let issuer = license::claims::Slug::new(slug).map_err(DomainError::invalid)?;
    let keyset = Keyset {
        kind: KEYSET_TYPE.into(),
        issuer: Some(issuer),
        seq: 1,
        issued_at: now,
        root: root.public_key(),
        license_keys: vec![entry(&signer, "lic", now)],
        release_keys: vec![entry(&release, "rel", now)],
    };
    let text = keyset.sign(&root).map_err(DomainError::internal)?;
    let root_entry = entry(&root, "root", now);
    store_key(conn, master, vendor_id, "root", &root_entry, Some(&root), 1).await?;
    store_key(
        conn,
        master,
        vendor_id,
        "license",
        &keyset.license_keys[0],
        Some(&signer),
        1,
    )
    .await?;
    store_key(
        conn,
        master,
        vendor_id,
        "release",
        &keyset.release_keys[0],
        Some(&release),
        1,
    )
    .await?;
    store_keyset(conn, vendor_id, &keyset, &text).await?;
    Ok(keyset)
}

/// The current keyset of a vendor: its parsed contents and its exact signed text.
pub async fn current_keyset(
    conn: &mut AnyConnection,
    vendor_id: &str,
) -> DomainResult<(Keyset, String)> {
    let row =
        sqlx::query("SELECT document FROM keysets WHERE vendor_id = $1 ORDER BY seq DESC LIMIT 1")
            .bind(vendor_id)
            .fetch_optional(conn)
            .await?
            .ok_or_else(|| {
                DomainError::conflict(
                    "this vendor has no keyset yet: run `vendor-portal keys register --keys DIR`",
                )
            })?;
    let text: String = row.try_get("document")?;
    let trusted = Keyset::verify(text.as_bytes(), &TrustPin::default())
        .context("a stored keyset no longer verifies")?;
    Ok((trusted.keyset().clone(), text))
}

/// Rotates the license-signing key of a portal-custody vendor: a new key, and keyset `seq + 1`
/// signed by the portal-held root that lists it beside the old ones (which stay valid until they
/// expire, so issued licenses keep verifying).
pub async fn rotate_keys(
    conn: &mut AnyConnection,
    master: &MasterKey,
    vendor_id: &str,
    custody: &str,
) -> DomainResult<Keyset> {
    if custody != CUSTODY_PORTAL {
        return Err(DomainError::conflict(
            "this vendor's root key is offline, so the portal cannot sign a keyset: run `vendor-portal keys rotate --keys DIR` on the vendor's machine, then `vendor-portal keys register --keys DIR`",
        ));
    }
    let (mut keyset, _) = current_keyset(&mut *conn, vendor_id).await?;
    let root = private_key(&mut *conn, master, vendor_id, "root", None)
        .await?
        .1;
    let now = UnixTime::now();
    let signer = SigningKey::generate().map_err(DomainError::internal)?;
    let new = entry(&signer, "lic", now);
    keyset.license_keys.retain(|k| k.not_after > now);
    keyset.license_keys.push(new.clone());
    keyset.seq += 1;
    keyset.issued_at = now;
    let text = keyset.sign(&root).map_err(DomainError::internal)?;
    store_key(
        &mut *conn,
        master,
        vendor_id,
        "license",
        &new,
        Some(&signer),
        keyset.seq,
    )
    .await?;
    store_keyset(&mut *conn, vendor_id, &keyset, &text).await?;
    Ok(keyset)
}

/// What `keys register` sent.
pub struct Registration<'a> {
    /// The signed keyset text.
    pub keyset: &'a str,
    /// The license-signing key (PKCS#8 PEM), when the portal should get a new one.
    pub license_signing_key: Option<&'a str>,
}

/// Registers a vendor-signed keyset (and optionally the license-signing key). The keyset must
/// verify under its own root, name this vendor as issuer if it names one, and have a higher
/// `seq` than the current one; once registered, a keyset from another root is refused.
pub async fn register_keyset(
    conn: &mut AnyConnection,
    master: &MasterKey,
    vendor_id: &str,
    slug: &str,
    custody: &str,
    registration: Registration<'_>,
) -> DomainResult<Keyset> {
    let trusted = Keyset::verify(registration.keyset.as_bytes(), &TrustPin::default())
        .map_err(|e| DomainError::invalid(format!("the keyset does not verify: {e}")))?;
    let keyset = trusted.keyset().clone();
    if let Some(issuer) = &keyset.issuer
        && issuer.as_str() != slug
    {
        return Err(DomainError::invalid(format!(
            "the keyset is for issuer {issuer}, not this vendor ({slug}): create it with `keys init --issuer {slug}`"
        )));
    }
    check_successor(&mut *conn, vendor_id, custody, &keyset).await?;
    let now = UnixTime::now();
    if let Some(pem) = registration.license_signing_key {
        store_sent_license_key(&mut *conn, master, vendor_id, &trusted, pem).await?;
    }
    let listed: Vec<&str> = keyset.license_keys.iter().map(|k| k.kid.as_str()).collect();
    forget_unlisted(&mut *conn, vendor_id, &listed).await?;
    for k in &keyset.license_keys {
        store_key(
            &mut *conn, master, vendor_id, "license", k, None, keyset.seq,
        )
        .await?;
    }
    for k in &keyset.release_keys {
        store_key(
            &mut *conn, master, vendor_id, "release", k, None, keyset.seq,
        )
        .await?;
    }
    if !keyset
        .license_keys
        .iter()
        .any(|k| k.not_after > now && listed.contains(&k.kid.as_str()))
    {
        return Err(DomainError::invalid(
            "the keyset lists no license-signing key valid now",
        ));
    }
    if custody == CUSTODY_PORTAL {
        // Moving from portal-held keys to the vendor's own: the portal's keysets were for a
        // root that is now retired, and the vendor's keyset starts its own sequence.
        sqlx::query("DELETE FROM keysets WHERE vendor_id = $1")
            .bind(vendor_id)
            .execute(&mut *conn)
            .await?;
    }
    store_keyset(&mut *conn, vendor_id, &keyset, registration.keyset).await?;
    sqlx::query("UPDATE vendors SET key_custody = $2 WHERE id = $1")
        .bind(vendor_id)
        .bind(CUSTODY_VENDOR)
        .execute(&mut *conn)
        .await?;
    if private_key(&mut *conn, master, vendor_id, "license", None)
        .await
        .is_err()
    {
        return Err(DomainError::invalid(
            "the portal holds no license-signing key listed in this keyset: send it with the keyset (`keys register --keys DIR` does)",
        ));
    }
    Ok(keyset)
}

/// Stores the private license-signing key the vendor sent with its keyset (sealed), once it is
/// one the keyset lists.
async fn store_sent_license_key(
    conn: &mut AnyConnection,
    master: &MasterKey,
    vendor_id: &str,
    trusted: &TrustedKeyset,
    pem: &str,
) -> DomainResult<()> {
    let key = SigningKey::from_pem(pem)
        .map_err(|e| DomainError::invalid(format!("the license-signing key is not usable: {e}")))?;
    let kid = key.public_key().derive_kid("lic");
    let entry = trusted.license_key(&kid).ok_or_else(|| {
        DomainError::invalid(format!(
            "the license-signing key {kid} is not in the keyset: send the keyset that lists it"
        ))
    })?;
    store_key(
        &mut *conn,
        master,
        vendor_id,
        "license",
        entry,
        Some(&key),
        trusted.keyset().seq,
    )
    .await?;
    Ok(())
}

/// Refuses a vendor-held keyset that changes the root customers pin, or does not come after the
/// one the portal has.
async fn check_successor(
    conn: &mut AnyConnection,
    vendor_id: &str,
    custody: &str,
    keyset: &Keyset,
) -> DomainResult<()> {
    let current = current_keyset(&mut *conn, vendor_id).await.ok();
    if let Some((current, _)) = &current {
        if custody == CUSTODY_VENDOR && current.root != keyset.root {
            return Err(DomainError::conflict(format!(
                "the keyset is signed by root {}, but this vendor's root is {}: customers pin the root, so it cannot change",
                keyset.root.fingerprint(),
                current.root.fingerprint()
            )));
        }
        if custody == CUSTODY_VENDOR && keyset.seq <= current.seq {
            return Err(DomainError::conflict(format!(
                "the keyset has seq {} but the portal already has seq {}: rotate (`keys rotate --keys DIR`) to make a newer one",
                keyset.seq, current.seq
            )));
        }
    }
    Ok(())
}

/// Forgets the private keys a new vendor-held keyset no longer lists (retired), and the
/// portal-held root and release keys: from now on they live only with the vendor.
async fn forget_unlisted(
    conn: &mut AnyConnection,
    vendor_id: &str,
    listed: &[&str],
) -> DomainResult<()> {
    let rows = sqlx::query(
        "SELECT kid, role FROM vendor_keys WHERE vendor_id = $1 AND sealed_private IS NOT NULL",
    )
    .bind(vendor_id)
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let kid: String = row.try_get("kid")?;
        let role: String = row.try_get("role")?;
        if role != "license" || !listed.contains(&kid.as_str()) {
            sqlx::query(
                "UPDATE vendor_keys SET sealed_private = NULL WHERE vendor_id = $1 AND kid = $2",
            )
            .bind(vendor_id)
            .bind(&kid)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// The error for a license that would outlive its signing key.
pub fn key_expires_first(kid: &str, until: i64, not_after: i64) -> DomainError {
    DomainError::invalid(format!(
        "the license would expire at {} but signing key {kid} expires at {}: rotate keys (`vendor-portal keys rotate`) or choose an earlier expiry",
        unix(until),
        unix(not_after)
    ))
}

/// The private key of `role` to sign with now: for licenses, the newest key valid now (and, when
/// `until` is given, still valid then) that the portal holds.
pub async fn private_key(
    conn: &mut AnyConnection,
    master: &MasterKey,
    vendor_id: &str,
    role: &str,
    until: Option<i64>,
) -> DomainResult<(String, std::sync::Arc<SigningKey>)> {
    let now = now();
    let row = sqlx::query(
        "SELECT kid, sealed_private, not_after FROM vendor_keys \
         WHERE vendor_id = $1 AND role = $2 AND sealed_private IS NOT NULL AND not_before <= $3 AND not_after > $3 \
         ORDER BY generation DESC, not_before DESC, kid LIMIT 1",
    )
    .bind(vendor_id)
    .bind(role)
    .bind(now + license::verify::DEFAULT_LEEWAY as i64)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| DomainError::conflict(format!("the portal holds no {role} key valid now: rotate or register keys")))?;
    let kid: String = row.try_get("kid")?;
    let not_after: i64 = row.try_get("not_after")?;
    if let Some(until) = until
        && until > not_after
    {
        return Err(key_expires_first(&kid, until, not_after));
    }
    let sealed: String = row.try_get("sealed_private")?;
    let key = master.open_signing_key(&seal_context(vendor_id, &kid), &sealed)?;
    Ok((kid, key))
}

/// One key the portal knows.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyInfo {
    /// Key id.
    pub kid: String,
    /// `root`, `license` or `release`.
    pub role: String,
    /// Whether the portal holds the private half (sealed under its master key).
    pub held_by_portal: bool,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
}

/// The vendor's keys.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeysInfo {
    /// `portal` or `vendor`.
    pub custody: String,
    /// The root key's fingerprint, which customers pin.
    pub root_fingerprint: String,
    /// The current keyset's seq.
    pub keyset_seq: u64,
    /// The keys.
    pub keys: Vec<KeyInfo>,
}

/// Who holds the vendor's root and release keys: [`CUSTODY_PORTAL`] or the vendor.
pub async fn custody(conn: &mut AnyConnection, vendor_id: &str) -> DomainResult<String> {
    Ok(sqlx::query("SELECT key_custody FROM vendors WHERE id = $1")
        .bind(vendor_id)
        .fetch_one(conn)
        .await?
        .try_get("key_custody")?)
}

async fn keys_info(conn: &mut AnyConnection, vendor_id: &str) -> DomainResult<KeysInfo> {
    let custody = custody(&mut *conn, vendor_id).await?;
    let (keyset, _) = current_keyset(&mut *conn, vendor_id).await?;
    let rows = sqlx::query(
        "SELECT kid, role, CAST(CASE WHEN sealed_private IS NULL THEN 0 ELSE 1 END AS BIGINT) AS held, not_before, not_after FROM vendor_keys \
         WHERE vendor_id = $1 ORDER BY role, not_before, kid",
    )
    .bind(vendor_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut keys = Vec::new();
    for row in rows {
        let held = row.try_get::<i64, _>("held")? != 0;
        keys.push(KeyInfo {
            kid: row.try_get("kid")?,
            role: row.try_get("role")?,
            held_by_portal: held,
            not_before: row.try_get("not_before")?,
            not_after: row.try_get("not_after")?,
        });
    }
    Ok(KeysInfo {
        custody,
        root_fingerprint: keyset.root.fingerprint(),
        keyset_seq: keyset.seq,
        keys,
    })
}

/// Shows the vendor's keys.
pub async fn show(state: &AppState, caller: &Caller) -> DomainResult<KeysInfo> {
    let mut conn = state.db.pool.acquire().await?;
    keys_info(&mut conn, &caller.vendor_id).await
}

/// What `keys register` sends.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeysRegister {
    /// The keyset file's exact text, signed by the vendor's root key.
    pub keyset: String,
    /// The license-signing key (PKCS#8 PEM) the portal should sign with; omit it to upload only
    /// a keyset that lists a key the portal already holds.
    #[serde(default)]
    pub license_signing_key: Option<String>,
}

/// Registers the vendor's own keyset (and license-signing key). After this the portal holds no
/// root or release key.
pub async fn register(
    state: &AppState,
    caller: &Caller,
    idem: Option<&IdempotencyContext>,
    body: KeysRegister,
) -> DomainResult<KeysInfo> {
    caller.require(Role::Owner)?;
    if body.keyset.len() > license::keyset::MAX_KEYSET_LEN {
        return Err(DomainError::invalid("the keyset is over the size limit"));
    }
    let mut tx = VendorTx::begin(state, &caller.vendor_id).await?;
    let custody = custody(tx.conn(), &caller.vendor_id).await?;
    let keyset: Keyset = register_keyset(
        tx.conn(),
        &state.master,
        &caller.vendor_id,
        &caller.vendor_slug,
        &custody,
        Registration {
            keyset: &body.keyset,
            license_signing_key: body.license_signing_key.as_deref(),
        },
    )
    .await?;
    tx.audit(
        caller,
        "keys.register",
        &keyset.root.fingerprint(),
        serde_json::json!({"keyset_seq": keyset.seq, "license_keys": keyset.license_keys.iter().map(|k| &k.kid).collect::<Vec<_>>(), "with_license_key": body.license_signing_key.is_some()}),
    )
    .await?;
    let info = keys_info(tx.conn(), &caller.vendor_id).await?;
    tx.commit_answer(idem, 200, &info).await?;
    let response = info;
    // Licenses must now be signed with the new key.
    state.catalog.clear();
    Ok(response)
}

/// Rotates the license-signing key (portal custody only: with registered keys, rotate on the
/// vendor's machine and register again).
pub async fn rotate(
    state: &AppState,
    caller: &Caller,
    idem: Option<&IdempotencyContext>,
) -> DomainResult<KeysInfo> {
    caller.require(Role::Owner)?;
    let mut tx = VendorTx::begin(state, &caller.vendor_id).await?;
    let custody = custody(tx.conn(), &caller.vendor_id).await?;
    let keyset = rotate_keys(tx.conn(), &state.master, &caller.vendor_id, &custody).await?;
    let new_kid = keyset
        .license_keys
        .last()
        .map(|k| k.kid.clone())
        .unwrap_or_default();
    tx.audit(
        caller,
        "keys.rotate",
        &new_kid,
        serde_json::json!({"keyset_seq": keyset.seq}),
    )
    .await?;
    let info = keys_info(tx.conn(), &caller.vendor_id).await?;
    tx.commit_answer(idem, 200, &info).await?;
    let response = info;
    // Licenses must now be signed with the new key.
    state.catalog.clear();
    Ok(response)
}

/// The vendor's current public keyset, exactly as signed (what `license-agent verify --trust`
/// and `installer login` read).
pub async fn public_keyset(state: &AppState, vendor: String) -> DomainResult<String> {
    let row = sqlx::query(
        "SELECT k.document FROM keysets k JOIN vendors v ON v.id = k.vendor_id WHERE v.slug = $1 ORDER BY k.seq DESC LIMIT 1",
    )
    .bind(&vendor)
    .fetch_optional(&state.db.pool)
    .await?
    .ok_or_else(|| DomainError::not_found("vendor keyset", &vendor))?;
    let document: String = row.try_get("document")?;
    Ok(document)
}
