//! Sending the outbox: every portal process runs one sender. It claims due mails one by one with
//! a lease (a conditional update, so two processes never send the same mail at once), sends
//! each, and records the outcome: sent; or retried after [`RETRY_AFTER`], then failed.
//!
//! A process killed mid-send leaves the lease to run out; the mail is then sent by whichever
//! process claims it next. The SMTP server keeps a message only once it answered the end of
//! its data, so a process killed before that sends the mail once in all; the only window for a
//! second copy is between that answer and the row's update, and the copy carries the same
//! `Message-ID`, by which mail systems drop it.

use std::sync::LazyLock;
use std::time::Duration;

use sqlx::Row as _;

use crate::server::base::mail::{Mailer, Outgoing};
use crate::server::base::now;
use crate::server::domain::error::DomainResult;
use crate::server::state::AppState;

/// Seconds to wait after each failed attempt (about a day in all), then the mail is failed.
pub const RETRY_AFTER: [i64; 6] = [10, 60, 600, 3600, 4 * 3600, 18 * 3600];
/// Mails looked at per round.
const BATCH: i64 = 16;

static WAKE: LazyLock<tokio::sync::Notify> = LazyLock::new(tokio::sync::Notify::new);

/// Tells this process's sender that mail was queued.
pub fn wake() {
    WAKE.notify_one();
}

/// Sends due mail until the process ends.
pub async fn run(state: AppState, mailer: Mailer) {
    let lease = i64::try_from(mailer.timeout.as_secs()).unwrap_or(20) + 10;
    loop {
        let sent = match round(&state, &mailer, lease).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e.detail, "sending mail failed; retrying");
                0
            }
        };
        if sent == 0 {
            let _ = tokio::time::timeout(Duration::from_secs(2), WAKE.notified()).await;
        }
    }
}

/// One round: claims and sends what is due; how many were attempted.
async fn round(state: &AppState, mailer: &Mailer, lease: i64) -> DomainResult<usize> {
    let at = now();
    let due = sqlx::query(
        "SELECT id, to_addr, subject, body, attempts FROM mail_outbox WHERE sent_at IS NULL AND failed_at IS NULL \
         AND next_attempt_at <= $1 AND (locked_until IS NULL OR locked_until < $1) ORDER BY next_attempt_at LIMIT $2",
    )
    .bind(at)
    .bind(BATCH)
    .fetch_all(&state.db.pool)
    .await?;
    let mut attempted = 0;
    for row in due {
        let id: String = row.try_get("id")?;
        let claimed = {
            let _turn = state.write_turn().await;
            sqlx::query(
                "UPDATE mail_outbox SET locked_until = $2, attempts = attempts + 1 WHERE id = $1 \
                 AND sent_at IS NULL AND failed_at IS NULL AND (locked_until IS NULL OR locked_until < $3)",
            )
            .bind(&id)
            .bind(now() + lease)
            .bind(now())
            .execute(&state.db.pool)
            .await?
            .rows_affected()
        };
        if claimed != 1 {
            continue;
        }
        attempted += 1;
        let mail = Outgoing {
            id: id.clone(),
            to: row.try_get("to_addr")?,
            subject: row.try_get("subject")?,
            body: row.try_get("body")?,
        };
        let attempts = row.try_get::<i64, _>("attempts")? + 1;
        let outcome = mailer.send(&mail).await;
        let _turn = state.write_turn().await;
        match outcome {
            Ok(()) => {
                sqlx::query("UPDATE mail_outbox SET sent_at = $2, locked_until = NULL, last_error = NULL WHERE id = $1")
                    .bind(&id)
                    .bind(now())
                    .execute(&state.db.pool)
                    .await?;
                state.metrics.count("consign_mail_sent_total");
            }
            Err(error) => {
                let wait = usize::try_from(attempts - 1)
                    .ok()
                    .and_then(|i| RETRY_AFTER.get(i).copied());
                tracing::warn!(mail = %id, %error, attempts, "a mail was not sent");
                state.metrics.count("consign_mail_failures_total");
                sqlx::query(
                    "UPDATE mail_outbox SET locked_until = NULL, last_error = $2, next_attempt_at = $3, \
                     failed_at = $4 WHERE id = $1",
                )
                .bind(&id)
                .bind(error.chars().take(300).collect::<String>())
                .bind(now() + wait.unwrap_or(0))
                .bind(wait.is_none().then(now))
                .execute(&state.db.pool)
                .await?;
            }
        }
    }
    Ok(attempted)
}
