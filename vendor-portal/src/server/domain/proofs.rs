//! Proven AWS accounts.
//!
//! An installer or agent proves the account it runs in by sending a signed
//! `sts:GetCallerIdentity` request (never credentials) that carries a nonce from
//! [`issue_nonce`]; [`verify`] checks it (`license::proof::check`: an allowlisted STS endpoint,
//! the nonce and date among the signed headers, a recent date, a bounded size), uses the nonce up,
//! sends it to STS and reads the account and ARN from STS's answer.
//!
//! Licenses that name accounts, trials, and licenses or plans set to `required` need a proof on
//! every grant, activation and check-in ([`ProofPolicy`]); the account that counts is the proven
//! one. A trial license is bound to the account of its first proof ([`bind`]), and one trial per
//! app and *proven* account is kept in `trial_accounts`.

use license::claims::Claims;
use license::proof::AccountProof;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row as _};
use utoipa::ToSchema;

use crate::server::base::db::is_unique_violation;
use crate::server::base::secrets::new_secret;
use crate::server::base::sts::StsFailure;
use crate::server::base::{now, utc_date};
use crate::server::domain::access::RequestMeta;
use crate::server::domain::error::{DomainError, DomainResult};
use crate::server::domain::ratelimit;
use crate::server::state::AppState;

/// The settings a license's `account_proof` may have.
pub const SETTINGS: &[&str] = &["default", "required", "optional"];

/// A nonce for one account proof.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProofNonce {
    /// The nonce, to be sent in the signed header `header`.
    pub nonce: String,
    /// The header that carries it.
    pub header: String,
    /// Until when it can be used, Unix seconds.
    pub expires_at: i64,
}

/// Who STS said signed a proof.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Proven {
    /// The proven 12-digit account.
    pub account: String,
    /// The caller's ARN.
    pub arn: String,
}

/// Issues a single-use nonce for an account proof (at most `--proof-nonces-per-minute` an
/// address).
pub async fn issue_nonce(state: &AppState, meta: &RequestMeta) -> DomainResult<ProofNonce> {
    let nonce = new_secret("pn_").map_err(DomainError::internal)?;
    let at = now();
    let _turn = state.write_turn().await;
    ratelimit::hit(
        &state.db.pool,
        &format!("proof-nonce:{}", meta.ip),
        60,
        state.limits.proof_nonces_per_minute,
        "proof nonces from this address",
    )
    .await?;
    sqlx::query("DELETE FROM proof_nonces WHERE created_at < $1")
        .bind(at - 3600)
        .execute(&state.db.pool)
        .await?;
    sqlx::query("INSERT INTO proof_nonces (nonce, created_at, used_at) VALUES ($1, $2, NULL)")
        .bind(nonce.as_str())
        .bind(at)
        .execute(&state.db.pool)
        .await?;
    Ok(ProofNonce {
        nonce: nonce.to_string(),
        header: license::proof::NONCE_HEADER.to_owned(),
        expires_at: at + license::proof::NONCE_LIFETIME as i64,
    })
}

/// Checks `proof`, uses its nonce up, and asks STS whose it is.
pub async fn verify(state: &AppState, proof: &AccountProof) -> DomainResult<Proven> {
    let checked = license::proof::check(
        proof,
        state.sts.emulator.as_deref(),
        license::time::UnixTime::now(),
    )
    .map_err(|e| DomainError::refused(e.code, e.detail))?;
    let at = now();
    let used = {
        let _turn = state.write_turn().await;
        sqlx::query(
            "UPDATE proof_nonces SET used_at = $2 WHERE nonce = $1 AND used_at IS NULL AND created_at >= $3",
        )
        .bind(&checked.nonce)
        .bind(at)
        .bind(at - license::proof::NONCE_LIFETIME as i64)
        .execute(&state.db.pool)
        .await?
        .rows_affected()
    };
    if used != 1 {
        state.metrics.count("consign_account_proofs_refused_total");
        return Err(DomainError::refused(
            "proof_replayed",
            "the account proof's nonce was used before, has expired, or was not issued by this portal: a proof is good for one request within five minutes; ask for a fresh nonce (POST /api/v1/proofs/nonce) and prove again",
        ));
    }
    match state.sts.ask(&checked).await {
        Ok(identity) => {
            state.metrics.count("consign_account_proofs_total");
            Ok(Proven {
                account: identity.account,
                arn: identity.arn,
            })
        }
        Err(StsFailure::Refused(status, message)) => {
            state.metrics.count("consign_account_proofs_refused_total");
            Err(DomainError::refused(
                "proof_rejected",
                format!(
                    "STS did not accept the account proof (HTTP {status}: {message}): sign it with valid AWS credentials of the account you install into"
                ),
            ))
        }
        Err(StsFailure::Unreachable(e)) => Err(DomainError::unavailable(format!(
            "cannot reach STS at {} to check the account proof ({e}); try again shortly",
            checked.url
        ))),
    }
}

/// What a license asks of proofs.
#[derive(Clone, Debug)]
pub struct ProofPolicy {
    /// Whether every grant, activation and check-in must prove its account.
    pub required: bool,
    /// The account its first proof bound it to (trials).
    pub bound: Option<String>,
    /// Whether it binds at its first proof (a trial).
    pub binds: bool,
}

/// Whether a license with `setting` and `claims` needs proofs: `required`, or by `default`
/// when it names accounts or is a trial.
pub fn requires(setting: &str, claims: &Claims) -> bool {
    match setting {
        "required" => true,
        "optional" => false,
        _ => !claims.bindings.aws_accounts.is_empty() || claims.trial,
    }
}

/// The proof policy of license `license_id` of `vendor_id`, whose current claims are `claims`.
pub async fn policy(
    conn: &mut AnyConnection,
    vendor_id: &str,
    license_id: &str,
    claims: &Claims,
) -> DomainResult<ProofPolicy> {
    let row = sqlx::query(
        "SELECT account_proof, proven_account FROM licenses WHERE id = $1 AND vendor_id = $2",
    )
    .bind(license_id)
    .bind(vendor_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| DomainError::not_found("license", license_id))?;
    let setting: String = row.try_get("account_proof")?;
    Ok(ProofPolicy {
        required: requires(&setting, claims),
        bound: row.try_get("proven_account")?,
        binds: claims.trial,
    })
}

/// The account a request acts in: the proven one when it carries a proof (which must agree
/// with the account it `reported`), else the reported one when the license does not require a
/// proof. Refusals name both accounts.
pub async fn account_of(
    state: &AppState,
    policy: &ProofPolicy,
    license_id: &str,
    proof: Option<&AccountProof>,
    reported: Option<&str>,
) -> DomainResult<(Option<String>, Option<Proven>)> {
    match proof {
        Some(proof) => {
            let proven = verify(state, proof).await?;
            if let Some(reported) = reported
                && reported != proven.account
            {
                return Err(DomainError::refused(
                    "wrong_account",
                    format!(
                        "the request says AWS account {reported}, but its proof is signed in account {} ({}): run it with credentials of the account you install into",
                        proven.account, proven.arn
                    ),
                ));
            }
            Ok((Some(proven.account.clone()), Some(proven)))
        }
        None if policy.required => Err(DomainError::refused(
            "proof_required",
            format!(
                "license {license_id} requires a proof of the AWS account: use an installer and agent of this release or newer, with AWS credentials that may call sts:GetCallerIdentity"
            ),
        )),
        None => Ok((reported.map(str::to_owned), None)),
    }
}

/// Holds `proven` to the account the license was bound to, and binds a trial at its first
/// proof: one trial per app and proven account (409-free: a second trial license proving an
/// account that already had one is refused with `trial_used`).
pub async fn bind(
    state: &AppState,
    policy: &ProofPolicy,
    (vendor_id, app_id, license_id): (&str, &str, &str),
    proven: &Proven,
) -> DomainResult<()> {
    if let Some(bound) = &policy.bound {
        if bound != &proven.account {
            return Err(DomainError::refused(
                "wrong_account",
                format!(
                    "license {license_id} was bound to AWS account {bound} by its first proof, and this request proves account {} ({}): it cannot be used there",
                    proven.account, proven.arn
                ),
            ));
        }
        return Ok(());
    }
    if !policy.binds {
        return Ok(());
    }
    let _turn = state.write_turn().await;
    let inserted = sqlx::query(
        "INSERT INTO trial_accounts (app_id, aws_account, license_id, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(app_id)
    .bind(&proven.account)
    .bind(license_id)
    .bind(now())
    .execute(&state.db.pool)
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => {
            let row = sqlx::query(
                "SELECT license_id, created_at FROM trial_accounts WHERE app_id = $1 AND aws_account = $2",
            )
            .bind(app_id)
            .bind(&proven.account)
            .fetch_one(&state.db.pool)
            .await?;
            let first: String = row.try_get("license_id")?;
            if first != license_id {
                return Err(DomainError::refused(
                    "trial_used",
                    format!(
                        "AWS account {} already used a trial of this app (license {first}, since {}): there is one trial per app and account; ask the vendor for a plan",
                        proven.account,
                        utc_date(row.try_get("created_at")?)
                    ),
                ));
            }
        }
        other => {
            other?;
        }
    }
    sqlx::query(
        "UPDATE licenses SET proven_account = $3 WHERE id = $1 AND vendor_id = $2 AND proven_account IS NULL",
    )
    .bind(license_id)
    .bind(vendor_id)
    .bind(&proven.account)
    .execute(&state.db.pool)
    .await?;
    Ok(())
}

/// A license proving its account, as `installer login` does.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProveRequest {
    /// The license, armoured or compact.
    pub license: String,
    /// The signed `sts:GetCallerIdentity` request.
    #[schema(value_type = Object)]
    pub proof: AccountProof,
}

/// What a proof established for a license.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProvenLicense {
    /// The license's id.
    pub license: String,
    /// The proven account and ARN.
    pub proven: Proven,
    /// Whether the license requires proofs.
    pub required: bool,
}

/// Proves the account a license will be used in: the license must be in force, the proof good,
/// and the account one the license allows (and, for a trial, not one that had a trial already).
pub async fn prove_license(
    state: &AppState,
    meta: &RequestMeta,
    body: ProveRequest,
) -> DomainResult<ProvenLicense> {
    let mut conn = state.db.pool.acquire().await?;
    let license = crate::server::domain::licenses::check_license(&mut conn, &body.license).await?;
    let license_id = license.claims.jti.as_str().to_owned();
    let policy = policy(&mut conn, &license.vendor_id, &license_id, &license.claims).await?;
    drop(conn);
    let proven = verify(state, &body.proof).await?;
    license
        .claims
        .check_account(&proven.account)
        .map_err(|denial| DomainError::refused("wrong_account", format!("{denial}: this license cannot be used in the account your credentials prove ({}); ask the vendor to add the account", proven.arn)))?;
    bind(
        state,
        &policy,
        (&license.vendor_id, &license.app_id, &license_id),
        &proven,
    )
    .await?;
    let mut tx = crate::server::domain::tx::VendorTx::begin(state, &license.vendor_id).await?;
    tx.audit_as(
        serde_json::json!({"license": license_id, "customer": license.claims.sub.as_str()}),
        &meta.ip,
        &meta.request_id,
        "license.prove",
        &license_id,
        serde_json::json!({"aws_account": proven.account, "proven_arn": proven.arn}),
    )
    .await?;
    tx.commit_all(&[]).await?;
    Ok(ProvenLicense {
        license: license_id,
        proven,
        required: policy.required,
    })
}
