//! Mail to buyers and customers: an outbox, the single-use links some mails carry, and the
//! notices the portal sends when something happens to a license.
//!
//! - Every mail is a row in `mail_outbox`, written in the same transaction as its cause and
//!   keyed by it (`cause` is unique): a cause noticed twice queues one mail. [`send`] sends the
//!   rows with a lease per row, retries with backoff, and gives up after a day.
//! - Notices are derived from the vendor's audit entries in [`VendorTx`](super::tx::VendorTx)
//!   ([`enqueue`]), as webhook events are: a license suspended or revoked, a license about to
//!   end (the sweep's `license.expiring`, at the plan's expiry warning), a trial in its last three
//!   days (the sweep's `trial.ending`), a release published on a channel a license may install.
//! - Links point only at the portal's own public URL (`serve --public-url`), never at an address
//!   taken from a request.
//! - Every mail is plain text and names the vendor and app it is about; account mails (address
//!   verification, password reset) name the app the buyer was trying, or the marketplace.

pub mod account;
pub mod send;
pub mod tokens;

use serde_json::Value;
use sqlx::{AnyConnection, Row as _};

use super::error::{DomainError, DomainResult};
use super::installations::behind::published;
use super::tx::AuditRecord;
use crate::server::base::secrets::new_id;
use crate::server::base::{now, public_url};

/// A mail to queue.
#[derive(Clone, Debug)]
pub struct Mail {
    /// What caused it; one mail per cause, ever.
    pub cause: String,
    /// The address.
    pub to: String,
    /// The subject.
    pub subject: String,
    /// The plain-text body.
    pub body: String,
}

/// Queues `mail` in the caller's transaction; whether it is new (a cause already queued is not
/// queued again). The caller wakes the sender ([`send::wake`]) once the transaction commits.
pub async fn queue(conn: &mut AnyConnection, mail: &Mail) -> DomainResult<bool> {
    let at = now();
    let inserted = sqlx::query(
        "INSERT INTO mail_outbox (id, cause, to_addr, subject, body, created_at, next_attempt_at, attempts) \
         VALUES ($1, $2, $3, $4, $5, $6, $6, 0) ON CONFLICT (cause) DO NOTHING",
    )
    .bind(new_id("mail").map_err(DomainError::internal)?)
    .bind(&mail.cause)
    .bind(&mail.to)
    .bind(&mail.subject)
    .bind(&mail.body)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Sent and failed mail stays in the outbox this long (each cause happens once, so nothing is
/// queued again once its row is gone).
pub const KEEP_MAIL: i64 = 30 * 86_400;

/// Deletes mail settled more than [`KEEP_MAIL`] ago and mailed links that ended a day ago
/// (housekeeping; idempotent).
pub async fn forget_old(pool: &sqlx::AnyPool, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM mail_outbox WHERE (sent_at IS NOT NULL AND sent_at < $1) \
         OR (failed_at IS NOT NULL AND failed_at < $1)",
    )
    .bind(now - KEEP_MAIL)
    .execute(pool)
    .await?;
    sqlx::query("DELETE FROM mail_tokens WHERE expires_at < $1")
        .bind(now - 86_400)
        .execute(pool)
        .await?;
    Ok(())
}

/// The footer every mail ends with.
pub fn footer() -> String {
    let url = public_url();
    format!(
        "\n--\nSent by the Consign portal at {url}. Your licenses and their files: {url}/account\n"
    )
}

/// Who hears about a license, and what it is of.
struct LicenseParty {
    to: String,
    vendor: String,
    app: String,
    app_slug: String,
    vendor_slug: String,
    customer: String,
    expires_at: i64,
    trial: bool,
}

/// The address a license's notices go to (the buyer who holds it, else the customer's e-mail),
/// with the names a notice shows; `None` when nobody is on file.
async fn party(conn: &mut AnyConnection, license_id: &str) -> DomainResult<Option<LicenseParty>> {
    let Some(row) = sqlx::query(
        "SELECT COALESCE(b.email, c.email) AS to_addr, v.name AS vendor, a.name AS app, a.slug AS app_slug, v.slug AS vendor_slug, \
         c.name AS customer, l.expires_at, l.claims FROM licenses l JOIN customers c ON c.id = l.customer_id \
         LEFT JOIN buyers b ON b.id = c.buyer_id JOIN apps a ON a.id = l.app_id JOIN vendors v ON v.id = l.vendor_id \
         WHERE l.id = $1",
    )
    .bind(license_id)
    .fetch_optional(conn)
    .await?
    else {
        return Ok(None);
    };
    let Some(to) = row.try_get::<Option<String>, _>("to_addr")? else {
        return Ok(None);
    };
    let claims: Value =
        serde_json::from_str(&row.try_get::<String, _>("claims")?).unwrap_or_default();
    Ok(Some(LicenseParty {
        to,
        vendor: row.try_get("vendor")?,
        app: row.try_get("app")?,
        app_slug: row.try_get("app_slug")?,
        vendor_slug: row.try_get("vendor_slug")?,
        customer: row.try_get("customer")?,
        expires_at: row.try_get("expires_at")?,
        trial: claims.get("trial").and_then(Value::as_bool) == Some(true),
    }))
}

/// Queues the notices `records` (the audit entries of one transaction) call for; whether any
/// was queued.
pub async fn enqueue(conn: &mut AnyConnection, records: &[AuditRecord]) -> DomainResult<bool> {
    let mut queued = false;
    for record in records {
        queued |= match record.action.as_str() {
            "license.suspend" | "license.revoke" | "license.expiring" | "trial.ending" => {
                license_notice(conn, record).await?
            }
            "release.publish" => release_notice(conn, record).await?,
            _ => false,
        };
    }
    Ok(queued)
}

async fn license_notice(conn: &mut AnyConnection, record: &AuditRecord) -> DomainResult<bool> {
    let license = record.target.as_str();
    let Some(p) = party(conn, license).await? else {
        return Ok(false);
    };
    let page = format!("{}/account/licenses/{license}", public_url());
    let date = crate::server::base::utc_date(p.expires_at);
    let (cause, subject, text) = match record.action.as_str() {
        "license.suspend" => (
            format!("license.suspend:{license}:{}", record.request_id),
            format!("{} by {}: your license is suspended", p.app, p.vendor),
            format!(
                "{} suspended the license of {} for {} ({license}).\n\nInstallations keep running through their grace period and then stop answering entitlement checks. Ask {} why, and to reinstate it.\n\nThe license: {page}\n",
                p.vendor, p.customer, p.app, p.vendor
            ),
        ),
        "license.revoke" => (
            format!("license.revoke:{license}"),
            format!("{} by {}: your license is revoked", p.app, p.vendor),
            format!(
                "{} revoked the license of {} for {} ({license}). It cannot be used again: installations stop at their next check-in.\n\nTalk to {} about a new license. The license: {page}\n",
                p.vendor, p.customer, p.app, p.vendor
            ),
        ),
        // A trial hears once, in its last days (`trial.ending`), not at the plan's warning.
        "license.expiring" if p.trial => return Ok(false),
        "trial.ending" => (
            format!("trial.ending:{license}:{}", p.expires_at),
            format!("{} by {}: your trial ends on {date}", p.app, p.vendor),
            format!(
                "Your trial of {} by {} ends on {date} (UTC). After that, installations stop answering entitlement checks.\n\nTo keep using {}, ask {} for a license. The trial: {page}\n",
                p.app, p.vendor, p.app, p.vendor
            ),
        ),
        _ => (
            format!("license.expiring:{license}:{}", p.expires_at),
            format!("{} by {}: your license expires on {date}", p.app, p.vendor),
            format!(
                "The license of {} for {} by {} expires on {date} (UTC). Ask {} to renew it; the renewed file will be on the license's page: {page}\n",
                p.customer, p.app, p.vendor, p.vendor
            ),
        ),
    };
    queue(
        conn,
        &Mail {
            cause,
            to: p.to,
            subject,
            body: format!("{text}{}", footer()),
        },
    )
    .await
}

/// A new release: a notice to every active license of the app that may receive it, with the
/// command that upgrades an installation.
async fn release_notice(conn: &mut AnyConnection, record: &AuditRecord) -> DomainResult<bool> {
    let Some(release) = published(conn, None, Some(&record.target)).await?.pop() else {
        return Ok(false);
    };
    let version = release.version.clone();
    let channels = release.channels.clone();
    let required = release.required;
    let rows = sqlx::query(
        "SELECT l.id, l.claims FROM licenses l JOIN releases r ON r.app_id = l.app_id \
         WHERE r.id = $1 AND l.state = 'active' AND l.expires_at > $2",
    )
    .bind(&record.target)
    .bind(now())
    .fetch_all(&mut *conn)
    .await?;
    let mut queued = false;
    for row in rows {
        let license: String = row.try_get("id")?;
        let Ok(claims) =
            serde_json::from_str::<license::Claims>(&row.try_get::<String, _>("claims")?)
        else {
            continue;
        };
        if !release.offered_to(&claims) {
            continue;
        }
        let Some(p) = party(conn, &license).await? else {
            continue;
        };
        let must = if required {
            "\nThis release is required: installations on older versions are asked to upgrade.\n"
        } else {
            ""
        };
        let body = format!(
            "{} published {} {version} ({}), which your license {license} may install.\n{must}\nUpgrade an installation from the AWS account it runs in:\n\n    installer upgrade --stack YOUR-STACK --version {version}\n\n`installer status --stack YOUR-STACK` shows what is installed and what is newer. The app's page: {}/apps/{}/{}\n",
            p.vendor,
            p.app,
            channels.join(", "),
            public_url(),
            p.vendor_slug,
            p.app_slug
        );
        queued |= queue(
            conn,
            &Mail {
                cause: format!("release.publish:{license}:{}", record.target),
                to: p.to,
                subject: format!("{} by {}: version {version} is out", p.app, p.vendor),
                body: format!("{body}{}", footer()),
            },
        )
        .await?;
    }
    Ok(queued)
}
