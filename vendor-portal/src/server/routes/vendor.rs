//! The calling vendor, its members, its API tokens and browser sessions.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use utoipa::ToSchema;

use crate::server::base::db::is_unique_violation;
use crate::server::base::now;
use crate::server::base::secrets::{
    SESSION_PREFIX, TOKEN_PREFIX, hash_password, new_id, new_password, new_secret, secret_hash,
    verify_password,
};
use crate::server::domain::error::{DomainError, DomainResult};
use crate::server::domain::ratelimit;
use crate::server::domain::tx::VendorTx;
use crate::server::http::auth::{Caller, Role, SESSION_COOKIE};
use crate::server::http::extract::{ApiJson, ApiPath, RequestMeta};
use crate::server::http::idempotency::IdempotencyContext;
use crate::server::http::reply::CommitReply as _;
use crate::server::http::reply::json_response;
use crate::server::state::AppState;

/// Sessions last a working day.
const SESSION_SECONDS: i64 = 12 * 3600;

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

/// A member of a vendor.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct MemberInfo {
    /// The member's id.
    pub id: String,
    /// The member's email.
    pub email: String,
    /// The member's role.
    pub role: Role,
    /// Whether an owner disabled the member.
    #[serde(default)]
    pub disabled: bool,
}

/// Who am I.
#[utoipa::path(get, path = "/api/v1/vendor", tag = "vendor", security(("token" = [])), responses(
    (status = 200, body = VendorInfo), (status = 401, body = crate::server::http::problem::Problem)))]
pub async fn show(State(state): State<AppState>, caller: Caller) -> DomainResult<Response> {
    let row =
        sqlx::query("SELECT id, slug, name, key_custody, created_at FROM vendors WHERE id = $1")
            .bind(&caller.vendor_id)
            .fetch_one(&state.db.pool)
            .await?;
    Ok(json_response(
        StatusCode::OK,
        VendorInfo {
            id: row.try_get("id")?,
            slug: row.try_get("slug")?,
            name: row.try_get("name")?,
            key_custody: row.try_get("key_custody")?,
            created_at: row.try_get("created_at")?,
            member: MemberInfo {
                id: caller.member_id,
                email: caller.email,
                role: caller.role,
                disabled: false,
            },
        },
    ))
}

/// A new member.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberCreate {
    /// Their email, unique within the vendor.
    pub email: String,
    /// Their role.
    pub role: Role,
    /// Their password (at least 12 characters); one is generated and shown once if omitted.
    #[serde(default)]
    pub password: Option<String>,
}

/// A member just created.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MemberCreated {
    /// The member.
    #[serde(flatten)]
    pub member: MemberInfo,
    /// The generated password, shown only now; absent when one was given.
    pub password: Option<String>,
}

fn valid_email(email: &str) -> bool {
    email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        })
}

/// The password a member is given: `given` when it is long enough, else a generated one.
pub fn chosen_password(given: Option<String>) -> DomainResult<zeroize::Zeroizing<String>> {
    match given {
        Some(p) if p.chars().count() < 12 => Err(DomainError::invalid(
            "passwords must be at least 12 characters",
        )),
        Some(p) => Ok(zeroize::Zeroizing::new(p)),
        None => Ok(new_password()?),
    }
}

/// Adds a member (owners only).
#[utoipa::path(post, path = "/api/v1/members", tag = "vendor", security(("token" = [])), request_body = MemberCreate, responses(
    (status = 201, body = MemberCreated), (status = 403, body = crate::server::http::problem::Problem), (status = 409, body = crate::server::http::problem::Problem)))]
pub async fn add_member(
    State(state): State<AppState>,
    caller: Caller,
    idem: Option<Extension<IdempotencyContext>>,
    ApiJson(body): ApiJson<MemberCreate>,
) -> DomainResult<Response> {
    caller.require(Role::Owner)?;
    if !valid_email(&body.email) {
        return Err(DomainError::invalid(format!(
            "{:?} is not an email address",
            body.email
        )));
    }
    let generated = body.password.is_none();
    let password = chosen_password(body.password)?;
    let hash = hash_in_background(password.to_string()).await?;
    let id = new_id("mem")?;
    let mut tx = VendorTx::begin(&state, &caller.vendor_id).await?;
    let inserted = sqlx::query(
        "INSERT INTO members (id, vendor_id, email, role, password_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(&caller.vendor_id)
    .bind(&body.email)
    .bind(body.role.as_str())
    .bind(&hash)
    .bind(now())
    .execute(tx.conn())
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => {
            return Err(DomainError::conflict(format!(
                "{} is already a member",
                body.email
            )));
        }
        other => other?,
    };
    tx.audit(
        &caller,
        "member.add",
        &id,
        serde_json::json!({"email": body.email, "role": body.role}),
    )
    .await?;
    let created = MemberCreated {
        member: MemberInfo {
            id,
            email: body.email,
            role: body.role,
            disabled: false,
        },
        password: generated.then(|| password.to_string()),
    };
    let stored = MemberCreated {
        member: created.member.clone(),
        password: None,
    };
    tx.commit_redacted(idem.as_deref(), StatusCode::CREATED, &created, &stored)
        .await
}

/// Hashes a password off the async threads (argon2 takes tens of milliseconds on purpose).
pub async fn hash_in_background(password: String) -> DomainResult<String> {
    let password = zeroize::Zeroizing::new(password);
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(DomainError::internal)?
        .map_err(DomainError::from)
}

/// Lists the vendor's members.
#[utoipa::path(get, path = "/api/v1/members", tag = "vendor", security(("token" = [])), responses((status = 200, body = Vec<MemberInfo>)))]
pub async fn list_members(State(state): State<AppState>, caller: Caller) -> DomainResult<Response> {
    let out = members_of(&state, &caller.vendor_id).await?;
    Ok(json_response(StatusCode::OK, out))
}

/// The vendor's members, oldest first.
pub async fn members_of(state: &AppState, vendor_id: &str) -> DomainResult<Vec<MemberInfo>> {
    let rows = sqlx::query(
        "SELECT id, email, role, disabled_at FROM members WHERE vendor_id = $1 ORDER BY created_at, email",
    )
    .bind(vendor_id)
    .fetch_all(&state.db.pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let role: String = row.try_get("role")?;
        out.push(MemberInfo {
            id: row.try_get("id")?,
            email: row.try_get("email")?,
            role: Role::parse(&role).unwrap_or(Role::Support),
            disabled: row.try_get::<Option<i64>, _>("disabled_at")?.is_some(),
        });
    }
    Ok(out)
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
#[utoipa::path(post, path = "/api/v1/tokens", tag = "vendor", security(("token" = [])), request_body = TokenCreate, responses(
    (status = 201, body = TokenCreated)))]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    idem: Option<Extension<IdempotencyContext>>,
    ApiJson(body): ApiJson<TokenCreate>,
) -> DomainResult<Response> {
    let name = body.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(DomainError::invalid("a token name is 1 to 100 characters"));
    }
    let expires_at = body.expires_in_days.map(|d| now() + i64::from(d) * 86_400);
    let mut tx = VendorTx::begin(&state, &caller.vendor_id).await?;
    let created = insert_token(
        tx.conn(),
        &caller.vendor_id,
        &caller.member_id,
        name,
        expires_at,
    )
    .await?;
    tx.audit(
        &caller,
        "token.create",
        &created.info.id,
        serde_json::json!({"name": name, "expires_at": expires_at}),
    )
    .await?;
    let stored = TokenCreated {
        info: created.info.clone(),
        token: REDACTED.to_owned(),
    };
    tx.commit_redacted(idem.as_deref(), StatusCode::CREATED, &created, &stored)
        .await
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
#[utoipa::path(get, path = "/api/v1/tokens", tag = "vendor", security(("token" = [])), responses((status = 200, body = Vec<TokenInfo>)))]
pub async fn list_tokens(State(state): State<AppState>, caller: Caller) -> DomainResult<Response> {
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
    Ok(json_response(StatusCode::OK, tokens))
}

/// Revokes a token at once (owners any, others their own).
#[utoipa::path(post, path = "/api/v1/tokens/{id}/revoke", tag = "vendor", security(("token" = [])),
    params(("id" = String, Path, description = "Token id")), responses((status = 200, body = TokenInfo), (status = 404, body = crate::server::http::problem::Problem)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    idem: Option<Extension<IdempotencyContext>>,
    ApiPath(id): ApiPath<String>,
) -> DomainResult<Response> {
    let mut tx = VendorTx::begin(&state, &caller.vendor_id).await?;
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
        &caller,
        "token.revoke",
        &id,
        serde_json::json!({"name": info.name}),
    )
    .await?;
    let response = tx.commit(idem.as_deref(), StatusCode::OK, &info).await?;
    state.credentials.clear();
    Ok(response)
}

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

/// Opens a browser session (sets an HttpOnly, SameSite=Strict cookie).
#[utoipa::path(post, path = "/api/v1/session", tag = "vendor", request_body = Login, responses(
    (status = 200, body = SessionInfo), (status = 401, body = crate::server::http::problem::Problem), (status = 429, body = crate::server::http::problem::Problem)))]
pub async fn login(
    State(state): State<AppState>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<Login>,
) -> DomainResult<Response> {
    let bucket = format!("login:{}", meta.ip);
    let limit = state.limits.logins_per_minute;
    let (hits, retry) = ratelimit::current(&state.db.pool, &bucket, 60).await?;
    if limit > 0 && hits >= limit {
        return Err(DomainError::rate_limited(
            format!("too many failed logins from this address; retry in {retry} s"),
            retry,
        ));
    }
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
    let password = zeroize::Zeroizing::new(body.password);
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(DomainError::internal)?;
    let (Some(row), true) = (row, ok) else {
        let _turn = state.write_turn().await;
        sqlx::query(
            "INSERT INTO rate_limits (bucket, window_start, hits) VALUES ($1, $2, 1) \
             ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limits.hits + 1",
        )
        .bind(&bucket)
        .bind(now() - now().rem_euclid(60))
        .execute(&state.db.pool)
        .await?;
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
    let member_id: String = row.try_get("id")?;
    let role: String = row.try_get("role")?;
    let secret = new_secret(SESSION_PREFIX)?;
    let expires_at = now() + SESSION_SECONDS;
    let turn = state.write_turn().await;
    sqlx::query("INSERT INTO sessions (id_hash, vendor_id, member_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(secret_hash(&secret))
        .bind(&vendor_id)
        .bind(&member_id)
        .bind(now())
        .bind(expires_at)
        .execute(&state.db.pool)
        .await?;
    drop(turn);
    let info = SessionInfo {
        vendor: body.vendor,
        member: MemberInfo {
            id: member_id,
            email: body.email,
            role: Role::parse(&role).unwrap_or(Role::Support),
            disabled: false,
        },
        expires_at,
    };
    let mut response = json_response(StatusCode::OK, info);
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={SESSION_SECONDS}",
        secret.as_str()
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
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

/// Ends the caller's browser session.
#[utoipa::path(delete, path = "/api/v1/session", tag = "vendor", responses((status = 204, description = "Logged out")))]
pub async fn logout(
    State(state): State<AppState>,
    parts: axum::http::HeaderMap,
) -> DomainResult<Response> {
    let cookie = parts
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|p| p.trim().split_once('='))
        .find(|(n, _)| *n == SESSION_COOKIE)
        .map(|(_, v)| v.to_owned());
    if let Some(secret) = cookie {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(secret_hash(&secret))
            .execute(&state.db.pool)
            .await?;
        state.credentials.forget(&secret_hash(&secret));
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0"
    )) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}
