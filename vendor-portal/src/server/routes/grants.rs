//! Key grants and object downloads over HTTP: what a license entitles its holder to receive.
//! The checks and the records are the domain's ([`crate::server::domain::grants`]); this module
//! reads requests, streams objects with range requests, and answers.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use bundles::Digest;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::server::base::decode_b64;
use crate::server::domain::error::{DomainError, DomainResult, Kind};
use crate::server::domain::grants::{self, GrantAsk, Reader};
use crate::server::domain::releases::object_key;
use crate::server::http::auth::{Caller, Role};
use crate::server::http::extract::{ApiJson, ApiPath, RequestMeta};
use crate::server::http::reply::json_response;
use crate::server::state::AppState;

/// How long a presigned S3 download URL lives.
const PRESIGNED_SECONDS: u64 = 300;

fn parse_recipient(text: &str) -> DomainResult<[u8; 32]> {
    decode_b64(text)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            DomainError::bad_request("public_key must be a 32-byte X25519 public key in base64")
        })
}

/// An installer's request for a release's data keys.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    /// The license file (armoured) or its compact form.
    pub license: String,
    /// The app to install.
    pub app: String,
    /// The version to install.
    pub version: String,
    /// A fresh X25519 public key (base64), used for this grant only.
    pub public_key: String,
    /// The AWS account the installer deploys into (from STS GetCallerIdentity).
    pub aws_account: Option<String>,
    /// A signed `sts:GetCallerIdentity` request carrying a nonce from `POST /api/v1/proofs/nonce`:
    /// the proof of `aws_account` (required for licenses that name accounts, and trials).
    #[schema(value_type = Option<Object>)]
    pub account_proof: Option<license::proof::AccountProof>,
}

/// Grants a release's data keys to a licensed installer.
#[utoipa::path(post, path = "/api/v1/grants", tag = "public", request_body = GrantRequest,
    responses((status = 200, body = crate::server::domain::grants::Grant), (status = 401, body = crate::server::http::problem::Problem),
              (status = 403, body = crate::server::http::problem::Problem), (status = 404, body = crate::server::http::problem::Problem),
              (status = 429, body = crate::server::http::problem::Problem)))]
pub async fn grant(
    State(state): State<AppState>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<GrantRequest>,
) -> DomainResult<Response> {
    let ask = GrantAsk {
        recipient: parse_recipient(&body.public_key)?,
        license: body.license,
        app: body.app,
        version: body.version,
        aws_account: body.aws_account,
        proof: body.account_proof,
    };
    let grant = grants::grant(&state, &meta, ask).await?;
    Ok(json_response(StatusCode::OK, grant))
}

/// Data keys for an air-gapped kit.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KitKeysRequest {
    /// The version the kit carries.
    pub version: String,
    /// The customer's static install key (`installer keygen`), X25519 public key in base64.
    pub recipient: String,
}

/// Wraps a release's data keys to a customer's static install key, for `kit export`: the same
/// checks as a grant, except the AWS account (an air-gapped installer checks it itself).
#[utoipa::path(post, path = "/api/v1/licenses/{id}/kit-keys", tag = "licenses", security(("token" = [])),
    params(("id" = String, Path, description = "License id")), request_body = KitKeysRequest,
    responses((status = 200, body = crate::server::domain::grants::Grant), (status = 403, body = crate::server::http::problem::Problem), (status = 404, body = crate::server::http::problem::Problem)))]
pub async fn kit_keys(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<KitKeysRequest>,
) -> DomainResult<Response> {
    caller.require(Role::Publisher)?;
    let recipient = (parse_recipient(&body.recipient)?, body.recipient);
    let grant = grants::kit_keys(&state, &caller, &id, body.version, recipient).await?;
    Ok(json_response(StatusCode::OK, grant))
}

/// Parses a single `Range: bytes=…` against an object of `size` bytes: `Ok(None)` for the whole
/// object, `Err` when unsatisfiable.
fn parse_range(headers: &HeaderMap, size: u64) -> Result<Option<std::ops::Range<u64>>, ()> {
    let Some(value) = headers.get(header::RANGE) else {
        return Ok(None);
    };
    let spec = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("bytes="))
        .ok_or(())?;
    if spec.contains(',') {
        return Err(());
    }
    let (start, end) = spec.split_once('-').ok_or(())?;
    let range = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| ())?;
            size.saturating_sub(n)..size
        }
        (start, "") => start.parse().map_err(|_| ())?..size,
        (start, end) => {
            let (start, end): (u64, u64) =
                (start.parse().map_err(|_| ())?, end.parse().map_err(|_| ())?);
            start..end.saturating_add(1).min(size)
        }
    };
    if range.start >= range.end || range.start >= size {
        return Err(());
    }
    Ok(Some(range))
}

/// Downloads a sealed object (ciphertext) by digest, streamed, with HTTP range requests. Allowed
/// with `Authorization: License <license>` for an object of a published release of the license's
/// app, or with a token of the vendor. On S3 the answer is a redirect to a presigned URL valid for
/// five minutes.
#[utoipa::path(get, path = "/api/v1/vendors/{vendor}/objects/{digest}", operation_id = "download_object", tag = "public",
    params(("vendor" = String, Path, description = "Vendor slug"), ("digest" = String, Path, description = "Ciphertext digest")),
    responses((status = 200, description = "The sealed object"), (status = 206, description = "Part of it"),
              (status = 307, description = "Presigned S3 URL"), (status = 401, body = crate::server::http::problem::Problem),
              (status = 403, body = crate::server::http::problem::Problem), (status = 404, body = crate::server::http::problem::Problem),
              (status = 416, body = crate::server::http::problem::Problem)))]
pub async fn download(
    State(state): State<AppState>,
    mut parts: axum::http::request::Parts,
    ApiPath((vendor, digest)): ApiPath<(String, String)>,
) -> DomainResult<Response> {
    let headers = parts.headers.clone();
    let digest = Digest::parse(&digest)
        .filter(|d| d.kind() == bundles::digest::DigestKind::Sealed)
        .ok_or_else(|| {
            DomainError::bad_request("the digest must be sealed-sha256:<64 hex digits>")
        })?;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("License "));
    let reader = match presented {
        Some(license) => Reader::License(license),
        None if crate::server::http::auth::credential(&parts).is_some() => {
            use axum::extract::FromRequestParts as _;
            Reader::Vendor(Caller::from_request_parts(&mut parts, &state).await)
        }
        None => Reader::Nobody,
    };
    let vendor_id = grants::may_download(&state, &vendor, &digest, reader).await?;
    let key = object_key(&vendor_id, &digest);
    let unavailable = |e: anyhow::Error| DomainError::unavailable(format!("{e:#}"));
    if let Some(url) = state
        .blobs
        .presigned_get(&key, std::time::Duration::from_secs(PRESIGNED_SECONDS))
        .await
        .map_err(unavailable)?
    {
        let mut response = StatusCode::TEMPORARY_REDIRECT.into_response();
        response.headers_mut().insert(
            header::LOCATION,
            HeaderValue::from_str(&url).map_err(DomainError::internal)?,
        );
        return Ok(response);
    }
    let size = state
        .blobs
        .size(&key)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| DomainError::not_found("object", &digest.to_string()))?;
    let range = parse_range(&headers, size).map_err(|()| {
        DomainError::new(
            Kind::RangeNotSatisfiable,
            "range_not_satisfiable",
            format!("the object is {size} bytes; ask for one range inside it"),
        )
    })?;
    let stream = state
        .blobs
        .stream(&key, range.clone())
        .await
        .map_err(unavailable)?;
    let (status, length) = match &range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.end - r.start),
        None => (StatusCode::OK, size),
    };
    state
        .metrics
        .add("consign_object_download_bytes_total", length);
    object_response(
        status,
        Body::from_stream(stream),
        length,
        size,
        range,
        &digest,
    )
}

/// The answer carrying an object (or the requested range of it).
fn object_response(
    status: StatusCode,
    body: Body,
    length: u64,
    size: u64,
    range: Option<std::ops::Range<u64>>,
    digest: &Digest,
) -> DomainResult<Response> {
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{}\"", digest.hex())).map_err(DomainError::internal)?,
    );
    if let Some(r) = range {
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {}-{}/{size}", r.start, r.end - 1))
                .map_err(DomainError::internal)?,
        );
    }
    Ok(response)
}
