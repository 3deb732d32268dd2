//! Licenses as the portal holds them: the vendor's view of them, verifying a presented license
//! against its vendor's keyset, the portal's record of it (typed state, current revision) and its
//! standing. Issuing, changing and the signed status have modules of their own.

pub mod change;
pub mod issue;
pub mod status;

use license::claims::Claims;
use license::status::LicenseState;
use license::{TrustPin, UnixTime, VerifyOptions};
use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;
use sqlx::{AnyConnection, Row as _};
use utoipa::{IntoParams, ToSchema};

use super::access::Caller;
use crate::server::state::AppState;

use super::error::{DomainError, DomainResult, Kind};

/// A license that verified and that the portal knows, in good standing.
pub struct CheckedLicense {
    /// The vendor's id.
    pub vendor_id: String,
    /// The license's app id.
    pub app_id: String,
    /// Its verified claims.
    pub claims: Claims,
}

/// Verifies a presented license (armoured or compact) and checks the portal's record of it.
pub async fn check_license(
    conn: &mut AnyConnection,
    presented: &str,
) -> DomainResult<CheckedLicense> {
    let mut license = verify_license(conn, presented).await?;
    license.app_id = check_standing(conn, &license).await?;
    Ok(license)
}

/// Verifies a presented license's signature against its vendor's keyset, and its validity
/// period. (`app_id` is left empty: [`check_standing`] reads it.)
pub async fn verify_license(
    conn: &mut AnyConnection,
    presented: &str,
) -> DomainResult<CheckedLicense> {
    let armored = if presented.trim_start().starts_with("-----BEGIN") {
        presented.to_owned()
    } else {
        license::armor::armor(presented.trim())
    };
    let bad = |e: &dyn std::fmt::Display| {
        DomainError::new(
            Kind::Unauthorized,
            "bad_license",
            format!("the license is not valid: {e}"),
        )
    };
    let unverified = license::verify::decode_unverified(&armored).map_err(|e| bad(&e))?;
    let issuer = unverified
        .claims
        .get("iss")
        .and_then(|v| v.as_str())
        .ok_or_else(|| bad(&"it names no issuer"))?
        .to_owned();
    let vendor = sqlx::query(
        "SELECT v.id, k.document FROM vendors v JOIN keysets k ON k.vendor_id = v.id \
         WHERE v.slug = $1 ORDER BY k.seq DESC LIMIT 1",
    )
    .bind(&issuer)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| {
        bad(&format!(
            "no vendor {issuer:?} issues licenses on this portal"
        ))
    })?;
    let vendor_id: String = vendor.try_get("id")?;
    let document: String = vendor.try_get("document")?;
    let trusted = license::Keyset::verify(document.as_bytes(), &TrustPin::default())
        .map_err(DomainError::internal)?;
    let verified = match trusted.verify_license(&armored, &VerifyOptions::at(UnixTime::now())) {
        Ok(v) => v,
        Err(license::Error::Expired { .. }) => {
            return Err(DomainError::refused(
                "expired",
                "the license has expired: ask the vendor to renew it",
            ));
        }
        Err(license::Error::NotYetValid { .. }) => {
            return Err(DomainError::refused(
                "not_yet_valid",
                "the license is not valid yet",
            ));
        }
        Err(e) => return Err(bad(&e)),
    };
    Ok(CheckedLicense {
        vendor_id,
        app_id: String::new(),
        claims: verified.claims().clone(),
    })
}

/// Checks the portal's record of a verified license: known, not revoked or suspended, and the
/// newest revision; returns the license's app id.
pub async fn check_standing(
    conn: &mut AnyConnection,
    license: &CheckedLicense,
) -> DomainResult<String> {
    let claims = &license.claims;
    let record = license_record(conn, &license.vendor_id, claims.jti.as_str()).await?;
    record.in_force()?;
    if record.seq > claims.seq {
        return Err(DomainError::refused(
            "superseded",
            format!(
                "this is revision {} of the license but the vendor has issued revision {}: use the newest license file",
                claims.seq, record.seq
            ),
        ));
    }
    Ok(record.app_id)
}

/// The portal's record of a license: its app, state, current revision and claims.
pub struct LicenseRecord {
    /// The app's id.
    pub app_id: String,
    /// Active, suspended or revoked.
    pub state: LicenseState,
    /// The current revision.
    pub seq: u64,
    /// The current revision, armoured.
    pub armored: String,
    /// The current revision's claims.
    pub claims: Claims,
}

/// Reads license `id` of vendor `vendor_id`; one the portal does not know is refused (403
/// `unknown_license`).
pub async fn license_record(
    conn: &mut AnyConnection,
    vendor_id: &str,
    id: &str,
) -> DomainResult<LicenseRecord> {
    let row = sqlx::query(
        "SELECT app_id, state, seq, armored, claims FROM licenses WHERE id = $1 AND vendor_id = $2",
    )
    .bind(id)
    .bind(vendor_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| {
        DomainError::refused(
            "unknown_license",
            "the portal has no record of this license: it was not issued here",
        )
    })?;
    let claims: String = row.try_get("claims")?;
    Ok(LicenseRecord {
        app_id: row.try_get("app_id")?,
        state: parse_state(&row.try_get::<String, _>("state")?)?,
        seq: u64::try_from(row.try_get::<i64, _>("seq")?).unwrap_or(0),
        armored: row.try_get("armored")?,
        claims: serde_json::from_str(&claims).map_err(DomainError::internal)?,
    })
}

/// A stored license state.
pub fn parse_state(text: &str) -> DomainResult<LicenseState> {
    LicenseState::parse(text)
        .ok_or_else(|| DomainError::internal(format!("a license has the unknown state {text:?}")))
}

/// How a license stands, in a word for pages: its state, or `expired` once an active license
/// is past its expiry at `at` (Unix seconds).
pub fn standing_word(state: &str, expires_at: i64, at: i64) -> DomainResult<&'static str> {
    Ok(match parse_state(state)? {
        LicenseState::Active if expires_at <= at => "expired",
        other => other.as_str(),
    })
}

impl LicenseRecord {
    /// Refuses a revoked or suspended license (403 `revoked` / `suspended`).
    pub fn in_force(&self) -> DomainResult<()> {
        match self.state {
            LicenseState::Revoked => Err(DomainError::refused(
                "revoked",
                "the license was revoked by the vendor; nothing more is granted to it: ask the vendor for a new one",
            )),
            LicenseState::Suspended => Err(DomainError::refused(
                "suspended",
                "the license is suspended; ask the vendor to reinstate it",
            )),
            LicenseState::Active => Ok(()),
            other => Err(DomainError::refused(
                "not_active",
                format!("the license is {}; ask the vendor", other.as_str()),
            )),
        }
    }
}

/// A license.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct License {
    /// The license id (`jti`).
    pub id: String,
    /// The customer's slug.
    pub customer: String,
    /// The app's slug.
    pub app: String,
    /// The plan's slug, if issued from one.
    pub plan: Option<String>,
    /// `active`, `suspended` or `revoked`.
    #[schema(value_type = String)]
    pub state: LicenseState,
    /// The current revision.
    pub seq: i64,
    /// The key that signed the current file.
    pub kid: String,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// The signed claims.
    #[schema(value_type = Object)]
    pub claims: serde_json::Value,
    /// The armoured license file.
    pub license: String,
}

/// The columns [`license_from`] reads.
pub const LICENSE_SELECT: &str = "SELECT l.id, c.slug AS customer, a.slug AS app, p.slug AS plan, l.state, l.seq, l.kid, \
    l.issued_at, l.expires_at, l.claims, l.armored FROM licenses l \
    JOIN customers c ON c.id = l.customer_id JOIN apps a ON a.id = l.app_id LEFT JOIN plans p ON p.id = l.plan_id";

/// A license from a row of [`LICENSE_SELECT`].
pub fn license_from(row: &sqlx::any::AnyRow) -> DomainResult<License> {
    let claims: String = row.try_get("claims")?;
    Ok(License {
        id: row.try_get("id")?,
        customer: row.try_get("customer")?,
        app: row.try_get("app")?,
        plan: row.try_get("plan")?,
        state: parse_state(&row.try_get::<String, _>("state")?)?,
        seq: row.try_get("seq")?,
        kid: row.try_get("kid")?,
        issued_at: row.try_get("issued_at")?,
        expires_at: row.try_get("expires_at")?,
        claims: serde_json::from_str(&claims).map_err(DomainError::internal)?,
        license: row.try_get("armored")?,
    })
}

/// License `id` of vendor `vendor_id`.
pub async fn find_license(
    conn: &mut AnyConnection,
    vendor_id: &str,
    id: &str,
) -> DomainResult<License> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "{LICENSE_SELECT} WHERE l.vendor_id = $1 AND l.id = $2"
    )))
    .bind(vendor_id)
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| DomainError::not_found("license", id))?;
    license_from(&row)
}

/// Unix seconds as the database stores them.
pub fn secs(t: UnixTime) -> i64 {
    i64::try_from(t.as_secs()).unwrap_or(i64::MAX)
}

/// Filters for listing licenses.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LicenseFilter {
    /// Only this customer's.
    pub customer: Option<String>,
    /// Only this app's.
    pub app: Option<String>,
    /// Only in this state.
    pub state: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
    /// Skip this many.
    pub offset: Option<u32>,
}

/// Lists licenses, newest first.
pub async fn list(
    state: &AppState,
    caller: &Caller,
    filter: LicenseFilter,
) -> DomainResult<Vec<License>> {
    let limit = i64::from(filter.limit.unwrap_or(100).clamp(1, 1000));
    let offset = i64::from(filter.offset.unwrap_or(0));
    let rows = sqlx::query(AssertSqlSafe(format!(
        "{LICENSE_SELECT} WHERE l.vendor_id = $1 AND ($2 = '' OR c.slug = $2) AND ($3 = '' OR a.slug = $3) \
         AND ($4 = '' OR l.state = $4) ORDER BY l.issued_at DESC, l.id LIMIT $5 OFFSET $6"
    )))
    .bind(&caller.vendor_id)
    .bind(filter.customer.unwrap_or_default())
    .bind(filter.app.unwrap_or_default())
    .bind(filter.state.unwrap_or_default())
    .bind(limit)
    .bind(offset)
    .fetch_all(&state.db.pool)
    .await?;
    let licenses = rows
        .iter()
        .map(license_from)
        .collect::<DomainResult<Vec<_>>>()?;
    Ok(licenses)
}

/// Shows a license.
pub async fn show(state: &AppState, caller: &Caller, id: String) -> DomainResult<License> {
    let mut conn = state.db.pool.acquire().await?;
    let license = find_license(&mut conn, &caller.vendor_id, &id).await?;
    Ok(license)
}
