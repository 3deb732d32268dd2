//! The vendor's keys on the portal: what it holds, registering the vendor's own keyset, rotating
//! portal-held keys, and the public keyset that verifiers fetch.

use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use license::Keyset;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row as _};
use utoipa::ToSchema;

use crate::server::domain;
use crate::server::domain::error::{DomainError, DomainResult};
use crate::server::domain::keys::Registration;
use crate::server::domain::tx::VendorTx;
use crate::server::http::auth::{Caller, Role};
use crate::server::http::extract::{ApiJson, ApiPath};
use crate::server::http::idempotency::IdempotencyContext;
use crate::server::http::reply::CommitReply as _;
use crate::server::http::reply::json_response;
use crate::server::state::AppState;

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

async fn keys_info(conn: &mut AnyConnection, vendor_id: &str) -> DomainResult<KeysInfo> {
    let custody: String = sqlx::query("SELECT key_custody FROM vendors WHERE id = $1")
        .bind(vendor_id)
        .fetch_one(&mut *conn)
        .await?
        .try_get("key_custody")?;
    let (keyset, _) = domain::keys::current_keyset(&mut *conn, vendor_id).await?;
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
#[utoipa::path(get, path = "/api/v1/keys", tag = "keys", security(("token" = [])), responses((status = 200, body = KeysInfo)))]
pub async fn show(State(state): State<AppState>, caller: Caller) -> DomainResult<Response> {
    let mut conn = state.db.pool.acquire().await?;
    Ok(json_response(
        StatusCode::OK,
        keys_info(&mut conn, &caller.vendor_id).await?,
    ))
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
#[utoipa::path(post, path = "/api/v1/keys/register", tag = "keys", security(("token" = [])), request_body = KeysRegister, responses(
    (status = 200, body = KeysInfo), (status = 409, body = crate::server::http::problem::Problem), (status = 422, body = crate::server::http::problem::Problem)))]
pub async fn register(
    State(state): State<AppState>,
    caller: Caller,
    idem: Option<Extension<IdempotencyContext>>,
    ApiJson(body): ApiJson<KeysRegister>,
) -> DomainResult<Response> {
    caller.require(Role::Owner)?;
    if body.keyset.len() > license::keyset::MAX_KEYSET_LEN {
        return Err(DomainError::invalid("the keyset is over the size limit"));
    }
    let mut tx = VendorTx::begin(&state, &caller.vendor_id).await?;
    let custody: String = sqlx::query("SELECT key_custody FROM vendors WHERE id = $1")
        .bind(&caller.vendor_id)
        .fetch_one(tx.conn())
        .await?
        .try_get("key_custody")?;
    let keyset: Keyset = domain::keys::register(
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
        &caller,
        "keys.register",
        &keyset.root.fingerprint(),
        serde_json::json!({"keyset_seq": keyset.seq, "license_keys": keyset.license_keys.iter().map(|k| &k.kid).collect::<Vec<_>>(), "with_license_key": body.license_signing_key.is_some()}),
    )
    .await?;
    let info = keys_info(tx.conn(), &caller.vendor_id).await?;
    let response = tx.commit(idem.as_deref(), StatusCode::OK, &info).await?;
    // Licenses must now be signed with the new key.
    state.catalog.clear();
    Ok(response)
}

/// Rotates the license-signing key (portal custody only: with registered keys, rotate on the
/// vendor's machine and register again).
#[utoipa::path(post, path = "/api/v1/keys/rotate", tag = "keys", security(("token" = [])), responses(
    (status = 200, body = KeysInfo), (status = 409, body = crate::server::http::problem::Problem)))]
pub async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
    idem: Option<Extension<IdempotencyContext>>,
) -> DomainResult<Response> {
    caller.require(Role::Owner)?;
    let mut tx = VendorTx::begin(&state, &caller.vendor_id).await?;
    let custody: String = sqlx::query("SELECT key_custody FROM vendors WHERE id = $1")
        .bind(&caller.vendor_id)
        .fetch_one(tx.conn())
        .await?
        .try_get("key_custody")?;
    let keyset =
        domain::keys::rotate(tx.conn(), &state.master, &caller.vendor_id, &custody).await?;
    let new_kid = keyset
        .license_keys
        .last()
        .map(|k| k.kid.clone())
        .unwrap_or_default();
    tx.audit(
        &caller,
        "keys.rotate",
        &new_kid,
        serde_json::json!({"keyset_seq": keyset.seq}),
    )
    .await?;
    let info = keys_info(tx.conn(), &caller.vendor_id).await?;
    let response = tx.commit(idem.as_deref(), StatusCode::OK, &info).await?;
    // Licenses must now be signed with the new key.
    state.catalog.clear();
    Ok(response)
}

/// The vendor's current public keyset, exactly as signed (what `license-agent verify --trust`
/// and `installer login` read).
#[utoipa::path(get, path = "/api/v1/vendors/{vendor}/keyset", tag = "public",
    params(("vendor" = String, Path, description = "Vendor slug")),
    responses((status = 200, description = "The signed keyset", body = Object), (status = 404, body = crate::server::http::problem::Problem)))]
pub async fn public_keyset(
    State(state): State<AppState>,
    ApiPath(vendor): ApiPath<String>,
) -> DomainResult<Response> {
    let row = sqlx::query(
        "SELECT k.document FROM keysets k JOIN vendors v ON v.id = k.vendor_id WHERE v.slug = $1 ORDER BY k.seq DESC LIMIT 1",
    )
    .bind(&vendor)
    .fetch_optional(&state.db.pool)
    .await?
    .ok_or_else(|| DomainError::not_found("vendor keyset", &vendor))?;
    let document: String = row.try_get("document")?;
    Ok(([(header::CONTENT_TYPE, "application/json")], document).into_response())
}
