//! Publishing: the vendor's signed root and targets metadata; the portal answers with a new
//! snapshot and timestamp.

use crate::server::base::secrets::hex;
use crate::server::domain;
use crate::server::domain::access::{Caller, Role};
use crate::server::domain::catalog::find_app;
use crate::server::domain::error::{DomainError, DomainResult};
use crate::server::domain::keys::current_keyset;
use crate::server::domain::tx::{AuditRecord, VendorTx};
use crate::server::state::AppState;
use crate::tuf;
use bundles::release::{ReleaseTarget, target_name};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row as _};
use tough::schema::Targets;
use utoipa::ToSchema;

/// What the vendor's tools need to sign the next metadata.
#[derive(Debug, Serialize, ToSchema)]
pub struct TufState {
    /// The newest root (signed JSON), if any.
    #[schema(value_type = Object)]
    pub root: Option<serde_json::Value>,
    /// The newest targets (signed JSON), if any.
    #[schema(value_type = Object)]
    pub targets: Option<serde_json::Value>,
    /// The portal's online key for snapshot and timestamp (Ed25519 public key, hex).
    pub online_key: String,
}

/// The app's current root and targets and the portal's online key.
pub async fn tuf_state(state: &AppState, caller: &Caller, app: String) -> DomainResult<TufState> {
    let mut conn = state.db.pool.acquire().await?;
    let app_row = find_app(&mut conn, &caller.vendor_id, &app).await?;
    drop(conn);
    // The online key may be created here: that is a write.
    let mut tx = VendorTx::begin(state, &caller.vendor_id).await?;
    let (online, _) = domain::tuf::online_key(tx.conn(), &state.master, &caller.vendor_id).await?;
    let json = |text: Option<(u64, String)>| -> DomainResult<Option<serde_json::Value>> {
        text.map(|(_, body)| serde_json::from_str(&body).map_err(DomainError::internal))
            .transpose()
    };
    let root = json(domain::tuf::latest(tx.conn(), &app_row.id, "root").await?)?;
    let targets = json(domain::tuf::latest(tx.conn(), &app_row.id, "targets").await?)?;
    tx.commit_all(&[]).await?;
    Ok(TufState {
        root,
        targets,
        online_key: hex(online.as_bytes()),
    })
}

/// A stored metadata version.
#[derive(Debug, Serialize, ToSchema)]
pub struct Published {
    /// The root version now current.
    pub root: Option<u64>,
    /// The targets version now current.
    pub targets: Option<u64>,
    /// The snapshot version signed for it.
    pub snapshot: Option<u64>,
    /// The timestamp version signed for it.
    pub timestamp: Option<u64>,
    /// Versions that became visible to installers with this change.
    pub published: Vec<String>,
}

/// Stores a new root the vendor signed (version one up, signed by the previous root's key).
pub async fn put_root(
    state: &AppState,
    caller: &Caller,
    app: String,
    body: &[u8],
) -> DomainResult<Published> {
    caller.require(Role::Publisher)?;
    let mut tx = VendorTx::begin(state, &caller.vendor_id).await?;
    let app_row = find_app(tx.conn(), &caller.vendor_id, &app).await?;
    let (keyset, _) = current_keyset(tx.conn(), &caller.vendor_id).await?;
    let version = domain::tuf::put_root(
        &mut tx,
        &state.master,
        &caller.vendor_id,
        &app_row.id,
        &keyset.root,
        body,
    )
    .await?;
    tx.audit(
        caller,
        "tuf.root",
        &app_row.id,
        serde_json::json!({"app": app, "version": version}),
    )
    .await?;
    let published = Published {
        root: Some(version),
        targets: None,
        snapshot: None,
        timestamp: None,
        published: Vec::new(),
    };
    tx.commit_answer(None, 201, &published).await?;
    Ok(published)
}

/// Publishes targets metadata the vendor signed with a release key: every target must be a
/// staged or published release of the app whose manifest it hashes, and no published release may
/// disappear or change content. Channels, required and yanked follow the signed targets. The
/// portal answers with a new snapshot and timestamp.
pub async fn put_targets(
    state: &AppState,
    caller: &Caller,
    app: String,
    body: &[u8],
) -> DomainResult<Published> {
    caller.require(Role::Publisher)?;
    let mut tx = VendorTx::begin(state, &caller.vendor_id).await?;
    let app_row = find_app(tx.conn(), &caller.vendor_id, &app).await?;
    let new = domain::tuf::check_targets(tx.conn(), &app_row.id, body).await?;
    keep_published(tx.conn(), &app_row.id, &new.signed).await?;
    let mut records = Vec::new();
    let mut published = Vec::new();
    for (name, target) in &new.signed.targets {
        let info = checked_target(&app, name, target)?;
        if let Some(action) = apply_target(&mut tx, &app_row.id, name, target, &info).await? {
            let (id, action) = action;
            if action == "release.publish" {
                published.push(info.version.to_string());
            }
            let channels: Vec<String> = info.channels.iter().map(|c| c.to_string()).collect();
            records.push(AuditRecord::by(
                caller,
                action,
                &id,
                serde_json::json!({"app": app, "version": info.version.to_string(), "channels": channels,
                    "required": info.required, "yanked": info.yanked}),
            ));
        }
    }
    let (snapshot, timestamp) = domain::tuf::store_targets(
        &mut tx,
        &state.master,
        &caller.vendor_id,
        &app_row.id,
        &new,
        body,
    )
    .await?;
    records.push(AuditRecord::by(
        caller,
        "tuf.targets",
        &app_row.id,
        serde_json::json!({"app": app, "version": new.signed.version.get()}),
    ));
    tx.audit_many(&records).await?;
    let result = Published {
        root: None,
        targets: Some(new.signed.version.get()),
        snapshot: Some(snapshot),
        timestamp: Some(timestamp),
        published,
    };
    tx.commit_answer(None, 201, &result).await?;
    state.catalog.clear();
    state.listings.clear();
    Ok(result)
}

/// A change to a published release that the portal signs itself, for a vendor whose release key
/// it holds (custody `portal`, as a new or demo vendor has). Give one or more.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseChange {
    /// Put the release on this channel.
    #[serde(default)]
    pub promote: Option<String>,
    /// Take the release off this channel.
    #[serde(default)]
    pub remove_channel: Option<String>,
    /// Withdraw the release, with the reason installers show.
    #[serde(default)]
    pub yank: Option<String>,
    /// Whether upgrades may not skip the release.
    #[serde(default)]
    pub required: Option<bool>,
}

fn channel(name: &str) -> DomainResult<license::claims::Slug> {
    license::claims::Slug::new(name.to_owned())
        .map_err(|e| DomainError::invalid(format!("channel {name:?}: {e}")))
}

/// Changes a published release's channels, yank or required flag, signing the app's next
/// targets with the release key the portal holds for this vendor, then publishing them exactly
/// as [`put_targets`] does for targets a vendor signed. A vendor holding its own release key is
/// refused: the portal cannot sign for it.
pub async fn sign_change(
    state: &AppState,
    caller: &Caller,
    app: String,
    version: String,
    change: ReleaseChange,
) -> DomainResult<Published> {
    caller.require(Role::Publisher)?;
    if change.promote.is_none()
        && change.remove_channel.is_none()
        && change.yank.is_none()
        && change.required.is_none()
    {
        return Err(DomainError::invalid(
            "say what changes: promote, remove_channel, yank or required",
        ));
    }
    let promote = change.promote.as_deref().map(channel).transpose()?;
    let remove = change.remove_channel.as_deref().map(channel).transpose()?;
    if let Some(reason) = &change.yank
        && (reason.trim().is_empty() || reason.len() > 500)
    {
        return Err(DomainError::invalid(
            "yank must say why, in at most 500 characters",
        ));
    }
    let version = semver::Version::parse(&version)
        .map_err(|e| DomainError::invalid(format!("{version:?} is not a semantic version: {e}")))?;
    let mut conn = state.db.pool.acquire().await?;
    if domain::keys::custody(&mut conn, &caller.vendor_id).await? != domain::keys::CUSTODY_PORTAL {
        return Err(DomainError::conflict(
            "this vendor's release key is on its own machine, so the portal cannot sign the change: run the command with --keys DIR",
        ));
    }
    let app_row = find_app(&mut conn, &caller.vendor_id, &app).await?;
    let not_published = || DomainError::not_found("release", &format!("{app} {version}"));
    let (_, previous) = domain::tuf::latest(&mut conn, &app_row.id, "targets")
        .await?
        .ok_or_else(not_published)?;
    let previous: tough::schema::Signed<Targets> =
        tuf::parse(previous.as_bytes(), "targets").map_err(DomainError::internal)?;
    let name =
        tough::TargetName::new(target_name(&app, &version)).map_err(DomainError::internal)?;
    if !previous.signed.targets.contains_key(&name) {
        return Err(not_published());
    }
    let (_, release_key) =
        domain::keys::private_key(&mut conn, &state.master, &caller.vendor_id, "release", None)
            .await?;
    drop(conn);
    let next = tuf::next_targets(
        Some(&previous.signed),
        crate::server::base::now(),
        |targets| {
            let target = targets
                .targets
                .get_mut(&name)
                .ok_or_else(|| anyhow::anyhow!("{app} {version} is not published"))?;
            let mut info = tuf::release_of(target)?;
            if let Some(channel) = &remove {
                info.channels.retain(|c| c != channel);
            }
            if let Some(channel) = promote {
                info.channels.retain(|c| c != &channel);
                info.channels.push(channel);
            }
            if let Some(reason) = change.yank {
                info.yanked = Some(reason);
            }
            if let Some(required) = change.required {
                info.required = required;
            }
            *target = tuf::target(target.length, &info)?;
            Ok(())
        },
    )
    .map_err(DomainError::internal)?;
    let signed = tuf::sign(next, &[&release_key]).map_err(DomainError::internal)?;
    let bytes = tuf::to_bytes(&signed).map_err(DomainError::internal)?;
    put_targets(state, caller, app, &bytes).await
}

/// Refuses targets that drop or change a target the previous targets metadata published.
async fn keep_published(conn: &mut AnyConnection, app_id: &str, new: &Targets) -> DomainResult<()> {
    let Some((_, text)) = domain::tuf::latest(conn, app_id, "targets").await? else {
        return Ok(());
    };
    let previous = tuf::parse::<Targets>(text.as_bytes(), "targets")
        .map_err(DomainError::internal)?
        .signed;
    for (name, old) in &previous.targets {
        match new.targets.get(name) {
            Some(now_target) if now_target.hashes.sha256 == old.hashes.sha256 => {}
            _ => {
                return Err(DomainError::invalid(format!(
                    "target {} was published and cannot be removed or changed: yank it instead",
                    name.raw()
                )));
            }
        }
    }
    Ok(())
}

/// The release a target describes, once its name and hash agree with what it says.
fn checked_target(
    app: &str,
    name: &tough::TargetName,
    target: &tough::schema::Target,
) -> DomainResult<ReleaseTarget> {
    let info: ReleaseTarget =
        tuf::release_of(target).map_err(|e| DomainError::invalid(format!("{e:#}")))?;
    if info.app.as_str() != app || name.raw() != target_name(app, &info.version) {
        return Err(DomainError::invalid(format!(
            "target {} does not name a release of {app} (it says {} {})",
            name.raw(),
            info.app,
            info.version
        )));
    }
    if target.hashes.sha256.as_ref() != info.manifest.bytes() {
        return Err(DomainError::invalid(format!(
            "target {} hashes a different manifest than it describes",
            name.raw()
        )));
    }
    Ok(info)
}

/// Brings the staged release a target names in line with it (published, channels, required,
/// yanked); returns its id and the audit action when anything changed.
async fn apply_target(
    tx: &mut VendorTx,
    app_id: &str,
    name: &tough::TargetName,
    target: &tough::schema::Target,
    info: &ReleaseTarget,
) -> DomainResult<Option<(String, &'static str)>> {
    let row = sqlx::query(
        "SELECT id, state, manifest_digest, manifest_size, channels, required, yanked_reason \
         FROM releases WHERE app_id = $1 AND version = $2",
    )
    .bind(app_id)
    .bind(info.version.to_string())
    .fetch_optional(tx.conn())
    .await?
    .ok_or_else(|| {
        DomainError::invalid(format!(
            "target {} names version {} which was never staged: push the bundle",
            name.raw(),
            info.version
        ))
    })?;
    let release_id: String = row.try_get("id")?;
    if row.try_get::<String, _>("manifest_digest")? != info.manifest.to_string()
        || u64::try_from(row.try_get::<i64, _>("manifest_size")?).ok() != Some(target.length)
    {
        return Err(DomainError::invalid(format!(
            "target {} does not match the staged manifest of {} (digest or length differs)",
            name.raw(),
            info.version
        )));
    }
    let channels: Vec<String> = info.channels.iter().map(|c| c.to_string()).collect();
    let channels_json = serde_json::to_string(&channels).map_err(DomainError::internal)?;
    let was_published = row.try_get::<String, _>("state")? == "published";
    let changed = !was_published
        || row.try_get::<String, _>("channels")? != channels_json
        || (row.try_get::<i64, _>("required")? != 0) != info.required
        || row.try_get::<Option<String>, _>("yanked_reason")? != info.yanked;
    if !changed {
        return Ok(None);
    }
    sqlx::query(
        "UPDATE releases SET state = 'published', channels = $2, required = $3, yanked_reason = $4, \
         entitlement = $5, min_installer_version = $6, published_at = COALESCE(published_at, $7) WHERE id = $1",
    )
    .bind(&release_id)
    .bind(&channels_json)
    .bind(i64::from(info.required))
    .bind(&info.yanked)
    .bind(info.entitlement.as_ref().map(|f| f.to_string()))
    .bind(info.min_installer_version.to_string())
    .bind(i64::try_from(info.published_at).unwrap_or(i64::MAX))
    .execute(tx.conn())
    .await?;
    let action = if !was_published {
        "release.publish"
    } else if info.yanked.is_some() {
        "release.yank"
    } else {
        "release.update"
    };
    Ok(Some((release_id, action)))
}
