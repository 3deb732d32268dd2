//! The calling vendor, its members and its API tokens.

use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use utoipa::ToSchema;

use super::access::Caller;
use super::error::{DomainError, DomainResult};
use super::idempotency::IdempotencyContext;
use super::members::MemberInfo;
use super::tx::VendorTx;
use crate::server::base::now;
use crate::server::base::secrets::{TOKEN_PREFIX, new_id, new_secret, secret_hash};
use crate::server::state::AppState;

/// The calling vendor and member.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VendorInfo {
    /// The vendor's id.
    pub id: String,
    /// The vendor's slug.
    pub slug: String,
    /// The vendor's name.
    pub name: String,
    /// `portal` (the portal holds root and release keys) or `vendor` (registered own keys).
    pub key_custody: String,
    /// Unix seconds.
    pub created_at: i64,
    /// The caller.
    pub member: MemberInfo,
}

/// Who am I.
pub async fn show(state: &AppState, caller: &Caller) -> DomainResult<VendorInfo> {
    let row =
        sqlx::query("SELECT id, slug, name, key_custody, created_at FROM vendors WHERE id = $1")
            .bind(&caller.vendor_id)
            .fetch_one(&state.db.pool)
            .await?;
    Ok(VendorInfo {
        id: row.try_get("id")?,
        slug: row.try_get("slug")?,
        name: row.try_get("name")?,
        key_custody: row.try_get("key_custody")?,
        created_at: row.try_get("created_at")?,
        member: MemberInfo {
            id: caller.member_id.clone(),
            email: caller.email.clone(),
            role: caller.role,
            disabled: false,
        },
    })
}

/// A new API token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    /// What it is for ("ci", "laptop").
    pub name: String,
    /// Days until it expires; never by default.
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// An API token (never its secret, except once at creation).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    /// The token's id (not secret).
    pub id: String,
    /// What it is for.
    pub name: String,
    /// The first characters of the secret, to recognise it.
    pub hint: String,
    /// The member it acts as.
    pub member: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, if it expires.
    pub expires_at: Option<i64>,
    /// Unix seconds, to the minute.
    pub last_used_at: Option<i64>,
    /// Unix seconds, if revoked.
    pub revoked_at: Option<i64>,
}

/// A token just created.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    /// The token.
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The secret, shown only now.
    pub token: String,
}

/// Inserts a token for `member_id` and returns its secret.
pub async fn insert_token(
    conn: &mut sqlx::AnyConnection,
    vendor_id: &str,
    member_id: &str,
    name: &str,
    expires_at: Option<i64>,
) -> DomainResult<TokenCreated> {
    let secret = new_secret(TOKEN_PREFIX)?;
    let id = new_id("tok")?;
    let hint: String = secret.chars().take(TOKEN_PREFIX.len() + 6).collect();
    let created_at = now();
    sqlx::query(
        "INSERT INTO api_tokens (id, vendor_id, member_id, name, token_hash, hint, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(vendor_id)
    .bind(member_id)
    .bind(name)
    .bind(secret_hash(&secret))
    .bind(&hint)
    .bind(created_at)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(TokenCreated {
        info: TokenInfo {
            id,
            name: name.to_owned(),
            hint,
            member: member_id.to_owned(),
            created_at,
            expires_at,
            last_used_at: None,
            revoked_at: None,
        },
        token: secret.to_string(),
    })
}

/// Creates an API token acting as the caller.
pub async fn create_token(
    state: &AppState,
    caller: &Caller,
    idem: Option<&IdempotencyContext>,
    body: TokenCreate,
) -> DomainResult<TokenCreated> {
    let name = body.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(DomainError::invalid("a token name is 1 to 100 characters"));
    }
    let expires_at = body.expires_in_days.map(|d| now() + i64::from(d) * 86_400);
    let mut tx = VendorTx::begin(state, &caller.vendor_id).await?;
    let created = insert_token(
        tx.conn(),
        &caller.vendor_id,
        &caller.member_id,
        name,
        expires_at,
    )
    .await?;
    tx.audit(
        caller,
        "token.create",
        &created.info.id,
        serde_json::json!({"name": name, "expires_at": expires_at}),
    )
    .await?;
    let stored = TokenCreated {
        info: created.info.clone(),
        token: REDACTED.to_owned(),
    };
    tx.commit_answer(idem, 201, &stored).await?;
    Ok(created)
}

/// What an `Idempotency-Key` replay of a new token says in place of the secret, which is
/// shown once and never stored.
pub const REDACTED: &str =
    "(shown once, to the first request: create another token if it was lost)";

fn token_from(row: &sqlx::any::AnyRow) -> DomainResult<TokenInfo> {
    Ok(TokenInfo {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        hint: row.try_get("hint")?,
        member: row.try_get("member_id")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

/// Lists tokens: owners see the vendor's, others their own.
pub async fn list_tokens(state: &AppState, caller: &Caller) -> DomainResult<Vec<TokenInfo>> {
    let rows = sqlx::query(
        "SELECT id, name, hint, member_id, created_at, expires_at, last_used_at, revoked_at FROM api_tokens \
         WHERE vendor_id = $1 AND ($2 = 'owner' OR member_id = $3) ORDER BY created_at, id",
    )
    .bind(&caller.vendor_id)
    .bind(caller.role.as_str())
    .bind(&caller.member_id)
    .fetch_all(&state.db.pool)
    .await?;
    let tokens = rows
        .iter()
        .map(token_from)
        .collect::<DomainResult<Vec<_>>>()?;
    Ok(tokens)
}

/// Revokes a token at once (owners any, others their own).
pub async fn revoke_token(
    state: &AppState,
    caller: &Caller,
    idem: Option<&IdempotencyContext>,
    id: String,
) -> DomainResult<TokenInfo> {
    let mut tx = VendorTx::begin(state, &caller.vendor_id).await?;
    let row = sqlx::query(
        "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $4) \
         WHERE id = $1 AND vendor_id = $2 AND ($3 = 'owner' OR member_id = $5) \
         RETURNING id, name, hint, member_id, created_at, expires_at, last_used_at, revoked_at",
    )
    .bind(&id)
    .bind(&caller.vendor_id)
    .bind(caller.role.as_str())
    .bind(now())
    .bind(&caller.member_id)
    .fetch_optional(tx.conn())
    .await?
    .ok_or_else(|| DomainError::not_found("token", &id))?;
    let info = token_from(&row)?;
    tx.audit(
        caller,
        "token.revoke",
        &id,
        serde_json::json!({"name": info.name}),
    )
    .await?;
    tx.commit_answer(idem, 200, &info).await?;
    let response = info;
    state.credentials.clear();
    Ok(response)
}
