//! Extractors whose rejections are problem documents: JSON bodies (bad JSON, unknown fields,
//! wrong types and oversized bodies are 4xx with the reason), paths, queries, and the request's
//! id and source address for the audit log.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Json, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

pub use crate::server::domain::access::RequestMeta;
use crate::server::domain::error::{DomainError, Kind};

/// A JSON body.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = DomainError;

    async fn from_request(req: Request, state: &S) -> Result<Self, DomainError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => {
                let status = rejection.status();
                let (kind, code) = match status {
                    StatusCode::PAYLOAD_TOO_LARGE => (Kind::TooLarge, "too_large"),
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                        (Kind::UnsupportedMediaType, "unsupported_media_type")
                    }
                    StatusCode::UNPROCESSABLE_ENTITY => (Kind::Invalid, "invalid"),
                    _ => (Kind::BadRequest, "bad_request"),
                };
                let detail = match status {
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                        "send the body as JSON with Content-Type: application/json".to_owned()
                    }
                    StatusCode::PAYLOAD_TOO_LARGE => {
                        "the request body is over the portal's size limit".to_owned()
                    }
                    _ => format!(
                        "{}; see /api/v1/openapi.json for the expected shape",
                        rejection.body_text()
                    ),
                };
                Err(DomainError::new(kind, code, detail))
            }
        }
    }
}

/// Path parameters.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = DomainError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, DomainError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|rejection| DomainError::bad_request(rejection.body_text()))
    }
}

/// Query parameters.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = DomainError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, DomainError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|rejection| DomainError::bad_request(rejection.body_text()))
    }
}

impl RequestMeta {
    /// Reads the meta from request parts (infallible).
    pub fn from_parts(parts: &Parts) -> Self {
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string())
            .unwrap_or_else(|| "unknown".to_owned());
        Self { request_id, ip }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = DomainError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, DomainError> {
        Ok(Self::from_parts(parts))
    }
}
