//! Marketplace trials: a signed-in buyer starts one from an app's trial plan. The buyer becomes
//! the vendor's customer (one customer per buyer and vendor) and gets a license from the trial
//! plan, issued through the same function as the vendor's and audited in the vendor's log as
//! done by `buyer:<id>`.
//!
//! The AWS account a buyer types is only a hint (kept with the trial): the trial license names no
//! account and is bound to the account its first grant or activation *proves*, and there is one
//! trial per app and proven account ([`crate::server::domain::proofs::bind`]). Here, one trial
//! per app and buyer: the `trials` row is written before the license, so two tries at once cannot
//! both win; when issuing fails, the reservation is freed again.

use sqlx::Row as _;

use crate::server::base::db::is_unique_violation;
use crate::server::base::secrets::new_id;
use crate::server::base::{now, utc_date};
use crate::server::domain::access::{Caller, RequestMeta, Role};
use crate::server::domain::catalog;
use crate::server::domain::error::{DomainError, DomainResult};
use crate::server::domain::licenses::issue::{LicenseIssue, issue};
use crate::server::domain::ratelimit;
use crate::server::state::AppState;

/// The buyer a trial is for.
#[derive(Clone, Copy, Debug)]
pub struct TrialBuyer<'a> {
    /// The buyer's id.
    pub id: &'a str,
    /// Their address.
    pub email: &'a str,
    /// Their company: the customer's name at the vendor.
    pub company: &'a str,
    /// The AWS account the buyer typed: a hint; the license binds to the first proven one.
    pub aws_account: &'a str,
    /// Whether the buyer opened the verification link mailed to them.
    pub email_verified: bool,
}

/// What a trial is of: a vendor's app and one of its plans, by slug.
#[derive(Clone, Copy, Debug)]
pub struct TrialOf<'a> {
    /// The vendor's slug.
    pub vendor: &'a str,
    /// The app's slug.
    pub app: &'a str,
    /// The trial plan's slug.
    pub plan: &'a str,
}

/// Starts a trial of `of` for `buyer`; returns the new license's id.
pub async fn start(
    state: &AppState,
    buyer: TrialBuyer<'_>,
    meta: RequestMeta,
    of: TrialOf<'_>,
) -> DomainResult<String> {
    {
        let _turn = state.write_turn().await;
        ratelimit::hit(
            &state.db.pool,
            &format!("trial:{}", meta.ip),
            3600,
            state.limits.trials_per_hour,
            "trials started from this address",
        )
        .await?;
    }
    let row = sqlx::query(
        "SELECT a.id AS app_id, a.name AS app_name, v.id AS vendor_id, v.name AS vendor_name, p.trial \
         FROM apps a JOIN vendors v ON v.id = a.vendor_id LEFT JOIN plans p ON p.app_id = a.id AND p.slug = $3 \
         WHERE v.slug = $1 AND a.slug = $2 AND a.listed = 1",
    )
    .bind(of.vendor)
    .bind(of.app)
    .bind(of.plan)
    .fetch_optional(&state.db.pool)
    .await?
    .ok_or_else(|| DomainError::not_found("app on the marketplace", of.app))?;
    let app_id: String = row.try_get("app_id")?;
    let app_name: String = row.try_get("app_name")?;
    let vendor_id: String = row.try_get("vendor_id")?;
    let vendor_name: String = row.try_get("vendor_name")?;
    if row.try_get::<Option<i64>, _>("trial")? != Some(1) {
        return Err(DomainError::invalid(format!(
            "{app_name} has no trial plan {:?}. Go back and pick a plan marked trial.",
            of.plan
        )));
    }
    let released: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM releases WHERE app_id = $1 AND state = 'published'")
            .bind(&app_id)
            .fetch_one(&state.db.pool)
            .await?
            .try_get("n")?;
    if released == 0 {
        return Err(DomainError::conflict(format!(
            "{app_name} has no release yet, so a trial would have nothing to install: trials open with the first release"
        )));
    }
    if state.limits.verify_buyer_email && !buyer.email_verified {
        let page = format!("/apps/{}/{}", of.vendor, of.app);
        let trying = crate::server::domain::mail::account::Trying {
            vendor: &vendor_name,
            app: &app_name,
            page: &page,
        };
        crate::server::domain::mail::account::request_verification(
            state,
            buyer.id,
            buyer.email,
            trying,
        )
        .await?;
        return Err(DomainError::new(
            crate::server::domain::error::Kind::Forbidden,
            "email_not_verified",
            format!(
                "Confirm your e-mail first: we sent a link to {}. Open it, then start the trial of {app_name} again. (Nothing there? Check your spam folder; a new link goes out once a day.)",
                buyer.email
            ),
        ));
    }
    reserve(state, &app_id, buyer, (&app_name, &vendor_name)).await?;
    let caller = marketplace_caller(vendor_id.clone(), of.vendor.to_owned(), buyer, meta);
    let issued = issue_for(state, &caller, buyer, of).await;
    settle(state, &app_id, buyer, issued).await
}

/// Acting for the vendor on a buyer's behalf: the vendor's audit log names the buyer.
fn marketplace_caller(
    vendor_id: String,
    vendor_slug: String,
    buyer: TrialBuyer<'_>,
    meta: RequestMeta,
) -> Caller {
    Caller {
        vendor_id,
        vendor_slug,
        member_id: format!("buyer:{}", buyer.id),
        email: buyer.email.to_owned(),
        role: Role::Publisher,
        token_id: None,
        meta,
    }
}

/// A customer slug made from a company's name, with a random tail so that two buyers of the
/// same company name stay two customers.
pub fn customer_slug(company: &str) -> DomainResult<String> {
    let mut slug: String = company
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    while slug.contains("--") {
        slug = slug.replace("--", "-");
    }
    let slug: String = slug.trim_matches('-').chars().take(40).collect();
    let suffix = new_id("x").map_err(DomainError::internal)?;
    let tail = &suffix[suffix.len() - 6..];
    Ok(if slug.is_empty() {
        format!("buyer-{tail}")
    } else {
        format!("{}-{tail}", slug.trim_end_matches('-'))
    })
}

/// Reserves the buyer's one trial of `app_id` (a conflict saying when it was taken, when it
/// was).
async fn reserve(
    state: &AppState,
    app_id: &str,
    buyer: TrialBuyer<'_>,
    (app_name, vendor_name): (&str, &str),
) -> DomainResult<()> {
    let reserved = {
        let _turn = state.write_turn().await;
        sqlx::query(
            "INSERT INTO trials (app_id, aws_account, buyer_id, license_id, created_at) VALUES ($1, $2, $3, NULL, $4)",
        )
        .bind(app_id)
        .bind(buyer.aws_account)
        .bind(buyer.id)
        .bind(now())
        .execute(&state.db.pool)
        .await
    };
    match reserved {
        Err(e) if is_unique_violation(&e) => {
            let when: i64 =
                sqlx::query("SELECT created_at FROM trials WHERE app_id = $1 AND buyer_id = $2")
                    .bind(app_id)
                    .bind(buyer.id)
                    .fetch_one(&state.db.pool)
                    .await?
                    .try_get("created_at")?;
            Err(DomainError::conflict(format!(
                "You started a trial of {app_name} on {}, and there is one trial per app and buyer (and per AWS account). Your licenses are under My licenses; to go on, ask {vendor_name} for a plan.",
                utc_date(when)
            )))
        }
        other => other.map(|_| ()).map_err(DomainError::from),
    }
}

/// Records the issued license on the reservation, or frees the reservation when nothing was
/// issued so that the buyer can try again.
async fn settle(
    state: &AppState,
    app_id: &str,
    buyer: TrialBuyer<'_>,
    issued: DomainResult<String>,
) -> DomainResult<String> {
    let _turn = state.write_turn().await;
    match issued {
        Ok(license_id) => {
            sqlx::query("UPDATE trials SET license_id = $3 WHERE app_id = $1 AND buyer_id = $2")
                .bind(app_id)
                .bind(buyer.id)
                .bind(&license_id)
                .execute(&state.db.pool)
                .await?;
            Ok(license_id)
        }
        Err(e) => {
            sqlx::query(
                "DELETE FROM trials WHERE app_id = $1 AND buyer_id = $2 AND license_id IS NULL",
            )
            .bind(app_id)
            .bind(buyer.id)
            .execute(&state.db.pool)
            .await?;
            Err(e)
        }
    }
}

/// Makes the buyer the vendor's customer if they are not yet, and issues the trial license.
async fn issue_for(
    state: &AppState,
    caller: &Caller,
    buyer: TrialBuyer<'_>,
    of: TrialOf<'_>,
) -> DomainResult<String> {
    let existing = sqlx::query("SELECT slug FROM customers WHERE vendor_id = $1 AND buyer_id = $2")
        .bind(&caller.vendor_id)
        .bind(buyer.id)
        .fetch_optional(&state.db.pool)
        .await?;
    let customer = match existing {
        Some(row) => row.try_get::<String, _>("slug")?,
        None => {
            let slug = customer_slug(buyer.company)?;
            let body = catalog::CustomerCreate {
                slug: slug.clone(),
                name: buyer.company.to_owned(),
                email: Some(buyer.email.to_owned()),
                // The typed account is a hint, kept with the trial; no license defaults to it.
                aws_accounts: vec![],
            };
            catalog::create_customer_of(state, caller, None, body, Some(buyer.id)).await?;
            slug
        }
    };
    let body = LicenseIssue {
        customer,
        app: of.app.to_owned(),
        plan: Some(of.plan.to_owned()),
        // Bound at the first proof instead (a trial requires proofs).
        aws_accounts: Some(vec![]),
        ..LicenseIssue::default()
    };
    Ok(issue(state, caller, None, body).await?.license.id)
}

#[cfg(test)]
mod tests {
    use super::customer_slug;
    use crate::server::domain::catalog;

    #[test]
    fn customer_slugs_are_valid_slugs() {
        for company in [
            "Initech, Inc.",
            "  ",
            "Ünïcode GmbH",
            "a--b",
            &"x".repeat(90),
        ] {
            let slug = customer_slug(company).unwrap();
            catalog::check_slug("customer", &slug).unwrap();
        }
    }
}
