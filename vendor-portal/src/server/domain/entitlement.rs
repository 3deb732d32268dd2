//! Entitlement: may this license receive this release, into this AWS account? The rules are the
//! license crate's ([`license::Claims::may_receive`], [`license::Claims::check_account`]), the
//! same ones the installer and the license agent apply; this module reads the release, asks
//! them, and turns a [`Denial`] into a refusal with the portal's stable code. Grants, air-gapped
//! kits, downloads and the buyer's pages all come through here.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use license::{Denial, Offer, UnixTime};
use sqlx::{AnyConnection, Row as _};

use super::error::{DomainError, DomainResult, Kind};
use super::licenses::CheckedLicense;
use super::releases::{SignatureBlock, keys_context};
use crate::server::base::secrets::MasterKey;

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

/// The portal's refusal for a denial of the license crate's rules. The codes are the portal's
/// documented API (the README's table of grant refusals): `wrong_app`, `wrong_channel`, `version_outside_window`
/// (range or published-before date), `missing_entitlement`, `wrong_account`.
pub fn refusal(app: &str, version: &str, denial: &Denial) -> DomainError {
    let code = match denial {
        Denial::WrongApp { .. } => "wrong_app",
        Denial::ChannelNotAllowed { .. } => "wrong_channel",
        Denial::VersionNotAllowed { .. } | Denial::PublishedTooLate { .. } => {
            "version_outside_window"
        }
        Denial::NotEntitled { .. } => "missing_entitlement",
        Denial::AccountNotAllowed { .. } => "wrong_account",
        other => other.code(),
    };
    DomainError::refused(
        code,
        format!(
            "the license does not cover {app} {version}: {denial}; ask the vendor for a license that does"
        ),
    )
}

/// A published release as the portal lists it.
pub struct Listed<'a> {
    /// The app's slug.
    pub app: &'a str,
    /// The version.
    pub version: &'a semver::Version,
    /// The channels it is on.
    pub channels: &'a [String],
    /// When it was published, Unix seconds.
    pub published_at: i64,
    /// The feature it needs, if any.
    pub entitlement: Option<&'a str>,
    /// Why the vendor withdrew it, if it did.
    pub yanked: Option<&'a str>,
}

/// Whether the license whose claims are `claims` may receive `release`: not yanked, and inside
/// the license's distribution window and features (the license crate's rules).
pub fn judge(claims: &license::Claims, release: &Listed<'_>) -> DomainResult<()> {
    let (app, version) = (release.app, release.version.to_string());
    if let Some(reason) = release.yanked {
        return Err(DomainError::refused(
            "yanked",
            format!(
                "{app} {version} was withdrawn by the vendor ({reason}); install another version"
            ),
        ));
    }
    let channels: Vec<&str> = release.channels.iter().map(String::as_str).collect();
    claims
        .may_receive(&Offer {
            app,
            version: release.version,
            channels: &channels,
            published_at: UnixTime::from_secs(u64::try_from(release.published_at).unwrap_or(0))
                .unwrap_or(UnixTime::EPOCH),
            entitlement: release.entitlement,
        })
        .map_err(|d| refusal(app, &version, &d))
}

/// The published versions of `license`'s app that it may receive, newest first; or why none.
pub async fn receivable_versions(
    conn: &mut AnyConnection,
    license: &CheckedLicense,
    app: &str,
) -> DomainResult<Vec<String>> {
    let mut versions = Vec::new();
    for release in super::releases::releases_of(conn, &license.app_id).await? {
        let Ok(version) = semver::Version::parse(&release.version) else {
            continue;
        };
        let listed = Listed {
            app,
            version: &version,
            channels: &release.channels,
            published_at: release.published_at.unwrap_or(0),
            entitlement: release.entitlement.as_deref(),
            yanked: release.yanked.as_deref(),
        };
        if release.state == "published" && judge(&license.claims, &listed).is_ok() {
            versions.push(release.version);
        }
    }
    Ok(versions)
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
    claims
        .check_app(app)
        .map_err(|d| refusal(app, version, &d))?;
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
    let channels: Vec<String> =
        serde_json::from_str(&row.try_get::<String, _>("channels")?).unwrap_or_default();
    judge(
        claims,
        &Listed {
            app,
            version: &parsed,
            channels: &channels,
            published_at: row.try_get::<Option<i64>, _>("published_at")?.unwrap_or(0),
            entitlement: row.try_get::<Option<String>, _>("entitlement")?.as_deref(),
            yanked: row
                .try_get::<Option<String>, _>("yanked_reason")?
                .as_deref(),
        },
    )?;
    if let Account::Reported(reported) = account
        && !claims.bindings.aws_accounts.is_empty()
    {
        let account = reported.ok_or_else(|| {
            DomainError::bad_request(
                "the license is bound to AWS accounts: report the account you install into (aws_account)",
            )
        })?;
        claims
            .check_account(account)
            .map_err(|d| refusal(app, version, &d))?;
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

/// Wraps a release's data keys to `recipient`, an X25519 public key (base64 in the answer).
pub fn wrap_keys(
    master: &MasterKey,
    vendor_id: &str,
    release: &EntitledRelease,
    recipient: &[u8; 32],
) -> DomainResult<String> {
    let keys = master
        .open(
            &keys_context(vendor_id, &release.manifest_digest),
            &release.keys_sealed,
        )
        .map_err(DomainError::internal)?;
    let wrapped = bundles::wrap::wrap(&keys, recipient)
        .map_err(|e| DomainError::bad_request(format!("cannot wrap to that public key: {e}")))?;
    Ok(STANDARD.encode(wrapped))
}
