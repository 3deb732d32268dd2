//! Single-use links mailed to buyers: address verification and password reset. A link carries a
//! random secret; only its hash is stored, with what it is for, whose it is and when it ends. A
//! link works once: redeeming it marks it used in the same statement that checks it.

use sqlx::{AnyConnection, Row as _};
use zeroize::Zeroizing;

use crate::server::base::now;
use crate::server::base::secrets::{new_secret, secret_hash};
use crate::server::domain::error::{DomainError, DomainResult};

/// A verification link lasts two days.
pub const VERIFY_SECONDS: i64 = 2 * 86_400;
/// A reset link lasts an hour.
pub const RESET_SECONDS: i64 = 3600;

/// What a link is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Proves the buyer reads the address.
    Verify,
    /// Lets the buyer choose a new password.
    Reset,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Verify => "verify",
            Purpose::Reset => "reset",
        }
    }

    fn lifetime(self) -> i64 {
        match self {
            Purpose::Verify => VERIFY_SECONDS,
            Purpose::Reset => RESET_SECONDS,
        }
    }
}

/// Makes a link secret for `buyer_id` in the caller's transaction.
pub async fn issue(
    conn: &mut AnyConnection,
    purpose: Purpose,
    buyer_id: &str,
) -> DomainResult<Zeroizing<String>> {
    let secret = new_secret("").map_err(DomainError::internal)?;
    let at = now();
    sqlx::query(
        "INSERT INTO mail_tokens (token_hash, kind, buyer_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(secret_hash(&secret))
    .bind(purpose.as_str())
    .bind(buyer_id)
    .bind(at)
    .bind(at + purpose.lifetime())
    .execute(conn)
    .await?;
    Ok(secret)
}

/// Redeems a link: the buyer it is for, once, if it is for `purpose` and not expired.
pub async fn redeem(
    conn: &mut AnyConnection,
    purpose: Purpose,
    secret: &str,
) -> DomainResult<String> {
    let refused = || {
        DomainError::refused(
            "link_not_valid",
            "this link is used, expired or not one the portal sent: ask for a new one",
        )
    };
    if secret.is_empty() || secret.len() > 100 {
        return Err(refused());
    }
    let at = now();
    let row = sqlx::query(
        "UPDATE mail_tokens SET used_at = $3 WHERE token_hash = $1 AND kind = $2 AND used_at IS NULL \
         AND expires_at > $3 RETURNING buyer_id",
    )
    .bind(secret_hash(secret))
    .bind(purpose.as_str())
    .bind(at)
    .fetch_optional(conn)
    .await?
    .ok_or_else(refused)?;
    Ok(row.try_get("buyer_id")?)
}
