//! What is installed, read from the account (`installer status`), and taking it away again
//! (`installer uninstall`). Both read the installation's record (see [`crate::record`]), so
//! they need no login and no local state.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Result;
use license::UnixTime;
use serde::Serialize;

use crate::aws::Aws;
use crate::bucket;
use crate::record::{self, Entry, History};
use crate::stack::{delete_stack_quietly, describe_stack, newest_event, outputs, watch};
use crate::ui::Ui;

/// Unix seconds as a UTC time.
pub fn time(secs: u64) -> String {
    UnixTime::from_secs(secs).map_or_else(|| secs.to_string(), |t| t.to_string())
}

/// What `status` shows.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// The stack.
    pub stack: String,
    /// Whether it is installed.
    pub installed: bool,
    /// CloudFormation's status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_status: Option<String>,
    /// The app.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The running version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Its manifest digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// The license id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// When the license expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license_expires: Option<String>,
    /// When the running version was installed and by whom.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installed_at: Option<String>,
    /// Who installed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installed_by: Option<String>,
    /// The stack's outputs.
    pub outputs: BTreeMap<String, String>,
    /// The history, oldest first.
    pub history: Vec<Entry>,
}

/// Reads an installation's state from the account.
pub async fn status(aws: &Aws, stack_name: &str) -> Result<Status> {
    let stack = describe_stack(aws, stack_name).await?;
    let history = record::read_history(aws, stack_name).await?;
    let current = history.as_ref().and_then(History::current).cloned();
    let tag = |k: &str| stack.as_ref().and_then(|s| s.tags.get(k).cloned());
    let (license, expires) = match record::read_license(aws, stack_name).await? {
        Some(text) => match license::verify::decode_unverified(&text) {
            Ok(u) => (
                u.claims
                    .get("jti")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned),
                u.claims
                    .get("exp")
                    .and_then(serde_json::Value::as_u64)
                    .map(time),
            ),
            Err(_) => (None, None),
        },
        None => (None, None),
    };
    Ok(Status {
        stack: stack_name.to_owned(),
        installed: stack.as_ref().is_some_and(|s| !s.is_vacant()) && current.is_some(),
        stack_status: stack.as_ref().map(|s| s.status.clone()),
        app: history
            .as_ref()
            .map(|h| h.app.clone())
            .or_else(|| tag("consign:app")),
        version: current
            .as_ref()
            .map(|e| e.version.to_string())
            .or_else(|| tag("consign:version")),
        manifest: current
            .as_ref()
            .map(|e| e.manifest.clone())
            .or_else(|| tag("consign:manifest")),
        license: license
            .or_else(|| current.as_ref().map(|e| e.license.clone()))
            .or_else(|| tag("consign:license")),
        license_expires: expires.or_else(|| current.as_ref().map(|e| time(e.license_expires))),
        installed_at: current.as_ref().map(|e| time(e.at)),
        installed_by: current.as_ref().map(|e| e.by.clone()),
        outputs: if stack.is_some() {
            outputs(aws, stack_name).await?
        } else {
            BTreeMap::new()
        },
        history: history.map(|h| h.entries).unwrap_or_default(),
    })
}

/// What `uninstall` did and left.
#[derive(Clone, Debug, Serialize)]
pub struct Uninstalled {
    /// The stack.
    pub stack: String,
    /// Whether a stack was deleted.
    pub deleted: bool,
    /// Static files removed from the stack's buckets first.
    pub assets_removed: usize,
    /// Artifacts deleted (`--purge-artifacts`).
    pub artifacts_removed: usize,
    /// What stays in the account.
    pub left: Vec<String>,
    /// The license the stack ran under (to free its seat on the portal).
    #[serde(skip)]
    pub license: Option<String>,
    /// The portal installation whose seat was freed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seat_freed: Option<String>,
}

/// Deletes the stack (emptying the buckets the installer filled, which CloudFormation cannot
/// delete otherwise), then the installation's parameters; with `purge`, also the artifacts no
/// other installation uses.
pub async fn uninstall(
    aws: &Aws,
    stack_name: &str,
    purge: bool,
    poll: Duration,
    ui: Ui,
) -> Result<Uninstalled> {
    let stack = describe_stack(aws, stack_name).await?;
    let history = record::read_history(aws, stack_name).await?;
    if stack.is_none() && history.is_none() {
        crate::refuse!(
            NotInstalled,
            "there is no stack {stack_name} in account {} {}: nothing to uninstall",
            aws.account,
            aws.region
        );
    }
    if let Some(s) = &stack
        && history.is_none()
        && !s.tags.contains_key("consign:app")
    {
        crate::refuse!(
            ForeignStack,
            "stack {stack_name} was not installed by Consign: delete it yourself if you mean to"
        );
    }
    let mut assets_removed = 0;
    let buckets: BTreeSet<String> = history
        .iter()
        .flat_map(|h| h.entries.iter().flat_map(|e| e.asset_buckets.clone()))
        .collect();
    for bucket in &buckets {
        assets_removed += bucket::empty(aws, bucket).await?;
    }
    let mut deleted = false;
    if stack.is_some() {
        let marker = newest_event(aws, stack_name).await?;
        delete_stack_quietly(aws, stack_name).await?;
        watch(aws, stack_name, marker, poll, 0, ui).await?;
        deleted = true;
        ui.say(format!("deleted stack {stack_name}"));
    }
    match crate::boundary::remove(aws, stack_name).await? {
        crate::boundary::Removal::Deleted => ui.say(format!(
            "deleted the permissions boundary of stack {stack_name}"
        )),
        crate::boundary::Removal::Kept(why) => ui.say(why),
        crate::boundary::Removal::None => {}
    }
    let license = record::read_license(aws, stack_name).await?;
    record::forget(aws, stack_name).await?;
    let (artifacts_removed, left) =
        clean_artifacts(aws, stack_name, history.as_ref(), purge).await?;
    Ok(Uninstalled {
        stack: stack_name.to_owned(),
        deleted,
        assets_removed,
        artifacts_removed,
        left,
        license,
        seat_freed: None,
    })
}

/// With `purge`, deletes the artifacts only this stack's history names (and the bucket once no
/// installation uses it); returns how many went and what stays in the account.
async fn clean_artifacts(
    aws: &Aws,
    stack_name: &str,
    history: Option<&History>,
    purge: bool,
) -> Result<(usize, Vec<String>)> {
    let artifact_bucket = bucket::find(aws).await?.filter(|(_, exists)| *exists);
    let mut artifacts_removed = 0;
    let mut left = Vec::new();
    if let Some((bucket, _)) = &artifact_bucket {
        if purge {
            let others = record::all_histories(aws).await?;
            let in_use: BTreeSet<String> = others
                .iter()
                .filter(|(name, _)| name != stack_name)
                .flat_map(|(_, h)| h.entries.iter().flat_map(|e| e.artifacts.clone()))
                .collect();
            let ours: BTreeSet<String> = history
                .iter()
                .flat_map(|h| h.entries.iter().flat_map(|e| e.artifacts.clone()))
                .filter(|k| !in_use.contains(k))
                .collect();
            for key in &ours {
                if bucket::delete_object(aws, bucket, key).await? {
                    artifacts_removed += 1;
                }
            }
            if in_use.is_empty() {
                bucket::empty(aws, bucket).await?;
                bucket::delete(aws, bucket).await?;
            } else {
                left.push(format!(
                    "the artifact bucket {bucket}, which other installations in this account use"
                ));
            }
        } else {
            left.push(format!(
                "the artifact bucket {bucket} (shared by every Consign installation in {} {}; --purge-artifacts removes this stack's artifacts)",
                aws.account, aws.region
            ));
        }
    }
    Ok((artifacts_removed, left))
}
