//! Key grants: a release's data keys wrapped to an installer's fresh X25519 key (or, for an
//! air-gapped kit, to the customer's static install key) once the license passes every check.
//!
//! A grant checks, in order, and refuses with the first check that fails (403, a stable code and
//! a sentence): the license's signature against the vendor's keyset, that the portal knows it,
//! its state (revoked, suspended), its revision (`seq`), its validity period, the app, that the
//! version is published and not yanked, the license's distribution window (channels, semver
//! range, published-before date), the release's entitlement, and the AWS account (the last five
//! are the license crate's rules, through [`super::entitlement`]). Only then are the keys wrapped;
//! a key seen before is a replayed request and gets nothing. Refusals of a license that verified
//! are audited as `grant.refuse`; an address gets at most 60 refusals a minute.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use sqlx::Row as _;
use utoipa::ToSchema;

use super::access::{Caller, RequestMeta, Role};
use super::entitlement::{Account, EntitledRelease, check_release, wrap_keys};
use super::error::{DomainError, DomainResult};
use super::licenses::{CheckedLicense, check_license, check_standing, verify_license};
use super::proofs::{self, Proven};
use super::ratelimit;
use super::releases::SignatureBlock;
use super::tx::VendorTx;
use crate::server::base::db::is_unique_violation;
use crate::server::base::now;
use crate::server::base::secrets::new_id;
use crate::server::state::AppState;

/// Grants per license per minute.
const GRANTS_PER_MINUTE: u64 = 30;
/// Refused grant requests per source address per minute; beyond it every grant request from the
/// address gets 429 until the window ends.
pub const REFUSALS_PER_MINUTE: u64 = 60;

/// The release's data keys, wrapped to the request's public key.
#[derive(Debug, Serialize, ToSchema)]
pub struct Grant {
    /// The grant's id (in the vendor's audit log).
    pub grant: String,
    /// The app.
    pub app: String,
    /// The version.
    pub version: String,
    /// SHA-256 of the release's signed manifest.
    pub manifest_digest: String,
    /// The bundle's keys file wrapped to `public_key` (base64).
    pub wrapped_keys: String,
    /// The manifest's signature by the vendor's release key: the installer checks it against
    /// the release keys of the keyset its pinned root signed before it deploys anything.
    pub manifest_signature: SignatureBlock,
}

impl Grant {
    fn of(
        grant: String,
        app: String,
        version: String,
        release: EntitledRelease,
        wrapped: String,
    ) -> Self {
        Self {
            grant,
            app,
            version,
            manifest_digest: release.manifest_digest,
            wrapped_keys: wrapped,
            manifest_signature: release.signature,
        }
    }
}

/// What an installer asks for.
pub struct GrantAsk {
    /// The license, armoured or compact.
    pub license: String,
    /// The app's slug.
    pub app: String,
    /// The version.
    pub version: String,
    /// A fresh X25519 public key, used for this grant only.
    pub recipient: [u8; 32],
    /// The AWS account the installer deploys into, as it reports it.
    pub aws_account: Option<String>,
    /// Its proof.
    pub proof: Option<license::proof::AccountProof>,
}

/// Grants `ask`'s release keys, or refuses (and records the refusal).
pub async fn grant(state: &AppState, meta: &RequestMeta, ask: GrantAsk) -> DomainResult<Grant> {
    let (refused_now, retry) =
        ratelimit::current(&state.db.pool, &refusal_bucket(meta), 60).await?;
    if refused_now >= REFUSALS_PER_MINUTE {
        return Err(DomainError::rate_limited(
            format!(
                "too many refused key grants from this address: at most {REFUSALS_PER_MINUTE} per 60 s; retry in {retry} s"
            ),
            retry,
        ));
    }
    let (license, release, proven) = match entitled(state, &ask).await {
        Ok(found) => found,
        Err((license, e)) => return Err(refusal(state, meta, license.as_ref(), &ask, e).await),
    };
    let account = proven
        .as_ref()
        .map(|p| p.account.clone())
        .or_else(|| ask.aws_account.clone());
    let proven_arn = proven.map(|p| p.arn);
    let wrapped = wrap_keys(&state.master, &license.vendor_id, &release, &ask.recipient)?;
    let grant_id = new_id("grant")?;
    let mut tx = VendorTx::begin(state, &license.vendor_id).await?;
    let license_id = license.claims.jti.as_str();
    ratelimit::hit(
        tx.conn(),
        &format!("grant:{license_id}"),
        60,
        GRANTS_PER_MINUTE,
        "key grants for this license",
    )
    .await?;
    let inserted = sqlx::query(
        "INSERT INTO grants (public_key, vendor_id, license_id, release_id, aws_account, created_at, proven_arn) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(STANDARD.encode(ask.recipient))
    .bind(&license.vendor_id)
    .bind(license_id)
    .bind(&release.id)
    .bind(&account)
    .bind(now())
    .bind(&proven_arn)
    .execute(tx.conn())
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => {
            drop(tx);
            let replayed = DomainError::refused(
                "replayed",
                "this public key has been used for a grant before: a replayed request gets nothing; generate a fresh key",
            );
            return Err(refusal(state, meta, Some(&license), &ask, replayed).await);
        }
        other => other?,
    };
    tx.audit_as(
        serde_json::json!({"license": license_id, "customer": license.claims.sub.as_str()}),
        &meta.ip,
        &meta.request_id,
        "grant.issue",
        &grant_id,
        serde_json::json!({"app": ask.app, "version": ask.version, "release": release.id,
            "aws_account": account, "proven_arn": proven_arn}),
    )
    .await?;
    tx.commit_all(&[]).await?;
    state.metrics.count("consign_grants_total");
    Ok(Grant::of(grant_id, ask.app, ask.version, release, wrapped))
}

/// The license (once it verified), the release it may receive and the proven account, or the
/// refusal. A proof is checked after the license's standing and before the release: the
/// account that counts is the proven one.
async fn entitled(
    state: &AppState,
    ask: &GrantAsk,
) -> Result<(CheckedLicense, EntitledRelease, Option<Proven>), (Option<CheckedLicense>, DomainError)>
{
    let mut conn = state
        .db
        .pool
        .acquire()
        .await
        .map_err(|e| (None, e.into()))?;
    let mut license = verify_license(&mut conn, &ask.license)
        .await
        .map_err(|e| (None, e))?;
    match check_standing(&mut conn, &license).await {
        Ok(app_id) => license.app_id = app_id,
        Err(e) => return Err((Some(license), e)),
    }
    let license_id = license.claims.jti.as_str().to_owned();
    let policy =
        match proofs::policy(&mut conn, &license.vendor_id, &license_id, &license.claims).await {
            Ok(policy) => policy,
            Err(e) => return Err((Some(license), e)),
        };
    drop(conn);
    let (account, proven) = match proofs::account_of(
        state,
        &policy,
        &license_id,
        ask.proof.as_ref(),
        ask.aws_account.as_deref(),
    )
    .await
    {
        Ok(found) => found,
        Err(e) => return Err((Some(license), e)),
    };
    let mut conn = match state.db.pool.acquire().await {
        Ok(conn) => conn,
        Err(e) => return Err((Some(license), e.into())),
    };
    let checked = check_release(
        &mut conn,
        &license,
        &ask.app,
        &ask.version,
        Account::Reported(account.as_deref()),
    )
    .await;
    drop(conn);
    let release = match checked {
        Ok(release) => release,
        Err(e) => return Err((Some(license), e)),
    };
    if let Some(proven) = &proven {
        let owner = (
            license.vendor_id.as_str(),
            license.app_id.as_str(),
            license_id.as_str(),
        );
        if let Err(e) = proofs::bind(state, &policy, owner, proven).await {
            return Err((Some(license), e));
        }
    }
    Ok((license, release, proven))
}

fn refusal_bucket(meta: &RequestMeta) -> String {
    format!("grant-refused:{}", meta.ip)
}

/// Records a refused grant and returns its error: the refusal counts against the address's
/// budget, and when the license verified, the vendor's audit log gets `grant.refuse` with the
/// reason (a license that does not verify names no vendor it can be trusted to belong to).
async fn refusal(
    state: &AppState,
    meta: &RequestMeta,
    license: Option<&CheckedLicense>,
    ask: &GrantAsk,
    error: DomainError,
) -> DomainError {
    if !error.is_client_error() || error.kind == super::error::Kind::RateLimited {
        return error;
    }
    {
        let _turn = state.write_turn().await;
        if let Err(limited) = ratelimit::hit(
            &state.db.pool,
            &refusal_bucket(meta),
            60,
            REFUSALS_PER_MINUTE,
            "refused key grants from this address",
        )
        .await
        {
            return limited;
        }
    }
    state.metrics.count("consign_grants_refused_total");
    let Some(license) = license else {
        return error;
    };
    let audited = async {
        let mut tx = VendorTx::begin(state, &license.vendor_id).await?;
        tx.audit_as(
            serde_json::json!({"license": license.claims.jti.as_str(), "customer": license.claims.sub.as_str()}),
            &meta.ip,
            &meta.request_id,
            "grant.refuse",
            license.claims.jti.as_str(),
            serde_json::json!({"app": ask.app, "version": ask.version, "aws_account": ask.aws_account,
                "code": error.code, "reason": error.detail}),
        )
        .await?;
        tx.commit_all(&[]).await
    };
    if let Err(e) = audited.await {
        tracing::warn!(error = %e.detail, "a refused grant could not be audited");
    }
    error
}

/// Wraps a release's data keys to a customer's static install key, for `kit export`: the same
/// checks as a grant, except the AWS account (an air-gapped installer checks it itself).
pub async fn kit_keys(
    state: &AppState,
    caller: &Caller,
    license_id: &str,
    version: String,
    recipient: ([u8; 32], String),
) -> DomainResult<Grant> {
    caller.require(Role::Publisher)?;
    let mut conn = state.db.pool.acquire().await?;
    let row = sqlx::query(
        "SELECT l.armored, a.slug FROM licenses l JOIN apps a ON a.id = l.app_id WHERE l.id = $1 AND l.vendor_id = $2",
    )
    .bind(license_id)
    .bind(&caller.vendor_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| DomainError::not_found("license", license_id))?;
    let armored: String = row.try_get("armored")?;
    let app: String = row.try_get("slug")?;
    let license = check_license(&mut conn, &armored).await?;
    let release =
        check_release(&mut conn, &license, &app, &version, Account::CheckedOffline).await?;
    drop(conn);
    let wrapped = wrap_keys(&state.master, &caller.vendor_id, &release, &recipient.0)?;
    let grant_id = new_id("grant")?;
    let mut tx = VendorTx::begin(state, &caller.vendor_id).await?;
    tx.audit(
        caller,
        "grant.kit",
        &grant_id,
        serde_json::json!({"license": license_id, "app": app, "version": version, "release": release.id,
            "recipient": recipient.1}),
    )
    .await?;
    tx.commit_all(&[]).await?;
    Ok(Grant::of(grant_id, app, version, release, wrapped))
}

/// Who asks for a sealed object.
pub enum Reader<'a> {
    /// A license holder (`Authorization: License …`).
    License(&'a str),
    /// A member of a vendor, or why the credential did not authenticate.
    Vendor(DomainResult<Caller>),
    /// Nobody: no credential at all.
    Nobody,
}

/// The vendor's id when `reader` may download the sealed object `digest` of vendor `vendor`: a
/// license in good standing for the app of a published release holding it, or a member of that
/// vendor. Anything else is 401, 403 or (for an object the reader may not know of) 404.
pub async fn may_download(
    state: &AppState,
    vendor: &str,
    digest: &bundles::Digest,
    reader: Reader<'_>,
) -> DomainResult<String> {
    let mut conn = state.db.pool.acquire().await?;
    let vendor_id: String = sqlx::query("SELECT id FROM vendors WHERE slug = $1")
        .bind(vendor)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| DomainError::not_found("vendor", vendor))?
        .try_get("id")?;
    let allowed = match reader {
        Reader::License(presented) => {
            let license = check_license(&mut conn, presented).await?;
            if license.vendor_id != vendor_id {
                return Err(DomainError::refused(
                    "wrong_app",
                    "the license is not from this vendor",
                ));
            }
            sqlx::query(
                "SELECT 1 AS one FROM release_objects o JOIN releases r ON r.id = o.release_id \
                 WHERE o.vendor_id = $1 AND o.digest = $2 AND r.app_id = $3 AND r.state = 'published' LIMIT 1",
            )
            .bind(&vendor_id)
            .bind(digest.to_string())
            .bind(&license.app_id)
            .fetch_optional(&mut *conn)
            .await?
            .is_some()
        }
        Reader::Vendor(caller) => caller?.vendor_id == vendor_id,
        Reader::Nobody => {
            return Err(DomainError::unauthorized(
                "downloads need `Authorization: License <license>` (or a vendor token)",
            ));
        }
    };
    if !allowed {
        return Err(DomainError::not_found("object", &digest.to_string()));
    }
    Ok(vendor_id)
}
