//! The buyer's licenses: the account page, one license with the versions it entitles and the
//! install commands, and the license file.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse as _, Response};
use sqlx::Row as _;

use super::*;
use super::{Page, PageParts, WebError, render};
use crate::server::base::now;
use crate::server::domain;
use crate::server::domain::licenses::standing_word;
use crate::server::http::extract::ApiPath;
use crate::server::state::AppState;

/// A license on the buyer's pages.
#[derive(Debug)]
pub struct LicenseRow {
    /// Id.
    pub id: String,
    /// App slug.
    pub app: String,
    /// App name.
    pub app_name: String,
    /// Vendor slug.
    pub vendor: String,
    /// Vendor name.
    pub vendor_name: String,
    /// Plan name.
    pub plan: String,
    /// `active`, `suspended`, `revoked` or `expired`.
    pub state: String,
    /// Expiry date.
    pub expires: String,
    /// Issue date.
    pub issued: String,
    /// The signed license text.
    pub armored: String,
    /// The vendor's id (for the reason of a revocation or suspension).
    pub vendor_id: String,
}

pub(crate) async fn licenses_of(
    state: &AppState,
    buyer: &Buyer,
    id: Option<&str>,
) -> Result<Vec<LicenseRow>, WebError> {
    let rows = sqlx::query(
        "SELECT l.id, l.state, l.expires_at, l.issued_at, l.armored, a.id AS app_id, a.slug AS app, a.name AS app_name, \
         v.id AS vendor_id, v.slug AS vendor, v.name AS vendor_name, p.name AS plan FROM licenses l \
         JOIN customers c ON c.id = l.customer_id JOIN apps a ON a.id = l.app_id JOIN vendors v ON v.id = l.vendor_id \
         LEFT JOIN plans p ON p.id = l.plan_id \
         WHERE c.buyer_id = $1 AND ($2 = '' OR l.id = $2) ORDER BY l.issued_at DESC, l.id",
    )
    .bind(&buyer.id)
    .bind(id.unwrap_or(""))
    .fetch_all(&state.db.pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let expires_at: i64 = row.try_get("expires_at")?;
        let license_state =
            standing_word(&row.try_get::<String, _>("state")?, expires_at, now())?.to_owned();
        out.push(LicenseRow {
            id: row.try_get("id")?,
            app: row.try_get("app")?,
            app_name: row.try_get("app_name")?,
            vendor: row.try_get("vendor")?,
            vendor_name: row.try_get("vendor_name")?,
            plan: row
                .try_get::<Option<String>, _>("plan")?
                .unwrap_or_else(|| "custom".into()),
            state: license_state,
            expires: crate::server::web::date(expires_at),
            issued: crate::server::web::date(row.try_get("issued_at")?),
            armored: row.try_get("armored")?,
            vendor_id: row.try_get("vendor_id")?,
        });
    }
    Ok(out)
}

/// License `id` of the signed-in buyer; another buyer's, or none, is a 404.
pub(crate) async fn own_license(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<LicenseRow, WebError> {
    let buyer = required(state, headers, &format!("/account/licenses/{id}")).await?;
    licenses_of(state, &buyer, Some(id))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| WebError::not_found("license"))
}

#[derive(Template)]
#[template(path = "account.html")]
pub(crate) struct AccountPage {
    page: Page,
    buyer: Buyer,
    licenses: Vec<LicenseRow>,
}

/// `GET /account`: the buyer's licenses.
pub async fn account(
    State(state): State<AppState>,
    parts: PageParts,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let buyer = required(&state, &headers, "/account").await?;
    let licenses = licenses_of(&state, &buyer, None).await?;
    Ok(render(&AccountPage {
        page: Page::new(&parts, "account", "My licenses"),
        buyer,
        licenses,
    }))
}

#[derive(Template)]
#[template(path = "license.html")]
pub(crate) struct LicensePage {
    page: Page,
    license: LicenseRow,
    /// Why the license can no longer be used (revoked, suspended or expired), in a sentence;
    /// the page then offers no install commands and no download.
    ended: Option<String>,
    versions: Vec<String>,
    why_none: Option<String>,
    fingerprint: String,
    portal: String,
}

/// `GET /account/licenses/{id}`: one license, the versions it entitles, the install commands.
pub async fn license_page(
    State(state): State<AppState>,
    parts: PageParts,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, WebError> {
    let license = own_license(&state, &headers, &id).await?;
    let mut conn = state.db.pool.acquire().await?;
    let ended = ended(&mut conn, &license).await?;
    let mut versions = Vec::new();
    let mut why_none = None;
    match domain::licenses::check_license(&mut conn, &license.armored).await {
        Ok(checked) => {
            versions =
                domain::entitlement::receivable_versions(&mut conn, &checked, &license.app).await?;
            if versions.is_empty() {
                why_none = Some("No published release falls within this license yet.".to_owned());
            }
        }
        Err(e) if !e.is_client_error() => return Err(e.into()),
        Err(e) => why_none = Some(format!("Nothing can be installed with it: {}.", e.detail)),
    }
    let fingerprint: String = sqlx::query(
        "SELECT k.root_fingerprint FROM keysets k JOIN vendors v ON v.id = k.vendor_id WHERE v.slug = $1 ORDER BY k.seq DESC LIMIT 1",
    )
    .bind(&license.vendor)
    .fetch_optional(&mut *conn)
    .await?
    .map(|r| r.try_get("root_fingerprint"))
    .transpose()?
    .unwrap_or_default();
    Ok(render(&LicensePage {
        page: Page::new(&parts, "account", format!("{} license", license.app_name)),
        ended,
        license,
        versions,
        why_none,
        fingerprint,
        portal: crate::server::web::market::portal_url(&headers),
    }))
}

/// Why `license` can no longer be used, with the vendor's reason for a revocation or suspension
/// (from its audit log); `None` while it is active.
async fn ended(
    conn: &mut sqlx::AnyConnection,
    license: &LicenseRow,
) -> Result<Option<String>, WebError> {
    let vendor = &license.vendor_name;
    let action = match license.state.as_str() {
        "revoked" => "license.revoke",
        "suspended" => "license.suspend",
        "expired" => {
            return Ok(Some(format!(
                "This license expired on {}. It no longer installs or runs the app; ask {vendor} to renew it.",
                license.expires
            )));
        }
        _ => return Ok(None),
    };
    let entry: Option<String> = sqlx::query(
        "SELECT entry FROM audit_log WHERE vendor_id = $1 AND action = $2 AND entry LIKE $3 \
         ORDER BY seq DESC LIMIT 1",
    )
    .bind(&license.vendor_id)
    .bind(action)
    .bind(format!("%\"{}\"%", license.id))
    .fetch_optional(conn)
    .await?
    .map(|row| row.try_get("entry"))
    .transpose()?;
    let reason = entry
        .and_then(|e| serde_json::from_str::<serde_json::Value>(&e).ok())
        .and_then(|e| e["detail"]["reason"].as_str().map(str::to_owned))
        .filter(|r| !r.trim().is_empty());
    let reason = reason.map_or_else(String::new, |r| format!(" ({r})"));
    Ok(Some(match license.state.as_str() {
        "revoked" => format!(
            "{vendor} revoked this license{reason}. It no longer installs or runs the app, and running installations stop at their next check-in."
        ),
        _ => format!(
            "{vendor} suspended this license{reason}. Until {vendor} reinstates it, nothing can be installed with it and running installations refuse new checks."
        ),
    }))
}

/// `GET /account/licenses/{id}/file`: the license file, as a download.
pub async fn license_file(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, WebError> {
    let license = own_license(&state, &headers, &id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-pem-file".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}.lic\"", license.app),
            ),
        ],
        license.armored,
    )
        .into_response())
}
