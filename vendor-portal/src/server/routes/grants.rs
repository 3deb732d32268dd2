//! Key grants and object downloads: what a license entitles its holder to receive.
//!
//! A grant checks, in order, and refuses with the first check that fails (403, a stable code and
//! a sentence): the license's signature against the vendor's keyset, that the portal knows it,
//! its state (revoked, suspended), its revision (`seq`), its validity period, the app, that the
//! version is published and not yanked, the license's distribution window (channels, semver
//! range, published-before date), the release's entitlement, and the AWS account. Only then are
//! the release's data keys wrapped to the installer's fresh X25519 key; a key seen before is a
//! replayed request and gets nothing. Refusals of a license that verified are audited as
//! `grant.refuse`; an address gets at most 60 refusals a minute.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bundles::Digest;
use license::claims::Claims;
use license::{TrustPin, UnixTime, VerifyOptions};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row as _};
use utoipa::ToSchema;

use crate::server::base::db::is_unique_violation;
use crate::server::base::now;
use crate::server::base::secrets::new_id;
use crate::server::domain::error::{DomainError, DomainResult, Kind};
use crate::server::domain::ratelimit;
use crate::server::domain::tx::VendorTx;
use crate::server::http::auth::{Caller, Role};
use crate::server::http::extract::{ApiJson, ApiPath};
use crate::server::http::reply::CommitReply as _;
use crate::server::routes::decode_b64;
use crate::server::routes::releases::{SignatureBlock, keys_context, object_key};
use crate::server::state::AppState;

/// Grants per license per minute.
const GRANTS_PER_MINUTE: u64 = 30;
/// Refused grant requests per source address per minute; beyond it every grant request from the
/// address gets 429 until the window ends.
const REFUSALS_PER_MINUTE: u64 = 60;
/// How long a presigned S3 download URL lives.
const PRESIGNED_SECONDS: u64 = 300;

fn refused(code: &'static str, detail: impl Into<String>) -> DomainError {
    DomainError::new(Kind::Forbidden, code, detail)
}

/// A license that verified and that the portal knows, in good standing.
pub struct CheckedLicense {
    /// The vendor's id.
    pub vendor_id: String,
    /// The license's app id.
    pub app_id: String,
    /// Its verified claims.
    pub claims: Claims,
}

/// Verifies a presented license (armoured or compact) and checks the portal's record of it.
pub async fn check_license(
    conn: &mut AnyConnection,
    presented: &str,
) -> DomainResult<CheckedLicense> {
    let mut license = verify_license(conn, presented).await?;
    license.app_id = check_standing(conn, &license).await?;
    Ok(license)
}

/// Verifies a presented license's signature against its vendor's keyset, and its validity
/// period. (`app_id` is left empty: [`check_standing`] reads it.)
pub async fn verify_license(
    conn: &mut AnyConnection,
    presented: &str,
) -> DomainResult<CheckedLicense> {
    let armored = if presented.trim_start().starts_with("-----BEGIN") {
        presented.to_owned()
    } else {
        license::armor::armor(presented.trim())
    };
    let bad = |e: &dyn std::fmt::Display| {
        DomainError::new(
            Kind::Unauthorized,
            "bad_license",
            format!("the license is not valid: {e}"),
        )
    };
    let unverified = license::verify::decode_unverified(&armored).map_err(|e| bad(&e))?;
    let issuer = unverified
        .claims
        .get("iss")
        .and_then(|v| v.as_str())
        .ok_or_else(|| bad(&"it names no issuer"))?
        .to_owned();
    let vendor = sqlx::query(
        "SELECT v.id, k.document FROM vendors v JOIN keysets k ON k.vendor_id = v.id \
         WHERE v.slug = $1 ORDER BY k.seq DESC LIMIT 1",
    )
    .bind(&issuer)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| {
        bad(&format!(
            "no vendor {issuer:?} issues licenses on this portal"
        ))
    })?;
    let vendor_id: String = vendor.try_get("id")?;
    let document: String = vendor.try_get("document")?;
    let trusted = license::Keyset::verify(document.as_bytes(), &TrustPin::default())
        .map_err(DomainError::internal)?;
    let verified = match trusted.verify_license(&armored, &VerifyOptions::at(UnixTime::now())) {
        Ok(v) => v,
        Err(license::Error::Expired { .. }) => {
            return Err(refused(
                "expired",
                "the license has expired: ask the vendor to renew it",
            ));
        }
        Err(license::Error::NotYetValid { .. }) => {
            return Err(refused("not_yet_valid", "the license is not valid yet"));
        }
        Err(e) => return Err(bad(&e)),
    };
    Ok(CheckedLicense {
        vendor_id,
        app_id: String::new(),
        claims: verified.claims().clone(),
    })
}

/// Checks the portal's record of a verified license: known, not revoked or suspended, and the
/// newest revision; returns the license's app id.
pub async fn check_standing(
    conn: &mut AnyConnection,
    license: &CheckedLicense,
) -> DomainResult<String> {
    let claims = &license.claims;
    let record = license_record(conn, &license.vendor_id, claims.jti.as_str()).await?;
    match record.state.as_str() {
        "revoked" => {
            return Err(refused(
                "revoked",
                "the license was revoked by the vendor; no release keys are granted to it",
            ));
        }
        "suspended" => {
            return Err(refused(
                "suspended",
                "the license is suspended; ask the vendor to reinstate it",
            ));
        }
        _ => {}
    }
    if record.seq > claims.seq {
        return Err(refused(
            "superseded",
            format!(
                "this is revision {} of the license but the vendor has issued revision {}: use the newest license file",
                claims.seq, record.seq
            ),
        ));
    }
    Ok(record.app_id)
}

/// The portal's record of a license: its app, state, current revision and claims.
pub struct LicenseRecord {
    /// The app's id.
    pub app_id: String,
    /// `active`, `suspended` or `revoked`.
    pub state: String,
    /// The current revision.
    pub seq: u64,
    /// The current revision, armoured.
    pub armored: String,
    /// The current revision's claims.
    pub claims: Claims,
}

/// Reads license `id` of vendor `vendor_id`; one the portal does not know is refused (403
/// `unknown_license`).
pub async fn license_record(
    conn: &mut AnyConnection,
    vendor_id: &str,
    id: &str,
) -> DomainResult<LicenseRecord> {
    let row = sqlx::query(
        "SELECT app_id, state, seq, armored, claims FROM licenses WHERE id = $1 AND vendor_id = $2",
    )
    .bind(id)
    .bind(vendor_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| {
        refused(
            "unknown_license",
            "the portal has no record of this license: it was not issued here",
        )
    })?;
    let claims: String = row.try_get("claims")?;
    Ok(LicenseRecord {
        app_id: row.try_get("app_id")?,
        state: row.try_get("state")?,
        seq: u64::try_from(row.try_get::<i64, _>("seq")?).unwrap_or(0),
        armored: row.try_get("armored")?,
        claims: serde_json::from_str(&claims).map_err(DomainError::internal)?,
    })
}

/// A published release a license may receive.
pub struct EntitledRelease {
    /// Its id.
    pub id: String,
    /// Its manifest digest.
    pub manifest_digest: String,
    /// Its sealed keys file.
    pub keys_sealed: String,
    /// The manifest's signature by the vendor's release key, as pushed.
    pub signature: SignatureBlock,
}

/// How the AWS account binding is checked.
pub enum Account<'a> {
    /// The installer reports the account it deploys into.
    Reported(Option<&'a str>),
    /// An air-gapped kit: the installer checks the binding itself, offline.
    CheckedOffline,
}

/// Checks that `license` may receive `version` of `app` (and, when the license is bound to AWS
/// accounts, that the reported account is one of them).
pub async fn check_release(
    conn: &mut AnyConnection,
    license: &CheckedLicense,
    app: &str,
    version: &str,
    account: Account<'_>,
) -> DomainResult<EntitledRelease> {
    let claims = &license.claims;
    if claims.aud.as_str() != app {
        return Err(refused(
            "wrong_app",
            format!("the license is for {}, not {app}", claims.aud),
        ));
    }
    let parsed = semver::Version::parse(version).map_err(|e| {
        DomainError::bad_request(format!("{version:?} is not a semantic version: {e}"))
    })?;
    let row = sqlx::query(
        "SELECT id, state, manifest_digest, keys_sealed, channels, yanked_reason, entitlement, published_at, \
         signature_kid, signature FROM releases WHERE app_id = $1 AND version = $2",
    )
    .bind(&license.app_id)
    .bind(parsed.to_string())
    .fetch_optional(&mut *conn)
    .await?
    .filter(|r| r.try_get::<String, _>("state").is_ok_and(|s| s == "published"))
    .ok_or_else(|| {
        DomainError::new(
            Kind::NotFound,
            "no_such_version",
            format!("{app} {version} is not published: `installer versions` lists what is"),
        )
    })?;
    if let Some(reason) = row.try_get::<Option<String>, _>("yanked_reason")? {
        return Err(refused(
            "yanked",
            format!(
                "{app} {version} was withdrawn by the vendor ({reason}); install another version"
            ),
        ));
    }
    let channels: Vec<String> =
        serde_json::from_str(&row.try_get::<String, _>("channels")?).unwrap_or_default();
    let window = &claims.distribution;
    if !window.channels.is_empty()
        && !window
            .channels
            .iter()
            .any(|c| channels.iter().any(|r| r == c.as_str()))
    {
        return Err(refused(
            "wrong_channel",
            format!(
                "{app} {version} is on {} but the license covers only {}",
                list_or_none(&channels),
                window
                    .channels
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if !window.versions.matches(&parsed) {
        return Err(refused(
            "version_outside_window",
            format!(
                "the license covers versions {}, not {version}",
                window.versions.as_str()
            ),
        ));
    }
    let published_at: i64 = row.try_get::<Option<i64>, _>("published_at")?.unwrap_or(0);
    if let Some(before) = window.published_before
        && published_at >= i64::try_from(before.as_secs()).unwrap_or(i64::MAX)
    {
        return Err(refused(
            "version_outside_window",
            format!(
                "the license covers releases published before {}, and {version} was published after",
                before
            ),
        ));
    }
    if let Some(feature) = row.try_get::<Option<String>, _>("entitlement")?
        && !claims
            .entitlements
            .features
            .iter()
            .any(|f| f.as_str() == feature)
    {
        return Err(refused(
            "missing_entitlement",
            format!("{app} {version} needs the {feature:?} entitlement, which the license lacks"),
        ));
    }
    let accounts = &claims.bindings.aws_accounts;
    if let (false, Account::Reported(account)) = (accounts.is_empty(), account) {
        match account {
            None => {
                return Err(DomainError::bad_request(
                    "the license is bound to AWS accounts: report the account you install into (aws_account)",
                ));
            }
            Some(account) if !accounts.iter().any(|a| a.as_str() == account) => {
                return Err(refused(
                    "wrong_account",
                    format!(
                        "the license is bound to AWS account(s) {}, not {account}",
                        accounts
                            .iter()
                            .map(|a| a.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(EntitledRelease {
        id: row.try_get("id")?,
        manifest_digest: row.try_get("manifest_digest")?,
        keys_sealed: row.try_get("keys_sealed")?,
        signature: SignatureBlock {
            kid: row.try_get("signature_kid")?,
            signature: row.try_get("signature")?,
        },
    })
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "no channel".into()
    } else {
        items.join(", ")
    }
}

fn parse_recipient(text: &str) -> DomainResult<[u8; 32]> {
    decode_b64(text)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            DomainError::bad_request("public_key must be a 32-byte X25519 public key in base64")
        })
}

/// Wraps a release's data keys to `recipient`.
pub fn wrap_keys(
    state: &AppState,
    vendor_id: &str,
    release: &EntitledRelease,
    recipient: &[u8; 32],
) -> DomainResult<String> {
    let keys = state
        .master
        .open(
            &keys_context(vendor_id, &release.manifest_digest),
            &release.keys_sealed,
        )
        .map_err(DomainError::internal)?;
    let wrapped = bundles::wrap::wrap(&keys, recipient)
        .map_err(|e| DomainError::bad_request(format!("cannot wrap to that public key: {e}")))?;
    Ok(STANDARD.encode(wrapped))
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
}

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

/// Grants a release's data keys to a licensed installer.
#[utoipa::path(post, path = "/api/v1/grants", tag = "public", request_body = GrantRequest,
    responses((status = 200, body = Grant), (status = 401, body = crate::server::http::problem::Problem),
              (status = 403, body = crate::server::http::problem::Problem), (status = 404, body = crate::server::http::problem::Problem),
              (status = 429, body = crate::server::http::problem::Problem)))]
pub async fn grant(
    State(state): State<AppState>,
    meta: crate::server::http::extract::RequestMeta,
    ApiJson(body): ApiJson<GrantRequest>,
) -> DomainResult<Response> {
    let recipient = parse_recipient(&body.public_key)?;
    let refusals = format!("grant-refused:{}", meta.ip);
    let (refused_now, retry) = ratelimit::current(&state.db.pool, &refusals, 60).await?;
    if refused_now >= REFUSALS_PER_MINUTE {
        return Err(DomainError::rate_limited(
            format!(
                "too many refused key grants from this address: at most {REFUSALS_PER_MINUTE} per 60 s; retry in {retry} s"
            ),
            retry,
        ));
    }
    let mut conn = state.db.pool.acquire().await?;
    let mut license = match verify_license(&mut conn, &body.license).await {
        Ok(license) => license,
        Err(e) => {
            drop(conn);
            return Err(refusal(&state, &meta, None, &body, e).await);
        }
    };
    match check_standing(&mut conn, &license).await {
        Ok(app_id) => license.app_id = app_id,
        Err(e) => {
            drop(conn);
            return Err(refusal(&state, &meta, Some(&license), &body, e).await);
        }
    }
    let checked = check_release(
        &mut conn,
        &license,
        &body.app,
        &body.version,
        Account::Reported(body.aws_account.as_deref()),
    )
    .await;
    drop(conn);
    let release = match checked {
        Ok(release) => release,
        Err(e) => return Err(refusal(&state, &meta, Some(&license), &body, e).await),
    };
    let wrapped = wrap_keys(&state, &license.vendor_id, &release, &recipient)?;
    let license_id = license.claims.jti.as_str().to_owned();
    let grant_id = new_id("grant")?;
    let mut tx = VendorTx::begin(&state, &license.vendor_id).await?;
    ratelimit::hit(
        tx.conn(),
        &format!("grant:{license_id}"),
        60,
        GRANTS_PER_MINUTE,
        "key grants for this license",
    )
    .await?;
    let inserted = sqlx::query(
        "INSERT INTO grants (public_key, vendor_id, license_id, release_id, aws_account, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(STANDARD.encode(recipient))
    .bind(&license.vendor_id)
    .bind(&license_id)
    .bind(&release.id)
    .bind(&body.aws_account)
    .bind(now())
    .execute(tx.conn())
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => {
            drop(tx);
            let replayed = refused(
                "replayed",
                "this public key has been used for a grant before: a replayed request gets nothing; generate a fresh key",
            );
            return Err(refusal(&state, &meta, Some(&license), &body, replayed).await);
        }
        other => other?,
    };
    tx.audit_as(
        serde_json::json!({"license": license_id, "customer": license.claims.sub.as_str()}),
        &meta.ip,
        &meta.request_id,
        "grant.issue",
        &grant_id,
        serde_json::json!({"app": body.app, "version": body.version, "release": release.id,
            "aws_account": body.aws_account}),
    )
    .await?;
    let response = Grant {
        grant: grant_id,
        app: body.app,
        version: body.version,
        manifest_digest: release.manifest_digest,
        wrapped_keys: wrapped,
        manifest_signature: release.signature,
    };
    state.metrics.count("consign_grants_total");
    tx.commit(None, StatusCode::OK, &response).await
}

/// Records a refused grant and returns its error: the refusal counts against the address's
/// budget, and when the license verified, the vendor's audit log gets `grant.refuse` with the
/// reason (a license that does not verify names no vendor it can be trusted to belong to).
async fn refusal(
    state: &AppState,
    meta: &crate::server::http::extract::RequestMeta,
    license: Option<&CheckedLicense>,
    body: &GrantRequest,
    error: DomainError,
) -> DomainError {
    if !error.status().is_client_error() || error.status() == StatusCode::TOO_MANY_REQUESTS {
        return error;
    }
    {
        let _turn = state.write_turn().await;
        if let Err(limited) = ratelimit::hit(
            &state.db.pool,
            &format!("grant-refused:{}", meta.ip),
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
            serde_json::json!({"app": body.app, "version": body.version, "aws_account": body.aws_account,
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
    responses((status = 200, body = Grant), (status = 403, body = crate::server::http::problem::Problem), (status = 404, body = crate::server::http::problem::Problem)))]
pub async fn kit_keys(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<KitKeysRequest>,
) -> DomainResult<Response> {
    caller.require(Role::Publisher)?;
    let recipient = parse_recipient(&body.recipient)?;
    let mut conn = state.db.pool.acquire().await?;
    let row = sqlx::query(
        "SELECT l.armored, a.slug FROM licenses l JOIN apps a ON a.id = l.app_id WHERE l.id = $1 AND l.vendor_id = $2",
    )
    .bind(&id)
    .bind(&caller.vendor_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| DomainError::not_found("license", &id))?;
    let armored: String = row.try_get("armored")?;
    let app: String = row.try_get("slug")?;
    let license = check_license(&mut conn, &armored).await?;
    let release = check_release(
        &mut conn,
        &license,
        &app,
        &body.version,
        Account::CheckedOffline,
    )
    .await?;
    drop(conn);
    let wrapped = wrap_keys(&state, &caller.vendor_id, &release, &recipient)?;
    let grant_id = new_id("grant")?;
    let mut tx = VendorTx::begin(&state, &caller.vendor_id).await?;
    tx.audit(
        &caller,
        "grant.kit",
        &grant_id,
        serde_json::json!({"license": id, "app": app, "version": body.version, "release": release.id,
            "recipient": body.recipient}),
    )
    .await?;
    let response = Grant {
        grant: grant_id,
        app,
        version: body.version,
        manifest_digest: release.manifest_digest,
        wrapped_keys: wrapped,
        manifest_signature: release.signature,
    };
    tx.commit(None, StatusCode::OK, &response).await
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
#[utoipa::path(get, path = "/api/v1/vendors/{vendor}/objects/{digest}", tag = "public",
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
    let mut conn = state.db.pool.acquire().await?;
    let vendor_id: String = sqlx::query("SELECT id FROM vendors WHERE slug = $1")
        .bind(&vendor)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| DomainError::not_found("vendor", &vendor))?
        .try_get("id")?;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("License "));
    let allowed = if let Some(presented) = presented {
        let license = check_license(&mut conn, presented).await?;
        if license.vendor_id != vendor_id {
            return Err(refused("wrong_app", "the license is not from this vendor"));
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
    } else if crate::server::http::auth::credential(&parts).is_some() {
        use axum::extract::FromRequestParts as _;
        Caller::from_request_parts(&mut parts, &state)
            .await?
            .vendor_id
            == vendor_id
    } else {
        return Err(DomainError::unauthorized(
            "downloads need `Authorization: License <license>` (or a vendor token)",
        ));
    };
    drop(conn);
    if !allowed {
        return Err(DomainError::not_found("object", &digest.to_string()));
    }
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
    let mut response = (status, Body::from_stream(stream)).into_response();
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
