//! Uploading sealed objects: whole, or in resumable parts assembled at the end. An object is
//! stored only if its bytes are the sealed object its digest names.

use crate::server::base::blobs::UploadRefused;
use crate::server::domain::access::{Caller, Role};
use crate::server::domain::error::{DomainError, DomainResult, Kind};
use crate::server::domain::releases::{object_key, parse_digest};
use crate::server::state::AppState;
use bundles::{Digest, Limits};
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
pub async fn upload_object(
    state: &AppState,
    caller: &Caller,
    digest: String,
    body: impl futures_util::Stream<Item = Result<bytes::Bytes, axum::Error>> + Unpin,
) -> DomainResult<ObjectStored> {
    caller.require(Role::Publisher)?;
    let digest = parse_digest(&digest)?;
    let key = object_key(&caller.vendor_id, &digest);
    let unavailable = |e: anyhow::Error| DomainError::unavailable(format!("{e:#}"));
    if let Some(size) = state.blobs.size(&key).await.map_err(unavailable)? {
        return Ok(ObjectStored {
            digest: digest.to_string(),
            size,
            created: false,
        });
    }
    let max = bundles::seal::sealed_size(Limits::default().max_object_size);
    let stored = state
        .blobs
        .put_verified(&key, &digest, max, body)
        .await
        .map_err(unavailable)?;
    match stored {
        Ok(size) => {
            state.metrics.count("consign_object_uploads_total");
            Ok(ObjectStored {
                digest: digest.to_string(),
                size,
                created: true,
            })
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
pub async fn upload_part(
    state: &AppState,
    caller: &Caller,
    (digest, n): (String, u32),
    body: impl futures_util::Stream<Item = Result<bytes::Bytes, axum::Error>> + Unpin,
) -> DomainResult<PartStored> {
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
            body,
        )
        .await
        .map_err(|e| DomainError::unavailable(format!("{e:#}")))?;
    match stored {
        Ok(size) => Ok(PartStored { part: n, size }),
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
pub async fn list_parts(
    state: &AppState,
    caller: &Caller,
    digest: String,
) -> DomainResult<UploadState> {
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
    Ok(UploadState { complete, parts })
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
pub async fn complete_upload(
    state: &AppState,
    caller: &Caller,
    digest: String,
    body: CompleteRequest,
) -> DomainResult<ObjectStored> {
    caller.require(Role::Publisher)?;
    let digest = parse_digest(&digest)?;
    let unavailable = |e: anyhow::Error| DomainError::unavailable(format!("{e:#}"));
    let key = object_key(&caller.vendor_id, &digest);
    if let Some(size) = state.blobs.size(&key).await.map_err(unavailable)? {
        return Ok(ObjectStored {
            digest: digest.to_string(),
            size,
            created: false,
        });
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
            Ok(ObjectStored {
                digest: digest.to_string(),
                size,
                created: true,
            })
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
