//! Proofs of AWS account over HTTP: nonces, and a license proving the account it will be used
//! in; the rules are [`crate::server::domain::proofs`]'.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use crate::server::domain::error::DomainResult;
use crate::server::domain::proofs::{self, ProveRequest};
use crate::server::http::extract::{ApiJson, RequestMeta};
use crate::server::http::reply::json_response;
use crate::server::state::AppState;

/// A single-use nonce for an account proof, good for five minutes.
#[utoipa::path(post, path = "/api/v1/proofs/nonce", operation_id = "proof_nonce", tag = "public",
    responses((status = 200, body = crate::server::domain::proofs::ProofNonce), (status = 429, body = crate::server::http::problem::Problem)))]
pub async fn nonce(State(state): State<AppState>, meta: RequestMeta) -> DomainResult<Response> {
    let answer = proofs::issue_nonce(&state, &meta).await?;
    Ok(json_response(StatusCode::OK, answer))
}

/// Proves the AWS account a license will be used in (a signed `sts:GetCallerIdentity` request
/// carrying a nonce, sent on to an allowlisted STS endpoint); a trial license is bound to it.
#[utoipa::path(post, path = "/api/v1/proofs", operation_id = "prove_account", tag = "public", request_body = ProveRequest,
    responses((status = 200, body = crate::server::domain::proofs::ProvenLicense), (status = 401, body = crate::server::http::problem::Problem),
              (status = 403, body = crate::server::http::problem::Problem), (status = 503, body = crate::server::http::problem::Problem)))]
pub async fn prove(
    State(state): State<AppState>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<ProveRequest>,
) -> DomainResult<Response> {
    let answer = proofs::prove_license(&state, &meta, body).await?;
    Ok(json_response(StatusCode::OK, answer))
}
