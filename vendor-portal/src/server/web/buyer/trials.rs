//! Trials: a signed-in buyer starts one from a trial plan; the license is bound to the buyer's
//! AWS account and issued through the same domain functions as the vendor's.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use sqlx::Row as _;

use super::*;
use super::{WebError, WebForm, see_other};
use crate::server::base::db::is_unique_violation;
use crate::server::base::now;
use crate::server::base::secrets::new_id;
use crate::server::domain;
use crate::server::domain::catalog;
use crate::server::domain::error::DomainError;
use crate::server::domain::licenses::issue::LicenseIssue;
use crate::server::domain::ratelimit;
use crate::server::http::auth::{Caller, Role};
use crate::server::http::extract::RequestMeta;
use crate::server::state::AppState;

/// The trial form.
#[derive(Debug, Deserialize)]
pub struct TrialForm {
    /// The trial plan's slug.
    #[serde(default)]
    pub plan: String,
}

/// Acting for the vendor on a buyer's behalf: the vendor's audit log names the buyer.
pub(crate) fn marketplace_caller(
    vendor_id: String,
    vendor_slug: String,
    buyer: &Buyer,
    meta: RequestMeta,
) -> Caller {
    Caller {
        vendor_id,
        vendor_slug,
        member_id: format!("buyer:{}", buyer.id),
        email: buyer.email.clone(),
        role: Role::Publisher,
        token_id: None,
        meta,
    }
}

pub(crate) fn customer_slug(company: &str) -> Result<String, WebError> {
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

/// `POST /apps/{vendor}/{app}/trial`.
pub async fn start_trial(
    State(state): State<AppState>,
    headers: HeaderMap,
    meta: RequestMeta,
    Path((vendor, app)): Path<(String, String)>,
    WebForm(form): WebForm<TrialForm>,
) -> Result<Response, WebError> {
    let back = format!("/apps/{vendor}/{app}");
    let buyer = required(&state, &headers, &back).await?;
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
    .bind(&vendor)
    .bind(&app)
    .bind(&form.plan)
    .fetch_optional(&state.db.pool)
    .await?
    .ok_or_else(|| WebError::not_found("app on the marketplace"))?;
    let app_id: String = row.try_get("app_id")?;
    let app_name: String = row.try_get("app_name")?;
    let vendor_id: String = row.try_get("vendor_id")?;
    let vendor_name: String = row.try_get("vendor_name")?;
    if row.try_get::<Option<i64>, _>("trial")? != Some(1) {
        return Err(WebError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Not a trial plan",
            format!(
                "{app_name} has no trial plan {:?}. Go back and pick a plan marked trial.",
                form.plan
            ),
        ));
    }
    // Reserve the trial first: the primary key refuses a second one for this app and account.
    let names = (app_name.as_str(), vendor_name.as_str());
    reserve_trial(&state, &app_id, &buyer, names).await?;
    let issued = issue_trial(&state, &buyer, meta, &vendor_id, &vendor, &app, &form.plan).await;
    let license_id = settle_trial(&state, &app_id, &buyer, issued).await?;
    Ok(see_other(&format!(
        "/account/licenses/{license_id}?done=trial"
    )))
}

/// Reserves the one trial of `app_id` for the buyer's AWS account (409 with when it was taken,
/// when it was).
async fn reserve_trial(
    state: &AppState,
    app_id: &str,
    buyer: &Buyer,
    (app_name, vendor_name): (&str, &str),
) -> Result<(), WebError> {
    let reserved = {
        let _turn = state.write_turn().await;
        sqlx::query(
            "INSERT INTO trials (app_id, aws_account, buyer_id, license_id, created_at) VALUES ($1, $2, $3, NULL, $4)",
        )
        .bind(app_id)
        .bind(&buyer.aws_account)
        .bind(&buyer.id)
        .bind(now())
        .execute(&state.db.pool)
        .await
    };
    match reserved {
        Err(e) if is_unique_violation(&e) => {
            let when: i64 =
                sqlx::query("SELECT created_at FROM trials WHERE app_id = $1 AND aws_account = $2")
                    .bind(app_id)
                    .bind(&buyer.aws_account)
                    .fetch_one(&state.db.pool)
                    .await?
                    .try_get("created_at")?;
            return Err(WebError::new(
                StatusCode::CONFLICT,
                "A trial was started already",
                format!(
                    "A trial of {app_name} for AWS account {} was started on {}, and there is one trial per app and account. Your licenses are under My licenses; to go on, ask {vendor_name} for a plan.",
                    buyer.aws_account,
                    crate::server::web::date(when)
                ),
            ));
        }
        other => other?,
    };
    Ok(())
}

/// Records the issued license on the reservation, or frees the reservation when nothing was
/// issued so that the buyer can try again.
async fn settle_trial(
    state: &AppState,
    app_id: &str,
    buyer: &Buyer,
    issued: Result<String, WebError>,
) -> Result<String, WebError> {
    let _turn = state.write_turn().await;
    match issued {
        Ok(license_id) => {
            sqlx::query("UPDATE trials SET license_id = $3 WHERE app_id = $1 AND aws_account = $2")
                .bind(app_id)
                .bind(&buyer.aws_account)
                .bind(&license_id)
                .execute(&state.db.pool)
                .await?;
            Ok(license_id)
        }
        Err(e) => {
            sqlx::query(
                "DELETE FROM trials WHERE app_id = $1 AND aws_account = $2 AND license_id IS NULL",
            )
            .bind(app_id)
            .bind(&buyer.aws_account)
            .execute(&state.db.pool)
            .await?;
            Err(e)
        }
    }
}

pub(crate) async fn issue_trial(
    state: &AppState,
    buyer: &Buyer,
    meta: RequestMeta,
    vendor_id: &str,
    vendor: &str,
    app: &str,
    plan: &str,
) -> Result<String, WebError> {
    let caller = marketplace_caller(vendor_id.to_owned(), vendor.to_owned(), buyer, meta);
    let existing = sqlx::query("SELECT slug FROM customers WHERE vendor_id = $1 AND buyer_id = $2")
        .bind(vendor_id)
        .bind(&buyer.id)
        .fetch_optional(&state.db.pool)
        .await?;
    let customer = match existing {
        Some(row) => row.try_get::<String, _>("slug")?,
        None => {
            let slug = customer_slug(&buyer.company)?;
            let body = catalog::CustomerCreate {
                slug: slug.clone(),
                name: buyer.company.clone(),
                email: Some(buyer.email.clone()),
                aws_accounts: vec![buyer.aws_account.clone()],
            };
            catalog::create_customer_of(state, &caller, None, body, Some(&buyer.id)).await?;
            slug
        }
    };
    let body = LicenseIssue {
        customer,
        app: app.to_owned(),
        plan: Some(plan.to_owned()),
        aws_accounts: Some(vec![buyer.aws_account.clone()]),
        ..LicenseIssue::default()
    };
    let issued = domain::licenses::issue::issue(state, &caller, None, body).await?;
    Ok(issued.license.id)
}
