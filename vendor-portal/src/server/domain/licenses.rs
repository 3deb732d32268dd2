//! Licenses as the portal holds them: verifying a presented license against its vendor's keyset,
//! the portal's record of it (typed state, current revision), and its standing.

use license::claims::Claims;
use license::status::LicenseState;
use license::{TrustPin, UnixTime, VerifyOptions};
use sqlx::{AnyConnection, Row as _};

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
