//! An owner's hold over the vendor's members: change a role, disable and enable, reset a
//! password, remove. Each change ends every session and token of that member at once, in the
//! database and in this process's credential cache (other portal processes drop their cached
//! copy within its one-second lifetime), so nobody keeps acting with rights they lost.
//!
//! A vendor always keeps one enabled owner: a change that would leave none is refused.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row as _};
use utoipa::ToSchema;

use crate::server::base::now;
use crate::server::domain::error::{DomainError, DomainResult};
use crate::server::domain::tx::VendorTx;
use crate::server::http::auth::{Caller, Role};
use crate::server::http::extract::{ApiJson, ApiPath};
use crate::server::http::idempotency::IdempotencyContext;
use crate::server::http::reply::CommitReply as _;
use crate::server::routes::vendor::{
    MemberCreated, MemberInfo, chosen_password, hash_in_background,
};
use crate::server::state::AppState;

/// A change to a member.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberUpdate {
    /// The new role.
    #[serde(default)]
    pub role: Option<Role>,
    /// `true` disables the member (no sign-in, no session, no token), `false` enables them.
    #[serde(default)]
    pub disabled: Option<bool>,
}

/// A new password for a member.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordReset {
    /// The password (at least 12 characters); one is generated and shown once if omitted.
    #[serde(default)]
    pub password: Option<String>,
}

/// What a change ended.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MemberChanged {
    /// The member as it is now.
    #[serde(flatten)]
    pub member: MemberInfo,
    /// Browser sessions ended.
    pub sessions_ended: u64,
    /// API tokens revoked.
    pub tokens_revoked: u64,
}

async fn find(conn: &mut AnyConnection, vendor_id: &str, id: &str) -> DomainResult<MemberInfo> {
    let row = sqlx::query(
        "SELECT id, email, role, disabled_at FROM members WHERE vendor_id = $1 AND id = $2",
    )
    .bind(vendor_id)
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| DomainError::not_found("member", id))?;
    let role: String = row.try_get("role")?;
    Ok(MemberInfo {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        role: Role::parse(&role).unwrap_or(Role::Support),
        disabled: row.try_get::<Option<i64>, _>("disabled_at")?.is_some(),
    })
}

/// Refuses a change that leaves the vendor without an enabled owner.
async fn keep_an_owner(
    conn: &mut AnyConnection,
    vendor_id: &str,
    member: &str,
) -> DomainResult<()> {
    let others: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM members WHERE vendor_id = $1 AND id <> $2 AND role = 'owner' \
         AND disabled_at IS NULL",
    )
    .bind(vendor_id)
    .bind(member)
    .fetch_one(conn)
    .await?
    .try_get("n")?;
    if others == 0 {
        return Err(DomainError::conflict(
            "this would leave the vendor without an enabled owner: make another member an owner first",
        ));
    }
    Ok(())
}

/// Ends every session and token of `member`; (sessions, tokens).
async fn end_access(
    conn: &mut AnyConnection,
    vendor_id: &str,
    member: &str,
) -> DomainResult<(u64, u64)> {
    let sessions = sqlx::query("DELETE FROM sessions WHERE vendor_id = $1 AND member_id = $2")
        .bind(vendor_id)
        .bind(member)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    let tokens = sqlx::query(
        "UPDATE api_tokens SET revoked_at = $3 WHERE vendor_id = $1 AND member_id = $2 \
         AND revoked_at IS NULL",
    )
    .bind(vendor_id)
    .bind(member)
    .bind(now())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok((sessions, tokens))
}

/// Commits a member change and forgets every cached credential in this process.
async fn finish(
    state: &AppState,
    tx: VendorTx,
    idem: Option<&IdempotencyContext>,
    changed: &MemberChanged,
) -> DomainResult<Response> {
    let response = tx.commit(idem, StatusCode::OK, changed).await?;
    state.credentials.clear();
    Ok(response)
}

/// Changes a member's role, or disables or enables them (owners only). Ends their sessions and
/// tokens.
#[utoipa::path(patch, path = "/api/v1/members/{id}", tag = "vendor", security(("token" = [])),
    params(("id" = String, Path, description = "Member id")), request_body = MemberUpdate, responses(
    (status = 200, body = MemberChanged), (status = 403, body = crate::server::http::problem::Problem),
    (status = 404, body = crate::server::http::problem::Problem), (status = 409, body = crate::server::http::problem::Problem)))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<MemberUpdate>,
) -> DomainResult<Response> {
    caller.require(Role::Owner)?;
    if body.role.is_none() && body.disabled.is_none() {
        return Err(DomainError::invalid("give a role, disabled, or both"));
    }
    let mut tx = VendorTx::begin(&state, &caller.vendor_id).await?;
    let found = find(tx.conn(), &caller.vendor_id, &id).await?;
    let role = body.role.unwrap_or(found.role);
    let disabled = body.disabled.unwrap_or(found.disabled);
    let was_owner = found.role == Role::Owner && !found.disabled;
    if was_owner && (role != Role::Owner || disabled) {
        keep_an_owner(tx.conn(), &caller.vendor_id, &id).await?;
    }
    sqlx::query(
        "UPDATE members SET role = $3, disabled_at = CASE WHEN $4 = 1 THEN COALESCE(disabled_at, $5) ELSE NULL END \
         WHERE vendor_id = $1 AND id = $2",
    )
    .bind(&caller.vendor_id)
    .bind(&id)
    .bind(role.as_str())
    .bind(i64::from(disabled))
    .bind(now())
    .execute(tx.conn())
    .await?;
    let (sessions_ended, tokens_revoked) = end_access(tx.conn(), &caller.vendor_id, &id).await?;
    let action = match (body.disabled, found.disabled) {
        (Some(true), false) => "member.disable",
        (Some(false), true) => "member.enable",
        _ => "member.update",
    };
    tx.audit(
        &caller,
        action,
        &id,
        serde_json::json!({"email": found.email, "role": role, "was": found.role,
            "disabled": disabled, "sessions_ended": sessions_ended, "tokens_revoked": tokens_revoked}),
    )
    .await?;
    let changed = MemberChanged {
        member: MemberInfo {
            role,
            disabled,
            ..found
        },
        sessions_ended,
        tokens_revoked,
    };
    finish(&state, tx, None, &changed).await
}

/// Sets a member's password (owners only); a generated one is shown once. Ends their sessions
/// and tokens.
#[utoipa::path(post, path = "/api/v1/members/{id}/password", tag = "vendor", security(("token" = [])),
    params(("id" = String, Path, description = "Member id")), request_body = PasswordReset, responses(
    (status = 200, body = MemberCreated), (status = 403, body = crate::server::http::problem::Problem),
    (status = 404, body = crate::server::http::problem::Problem), (status = 422, body = crate::server::http::problem::Problem)))]
pub async fn reset_password(
    State(state): State<AppState>,
    caller: Caller,
    idem: Option<Extension<IdempotencyContext>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PasswordReset>,
) -> DomainResult<Response> {
    caller.require(Role::Owner)?;
    let generated = body.password.is_none();
    let password = chosen_password(body.password)?;
    let hash = hash_in_background(password.to_string()).await?;
    let mut tx = VendorTx::begin(&state, &caller.vendor_id).await?;
    let found = find(tx.conn(), &caller.vendor_id, &id).await?;
    sqlx::query("UPDATE members SET password_hash = $3 WHERE vendor_id = $1 AND id = $2")
        .bind(&caller.vendor_id)
        .bind(&id)
        .bind(&hash)
        .execute(tx.conn())
        .await?;
    let (sessions_ended, tokens_revoked) = end_access(tx.conn(), &caller.vendor_id, &id).await?;
    tx.audit(
        &caller,
        "member.password",
        &id,
        serde_json::json!({"email": found.email, "generated": generated,
            "sessions_ended": sessions_ended, "tokens_revoked": tokens_revoked}),
    )
    .await?;
    let reply = MemberCreated {
        member: found.clone(),
        password: generated.then(|| password.to_string()),
    };
    let stored = MemberCreated {
        member: found,
        password: None,
    };
    let response = tx
        .commit_redacted(idem.as_deref(), StatusCode::OK, &reply, &stored)
        .await?;
    state.credentials.clear();
    Ok(response)
}

/// Removes a member (owners only): their sessions end, their tokens are deleted, and they can
/// no longer sign in. The audit log keeps what they did.
#[utoipa::path(delete, path = "/api/v1/members/{id}", tag = "vendor", security(("token" = [])),
    params(("id" = String, Path, description = "Member id")), responses(
    (status = 200, body = MemberChanged), (status = 403, body = crate::server::http::problem::Problem),
    (status = 404, body = crate::server::http::problem::Problem), (status = 409, body = crate::server::http::problem::Problem)))]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> DomainResult<Response> {
    caller.require(Role::Owner)?;
    let mut tx = VendorTx::begin(&state, &caller.vendor_id).await?;
    let found = find(tx.conn(), &caller.vendor_id, &id).await?;
    if found.role == Role::Owner && !found.disabled {
        keep_an_owner(tx.conn(), &caller.vendor_id, &id).await?;
    }
    let (sessions_ended, tokens_revoked) = end_access(tx.conn(), &caller.vendor_id, &id).await?;
    sqlx::query("DELETE FROM api_tokens WHERE vendor_id = $1 AND member_id = $2")
        .bind(&caller.vendor_id)
        .bind(&id)
        .execute(tx.conn())
        .await?;
    sqlx::query("DELETE FROM members WHERE vendor_id = $1 AND id = $2")
        .bind(&caller.vendor_id)
        .bind(&id)
        .execute(tx.conn())
        .await?;
    tx.audit(
        &caller,
        "member.remove",
        &id,
        serde_json::json!({"email": found.email, "role": found.role,
            "sessions_ended": sessions_ended, "tokens_revoked": tokens_revoked}),
    )
    .await?;
    let changed = MemberChanged {
        member: found,
        sessions_ended,
        tokens_revoked,
    };
    finish(&state, tx, None, &changed).await
}
