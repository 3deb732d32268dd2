//! The vendor's members, and an owner's hold over them: add, change a role, disable and enable,
//! reset a password, remove. Each change ends every session and token of that member at once,
//! in the database and in this process's credential cache (other portal processes drop their
//! cached copy within its one-second lifetime), so nobody keeps acting with rights they lost.
//!
//! A vendor always keeps one enabled owner: a change that would leave none is refused.

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row as _};
use utoipa::ToSchema;

use super::access::{Caller, Role};
use super::error::{DomainError, DomainResult};
use super::idempotency::IdempotencyContext;
use super::tx::VendorTx;
use crate::server::base::db::is_unique_violation;
use crate::server::base::now;
use crate::server::base::secrets::{hash_password, new_id, new_password};
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
pub(crate) async fn keep_an_owner(
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
pub(crate) async fn end_access(
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
) -> DomainResult<()> {
    tx.commit_answer(idem, 200, changed).await?;
    state.credentials.clear();
    Ok(())
}

/// Changes a member's role, or disables or enables them (owners only). Ends their sessions and
/// tokens.
pub async fn update(
    state: &AppState,
    caller: &Caller,
    id: String,
    body: MemberUpdate,
) -> DomainResult<MemberChanged> {
    caller.require(Role::Owner)?;
    if body.role.is_none() && body.disabled.is_none() {
        return Err(DomainError::invalid("give a role, disabled, or both"));
    }
    let mut tx = VendorTx::begin(state, &caller.vendor_id).await?;
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
        caller,
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
    finish(state, tx, None, &changed).await?;
    Ok(changed)
}

/// Sets a member's password (owners only); a generated one is shown once. Ends their sessions
/// and tokens.
pub async fn reset_password(
    state: &AppState,
    caller: &Caller,
    idem: Option<&IdempotencyContext>,
    id: String,
    body: PasswordReset,
) -> DomainResult<MemberCreated> {
    caller.require(Role::Owner)?;
    let generated = body.password.is_none();
    let password = chosen_password(body.password)?;
    let hash = hash_in_background(password.to_string()).await?;
    let mut tx = VendorTx::begin(state, &caller.vendor_id).await?;
    let found = find(tx.conn(), &caller.vendor_id, &id).await?;
    sqlx::query("UPDATE members SET password_hash = $3 WHERE vendor_id = $1 AND id = $2")
        .bind(&caller.vendor_id)
        .bind(&id)
        .bind(&hash)
        .execute(tx.conn())
        .await?;
    let (sessions_ended, tokens_revoked) = end_access(tx.conn(), &caller.vendor_id, &id).await?;
    tx.audit(
        caller,
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
    tx.commit_answer(idem, 200, &stored).await?;
    state.credentials.clear();
    Ok(reply)
}

/// Sets a member's password from the portal's own machine (`vendor-portal admin reset-password`),
/// for an owner locked out of a fresh portal or a restarted demo: no credential, the operator
/// (`admin`) named in the audit log. A generated password is returned to show once. Ends the
/// member's browser sessions; their API tokens stay (this is for a forgotten password: an owner
/// who fears a stolen token revokes it in the console or with `token revoke`).
pub async fn admin_reset_password(
    state: &AppState,
    vendor_slug: &str,
    email: &str,
    operator: &str,
    password: Option<String>,
) -> DomainResult<MemberCreated> {
    let generated = password.is_none();
    let password = chosen_password(password)?;
    let hash = hash_in_background(password.to_string()).await?;
    let vendor_id: String = sqlx::query("SELECT id FROM vendors WHERE slug = $1")
        .bind(vendor_slug)
        .fetch_optional(&state.db.pool)
        .await?
        .ok_or_else(|| DomainError::not_found("vendor", vendor_slug))?
        .try_get("id")?;
    let mut tx = VendorTx::begin(state, &vendor_id).await?;
    let id: String = sqlx::query("SELECT id FROM members WHERE vendor_id = $1 AND email = $2")
        .bind(&vendor_id)
        .bind(email)
        .fetch_optional(tx.conn())
        .await?
        .ok_or_else(|| DomainError::not_found("member", email))?
        .try_get("id")?;
    let found = find(tx.conn(), &vendor_id, &id).await?;
    sqlx::query("UPDATE members SET password_hash = $3 WHERE vendor_id = $1 AND id = $2")
        .bind(&vendor_id)
        .bind(&id)
        .bind(&hash)
        .execute(tx.conn())
        .await?;
    let sessions_ended =
        sqlx::query("DELETE FROM sessions WHERE vendor_id = $1 AND member_id = $2")
            .bind(&vendor_id)
            .bind(&id)
            .execute(tx.conn())
            .await?
            .rows_affected();
    tx.audit_as(
        serde_json::json!({"admin": operator}),
        "localhost",
        "-",
        "member.password",
        &id,
        serde_json::json!({"email": found.email, "generated": generated,
            "sessions_ended": sessions_ended, "by": "admin reset-password"}),
    )
    .await?;
    tx.commit_all(&[]).await?;
    state.credentials.clear();
    Ok(MemberCreated {
        member: found,
        password: generated.then(|| password.to_string()),
    })
}

/// Removes a member (owners only): their sessions end, their tokens are deleted, and they can
/// no longer sign in. The audit log keeps what they did.
pub async fn remove(state: &AppState, caller: &Caller, id: String) -> DomainResult<MemberChanged> {
    caller.require(Role::Owner)?;
    let mut tx = VendorTx::begin(state, &caller.vendor_id).await?;
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
        caller,
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
    finish(state, tx, None, &changed).await?;
    Ok(changed)
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
pub async fn add_member(
    state: &AppState,
    caller: &Caller,
    idem: Option<&IdempotencyContext>,
    body: MemberCreate,
) -> DomainResult<MemberCreated> {
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
    let mut tx = VendorTx::begin(state, &caller.vendor_id).await?;
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
        caller,
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
    tx.commit_answer(idem, 201, &stored).await?;
    Ok(created)
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
pub async fn list_members(state: &AppState, caller: &Caller) -> DomainResult<Vec<MemberInfo>> {
    let out = members_of(state, &caller.vendor_id).await?;
    Ok(out)
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
