//! `Idempotency-Key` on every POST. A request with a key the caller used before gets the
//! recorded response again (with `Idempotency-Replayed: true`) and changes nothing; the same key
//! with a different request is refused. The record is written in the same transaction as the
//! change it describes, so a crash leaves either both or neither; two concurrent requests with
//! one key race on the record's primary key and the loser replays the winner's response.
//!
//! A replay goes only to a credential that still authenticates, and replies that carry a secret
//! shown once are recorded without it (`VendorTx::commit_redacted`).

use axum::body::{Body, to_bytes};
use axum::extract::{FromRequestParts as _, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sqlx::Row as _;

use crate::server::base::secrets::{secret_hash, sha256_hex};
use crate::server::domain::error::{DomainError, DomainResult, Kind};
pub use crate::server::domain::idempotency::IdempotencyContext;
use crate::server::http::auth;
use crate::server::state::AppState;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// The response header on replays.
pub const REPLAYED: &str = "idempotency-replayed";
/// The largest body the middleware buffers (the router's own limit is the same).
pub const MAX_BODY: usize = 1024 * 1024;

/// The middleware.
pub async fn layer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(key) = request.headers().get(HEADER) else {
        return next.run(request).await;
    };
    match prepare(&state, key.clone(), request).await {
        Ok(Prepared::Replay(response)) => response,
        Ok(Prepared::Run(ctx, request)) => {
            let response = next.run(*request).await;
            if response.status() == StatusCode::CONFLICT && is_race(&response) {
                match lookup(&state, &ctx).await {
                    Ok(Some(replay)) => replay,
                    Ok(None) => response,
                    Err(e) => e.into_response(),
                }
            } else {
                response
            }
        }
        Err(e) => e.into_response(),
    }
}

enum Prepared {
    Replay(Response),
    Run(IdempotencyContext, Box<Request>),
}

async fn prepare(state: &AppState, key: HeaderValue, request: Request) -> DomainResult<Prepared> {
    let key = key
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            DomainError::bad_request(
                "Idempotency-Key must be 1 to 255 visible ASCII characters (a UUID is typical)",
            )
        })?
        .to_owned();
    let (mut parts, body) = request.into_parts();
    let bytes = to_bytes(body, MAX_BODY).await.map_err(|_| {
        DomainError::new(
            Kind::TooLarge,
            "too_large",
            "the request body is over the portal's size limit",
        )
    })?;
    // Keys are scoped to the credential, so one caller's keys never collide with another's.
    let credential = auth::credential(&parts);
    // A replay is served only to a credential that still authenticates (a revoked token, an
    // expired session or a removed member gets 401, as without the key).
    if credential.is_some() {
        auth::Caller::from_request_parts(&mut parts, state).await?;
    }
    let scope = credential
        .map(|c| secret_hash(&c))
        .unwrap_or_else(|| "anonymous".to_owned());
    let mut hashed = format!("{} {}\n", parts.method, parts.uri).into_bytes();
    hashed.extend_from_slice(&bytes);
    let ctx = IdempotencyContext {
        scope,
        key,
        request_hash: sha256_hex(&hashed),
    };
    if let Some(replay) = lookup(state, &ctx).await? {
        return Ok(Prepared::Replay(replay));
    }
    parts.extensions.insert(ctx.clone());
    Ok(Prepared::Run(
        ctx,
        Box::new(Request::from_parts(parts, Body::from(bytes))),
    ))
}

async fn lookup(state: &AppState, ctx: &IdempotencyContext) -> DomainResult<Option<Response>> {
    let row = sqlx::query(
        "SELECT request_hash, status, body FROM idempotency_keys WHERE scope = $1 AND idem_key = $2",
    )
    .bind(&ctx.scope)
    .bind(&ctx.key)
    .fetch_optional(&state.db.pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let request_hash: String = row.try_get("request_hash")?;
    if request_hash != ctx.request_hash {
        return Err(DomainError::new(
            Kind::Invalid,
            "idempotency_key_reused",
            "this Idempotency-Key was already used for a different request; use a new key for a new request",
        ));
    }
    let status: i64 = row.try_get("status")?;
    let body: String = row.try_get("body")?;
    let status = u16::try_from(status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(REPLAYED, HeaderValue::from_static("true"));
    Ok(Some(response))
}

fn is_race(response: &Response) -> bool {
    response.extensions().get::<RaceMarker>().is_some()
}

/// Marks a 409 response as an idempotency race (set by the error conversion).
#[derive(Clone, Copy, Debug)]
pub struct RaceMarker;
