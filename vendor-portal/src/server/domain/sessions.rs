//! Browser sessions of vendor members: logging in (rate-limited per address, constant-time in
//! whether the member exists) and out. The cookie is the web layer's.

use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use utoipa::ToSchema;
use zeroize::Zeroizing;

use super::access::{RequestMeta, Role};
use super::error::{DomainError, DomainResult};
use super::members::MemberInfo;
use super::ratelimit;
use crate::server::base::now;
use crate::server::base::secrets::{
    SESSION_PREFIX, hash_password, new_password, new_secret, secret_hash, verify_password,
};
use crate::server::state::AppState;

/// Sessions last a working day.
pub const SESSION_SECONDS: i64 = 12 * 3600;

/// A login.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The vendor's slug.
    pub vendor: String,
    /// The member's email.
    pub email: String,
    /// The member's password.
    pub password: String,
}

/// The session a login opened.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionInfo {
    /// The vendor's slug.
    pub vendor: String,
    /// The member.
    pub member: MemberInfo,
    /// Unix seconds.
    pub expires_at: i64,
}

/// An argon2id hash of a random password, checked against when the member does not exist.
fn dummy_hash() -> DomainResult<String> {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(hash) = DUMMY.get() {
        return Ok(hash.clone());
    }
    let hash = hash_password(&new_password()?)?;
    Ok(DUMMY.get_or_init(|| hash).clone())
}

/// Opens a session for `body`'s member; returns it and its secret (the cookie's value).
pub async fn login(
    state: &AppState,
    meta: &RequestMeta,
    body: Login,
) -> DomainResult<(SessionInfo, Zeroizing<String>)> {
    let bucket = format!("login:{}", meta.ip);
    let limit = state.limits.logins_per_minute;
    let (hits, retry) = ratelimit::current(&state.db.pool, &bucket, 60).await?;
    if limit > 0 && hits >= limit {
        return Err(DomainError::rate_limited(
            format!("too many failed logins from this address; retry in {retry} s"),
            retry,
        ));
    }
    super::sso::refuse_password_if_required(state, &body.vendor).await?;
    let row = sqlx::query(
        "SELECT m.id, m.vendor_id, m.role, m.password_hash, m.disabled_at FROM members m \
         JOIN vendors v ON v.id = m.vendor_id WHERE v.slug = $1 AND m.email = $2",
    )
    .bind(&body.vendor)
    .bind(&body.email)
    .fetch_optional(&state.db.pool)
    .await?;
    let stored: Option<String> = row
        .as_ref()
        .map(|r| r.try_get("password_hash"))
        .transpose()?
        .flatten();
    // Without a stored hash, check against a fixed one anyway so that timing does not reveal
    // which emails are members.
    let hash = match stored {
        Some(hash) => hash,
        None => dummy_hash()?,
    };
    let password = Zeroizing::new(body.password);
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(DomainError::internal)?;
    let (Some(row), true) = (row, ok) else {
        count_failure(state, &bucket).await?;
        return Err(DomainError::unauthorized(
            "the vendor, email or password is wrong",
        ));
    };
    if row.try_get::<Option<i64>, _>("disabled_at")?.is_some() {
        return Err(DomainError::forbidden(format!(
            "{} is disabled on {}: ask an owner to enable the account",
            body.email, body.vendor
        )));
    }
    let vendor_id: String = row.try_get("vendor_id")?;
    let role: String = row.try_get("role")?;
    let member = MemberInfo {
        id: row.try_get("id")?,
        email: body.email,
        role: Role::parse(&role).unwrap_or(Role::Support),
        disabled: false,
    };
    open(state, &vendor_id, body.vendor, member).await
}

/// Opens a session for `member` of `vendor_id` (`vendor` is its slug); it and its secret.
pub async fn open(
    state: &AppState,
    vendor_id: &str,
    vendor: String,
    member: MemberInfo,
) -> DomainResult<(SessionInfo, Zeroizing<String>)> {
    let secret = new_secret(SESSION_PREFIX)?;
    let expires_at = now() + SESSION_SECONDS;
    let turn = state.write_turn().await;
    sqlx::query("INSERT INTO sessions (id_hash, vendor_id, member_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(secret_hash(&secret))
        .bind(vendor_id)
        .bind(&member.id)
        .bind(now())
        .bind(expires_at)
        .execute(&state.db.pool)
        .await?;
    drop(turn);
    let info = SessionInfo {
        vendor,
        member,
        expires_at,
    };
    Ok((info, secret))
}

/// Ends the session whose secret is `secret`.
pub async fn logout(state: &AppState, secret: &str) -> DomainResult<()> {
    sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
        .bind(secret_hash(secret))
        .execute(&state.db.pool)
        .await?;
    state.credentials.forget(&secret_hash(secret));
    Ok(())
}

/// Counts a failed login against the address's budget.
pub async fn count_failure(state: &AppState, bucket: &str) -> DomainResult<()> {
    let _turn = state.write_turn().await;
    sqlx::query(
        "INSERT INTO rate_limits (bucket, window_start, hits) VALUES ($1, $2, 1) \
         ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limits.hits + 1",
    )
    .bind(bucket)
    .bind(now() - now().rem_euclid(60))
    .execute(&state.db.pool)
    .await?;
    Ok(())
}
