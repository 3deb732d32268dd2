//! Who is calling: a vendor API token (`Authorization: Bearer cns_...`) or a browser session
//! cookie, resolved to a vendor, a member and a role. Failed attempts are counted per source
//! address and answered with 429 once there are too many.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use sqlx::Row as _;

use crate::server::base::now;
use crate::server::base::secrets::{SESSION_PREFIX, TOKEN_PREFIX, secret_hash};
pub use crate::server::domain::access::{Caller, RequestMeta, Role};
use crate::server::domain::error::{DomainError, DomainResult};
use crate::server::domain::ratelimit;
use crate::server::state::AppState;

/// The session cookie's name. `__Host-`: the browser keeps it only when it is Secure, for the
/// whole site and for this host alone, so a sibling subdomain cannot set or shadow it.
pub const SESSION_COOKIE: &str = "__Host-consign_session";

/// The bearer token or session id a request carries, if any.
pub fn credential(parts: &Parts) -> Option<String> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let text = value.to_str().ok()?;
        let token = text
            .strip_prefix("Bearer ")
            .or_else(|| text.strip_prefix("bearer "))?;
        return Some(token.trim().to_owned());
    }
    session_cookie(parts)
}

/// Whether the request's `Origin` is this site (its `Host`); `None` when it sends no `Origin`.
pub fn origin_matches_host(headers: &axum::http::HeaderMap) -> Option<bool> {
    let origin = headers.get(header::ORIGIN)?.to_str().ok()?;
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    Some(
        origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host)),
    )
}

/// A browser session may change things through the API only from the portal's own pages: a
/// state-changing API request authenticated by the session cookie must carry this site's
/// `Origin` (browsers always send it on such requests). API clients use tokens instead.
fn check_session_origin(parts: &Parts) -> DomainResult<()> {
    let safe = matches!(
        parts.method,
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    if safe || !parts.uri.path().starts_with("/api/") || session_cookie(parts).is_none() {
        return Ok(());
    }
    if parts.headers.contains_key(header::AUTHORIZATION) {
        return Ok(());
    }
    match origin_matches_host(&parts.headers) {
        Some(true) => Ok(()),
        _ => Err(DomainError::forbidden(
            "a browser session changes things only from this portal's own pages (the request's Origin must be this site): from other clients, use an API token (Authorization: Bearer cns_...)",
        )),
    }
}

fn session_cookie(parts: &Parts) -> Option<String> {
    session_secret(&parts.headers)
}

/// The session secret in a request's cookies, if any.
pub fn session_secret(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// The `Set-Cookie` value that opens a session: HttpOnly, Secure, SameSite=Strict, for the
/// session's lifetime.
pub fn set_session_cookie(secret: &str) -> String {
    format!(
        "{SESSION_COOKIE}={secret}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        crate::server::domain::sessions::SESSION_SECONDS
    )
}

/// The `Set-Cookie` value that ends a session.
pub fn clear_session_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0")
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = DomainError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> DomainResult<Self> {
        let meta = RequestMeta::from_parts(parts);
        check_session_origin(parts)?;
        let Some(secret) = credential(parts) else {
            return Err(DomainError::unauthorized(
                "this needs a vendor API token: pass --token or set PORTAL_TOKEN (Authorization: Bearer cns_...)",
            ));
        };
        match resolve(state, &secret, meta.clone()).await? {
            Some(caller) => Ok(caller),
            None => {
                let _turn = state.write_turn().await;
                ratelimit::hit(
                    &state.db.pool,
                    &format!("auth-fail:{}", meta.ip),
                    60,
                    state.limits.auth_failures_per_minute,
                    "failed authentications from this address",
                )
                .await?;
                Err(DomainError::unauthorized(
                    "the token or session is not valid (unknown, revoked or expired): create a new token with `vendor-portal token create`",
                ))
            }
        }
    }
}

/// A credential resolved to who it is (cached for a second; see `TtlCache`).
#[derive(Clone, Debug)]
pub struct Resolved {
    vendor_id: String,
    vendor_slug: String,
    member_id: String,
    email: String,
    role: Role,
    token_id: Option<String>,
    expires_at: Option<i64>,
}

impl Resolved {
    fn caller(self, meta: RequestMeta) -> Caller {
        Caller {
            vendor_id: self.vendor_id,
            vendor_slug: self.vendor_slug,
            member_id: self.member_id,
            email: self.email,
            role: self.role,
            token_id: self.token_id,
            meta,
        }
    }
}

async fn resolve(
    state: &AppState,
    secret: &str,
    meta: RequestMeta,
) -> DomainResult<Option<Caller>> {
    let hash = secret_hash(secret);
    if let Some(hit) = state.credentials.get(&hash)
        && hit.expires_at.is_none_or(|e| e > now())
    {
        return Ok(Some(hit.caller(meta)));
    }
    let Some(resolved) = resolve_in_database(state, secret, &hash).await? else {
        return Ok(None);
    };
    state.credentials.put(hash, resolved.clone());
    Ok(Some(resolved.caller(meta)))
}

async fn resolve_in_database(
    state: &AppState,
    secret: &str,
    hash: &str,
) -> DomainResult<Option<Resolved>> {
    let now = now();
    if secret.starts_with(TOKEN_PREFIX) {
        let row = sqlx::query(
            "SELECT t.id, t.vendor_id, t.member_id, t.expires_at, t.last_used_at, t.revoked_at, \
                    m.email, m.role, v.slug \
             FROM api_tokens t JOIN members m ON m.id = t.member_id JOIN vendors v ON v.id = t.vendor_id \
             WHERE t.token_hash = $1 AND m.disabled_at IS NULL",
        )
        .bind(hash)
        .fetch_optional(&state.db.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let revoked: Option<i64> = row.try_get("revoked_at")?;
        let expires: Option<i64> = row.try_get("expires_at")?;
        if revoked.is_some() || expires.is_some_and(|e| e <= now) {
            return Ok(None);
        }
        let token_id: String = row.try_get("id")?;
        // Recording use costs a write; once a minute per token is enough to show it is in use
        // and keeps authentication read-only on the hot path.
        let last_used: Option<i64> = row.try_get("last_used_at")?;
        if last_used.is_none_or(|t| t < now - 60) {
            let _turn = state.write_turn().await;
            sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
                .bind(&token_id)
                .bind(now)
                .execute(&state.db.pool)
                .await?;
        }
        return Ok(Some(resolved_from(&row, Some(token_id), expires)?));
    }
    if secret.starts_with(SESSION_PREFIX) {
        let row = sqlx::query(
            "SELECT s.vendor_id, s.member_id, s.expires_at, m.email, m.role, v.slug \
             FROM sessions s JOIN members m ON m.id = s.member_id JOIN vendors v ON v.id = s.vendor_id \
             WHERE s.id_hash = $1 AND m.disabled_at IS NULL",
        )
        .bind(hash)
        .fetch_optional(&state.db.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let expires: i64 = row.try_get("expires_at")?;
        if expires <= now {
            return Ok(None);
        }
        return Ok(Some(resolved_from(&row, None, Some(expires))?));
    }
    Ok(None)
}

fn resolved_from(
    row: &sqlx::any::AnyRow,
    token_id: Option<String>,
    expires_at: Option<i64>,
) -> DomainResult<Resolved> {
    let role: String = row.try_get("role")?;
    Ok(Resolved {
        vendor_id: row.try_get("vendor_id")?,
        vendor_slug: row.try_get("slug")?,
        member_id: row.try_get("member_id")?,
        email: row.try_get("email")?,
        role: Role::parse(&role)
            .ok_or_else(|| DomainError::internal(format!("member has unknown role {role:?}")))?,
        token_id,
        expires_at,
    })
}
