//! A buyer's account mail: verifying the address before a trial, and resetting a forgotten
//! password. Both mail a single-use link ([`super::tokens`]); asking for a reset answers the same
//! whether or not the address has an account.

use sqlx::Row as _;

use super::tokens::{self, Purpose};
use super::{Mail, footer, queue};
use crate::server::base::{now, public_url};
use crate::server::domain::access::RequestMeta;
use crate::server::domain::error::{DomainError, DomainResult, Kind};
use crate::server::domain::ratelimit;
use crate::server::state::AppState;

/// Resets mailed per buyer per hour; more are dropped without a word (the answer is the same).
const RESETS_PER_HOUR: u64 = 3;

/// What a buyer was trying when asked to verify: the vendor's and app's names, and the app's
/// page to come back to.
#[derive(Clone, Copy, Debug)]
pub struct Trying<'a> {
    /// The vendor's name.
    pub vendor: &'a str,
    /// The app's name.
    pub app: &'a str,
    /// The app's page (`/apps/VENDOR/APP`).
    pub page: &'a str,
}

/// Mails `email` a link that verifies it, naming what the buyer was trying; at most one such
/// mail per buyer, app and day.
pub async fn request_verification(
    state: &AppState,
    buyer_id: &str,
    email: &str,
    trying: Trying<'_>,
) -> DomainResult<()> {
    let _turn = state.write_turn().await;
    let mut tx = state.db.pool.begin().await?;
    let secret = tokens::issue(&mut tx, Purpose::Verify, buyer_id).await?;
    let link = format!(
        "{}/verify?token={}&next={}",
        public_url(),
        secret.as_str(),
        url::form_urlencoded::byte_serialize(trying.page.as_bytes()).collect::<String>()
    );
    let mail = Mail {
        cause: format!("verify:{buyer_id}:{}:{}", trying.page, now() / 86_400),
        to: email.to_owned(),
        subject: format!(
            "Confirm your e-mail to try {} by {}",
            trying.app, trying.vendor
        ),
        body: format!(
            "You asked to try {} by {} on the Consign marketplace. Open this link to confirm that {email} is yours, then start the trial:\n\n    {link}\n\nThe link works once, for two days. If you did not ask, ignore this mail.\n{}",
            trying.app,
            trying.vendor,
            footer()
        ),
    };
    if queue(&mut tx, &mail).await? {
        tx.commit().await?;
        super::send::wake();
    }
    Ok(())
}

/// Verifies the address of the buyer `secret` was mailed to; the buyer's id.
pub async fn verify(state: &AppState, secret: &str) -> DomainResult<String> {
    let _turn = state.write_turn().await;
    let mut tx = state.db.pool.begin().await?;
    let buyer = tokens::redeem(&mut tx, Purpose::Verify, secret).await?;
    sqlx::query(
        "UPDATE buyers SET email_verified_at = COALESCE(email_verified_at, $2) WHERE id = $1",
    )
    .bind(&buyer)
    .bind(now())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(buyer)
}

/// Mails a reset link to `email` if a buyer has it. Answers the same either way (the page says
/// "if an account uses this address"), so the form cannot be used to learn who has an account.
pub async fn request_reset(state: &AppState, meta: &RequestMeta, email: &str) -> DomainResult<()> {
    {
        let _turn = state.write_turn().await;
        ratelimit::hit(
            &state.db.pool,
            &format!("reset:{}", meta.ip),
            3600,
            state.limits.signups_per_hour,
            "password resets asked from this address",
        )
        .await?;
    }
    let email = email.trim().to_lowercase();
    let Some(row) = sqlx::query("SELECT id FROM buyers WHERE email = $1")
        .bind(&email)
        .fetch_optional(&state.db.pool)
        .await?
    else {
        return Ok(());
    };
    let buyer: String = row.try_get("id")?;
    let _turn = state.write_turn().await;
    let mut tx = state.db.pool.begin().await?;
    if ratelimit::hit(
        &mut *tx,
        &format!("reset-mail:{buyer}"),
        3600,
        RESETS_PER_HOUR,
        "reset mails",
    )
    .await
    .is_err()
    {
        tx.commit().await?;
        return Ok(());
    }
    let secret = tokens::issue(&mut tx, Purpose::Reset, &buyer).await?;
    let link = format!("{}/reset?token={}", public_url(), secret.as_str());
    let mail = Mail {
        cause: format!(
            "reset:{buyer}:{}",
            &crate::server::base::secrets::secret_hash(&secret)[..16]
        ),
        to: email.clone(),
        subject: "Choose a new password for the Consign marketplace".into(),
        body: format!(
            "Someone (we hope you) asked to reset the password of {email} on the Consign marketplace, where you hold your apps' licenses and trials. Choose a new one here:\n\n    {link}\n\nThe link works once, for an hour. If you did not ask, ignore this mail: your password stays as it is.\n{}",
            footer()
        ),
    };
    queue(&mut tx, &mail).await?;
    tx.commit().await?;
    super::send::wake();
    Ok(())
}

/// Sets a new password with a reset link's secret: the link is used up, every session of the
/// buyer ends, and the address counts as verified (the buyer read the mail).
pub async fn reset(state: &AppState, secret: &str, password: &str) -> DomainResult<()> {
    if password.chars().count() < 12 {
        return Err(DomainError::new(
            Kind::Invalid,
            "weak_password",
            "passwords must be at least 12 characters",
        ));
    }
    let hash = crate::server::domain::members::hash_in_background(password.to_owned()).await?;
    let _turn = state.write_turn().await;
    let mut tx = state.db.pool.begin().await?;
    let buyer = tokens::redeem(&mut tx, Purpose::Reset, secret).await?;
    sqlx::query(
        "UPDATE buyers SET password_hash = $2, email_verified_at = COALESCE(email_verified_at, $3) WHERE id = $1",
    )
    .bind(&buyer)
    .bind(&hash)
    .bind(now())
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM buyer_sessions WHERE buyer_id = $1")
        .bind(&buyer)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}
