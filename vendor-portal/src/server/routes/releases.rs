//! Releases over HTTP: pushing objects, staging, publishing, listing, and the public TUF
//! repository of each app. The rules are [`crate::server::domain::releases`]' and
//! [`crate::server::domain::tuf`]'s.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};

use crate::server::domain::error::DomainResult;
use crate::server::domain::releases::publish::{self, Published, ReleaseChange, TufState};
use crate::server::domain::releases::staging::{self, StageRequest, Staged};
use crate::server::domain::releases::uploads::{
    self, CompleteRequest, ObjectStored, PartStored, UploadState,
};
use crate::server::domain::releases::{self, MissingRequest, MissingResponse, Release};
use crate::server::domain::tuf;
use crate::server::http::auth::Caller;
use crate::server::http::extract::{ApiJson, ApiPath};
use crate::server::http::reply::json_response;
use crate::server::state::AppState;

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
    let answer = releases::missing(&state, &caller, app, body).await?;
    Ok(json_response(StatusCode::OK, answer))
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
    let stored = uploads::upload_object(&state, &caller, digest, body.into_data_stream()).await?;
    Ok(object_reply(stored))
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
    let answer =
        uploads::upload_part(&state, &caller, (digest, n), body.into_data_stream()).await?;
    Ok(json_response(StatusCode::CREATED, answer))
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
    let answer = uploads::list_parts(&state, &caller, digest).await?;
    Ok(json_response(StatusCode::OK, answer))
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
    let stored = uploads::complete_upload(&state, &caller, digest, body).await?;
    Ok(object_reply(stored))
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
    let answer = staging::stage(&state, &caller, (app, version), body).await?;
    Ok(json_response(StatusCode::CREATED, answer))
}

/// Lists an app's releases, staged and published, newest version first.
#[utoipa::path(get, path = "/api/v1/apps/{app}/releases", operation_id = "list_releases", tag = "releases", security(("token" = [])),
    params(("app" = String, Path, description = "App slug")),
    responses((status = 200, body = Vec<Release>), (status = 404, body = crate::server::http::problem::Problem)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(app): ApiPath<String>,
) -> DomainResult<Response> {
    let answer = releases::list(&state, &caller, app).await?;
    Ok(json_response(StatusCode::OK, answer))
}

/// One release.
#[utoipa::path(get, path = "/api/v1/apps/{app}/releases/{version}", operation_id = "show_release", tag = "releases", security(("token" = [])),
    params(("app" = String, Path, description = "App slug"), ("version" = String, Path, description = "Version")),
    responses((status = 200, body = Release), (status = 404, body = crate::server::http::problem::Problem)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((app, version)): ApiPath<(String, String)>,
) -> DomainResult<Response> {
    let answer = releases::show(&state, &caller, (app, version)).await?;
    Ok(json_response(StatusCode::OK, answer))
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
    let answer = publish::tuf_state(&state, &caller, app).await?;
    Ok(json_response(StatusCode::OK, answer))
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
    let answer = publish::put_root(&state, &caller, app, &body).await?;
    Ok(json_response(StatusCode::CREATED, answer))
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
    let answer = publish::put_targets(&state, &caller, app, &body).await?;
    Ok(json_response(StatusCode::CREATED, answer))
}

/// Changes a published release (channels, yank, required) with the release key the portal holds
/// for this vendor: for vendors that have not registered their own keys, such as the demo's.
/// The portal signs the app's next targets and publishes them; a vendor holding its own release
/// key gets 409 and signs with `vendor-portal release promote|yank|require --keys DIR`.
#[utoipa::path(post, path = "/api/v1/apps/{app}/releases/{version}/change", tag = "releases", security(("token" = [])),
    params(("app" = String, Path, description = "App slug"), ("version" = String, Path, description = "Release version")),
    request_body = ReleaseChange,
    responses((status = 201, body = Published), (status = 404, body = crate::server::http::problem::Problem), (status = 409, body = crate::server::http::problem::Problem), (status = 422, body = crate::server::http::problem::Problem)))]
pub async fn sign_change(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((app, version)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<ReleaseChange>,
) -> DomainResult<Response> {
    let answer = publish::sign_change(&state, &caller, app, version, body).await?;
    Ok(json_response(StatusCode::CREATED, answer))
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
    let (body, immutable) = tuf::metadata(&state, (vendor, app, file)).await?;
    Ok(metadata_response(body, immutable))
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
    let manifest = tuf::target(&state, (vendor, app, file)).await?;
    Ok(metadata_response(manifest, true))
}

/// 201 for an object stored now, 200 for one the portal had.
fn object_reply(stored: ObjectStored) -> Response {
    let status = if stored.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    json_response(status, stored)
}
