//! The signed status of a license: what the public status endpoint, activations and check-ins
//! answer with, cached briefly per license.

use license::UnixTime;
use license::status::{LicenseState, StatusClaims, sign_status};
use sqlx::Row as _;

use crate::server::base::now;
use crate::server::domain::error::{DomainError, DomainResult};
use crate::server::domain::keys;
use crate::server::state::{AppState, CachedStatus};

/// The signed status of license `id` of vendor `vendor` over `nonce`: what the status endpoint,
/// activations and check-ins answer with.
pub async fn signed_status(
    state: &AppState,
    vendor: &str,
    id: &str,
    nonce: &str,
) -> DomainResult<(StatusClaims, String)> {
    let cache_key = (vendor.to_owned(), id.to_owned());
    let cached = match state.statuses.get(&cache_key) {
        Some(hit) => hit,
        None => {
            // One query: the license's state and the key to sign with.
            let read_at = now();
            let row = sqlx::query(
                "SELECT l.state, l.seq, v.id AS vendor_id, k.kid, k.sealed_private \
                 FROM licenses l JOIN vendors v ON v.id = l.vendor_id \
                 LEFT JOIN vendor_keys k ON k.vendor_id = v.id AND k.role = 'license' \
                      AND k.sealed_private IS NOT NULL AND k.not_before <= $3 AND k.not_after > $3 \
                 WHERE v.slug = $1 AND l.id = $2 \
                 ORDER BY k.generation DESC, k.not_before DESC, k.kid LIMIT 1",
            )
            .bind(vendor)
            .bind(id)
            .bind(read_at + license::verify::DEFAULT_LEEWAY as i64)
            .fetch_optional(&state.db.pool)
            .await?
            .ok_or_else(|| DomainError::not_found("license", id))?;
            let kid = match (
                row.try_get::<Option<String>, _>("kid")?,
                row.try_get::<Option<String>, _>("sealed_private")?,
            ) {
                (Some(kid), Some(sealed)) => Some((kid, sealed)),
                _ => None,
            };
            let fresh = CachedStatus {
                vendor_id: row.try_get("vendor_id")?,
                state: row.try_get("state")?,
                seq: row.try_get("seq")?,
                kid,
                read_at,
            };
            state.statuses.put(cache_key, fresh.clone());
            fresh
        }
    };
    let Some((kid, sealed)) = &cached.kid else {
        return Err(DomainError::unavailable(
            "the vendor has no license-signing key valid now; the vendor must rotate keys",
        ));
    };
    let key = state
        .master
        .open_signing_key(&keys::seal_context(&cached.vendor_id, kid), sealed)?;
    let kid = kid.clone();
    // The signed time is when the state was read, so the statement is exact.
    let now_t = UnixTime::from_secs(u64::try_from(cached.read_at).unwrap_or(0))
        .unwrap_or_else(UnixTime::now);
    let claims = StatusClaims {
        iss: license::claims::Slug::new(vendor.to_owned()).map_err(DomainError::internal)?,
        jti: license::claims::LicenseId::new(id.to_owned()).map_err(DomainError::internal)?,
        state: LicenseState::parse(&cached.state)
            .ok_or_else(|| DomainError::internal("unknown license state"))?,
        seq: u64::try_from(cached.seq).unwrap_or(0),
        time: now_t,
        nonce: nonce.to_owned(),
    };
    let signed = sign_status(&claims, &kid, &key).map_err(DomainError::internal)?;
    Ok((claims, signed))
}
