//! Releases: the objects a push uploads (stored once per vendor by ciphertext digest), staging a
//! release (its signed manifest and sealed keys), publishing it with targets metadata the vendor
//! signed, and reading them back.
//!
//! A push is: `missing` (which objects the portal lacks), an upload for each ([`uploads`]),
//! [`staging::stage`], then [`publish::put_targets`]. Until the last step nothing is visible to
//! installers, so an interrupted push leaves no half-visible release, and running it again skips
//! what already arrived.

pub mod publish;
pub mod staging;
pub mod uploads;

use bundles::{Digest, Limits};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;
use sqlx::{AnyConnection, Row as _};
use utoipa::ToSchema;

use super::access::{Caller, Role};
use super::catalog::find_app;
use super::error::{DomainError, DomainResult};
use crate::server::state::AppState;

/// Where a vendor's sealed object lives in the blob store.
pub fn object_key(vendor_id: &str, digest: &Digest) -> String {
    format!("objects/{vendor_id}/{}", digest.hex())
}

/// A release's signature block, as in the bundle.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignatureBlock {
    /// The release key's id.
    pub kid: String,
    /// The Ed25519 signature, base64.
    pub signature: String,
}

/// A release as the vendor sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Release {
    /// Its id.
    pub id: String,
    /// The app's slug.
    pub app: String,
    /// Its version.
    pub version: String,
    /// `staged` (uploaded, not yet in signed targets) or `published`.
    pub state: String,
    /// SHA-256 of the signed manifest.
    pub manifest_digest: String,
    /// Channels (from the signed targets).
    pub channels: Vec<String>,
    /// Upgrades may not skip it.
    pub required: bool,
    /// Why it was retracted, if it was.
    pub yanked: Option<String>,
    /// The entitlement a license needs for it.
    pub entitlement: Option<String>,
    /// The oldest installer that installs it.
    pub min_installer_version: String,
    /// Release notes.
    pub release_notes: String,
    /// Functions, AWS resources, IAM permissions, capabilities and parameters.
    #[schema(value_type = Object)]
    pub summary: serde_json::Value,
    /// Number of objects.
    pub object_count: i64,
    /// Their total sealed size in bytes.
    pub total_size: i64,
    /// When it was staged.
    pub created_at: i64,
    /// When it was published.
    pub published_at: Option<i64>,
    /// The manifest's signature (release key id and base64 Ed25519 signature).
    pub signature: SignatureBlock,
}

/// The columns [`release_from`] reads, of `releases r` joined with `apps a`.
pub const RELEASE_COLUMNS: &str = "r.id, a.slug AS app, r.version, r.state, r.manifest_digest, r.channels, r.required, \
     r.yanked_reason, r.entitlement, r.min_installer_version, r.release_notes, r.summary, r.object_count, \
     r.total_size, r.created_at, r.published_at, r.signature_kid, r.signature";

/// A release from a row with [`RELEASE_COLUMNS`].
pub fn release_from(row: &sqlx::any::AnyRow) -> DomainResult<Release> {
    let channels: String = row.try_get("channels")?;
    let summary: String = row.try_get("summary")?;
    Ok(Release {
        id: row.try_get("id")?,
        app: row.try_get("app")?,
        version: row.try_get("version")?,
        state: row.try_get("state")?,
        manifest_digest: row.try_get("manifest_digest")?,
        channels: serde_json::from_str(&channels).unwrap_or_default(),
        required: row.try_get::<i64, _>("required")? != 0,
        yanked: row.try_get("yanked_reason")?,
        entitlement: row.try_get("entitlement")?,
        min_installer_version: row.try_get("min_installer_version")?,
        release_notes: row.try_get("release_notes")?,
        summary: serde_json::from_str(&summary).unwrap_or_default(),
        object_count: row.try_get("object_count")?,
        total_size: row.try_get("total_size")?,
        created_at: row.try_get("created_at")?,
        published_at: row.try_get("published_at")?,
        signature: SignatureBlock {
            kid: row.try_get("signature_kid")?,
            signature: row.try_get("signature")?,
        },
    })
}

/// Every release of an app, staged and published, newest version first.
pub async fn releases_of(conn: &mut AnyConnection, app_id: &str) -> DomainResult<Vec<Release>> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {RELEASE_COLUMNS} FROM releases r JOIN apps a ON a.id = r.app_id WHERE r.app_id = $1"
    )))
    .bind(app_id)
    .fetch_all(conn)
    .await?;
    let mut releases = rows
        .iter()
        .map(release_from)
        .collect::<DomainResult<Vec<_>>>()?;
    // Semantic order, which SQL's text order is not (1.10.0 after 1.9.0).
    releases.sort_by(|a, b| {
        let parse = |v: &str| semver::Version::parse(v).ok();
        parse(&b.version).cmp(&parse(&a.version))
    });
    Ok(releases)
}

/// The sealing context of a release's keys.
pub fn keys_context(vendor_id: &str, manifest_digest: &str) -> String {
    format!("release-keys:{vendor_id}:{manifest_digest}")
}

/// Release `version` of app `app_id`, staged or published.
pub async fn find_release(
    conn: &mut AnyConnection,
    app_id: &str,
    version: &str,
) -> DomainResult<Release> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {RELEASE_COLUMNS} FROM releases r JOIN apps a ON a.id = r.app_id \
         WHERE r.app_id = $1 AND r.version = $2"
    )))
    .bind(app_id)
    .bind(version)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| DomainError::not_found("release", version))?;
    release_from(&row)
}

/// Largest staging request (manifest and keys file, each at most 4 MiB, in JSON).
pub const MAX_STAGE_BODY: usize = 20 * 1024 * 1024;

/// A sealed object digest from a request (`sealed-sha256:<hex>`).
pub fn parse_digest(text: &str) -> DomainResult<Digest> {
    Digest::parse(text)
        .ok_or_else(|| {
            DomainError::bad_request(format!(
                "{text:?} is not a sealed digest: use sealed-sha256:<64 lowercase hex digits>"
            ))
        })
        .and_then(|d| {
            if d.kind() == bundles::digest::DigestKind::Sealed {
                Ok(d)
            } else {
                Err(DomainError::bad_request(
                    "objects are named by their sealed digest (sealed-sha256:<hex>)",
                ))
            }
        })
}

/// Which of these sealed objects the portal lacks.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MissingRequest {
    /// Sealed digests (`sealed-sha256:<hex>`), at most 10,000.
    pub digests: Vec<String>,
}

/// The digests to upload.
#[derive(Debug, Serialize, ToSchema)]
pub struct MissingResponse {
    /// The ones the portal does not have.
    pub missing: Vec<String>,
}

/// Lists the objects of a push the portal does not have yet.
pub async fn missing(
    state: &AppState,
    caller: &Caller,
    app: String,
    body: MissingRequest,
) -> DomainResult<MissingResponse> {
    caller.require(Role::Publisher)?;
    let mut conn = state.db.pool.acquire().await?;
    find_app(&mut conn, &caller.vendor_id, &app).await?;
    drop(conn);
    let limit = Limits::default().max_objects as usize;
    if body.digests.len() > limit {
        return Err(DomainError::invalid(format!(
            "at most {limit} digests per request"
        )));
    }
    let digests = body
        .digests
        .iter()
        .map(|d| parse_digest(d))
        .collect::<DomainResult<Vec<_>>>()?;
    let checks = futures_util::stream::iter(digests.into_iter().map(|digest| {
        let (blobs, key) = (state.blobs.clone(), object_key(&caller.vendor_id, &digest));
        async move { (digest, blobs.exists(&key).await) }
    }))
    .buffered(16)
    .collect::<Vec<_>>()
    .await;
    let mut missing = Vec::new();
    for (digest, exists) in checks {
        if !exists.map_err(|e| DomainError::unavailable(format!("{e:#}")))? {
            missing.push(digest.to_string());
        }
    }
    Ok(MissingResponse { missing })
}

/// Lists an app's releases, staged and published, newest version first.
pub async fn list(state: &AppState, caller: &Caller, app: String) -> DomainResult<Vec<Release>> {
    let mut conn = state.db.pool.acquire().await?;
    let app_row = find_app(&mut conn, &caller.vendor_id, &app).await?;
    let releases = releases_of(&mut conn, &app_row.id).await?;
    Ok(releases)
}

/// One release.
pub async fn show(
    state: &AppState,
    caller: &Caller,
    (app, version): (String, String),
) -> DomainResult<Release> {
    let mut conn = state.db.pool.acquire().await?;
    let app_row = find_app(&mut conn, &caller.vendor_id, &app).await?;
    let release = find_release(&mut conn, &app_row.id, &version).await?;
    Ok(release)
}
