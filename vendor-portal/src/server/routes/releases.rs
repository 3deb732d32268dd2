//! Releases: the objects a push uploads (stored once per vendor by ciphertext digest), staging a
//! release (its signed manifest and sealed keys), publishing it with targets metadata the vendor
//! signed, and the public TUF repository of each app.
//!
//! A push is: `POST .../releases/missing` (which objects the portal lacks), `PUT /objects/{d}`
//! for each, `PUT .../releases/{version}` (stage), then `PUT .../tuf/targets` (publish). Until the
//! last step nothing is visible to installers, so an interrupted push leaves no half-visible
//! release, and running it again skips what already arrived.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use bundles::release::{ReleaseTarget, target_name};
use bundles::{Digest, KeysFile, Limits};
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row as _};
use tough::schema::Targets;
use utoipa::ToSchema;

use crate::server::base::blobs::UploadRefused;
use crate::server::base::now;
use crate::server::base::secrets::{hex, new_id};
use crate::server::domain;
use crate::server::domain::catalog::find_app;
use crate::server::domain::error::{DomainError, DomainResult, Kind};
use crate::server::domain::keys::current_keyset;
use crate::server::domain::releases::{
    Release, SignatureBlock, find_release, keys_context, object_key, releases_of,
};
use crate::server::domain::tx::{AuditRecord, VendorTx, values_clause};
use crate::server::http::auth::{Caller, Role};
use crate::server::http::extract::{ApiJson, ApiPath};
use crate::server::http::reply::CommitReply as _;
use crate::server::http::reply::json_response;
use crate::server::state::AppState;
use crate::tuf;

/// Largest staging request (manifest and keys file, each at most 4 MiB, in JSON).
pub const MAX_STAGE_BODY: usize = 20 * 1024 * 1024;

fn parse_digest(text: &str) -> DomainResult<Digest> {
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
#[utoipa::path(post, path = "/api/v1/apps/{app}/releases/missing", tag = "releases", security(("token" = [])),
    params(("app" = String, Path, description = "App slug")), request_body = MissingRequest,
    responses((status = 200, body = MissingResponse), (status = 404, body = crate::server::http::problem::Problem)))]
pub async fn missing(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(app): ApiPath<String>,
    ApiJson(body): ApiJson<MissingRequest>,
) -> DomainResult<Response> {
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
    Ok(json_response(StatusCode::OK, MissingResponse { missing }))
}

/// An uploaded object.
#[derive(Debug, Serialize, ToSchema)]
pub struct ObjectStored {
    /// Its ciphertext digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// False when the portal had it already.
    pub created: bool,
}

/// Uploads one sealed object, streamed; it is stored only if its sealed digest (SHA-256 over its
/// header and chunk tags, as the signed manifest lists it) is the one in the path. Uploading an object the portal has is a no-op.
#[utoipa::path(put, path = "/api/v1/objects/{digest}", tag = "releases", security(("token" = [])),
    params(("digest" = String, Path, description = "The sealed object digest, sealed-sha256:<hex>")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = ObjectStored), (status = 200, body = ObjectStored), (status = 422, body = crate::server::http::problem::Problem)))]
pub async fn upload_object(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(digest): ApiPath<String>,
    body: Body,
) -> DomainResult<Response> {
    caller.require(Role::Publisher)?;
    let digest = parse_digest(&digest)?;
    let key = object_key(&caller.vendor_id, &digest);
    let unavailable = |e: anyhow::Error| DomainError::unavailable(format!("{e:#}"));
    if let Some(size) = state.blobs.size(&key).await.map_err(unavailable)? {
        return Ok(json_response(
            StatusCode::OK,
            ObjectStored {
                digest: digest.to_string(),
                size,
                created: false,
            },
        ));
    }
    let max = bundles::seal::sealed_size(Limits::default().max_object_size);
    let stored = state
        .blobs
        .put_verified(&key, &digest, max, body.into_data_stream())
        .await
        .map_err(unavailable)?;
    match stored {
        Ok(size) => {
            state.metrics.count("consign_object_uploads_total");
            Ok(json_response(
                StatusCode::CREATED,
                ObjectStored {
                    digest: digest.to_string(),
                    size,
                    created: true,
                },
            ))
        }
        Err(UploadRefused::DigestMismatch) => Err(DomainError::invalid(format!(
            "the uploaded bytes are not the sealed object {digest}; nothing was stored: upload the object again"
        ))),
        Err(UploadRefused::TooLarge(max)) => Err(DomainError::new(
            Kind::TooLarge,
            "too_large",
            format!("an object may be at most {max} bytes"),
        )),
        Err(UploadRefused::Interrupted(why)) => Err(DomainError::bad_request(format!(
            "the upload was cut short ({why}); nothing was stored: upload the object again"
        ))),
    }
}

/// Largest part of a resumable upload.
pub const MAX_PART: u64 = 64 << 20;
/// Most parts one object may be uploaded in.
pub const MAX_PARTS: u32 = 10_000;

fn parts_prefix(vendor_id: &str, digest: &Digest) -> String {
    format!("uploads/{vendor_id}/{}", digest.hex())
}

fn part_key(vendor_id: &str, digest: &Digest, n: u32) -> String {
    format!("{}/part-{n:05}", parts_prefix(vendor_id, digest))
}

/// A part of a resumable upload.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartStored {
    /// Its number, from 0.
    pub part: u32,
    /// Its size in bytes.
    pub size: u64,
}

/// What has arrived of a resumable upload.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadState {
    /// The object is stored already: nothing more to send.
    pub complete: bool,
    /// The parts that arrived whole.
    pub parts: Vec<PartStored>,
}

/// Uploads part `n` of a large object (at most 64 MiB, streamed). A part arrives whole or not
/// at all; sending it again replaces it. `POST .../complete` then assembles the object.
#[utoipa::path(put, path = "/api/v1/objects/{digest}/parts/{n}", tag = "releases", security(("token" = [])),
    params(("digest" = String, Path, description = "The sealed object digest"), ("n" = u32, Path, description = "Part number, from 0")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = PartStored), (status = 400, body = crate::server::http::problem::Problem), (status = 413, body = crate::server::http::problem::Problem)))]
pub async fn upload_part(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((digest, n)): ApiPath<(String, u32)>,
    body: Body,
) -> DomainResult<Response> {
    caller.require(Role::Publisher)?;
    let digest = parse_digest(&digest)?;
    if n >= MAX_PARTS {
        return Err(DomainError::bad_request(format!(
            "part numbers run from 0 to {}",
            MAX_PARTS - 1
        )));
    }
    let stored = state
        .blobs
        .put_streamed(
            &part_key(&caller.vendor_id, &digest, n),
            None,
            MAX_PART,
            body.into_data_stream(),
        )
        .await
        .map_err(|e| DomainError::unavailable(format!("{e:#}")))?;
    match stored {
        Ok(size) => Ok(json_response(
            StatusCode::CREATED,
            PartStored { part: n, size },
        )),
        Err(UploadRefused::TooLarge(max)) => Err(DomainError::new(
            Kind::TooLarge,
            "too_large",
            format!("a part may be at most {max} bytes"),
        )),
        Err(other) => Err(DomainError::bad_request(format!(
            "part {n} was not stored ({other:?}): send it again"
        ))),
    }
}

/// What has arrived of an object's resumable upload, so that an interrupted push sends only the
/// rest.
#[utoipa::path(get, path = "/api/v1/objects/{digest}/parts", tag = "releases", security(("token" = [])),
    params(("digest" = String, Path, description = "The sealed object digest")),
    responses((status = 200, body = UploadState)))]
pub async fn list_parts(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(digest): ApiPath<String>,
) -> DomainResult<Response> {
    caller.require(Role::Publisher)?;
    let digest = parse_digest(&digest)?;
    let unavailable = |e: anyhow::Error| DomainError::unavailable(format!("{e:#}"));
    let complete = state
        .blobs
        .size(&object_key(&caller.vendor_id, &digest))
        .await
        .map_err(unavailable)?
        .is_some();
    let parts = state
        .blobs
        .list(&parts_prefix(&caller.vendor_id, &digest))
        .await
        .map_err(unavailable)?
        .into_iter()
        .filter_map(|(name, size)| {
            let part = name.strip_prefix("part-")?.parse().ok()?;
            Some(PartStored { part, size })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        UploadState { complete, parts },
    ))
}

/// Assembles a resumable upload.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// How many parts the object was sent in (parts 0 to `parts - 1`).
    pub parts: u32,
}

/// Assembles parts 0 to `parts - 1` into the object, streamed, and keeps it only if they make up
/// the sealed object the digest names; the parts are deleted either way.
#[utoipa::path(post, path = "/api/v1/objects/{digest}/complete", tag = "releases", security(("token" = [])),
    params(("digest" = String, Path, description = "The sealed object digest")), request_body = CompleteRequest,
    responses((status = 201, body = ObjectStored), (status = 200, body = ObjectStored), (status = 409, body = crate::server::http::problem::Problem),
              (status = 422, body = crate::server::http::problem::Problem)))]
pub async fn complete_upload(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(digest): ApiPath<String>,
    ApiJson(body): ApiJson<CompleteRequest>,
) -> DomainResult<Response> {
    caller.require(Role::Publisher)?;
    let digest = parse_digest(&digest)?;
    let unavailable = |e: anyhow::Error| DomainError::unavailable(format!("{e:#}"));
    let key = object_key(&caller.vendor_id, &digest);
    if let Some(size) = state.blobs.size(&key).await.map_err(unavailable)? {
        return Ok(json_response(
            StatusCode::OK,
            ObjectStored {
                digest: digest.to_string(),
                size,
                created: false,
            },
        ));
    }
    let prefix = parts_prefix(&caller.vendor_id, &digest);
    let present = state.blobs.list(&prefix).await.map_err(unavailable)?;
    if body.parts == 0 || body.parts > MAX_PARTS {
        return Err(DomainError::invalid(format!(
            "parts must be 1 to {MAX_PARTS}"
        )));
    }
    let missing: Vec<u32> = (0..body.parts)
        .filter(|n| {
            !present
                .iter()
                .any(|(name, _)| *name == format!("part-{n:05}"))
        })
        .collect();
    if !missing.is_empty() {
        return Err(DomainError::conflict(format!(
            "parts {missing:?} have not arrived: upload them, then complete"
        )));
    }
    let keys: Vec<(crate::server::base::blobs::Blobs, String)> = (0..body.parts)
        .map(|n| (state.blobs.clone(), part_key(&caller.vendor_id, &digest, n)))
        .collect();
    let parts = futures_util::stream::iter(keys)
        .then(open_part)
        .try_flatten();
    let max = bundles::seal::sealed_size(Limits::default().max_object_size);
    let stored = state
        .blobs
        .put_verified(&key, &digest, max, Box::pin(parts))
        .await
        .map_err(unavailable)?;
    for n in 0..body.parts {
        let _ = state
            .blobs
            .delete(&part_key(&caller.vendor_id, &digest, n))
            .await;
    }
    match stored {
        Ok(size) => {
            state.metrics.count("consign_object_uploads_total");
            Ok(json_response(
                StatusCode::CREATED,
                ObjectStored {
                    digest: digest.to_string(),
                    size,
                    created: true,
                },
            ))
        }
        Err(why) => Err(DomainError::invalid(format!(
            "the parts do not make up the sealed object {digest} ({why:?}); they were discarded: upload the object again"
        ))),
    }
}

async fn open_part(
    (blobs, key): (crate::server::base::blobs::Blobs, String),
) -> std::io::Result<futures_util::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>> {
    blobs
        .stream(&key, None)
        .await
        .map_err(std::io::Error::other)
}

/// Stages a release: its signed manifest and its data keys.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StageRequest {
    /// The signed manifest, exactly as in the bundle.
    pub manifest: String,
    /// The manifest's signature.
    pub signature: SignatureBlock,
    /// The bundle's keys file (stored sealed under the portal's master key).
    pub keys: String,
}

/// The references between the template's resources, for the marketplace's architecture diagram.
/// The template is opened here, once, with the keys the vendor just handed over: its plaintext
/// digest is in the signed manifest, so what the diagram shows is what the vendor signed.
async fn template_references(
    state: &AppState,
    vendor_id: &str,
    manifest: &bundles::BundleManifest,
    keys: &KeysFile,
) -> DomainResult<Vec<bundles::template::Reference>> {
    let entry = manifest
        .object(&manifest.template)
        .ok_or_else(|| DomainError::invalid("the manifest does not list its template object"))?;
    if entry.size > bundles::template::MAX_TEMPLATE_LEN as u64 {
        return Err(DomainError::invalid(format!(
            "the template is {} bytes; templates are at most {} bytes",
            entry.size,
            bundles::template::MAX_TEMPLATE_LEN
        )));
    }
    let key = keys
        .key_for(&entry.digest)
        .ok_or_else(|| DomainError::invalid("the keys file has no key for the template"))?;
    let sealed = state
        .blobs
        .get(&object_key(vendor_id, &entry.sealed_digest))
        .await
        .map_err(|e| DomainError::unavailable(format!("{e:#}")))?
        .ok_or_else(|| DomainError::conflict("the template object is not uploaded"))?;
    let mut plain = Vec::new();
    bundles::seal::open(
        key,
        entry.path.as_str(),
        &entry.digest,
        entry.size,
        sealed.as_ref(),
        &mut plain,
    )
    .map_err(|e| DomainError::invalid(format!("the template object does not open: {e}")))?;
    Ok(bundles::template::references(&plain))
}

/// The staged release and the TUF target to sign for it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Staged {
    /// The release.
    pub release: Release,
    /// The TUF target name.
    pub target: String,
    /// The manifest's length in bytes (the target's length).
    pub length: u64,
}

/// Stages a release whose objects are all uploaded: the manifest must verify against the
/// vendor's keyset and name this app and version. Restaging an unpublished version replaces it;
/// a published version is immutable.
#[utoipa::path(put, path = "/api/v1/apps/{app}/releases/{version}", tag = "releases", security(("token" = [])),
    params(("app" = String, Path, description = "App slug"), ("version" = String, Path, description = "Semantic version")),
    request_body = StageRequest,
    responses((status = 201, body = Staged), (status = 409, body = crate::server::http::problem::Problem), (status = 422, body = crate::server::http::problem::Problem)))]
pub async fn stage(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((app, version)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<StageRequest>,
) -> DomainResult<Response> {
    caller.require(Role::Publisher)?;
    let version = semver::Version::parse(&version).map_err(|e| {
        DomainError::bad_request(format!("{version:?} is not a semantic version: {e}"))
    })?;
    let limits = Limits::default();
    let (app_row, trusted) = {
        let mut conn = state.db.pool.acquire().await?;
        let app_row = find_app(&mut conn, &caller.vendor_id, &app).await?;
        let (_, text) = current_keyset(&mut conn, &caller.vendor_id).await?;
        let trusted = license::Keyset::verify(text.as_bytes(), &license::TrustPin::default())
            .map_err(DomainError::internal)?;
        (app_row, trusted)
    };
    let signature = bundles::manifest::ManifestSignature {
        kid: body.signature.kid.clone(),
        signature: crate::server::routes::decode_b64(&body.signature.signature)
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .ok_or_else(|| DomainError::invalid("the signature must be 64 bytes of base64"))?,
    };
    let manifest = bundles::manifest::verify_manifest(
        body.manifest.as_bytes(),
        &signature,
        &trusted,
        license::UnixTime::now(),
        &limits,
    )
    .map_err(|e| DomainError::invalid(format!("the manifest {e}")))?;
    if manifest.app.as_str() != app || manifest.version != version {
        return Err(DomainError::invalid(format!(
            "the manifest is {} {}, not {app} {version}",
            manifest.app, manifest.version
        )));
    }
    let keys = KeysFile::parse(body.keys.as_bytes())
        .map_err(|e| DomainError::invalid(format!("the keys file {e}")))?;
    keys.check_belongs_to(body.manifest.as_bytes(), &app, &version)
        .map_err(|e| DomainError::invalid(format!("the keys file {e}")))?;
    for object in &manifest.objects {
        if keys.key_for(&object.digest).is_none() {
            return Err(DomainError::invalid(format!(
                "the keys file has no key for object {}",
                object.path
            )));
        }
    }
    // Every object must be uploaded, with its signed size.
    let mut absent = 0;
    for object in &manifest.objects {
        let size = state
            .blobs
            .size(&object_key(&caller.vendor_id, &object.sealed_digest))
            .await
            .map_err(|e| DomainError::unavailable(format!("{e:#}")))?;
        if size != Some(object.sealed_size) {
            absent += 1;
        }
    }
    if absent > 0 {
        return Err(DomainError::conflict(format!(
            "{absent} of the release's {} objects are not uploaded; `release push` uploads them first",
            manifest.objects.len()
        )));
    }
    let manifest_digest = Digest::of(body.manifest.as_bytes()).to_string();
    let sealed_keys = state
        .master
        .seal(
            &keys_context(&caller.vendor_id, &manifest_digest),
            body.keys.as_bytes(),
        )
        .map_err(DomainError::internal)?;
    let summary = serde_json::json!({
        "name": manifest.name,
        "functions": manifest.functions.iter().map(|f| serde_json::json!({
            "name": f.name, "runtime": f.runtime, "memory": f.memory, "timeout": f.timeout, "feature": f.feature,
        })).collect::<Vec<_>>(),
        "resources": manifest.resources,
        "permissions": manifest.permissions,
        "capabilities": manifest.capabilities,
        "parameters": manifest.parameters,
        "references": template_references(&state, &caller.vendor_id, &manifest, &keys).await?,
    });
    let total: u64 = manifest.objects.iter().map(|o| o.sealed_size).sum();
    let entitlement = manifest.release_entitlement().map(|f| f.to_string());

    let mut tx = VendorTx::begin(&state, &caller.vendor_id).await?;
    let existing = sqlx::query(
        "SELECT id, state, manifest_digest FROM releases WHERE app_id = $1 AND version = $2",
    )
    .bind(&app_row.id)
    .bind(version.to_string())
    .fetch_optional(tx.conn())
    .await?;
    let release_id = match existing {
        Some(row) if row.try_get::<String, _>("state")? == "published" => {
            return Err(DomainError::conflict(format!(
                "{app} {version} is published already and versions are immutable: build the change as a new version"
            )));
        }
        Some(row) => {
            let id: String = row.try_get("id")?;
            sqlx::query("DELETE FROM release_objects WHERE release_id = $1")
                .bind(&id)
                .execute(tx.conn())
                .await?;
            sqlx::query("DELETE FROM releases WHERE id = $1")
                .bind(&id)
                .execute(tx.conn())
                .await?;
            id
        }
        None => new_id("rel")?,
    };
    let at = now();
    sqlx::query(
        "INSERT INTO releases (id, vendor_id, app_id, version, state, manifest, manifest_digest, signature_kid, \
         signature, keys_sealed, release_notes, summary, min_installer_version, object_count, total_size, \
         channels, required, yanked_reason, entitlement, created_at, published_at, manifest_size) \
         VALUES ($1, $2, $3, $4, 'staged', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, '[]', 0, NULL, $15, $16, NULL, $17)",
    )
    .bind(&release_id)
    .bind(&caller.vendor_id)
    .bind(&app_row.id)
    .bind(version.to_string())
    .bind(&body.manifest)
    .bind(&manifest_digest)
    .bind(&body.signature.kid)
    .bind(&body.signature.signature)
    .bind(sealed_keys)
    .bind(&manifest.release_notes)
    .bind(summary.to_string())
    .bind(manifest.min_installer_version.to_string())
    .bind(manifest.objects.len() as i64)
    .bind(i64::try_from(total).unwrap_or(i64::MAX))
    .bind(entitlement)
    .bind(at)
    .bind(body.manifest.len() as i64)
    .execute(tx.conn())
    .await?;
    let mut unique: Vec<(&Digest, u64)> = manifest
        .objects
        .iter()
        .map(|o| (&o.sealed_digest, o.sealed_size))
        .collect();
    unique.sort();
    unique.dedup();
    for chunk in unique.chunks(200) {
        let sql = format!(
            "INSERT INTO release_objects (release_id, vendor_id, digest, size) VALUES {}",
            values_clause(chunk.len(), 4)
        );
        let mut query = sqlx::query(&sql);
        for (digest, size) in chunk {
            query = query
                .bind(&release_id)
                .bind(&caller.vendor_id)
                .bind(digest.to_string())
                .bind(i64::try_from(*size).unwrap_or(i64::MAX));
        }
        query.execute(tx.conn()).await?;
    }
    tx.audit(
        &caller,
        "release.stage",
        &release_id,
        serde_json::json!({"app": app, "version": version.to_string(), "manifest": manifest_digest}),
    )
    .await?;
    let release = find_release(tx.conn(), &app_row.id, &version.to_string()).await?;
    let staged = Staged {
        release,
        target: target_name(&app, &version),
        length: body.manifest.len() as u64,
    };
    tx.commit(None, StatusCode::CREATED, &staged).await
}

/// Lists an app's releases, staged and published, newest version first.
#[utoipa::path(get, path = "/api/v1/apps/{app}/releases", tag = "releases", security(("token" = [])),
    params(("app" = String, Path, description = "App slug")),
    responses((status = 200, body = Vec<Release>), (status = 404, body = crate::server::http::problem::Problem)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(app): ApiPath<String>,
) -> DomainResult<Response> {
    let mut conn = state.db.pool.acquire().await?;
    let app_row = find_app(&mut conn, &caller.vendor_id, &app).await?;
    let releases = releases_of(&mut conn, &app_row.id).await?;
    Ok(json_response(StatusCode::OK, releases))
}

/// One release.
#[utoipa::path(get, path = "/api/v1/apps/{app}/releases/{version}", tag = "releases", security(("token" = [])),
    params(("app" = String, Path, description = "App slug"), ("version" = String, Path, description = "Version")),
    responses((status = 200, body = Release), (status = 404, body = crate::server::http::problem::Problem)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((app, version)): ApiPath<(String, String)>,
) -> DomainResult<Response> {
    let mut conn = state.db.pool.acquire().await?;
    let app_row = find_app(&mut conn, &caller.vendor_id, &app).await?;
    let release = find_release(&mut conn, &app_row.id, &version).await?;
    Ok(json_response(StatusCode::OK, release))
}

/// What the vendor's tools need to sign the next metadata.
#[derive(Debug, Serialize, ToSchema)]
pub struct TufState {
    /// The newest root (signed JSON), if any.
    #[schema(value_type = Object)]
    pub root: Option<serde_json::Value>,
    /// The newest targets (signed JSON), if any.
    #[schema(value_type = Object)]
    pub targets: Option<serde_json::Value>,
    /// The portal's online key for snapshot and timestamp (Ed25519 public key, hex).
    pub online_key: String,
}

/// The app's current root and targets and the portal's online key.
#[utoipa::path(get, path = "/api/v1/apps/{app}/tuf", tag = "releases", security(("token" = [])),
    params(("app" = String, Path, description = "App slug")),
    responses((status = 200, body = TufState), (status = 404, body = crate::server::http::problem::Problem)))]
pub async fn tuf_state(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(app): ApiPath<String>,
) -> DomainResult<Response> {
    let mut conn = state.db.pool.acquire().await?;
    let app_row = find_app(&mut conn, &caller.vendor_id, &app).await?;
    drop(conn);
    // The online key may be created here: that is a write.
    let mut tx = VendorTx::begin(&state, &caller.vendor_id).await?;
    let (online, _) = domain::tuf::online_key(tx.conn(), &state.master, &caller.vendor_id).await?;
    let json = |text: Option<(u64, String)>| -> DomainResult<Option<serde_json::Value>> {
        text.map(|(_, body)| serde_json::from_str(&body).map_err(DomainError::internal))
            .transpose()
    };
    let root = json(domain::tuf::latest(tx.conn(), &app_row.id, "root").await?)?;
    let targets = json(domain::tuf::latest(tx.conn(), &app_row.id, "targets").await?)?;
    tx.commit_all(&[]).await?;
    Ok(json_response(
        StatusCode::OK,
        TufState {
            root,
            targets,
            online_key: hex(online.as_bytes()),
        },
    ))
}

/// A stored metadata version.
#[derive(Debug, Serialize, ToSchema)]
pub struct Published {
    /// The root version now current.
    pub root: Option<u64>,
    /// The targets version now current.
    pub targets: Option<u64>,
    /// The snapshot version signed for it.
    pub snapshot: Option<u64>,
    /// The timestamp version signed for it.
    pub timestamp: Option<u64>,
    /// Versions that became visible to installers with this change.
    pub published: Vec<String>,
}

/// Stores a new root the vendor signed (version one up, signed by the previous root's key).
#[utoipa::path(put, path = "/api/v1/apps/{app}/tuf/root", tag = "releases", security(("token" = [])),
    params(("app" = String, Path, description = "App slug")), request_body(content = Object, content_type = "application/json"),
    responses((status = 201, body = Published), (status = 409, body = crate::server::http::problem::Problem), (status = 422, body = crate::server::http::problem::Problem)))]
pub async fn put_root(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(app): ApiPath<String>,
    body: axum::body::Bytes,
) -> DomainResult<Response> {
    caller.require(Role::Publisher)?;
    let mut tx = VendorTx::begin(&state, &caller.vendor_id).await?;
    let app_row = find_app(tx.conn(), &caller.vendor_id, &app).await?;
    let (keyset, _) = current_keyset(tx.conn(), &caller.vendor_id).await?;
    let version = domain::tuf::put_root(
        &mut tx,
        &state.master,
        &caller.vendor_id,
        &app_row.id,
        &keyset.root,
        &body,
    )
    .await?;
    tx.audit(
        &caller,
        "tuf.root",
        &app_row.id,
        serde_json::json!({"app": app, "version": version}),
    )
    .await?;
    let published = Published {
        root: Some(version),
        targets: None,
        snapshot: None,
        timestamp: None,
        published: Vec::new(),
    };
    tx.commit(None, StatusCode::CREATED, &published).await
}

/// Publishes targets metadata the vendor signed with a release key: every target must be a
/// staged or published release of the app whose manifest it hashes, and no published release may
/// disappear or change content. Channels, required and yanked follow the signed targets. The
/// portal answers with a new snapshot and timestamp.
#[utoipa::path(put, path = "/api/v1/apps/{app}/tuf/targets", tag = "releases", security(("token" = [])),
    params(("app" = String, Path, description = "App slug")), request_body(content = Object, content_type = "application/json"),
    responses((status = 201, body = Published), (status = 409, body = crate::server::http::problem::Problem), (status = 422, body = crate::server::http::problem::Problem)))]
pub async fn put_targets(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(app): ApiPath<String>,
    body: axum::body::Bytes,
) -> DomainResult<Response> {
    caller.require(Role::Publisher)?;
    let mut tx = VendorTx::begin(&state, &caller.vendor_id).await?;
    let app_row = find_app(tx.conn(), &caller.vendor_id, &app).await?;
    let new = domain::tuf::check_targets(tx.conn(), &app_row.id, &body).await?;
    let previous = match domain::tuf::latest(tx.conn(), &app_row.id, "targets").await? {
        Some((_, text)) => Some(
            tuf::parse::<Targets>(text.as_bytes(), "targets")
                .map_err(DomainError::internal)?
                .signed,
        ),
        None => None,
    };
    if let Some(previous) = &previous {
        for (name, old) in &previous.targets {
            match new.signed.targets.get(name) {
                Some(now_target) if now_target.hashes.sha256 == old.hashes.sha256 => {}
                _ => {
                    return Err(DomainError::invalid(format!(
                        "target {} was published and cannot be removed or changed: yank it instead",
                        name.raw()
                    )));
                }
            }
        }
    }
    let mut records = Vec::new();
    let mut published = Vec::new();
    for (name, target) in &new.signed.targets {
        let info: ReleaseTarget =
            tuf::release_of(target).map_err(|e| DomainError::invalid(format!("{e:#}")))?;
        if info.app.as_str() != app || name.raw() != target_name(&app, &info.version) {
            return Err(DomainError::invalid(format!(
                "target {} does not name a release of {app} (it says {} {})",
                name.raw(),
                info.app,
                info.version
            )));
        }
        if target.hashes.sha256.as_ref() != info.manifest.bytes() {
            return Err(DomainError::invalid(format!(
                "target {} hashes a different manifest than it describes",
                name.raw()
            )));
        }
        let row = sqlx::query(
            "SELECT id, state, manifest_digest, manifest_size, channels, required, yanked_reason \
             FROM releases WHERE app_id = $1 AND version = $2",
        )
        .bind(&app_row.id)
        .bind(info.version.to_string())
        .fetch_optional(tx.conn())
        .await?
        .ok_or_else(|| {
            DomainError::invalid(format!(
                "target {} names version {} which was never staged: push the bundle",
                name.raw(),
                info.version
            ))
        })?;
        let release_id: String = row.try_get("id")?;
        if row.try_get::<String, _>("manifest_digest")? != info.manifest.to_string()
            || u64::try_from(row.try_get::<i64, _>("manifest_size")?).ok() != Some(target.length)
        {
            return Err(DomainError::invalid(format!(
                "target {} does not match the staged manifest of {} (digest or length differs)",
                name.raw(),
                info.version
            )));
        }
        let channels: Vec<String> = info.channels.iter().map(|c| c.to_string()).collect();
        let channels_json = serde_json::to_string(&channels).map_err(DomainError::internal)?;
        let was_published = row.try_get::<String, _>("state")? == "published";
        let changed = !was_published
            || row.try_get::<String, _>("channels")? != channels_json
            || (row.try_get::<i64, _>("required")? != 0) != info.required
            || row.try_get::<Option<String>, _>("yanked_reason")? != info.yanked;
        if !changed {
            continue;
        }
        sqlx::query(
            "UPDATE releases SET state = 'published', channels = $2, required = $3, yanked_reason = $4, \
             entitlement = $5, min_installer_version = $6, published_at = COALESCE(published_at, $7) WHERE id = $1",
        )
        .bind(&release_id)
        .bind(&channels_json)
        .bind(i64::from(info.required))
        .bind(&info.yanked)
        .bind(info.entitlement.as_ref().map(|f| f.to_string()))
        .bind(info.min_installer_version.to_string())
        .bind(i64::try_from(info.published_at).unwrap_or(i64::MAX))
        .execute(tx.conn())
        .await?;
        let action = if !was_published {
            published.push(info.version.to_string());
            "release.publish"
        } else if info.yanked.is_some() {
            "release.yank"
        } else {
            "release.update"
        };
        records.push(AuditRecord::by(
            &caller,
            action,
            &release_id,
            serde_json::json!({"app": app, "version": info.version.to_string(), "channels": channels,
                "required": info.required, "yanked": info.yanked}),
        ));
    }
    let (snapshot, timestamp) = domain::tuf::store_targets(
        &mut tx,
        &state.master,
        &caller.vendor_id,
        &app_row.id,
        &new,
        &body,
    )
    .await?;
    records.push(AuditRecord::by(
        &caller,
        "tuf.targets",
        &app_row.id,
        serde_json::json!({"app": app, "version": new.signed.version.get()}),
    ));
    tx.audit_many(&records).await?;
    let result = Published {
        root: None,
        targets: Some(new.signed.version.get()),
        snapshot: Some(snapshot),
        timestamp: Some(timestamp),
        published,
    };
    let response = tx.commit(None, StatusCode::CREATED, &result).await?;
    state.catalog.clear();
    Ok(response)
}

async fn public_app_id(conn: &mut AnyConnection, vendor: &str, app: &str) -> DomainResult<String> {
    let row = sqlx::query(
        "SELECT a.id FROM apps a JOIN vendors v ON v.id = a.vendor_id WHERE v.slug = $1 AND a.slug = $2",
    )
    .bind(vendor)
    .bind(app)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| DomainError::not_found("app", app))?;
    Ok(row.try_get("id")?)
}

fn metadata_response(body: String, immutable: bool) -> Response {
    let cache = if immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

/// An app's TUF metadata: `timestamp.json`, `N.root.json`, `N.snapshot.json`, `N.targets.json`.
#[utoipa::path(get, path = "/tuf/{vendor}/{app}/{file}", tag = "public",
    params(("vendor" = String, Path, description = "Vendor slug"), ("app" = String, Path, description = "App slug"),
           ("file" = String, Path, description = "timestamp.json or N.<role>.json")),
    responses((status = 200, description = "The signed metadata"), (status = 404, body = crate::server::http::problem::Problem)))]
pub async fn metadata(
    State(state): State<AppState>,
    ApiPath((vendor, app, file)): ApiPath<(String, String, String)>,
) -> DomainResult<Response> {
    let mut conn = state.db.pool.acquire().await?;
    let app_id = public_app_id(&mut conn, &vendor, &app).await?;
    let not_found = || DomainError::not_found("metadata", &file);
    if file == "timestamp.json" {
        let (_, body) = domain::tuf::latest(&mut conn, &app_id, "timestamp")
            .await?
            .ok_or_else(not_found)?;
        return Ok(metadata_response(body, false));
    }
    let (number, role) = file
        .strip_suffix(".json")
        .and_then(|f| f.split_once('.'))
        .ok_or_else(not_found)?;
    let number: u64 = number.parse().map_err(|_| not_found())?;
    if !["root", "snapshot", "targets"].contains(&role) {
        return Err(not_found());
    }
    let body = domain::tuf::version(&mut conn, &app_id, role, number)
        .await?
        .ok_or_else(not_found)?;
    Ok(metadata_response(body, true))
}

/// A TUF target (a release's signed manifest), by `<sha256 hex>.<target name>`.
#[utoipa::path(get, path = "/tuf/{vendor}/{app}/targets/{file}", tag = "public",
    params(("vendor" = String, Path, description = "Vendor slug"), ("app" = String, Path, description = "App slug"),
           ("file" = String, Path, description = "<sha256 hex>.<target name>")),
    responses((status = 200, description = "The signed manifest"), (status = 404, body = crate::server::http::problem::Problem)))]
pub async fn target(
    State(state): State<AppState>,
    ApiPath((vendor, app, file)): ApiPath<(String, String, String)>,
) -> DomainResult<Response> {
    let mut conn = state.db.pool.acquire().await?;
    let app_id = public_app_id(&mut conn, &vendor, &app).await?;
    let not_found = || DomainError::not_found("target", &file);
    let (hash, _) = file.split_once('.').ok_or_else(not_found)?;
    let row = sqlx::query(
        "SELECT manifest FROM releases WHERE app_id = $1 AND manifest_digest = $2 AND state = 'published'",
    )
    .bind(&app_id)
    .bind(format!("sha256:{hash}"))
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(not_found)?;
    Ok(metadata_response(row.try_get("manifest")?, true))
}
