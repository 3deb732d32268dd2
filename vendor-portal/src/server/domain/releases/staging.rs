//! Staging a release: its signed manifest, checked against the uploaded objects, and its data
//! keys, sealed under the master key.

use crate::server::base::db::values_clause;
use crate::server::base::now;
use crate::server::base::secrets::new_id;
use crate::server::domain::access::{Caller, Role};
use crate::server::domain::catalog::{App, find_app};
use crate::server::domain::error::{DomainError, DomainResult};
use crate::server::domain::keys::current_keyset;
use crate::server::domain::releases::{
    Release, SignatureBlock, find_release, keys_context, object_key,
};
use crate::server::domain::tx::VendorTx;
use crate::server::state::AppState;
use bundles::release::target_name;
use bundles::{Digest, KeysFile, Limits};
use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;
use sqlx::Row as _;
use utoipa::ToSchema;

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

/// The template's plaintext, for the marketplace's diagrams (the references between resources,
/// the state machines' graphs). It is opened here, once, with the keys the vendor just handed
/// over: its plaintext digest is in the signed manifest, so what the diagrams show is what the
/// vendor signed.
async fn open_template(
    state: &AppState,
    vendor_id: &str,
    manifest: &bundles::BundleManifest,
    keys: &KeysFile,
) -> DomainResult<Vec<u8>> {
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
    Ok(plain)
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
pub async fn stage(
    state: &AppState,
    caller: &Caller,
    (app, version): (String, String),
    body: StageRequest,
) -> DomainResult<Staged> {
    caller.require(Role::Publisher)?;
    let version = semver::Version::parse(&version).map_err(|e| {
        DomainError::bad_request(format!("{version:?} is not a semantic version: {e}"))
    })?;
    let (app_row, manifest, keys) = verified(state, caller, &app, &version, &body).await?;
    check_uploaded(state, &caller.vendor_id, &manifest).await?;
    let manifest_digest = Digest::of(body.manifest.as_bytes()).to_string();
    let sealed_keys = state
        .master
        .seal(
            &keys_context(&caller.vendor_id, &manifest_digest),
            body.keys.as_bytes(),
        )
        .map_err(DomainError::internal)?;
    let summary = summary(state, &caller.vendor_id, &manifest, &keys).await?;

    let mut tx = VendorTx::begin(state, &caller.vendor_id).await?;
    let release_id = replace_staged(&mut tx, &app_row.id, &app, &version).await?;
    let row = StagedRow {
        id: &release_id,
        vendor_id: &caller.vendor_id,
        app_id: &app_row.id,
        version: &version,
        body: &body,
        manifest: &manifest,
        manifest_digest: &manifest_digest,
        sealed_keys,
        summary: summary.to_string(),
    };
    insert_release(&mut tx, &row).await?;
    insert_objects(&mut tx, &release_id, &caller.vendor_id, &manifest).await?;
    tx.audit(
        caller,
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
    tx.commit_answer(None, 201, &staged).await?;
    Ok(staged)
}

/// The app, and the manifest and keys file of `body` once they verify: the manifest against the
/// vendor's keyset, naming `app` and `version`; the keys file belonging to it, with a key for
/// every object.
async fn verified(
    state: &AppState,
    caller: &Caller,
    app: &str,
    version: &semver::Version,
    body: &StageRequest,
) -> DomainResult<(App, bundles::BundleManifest, KeysFile)> {
    let (app_row, trusted) = {
        let mut conn = state.db.pool.acquire().await?;
        let app_row = find_app(&mut conn, &caller.vendor_id, app).await?;
        let (_, text) = current_keyset(&mut conn, &caller.vendor_id).await?;
        let trusted = license::Keyset::verify(text.as_bytes(), &license::TrustPin::default())
            .map_err(DomainError::internal)?;
        (app_row, trusted)
    };
    let signature = bundles::manifest::ManifestSignature {
        kid: body.signature.kid.clone(),
        signature: crate::server::base::decode_b64(&body.signature.signature)
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .ok_or_else(|| DomainError::invalid("the signature must be 64 bytes of base64"))?,
    };
    let manifest = bundles::manifest::verify_manifest(
        body.manifest.as_bytes(),
        &signature,
        &trusted,
        license::UnixTime::now(),
        &Limits::default(),
    )
    .map_err(|e| DomainError::invalid(format!("the manifest {e}")))?;
    if manifest.app.as_str() != app || manifest.version != *version {
        return Err(DomainError::invalid(format!(
            "the manifest is {} {}, not {app} {version}",
            manifest.app, manifest.version
        )));
    }
    let keys = KeysFile::parse(body.keys.as_bytes())
        .map_err(|e| DomainError::invalid(format!("the keys file {e}")))?;
    keys.check_belongs_to(body.manifest.as_bytes(), app, version)
        .map_err(|e| DomainError::invalid(format!("the keys file {e}")))?;
    if let Some(object) = manifest
        .objects
        .iter()
        .find(|o| keys.key_for(&o.digest).is_none())
    {
        return Err(DomainError::invalid(format!(
            "the keys file has no key for object {}",
            object.path
        )));
    }
    Ok((app_row, manifest, keys))
}

/// Refuses a release some of whose objects are not uploaded, with their signed size.
async fn check_uploaded(
    state: &AppState,
    vendor_id: &str,
    manifest: &bundles::BundleManifest,
) -> DomainResult<()> {
    let mut absent = 0;
    for object in &manifest.objects {
        let size = state
            .blobs
            .size(&object_key(vendor_id, &object.sealed_digest))
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
    Ok(())
}

/// What the console and the marketplace show of a release: functions (how each ships, its size
/// and digest), resources, permissions, capabilities, parameters, and from the template the
/// references for the architecture diagram and the state machines' graphs.
async fn summary(
    state: &AppState,
    vendor_id: &str,
    manifest: &bundles::BundleManifest,
    keys: &KeysFile,
) -> DomainResult<serde_json::Value> {
    let template = open_template(state, vendor_id, manifest, keys).await?;
    let parsed: serde_json::Value = serde_json::from_slice(&template).unwrap_or_default();
    Ok(serde_json::json!({
        "name": manifest.name,
        "functions": manifest.functions.iter().map(|f| {
            let object = manifest.object(&f.object);
            serde_json::json!({
                "name": f.name, "runtime": f.runtime, "memory": f.memory, "timeout": f.timeout,
                "feature": f.feature, "kind": f.kind,
                "size": object.map(|o| o.size), "digest": object.map(|o| o.digest),
            })
        }).collect::<Vec<_>>(),
        "resources": manifest.resources,
        "permissions": manifest.permissions,
        "capabilities": manifest.capabilities,
        "parameters": manifest.parameters,
        "references": bundles::template::references(&template),
        "workflows": bundles::workflow::state_machines(&parsed),
        "function_notes": bundles::workflow::function_notes(&parsed, manifest),
    }))
}

/// The id the staged release gets: a staged (unpublished) one of this version is replaced and
/// keeps its id; a published one is refused.
async fn replace_staged(
    tx: &mut VendorTx,
    app_id: &str,
    app: &str,
    version: &semver::Version,
) -> DomainResult<String> {
    let existing = sqlx::query(
        "SELECT id, state, manifest_digest FROM releases WHERE app_id = $1 AND version = $2",
    )
    .bind(app_id)
    .bind(version.to_string())
    .fetch_optional(tx.conn())
    .await?;
    match existing {
        Some(row) if row.try_get::<String, _>("state")? == "published" => {
            Err(DomainError::conflict(format!(
                "{app} {version} is published already and versions are immutable: raise `version` in the app's consign.toml, build again and push the new bundle"
            )))
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
            Ok(id)
        }
        None => Ok(new_id("rel")?),
    }
}

/// A staged release's row, before it is written.
struct StagedRow<'a> {
    id: &'a str,
    vendor_id: &'a str,
    app_id: &'a str,
    version: &'a semver::Version,
    body: &'a StageRequest,
    manifest: &'a bundles::BundleManifest,
    manifest_digest: &'a str,
    sealed_keys: String,
    summary: String,
}

async fn insert_release(tx: &mut VendorTx, row: &StagedRow<'_>) -> DomainResult<()> {
    let manifest = row.manifest;
    let total: u64 = manifest.objects.iter().map(|o| o.sealed_size).sum();
    sqlx::query(
        "INSERT INTO releases (id, vendor_id, app_id, version, state, manifest, manifest_digest, signature_kid, \
         signature, keys_sealed, release_notes, summary, min_installer_version, object_count, total_size, \
         channels, required, yanked_reason, entitlement, created_at, published_at, manifest_size) \
         VALUES ($1, $2, $3, $4, 'staged', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, '[]', 0, NULL, $15, $16, NULL, $17)",
    )
    .bind(row.id)
    .bind(row.vendor_id)
    .bind(row.app_id)
    .bind(row.version.to_string())
    .bind(&row.body.manifest)
    .bind(row.manifest_digest)
    .bind(&row.body.signature.kid)
    .bind(&row.body.signature.signature)
    .bind(&row.sealed_keys)
    .bind(&manifest.release_notes)
    .bind(&row.summary)
    .bind(manifest.min_installer_version.to_string())
    .bind(manifest.objects.len() as i64)
    .bind(i64::try_from(total).unwrap_or(i64::MAX))
    .bind(manifest.release_entitlement().map(|f| f.to_string()))
    .bind(now())
    .bind(row.body.manifest.len() as i64)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// The release's objects, each once, so that downloads can check an object belongs to it.
async fn insert_objects(
    tx: &mut VendorTx,
    release_id: &str,
    vendor_id: &str,
    manifest: &bundles::BundleManifest,
) -> DomainResult<()> {
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
        let mut query = sqlx::query(AssertSqlSafe(sql.as_str()));
        for (digest, size) in chunk {
            query = query
                .bind(release_id)
                .bind(vendor_id)
                .bind(digest.to_string())
                .bind(i64::try_from(*size).unwrap_or(i64::MAX));
        }
        query.execute(tx.conn()).await?;
    }
    Ok(())
}
