//! Deploying a verified release into the admin's account with a CloudFormation change set:
//! preflight checks that refuse before anything changes, the artifact bucket, content-addressed
//! uploads, the license parameter, the change set (shown, confirmed, executed), stack events
//! until the stack settles, static assets, and the installation's record in the account.
//!
//! Order matters: every refusal (license binding, window, revocation at the portal, downgrade,
//! skipped required release, a tampered object) happens before the first write to the account,
//! so a refused run leaves the account as it was.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use aws_sdk_cloudformation::types::{Capability, ChangeSetType};
use bundles::{ObjectEntry, Role};
use license::UnixTime;
use license::process::Progress;
use serde::Serialize;

use crate::aws::Aws;
use crate::bucket::{self, artifact_key};
use crate::record::{self, Entry, History};
use crate::release::Release;

pub(crate) mod artifacts;
pub(crate) mod preflight;

use self::artifacts::{needed_objects, template_ref, upload_assets, upload_functions};
use self::preflight::{
    ShownParameters, check_against_installed, check_capabilities, check_params, parameters,
};
pub use crate::stack::Change;
use crate::stack::{
    Stack, TemplateRef, create_change_set, delete_change_set, delete_stack_quietly, describe_stack,
    execute, newest_event, outputs, watch,
};
pub use crate::ui::{Ui, confirm, describe_changes, require_yes_or_terminal};

/// What the command asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A new stack.
    Install,
    /// A newer version on an installed stack.
    Upgrade,
    /// The previous version on an installed stack.
    Rollback,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Self::Install => "install",
            Self::Upgrade => "upgrade",
            Self::Rollback => "rollback",
        }
    }
}

/// Options of a deploy.
#[derive(Clone, Debug)]
pub struct Options {
    /// The stack's name.
    pub stack: String,
    /// `--param K=V`, in order.
    pub params: Vec<(String, String)>,
    /// Deploy without asking.
    pub yes: bool,
    /// Allow a version older than the installed one.
    pub allow_downgrade: bool,
    /// What the command is.
    pub action: Action,
    /// Seconds between stack polls.
    pub poll: Duration,
}

/// What a plan shows.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// The stack.
    pub stack: String,
    /// The app.
    pub app: String,
    /// The version planned.
    pub version: String,
    /// The version running now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installed: Option<String>,
    /// `CREATE` or `UPDATE`.
    pub change_set_type: String,
    /// The changes.
    pub changes: Vec<Change>,
    /// The IAM actions the stack's roles will hold.
    pub iam_actions: Vec<String>,
    /// The permissions boundary every role of the release carries (when it has roles): its ARN
    /// and the actions it allows, every action any role of the release may ever hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boundary: Option<BoundaryView>,
    /// Parameters (`null`: unchanged from the running stack).
    pub parameters: BTreeMap<String, Option<String>>,
    /// Capabilities acknowledged.
    pub capabilities: Vec<String>,
    /// The template's state machines: their states, the functions their tasks invoke and the
    /// service calls they make.
    pub workflows: Vec<bundles::workflow::StateMachine>,
    /// For each Lambda function of the template that runs a function of the bundle: its name
    /// and how it ships (`price, compiled`).
    pub function_notes: BTreeMap<String, String>,
}

/// An installation's permissions boundary, as plans show it.
#[derive(Clone, Debug, Serialize)]
pub struct BoundaryView {
    /// The boundary policy's ARN.
    pub arn: String,
    /// The actions it allows.
    pub actions: Vec<String>,
}

/// What a deploy did.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The stack.
    pub stack: String,
    /// install, upgrade, rollback.
    pub action: Action,
    /// The app.
    pub app: String,
    /// The version now running.
    pub version: String,
    /// The version before, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// Whether anything changed (false: it was already installed).
    pub changed: bool,
    /// The artifact bucket.
    pub artifact_bucket: String,
    /// Function artifacts uploaded.
    pub uploaded: Vec<String>,
    /// Function artifacts already in the bucket.
    pub skipped: usize,
    /// Static asset files uploaded.
    pub assets_uploaded: usize,
    /// The stack's final status.
    pub stack_status: String,
    /// The stack's outputs.
    pub outputs: BTreeMap<String, String>,
}

/// Downloads, decrypts and checks `wanted` against the signed manifest (with a progress bar);
/// returns the files and the parsed template.
async fn fetch_verified(
    release: &Release,
    wanted: &[ObjectEntry],
    template_entry: &ObjectEntry,
    dir: &std::path::Path,
    ui: Ui,
) -> Result<(BTreeMap<String, PathBuf>, serde_json::Value)> {
    let total = wanted.iter().map(|w| w.sealed_size).sum();
    let progress = Progress::new(
        &format!(
            "fetching {}",
            license::process::count(wanted.len() as u64, "object", "objects")
        ),
        total,
    );
    let files = release.fetch(wanted, dir, &progress.tick()).await?;
    progress.finish();
    if !ui.json {
        ui.say(format!(
            "verified {} {}: {} decrypted and checked against the signed manifest",
            release.app(),
            release.manifest.version,
            license::process::count(files.len() as u64, "object", "objects")
        ));
    }
    let template_file = files
        .get(template_entry.path.as_str())
        .ok_or_else(|| anyhow!("the template was not decrypted"))?;
    let template: serde_json::Value = serde_json::from_slice(&std::fs::read(template_file)?)
        .context("the release's template is not JSON")?;
    Ok((files, template))
}

/// Everything before the first write: checks, grant, decrypted objects.
struct Prepared {
    /// The stack already runs this release and nothing else was asked: no grant was requested
    /// and no object fetched.
    noop: bool,
    bucket: String,
    /// The bucket exists and was proven to be this account's.
    bucket_ours: bool,
    stack: Option<Stack>,
    history: Option<History>,
    installed: Option<Entry>,
    capabilities: Vec<Capability>,
    files: BTreeMap<String, PathBuf>,
    template: serde_json::Value,
    template_entry: ObjectEntry,
    skipped: usize,
    _dir: tempfile::TempDir,
}

async fn prepare(
    aws: &Aws,
    release: &mut Release,
    options: &Options,
    allow_noop: bool,
    ui: Ui,
) -> Result<Prepared> {
    release
        .license
        .check_placement(&aws.account, &aws.region)
        .map_err(|d| {
            crate::error::refused(
                crate::error::Code::WrongAccount,
                format!(
                    "the license does not allow this account and region ({d}): deploy where it allows, or ask the vendor for a license bound to account {} in {}",
                    aws.account, aws.region
                ),
            )
        })?;
    let stack = describe_stack(aws, &options.stack).await?;
    let history = record::read_history(aws, &options.stack).await?;
    let installed =
        check_against_installed(release, options, stack.as_ref(), history.as_ref())?.cloned();
    let capabilities = check_capabilities(release)?;
    check_params(release, options)?;
    let (bucket, bucket_exists) = bucket::for_deploy(aws).await?;
    let template_entry = release
        .manifest
        .object(&release.manifest.template)
        .cloned()
        .ok_or_else(|| anyhow!("the manifest has no template object"))?;
    let same_release = installed.as_ref().is_some_and(|e| {
        e.version == release.manifest.version && e.manifest == release.manifest_digest.to_string()
    });
    let settled = stack.as_ref().is_some_and(|s| {
        !s.is_vacant() && s.status.ends_with("_COMPLETE") && !s.status.contains("ROLLBACK")
    });
    if allow_noop && same_release && settled && options.params.is_empty() {
        return Ok(Prepared {
            noop: true,
            bucket,
            bucket_ours: bucket_exists,
            stack,
            history,
            installed,
            capabilities,
            files: BTreeMap::new(),
            template: serde_json::Value::Null,
            template_entry,
            skipped: 0,
            _dir: tempfile::tempdir().context("cannot create a temporary folder")?,
        });
    }
    release.grant(aws).await?;
    let (wanted, skipped) = needed_objects(aws, release, &bucket, bucket_exists).await?;
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let (mut files, template) =
        fetch_verified(release, &wanted, &template_entry, dir.path(), ui).await?;
    // Every role the template grants is checked against what the manifest declares, and
    // bounded by it: the template deployed is the signed one with the boundary on each role.
    crate::boundary::check_template(&release.manifest, &template)?;
    let (template, template_entry) = if crate::boundary::has_roles(&template) {
        let arn = crate::boundary::arn(&aws.account, &aws.region, &options.stack);
        let signed = std::fs::read(&files[template_entry.path.as_str()])?;
        let bytes = crate::boundary::bounded_text(&signed, &arn)?;
        let bounded = serde_json::from_slice(&bytes)?;
        let path = dir.path().join("template.bounded.json");
        std::fs::write(&path, &bytes).context("cannot write the bounded template")?;
        files.insert(template_entry.path.as_str().to_owned(), path);
        let mut entry = template_entry;
        entry.digest = bundles::Digest::of(&bytes);
        entry.size = bytes.len() as u64;
        (bounded, entry)
    } else {
        (template, template_entry)
    };
    Ok(Prepared {
        noop: false,
        bucket,
        bucket_ours: bucket_exists,
        stack,
        history,
        installed,
        capabilities,
        files,
        template,
        template_entry,
        skipped,
        _dir: dir,
    })
}

/// Shows what deploying `release` would change, touching nothing but a change set (and the
/// empty stack CloudFormation creates to hold a CREATE change set), both deleted afterwards.
pub async fn plan(aws: &Aws, mut release: Release, options: &Options, ui: Ui) -> Result<Plan> {
    let p = prepare(aws, &mut release, options, false, ui).await?;
    let live = p.stack.as_ref().filter(|s| !s.is_vacant());
    let (parameters, shown) = parameters(&release, options, &p.bucket, live)?;
    let kind = if live.is_some() {
        ChangeSetType::Update
    } else {
        ChangeSetType::Create
    };
    if p.stack.as_ref().is_some_and(Stack::is_vacant) {
        crate::refuse!(
            DeployFailed,
            "stack {} holds a failed or unexecuted creation ({}): `installer install` replaces it; plan cannot show a change against it",
            options.stack,
            p.stack
                .as_ref()
                .map(|s| s.status.as_str())
                .unwrap_or_default()
        );
    }
    let template = template_ref(
        aws,
        &p.bucket,
        &p.template_entry,
        &p.files[p.template_entry.path.as_str()],
        false,
    )
    .await?;
    let left_out = left_out(&p.template, &shown, live);
    let mut set = match create_change_set(
        aws,
        &release,
        &options.stack,
        kind.clone(),
        template,
        parameters,
        p.capabilities.clone(),
    )
    .await
    {
        Ok(set) => set,
        Err(e) => {
            // A refused CREATE change set still leaves the empty stack that held it.
            if kind == ChangeSetType::Create {
                delete_stack_quietly(aws, &options.stack).await.ok();
            }
            return Err(e);
        }
    };
    set.changes.retain(|c| !left_out.contains(&c.logical_id));
    if set.has_changes {
        delete_change_set(aws, &options.stack, &set.name).await?;
    }
    if kind == ChangeSetType::Create {
        delete_stack_quietly(aws, &options.stack).await?;
    }
    Ok(Plan {
        workflows: bundles::workflow::state_machines(&p.template),
        function_notes: bundles::workflow::function_notes(&p.template, &release.manifest),
        stack: options.stack.clone(),
        app: release.app().to_owned(),
        version: release.manifest.version.to_string(),
        installed: p.installed.map(|e| e.version.to_string()),
        change_set_type: kind.as_str().to_owned(),
        changes: set.changes,
        iam_actions: release.manifest.actions(),
        boundary: crate::boundary::has_roles(&p.template).then(|| BoundaryView {
            arn: crate::boundary::arn(&aws.account, &aws.region, &options.stack),
            actions: crate::boundary::actions(&release.manifest),
        }),
        parameters: shown,
        capabilities: release.manifest.capabilities.clone(),
    })
}

/// Installs, upgrades or rolls back.
pub async fn deploy(aws: &Aws, mut release: Release, options: &Options, ui: Ui) -> Result<Report> {
    let p = prepare(aws, &mut release, options, true, ui).await?;
    let name = options.stack.as_str();
    let version = release.manifest.version.to_string();
    let live = p.stack.as_ref().filter(|s| !s.is_vacant()).cloned();
    if p.noop {
        ui.say(format!(
            "stack {name} already runs {} {version}: nothing to do",
            release.app()
        ));
        return Ok(Report {
            stack: name.to_owned(),
            action: options.action,
            app: release.app().to_owned(),
            version,
            previous: None,
            changed: false,
            artifact_bucket: p.bucket,
            uploaded: Vec::new(),
            skipped: p.skipped,
            assets_uploaded: 0,
            stack_status: live.map(|s| s.status).unwrap_or_default(),
            outputs: outputs(aws, name).await?,
        });
    }

    // The vendor counts the installation from here, agent or not; a license with no seat left
    // is refused before the account changes.
    if let Some(installation) = release.register(aws, name).await? {
        ui.say(format!(
            "registered installation {installation} with the vendor's portal"
        ));
    }

    // From here on the account changes.
    // The boundary first (CloudFormation creates the roles with it attached): when these
    // credentials may not write it, nothing has changed yet.
    if crate::boundary::has_roles(&p.template) {
        let arn = crate::boundary::ensure(aws, &release.manifest, name).await?;
        ui.say(format!(
            "every role of the stack is bounded by {arn} ({})",
            license::process::count(
                crate::boundary::actions(&release.manifest).len() as u64,
                "declared action",
                "declared actions"
            )
        ));
    }
    let uploaded = upload_artifacts(aws, &release, &p, ui).await?;
    if let Some(stack) = p.stack.as_ref().filter(|s| s.is_vacant()) {
        ui.say(format!(
            "stack {name} holds no installation ({}): deleting it before creating it again",
            stack.status
        ));
        delete_stack_quietly(aws, name).await?;
        watch(aws, name, None, options.poll, 0, ui).await.ok();
    }
    let status = change_stack(aws, &release, options, &p, live.as_ref(), &uploaded, ui).await?;
    let outputs = outputs(aws, name).await?;
    let (assets_uploaded, asset_buckets) = upload_assets(aws, &release, &outputs, &p.files).await?;
    if assets_uploaded > 0 {
        ui.say(format!(
            "uploaded {}",
            license::process::count(assets_uploaded as u64, "static file", "static files")
        ));
    }
    record_deploy(aws, &release, options, p.history.clone(), asset_buckets).await?;
    Ok(Report {
        stack: name.to_owned(),
        action: options.action,
        app: release.app().to_owned(),
        version,
        previous: p.installed.map(|e| e.version.to_string()),
        changed: true,
        artifact_bucket: p.bucket,
        uploaded,
        skipped: p.skipped,
        assets_uploaded,
        stack_status: status,
        outputs,
    })
}

/// The artifact bucket (created and recorded if new) and the function artifacts it lacks.
async fn upload_artifacts(
    aws: &Aws,
    release: &Release,
    p: &Prepared,
    ui: Ui,
) -> Result<Vec<String>> {
    let recorded = bucket::ensure(aws, &p.bucket, p.bucket_ours, ui).await?;
    if recorded != p.bucket {
        bail!(
            "another installer recorded the artifact bucket {recorded} while this one prepared {}: run the command again",
            p.bucket
        );
    }
    let uploaded = upload_functions(aws, release, &p.bucket, &p.files).await?;
    ui.say(format!(
        "artifacts in s3://{}: {} uploaded, {} already there",
        p.bucket,
        uploaded.len(),
        p.skipped
    ));
    Ok(uploaded)
}

/// The template's resources this deploy will not create (their condition is false for the
/// parameters it passes), so the change shown lists only what the release has.
fn left_out(
    template: &serde_json::Value,
    shown: &ShownParameters,
    live: Option<&Stack>,
) -> std::collections::BTreeSet<String> {
    crate::stack::resources_left_out(template, |name| match shown.get(name) {
        Some(Some(value)) => Some(value.clone()),
        Some(None) => live.and_then(|s| s.parameters.get(name).cloned()),
        None => None,
    })
}

/// What the account already holds when the admin is asked, and why: CloudFormation reads the
/// artifacts and a large template from the account, and a change set must exist to be shown.
fn written_before_asking(
    bucket: &str,
    bucket_created: bool,
    uploaded: u64,
    template_uploaded: bool,
    (stack, set): (&str, &crate::stack::ChangeSet),
) -> String {
    let mut written = Vec::new();
    if bucket_created {
        written.push(format!(
            "the artifact bucket {bucket} (created now: encrypted, public access blocked)"
        ));
    }
    if uploaded > 0 {
        written.push(format!(
            "{} in s3://{bucket}",
            license::process::count(uploaded, "function zip", "function zips")
        ));
    }
    if template_uploaded {
        written.push("the template, too large to send inline".to_owned());
    }
    let empty_stack = set.kind == ChangeSetType::Create;
    written.push(format!(
        "the change set {}{}",
        set.name,
        if empty_stack {
            format!(" on the empty stack {stack} that holds it (REVIEW_IN_PROGRESS)")
        } else {
            String::new()
        }
    ));
    format!(
        "Written to your account so far, because CloudFormation reads them from it: {}. Answer no and the change set{} is deleted; the artifacts stay for the next run (`installer uninstall --purge-artifacts` removes them). Nothing else changes until you answer yes.",
        written.join("; "),
        if empty_stack {
            " with its empty stack"
        } else {
            ""
        }
    )
}

/// The change set: created, shown, confirmed (or deleted when declined), executed and watched
/// until the stack settles; returns the stack's final status. The license parameter is stored
/// just before the change runs.
async fn change_stack(
    aws: &Aws,
    release: &Release,
    options: &Options,
    p: &Prepared,
    live: Option<&Stack>,
    uploaded: &[String],
    ui: Ui,
) -> Result<String> {
    let name = options.stack.as_str();
    let (parameters, shown) = parameters(release, options, &p.bucket, live)?;
    let left_out = left_out(&p.template, &shown, live);
    let kind = if live.is_some() {
        ChangeSetType::Update
    } else {
        ChangeSetType::Create
    };
    let template = template_ref(
        aws,
        &p.bucket,
        &p.template_entry,
        &p.files[p.template_entry.path.as_str()],
        true,
    )
    .await?;
    let template_uploaded = matches!(template, TemplateRef::Url(_));
    let mut set = create_change_set(
        aws,
        release,
        name,
        kind,
        template,
        parameters,
        p.capabilities.clone(),
    )
    .await?;
    set.changes.retain(|c| !left_out.contains(&c.logical_id));
    if !set.has_changes {
        ui.say(format!("stack {name} needs no resource changes"));
        store_license(aws, name, release, ui).await?;
        return Ok(live.map(|s| s.status.clone()).unwrap_or_default());
    }
    ui.say(format!(
        "change set {} ({}) for stack {name}:",
        set.name,
        set.kind.as_str()
    ));
    eprint!("{}", describe_changes(&set.changes));
    let actions = release.manifest.actions();
    if !actions.is_empty() {
        ui.say(format!(
            "  the stack's roles will hold: {}",
            actions.join(", ")
        ));
    }
    if !options.yes {
        ui.say(written_before_asking(
            &p.bucket,
            !p.bucket_ours,
            uploaded.len() as u64,
            template_uploaded,
            (name, &set),
        ));
    }
    if let Err(e) = confirm(
        &format!(
            "deploy {} {} to stack {name}?",
            release.app(),
            release.manifest.version
        ),
        options.yes,
        "stopped: nothing was deployed (the uploaded artifacts stay in the bucket for next time)",
    ) {
        delete_change_set(aws, name, &set.name).await.ok();
        if set.kind == ChangeSetType::Create {
            delete_stack_quietly(aws, name).await.ok();
            // Nothing was installed, so the seat the registration took is given back.
            release
                .unregister(&aws.account, &aws.region, name)
                .await
                .ok();
        }
        return Err(e);
    }
    store_license(aws, name, release, ui).await?;
    let marker = newest_event(aws, name).await?;
    execute(aws, name, &set.name, &p.template).await?;
    let total = p
        .template
        .get("Resources")
        .and_then(|r| r.as_object())
        .map_or(0, serde_json::Map::len);
    watch(aws, name, marker, options.poll, total, ui).await
}

/// Appends this deploy to the stack's history in the account.
async fn record_deploy(
    aws: &Aws,
    release: &Release,
    options: &Options,
    history: Option<History>,
    asset_buckets: Vec<String>,
) -> Result<()> {
    let mut history = history.unwrap_or_else(|| History {
        vendor: release.license.claims().iss.as_str().to_owned(),
        app: release.app().to_owned(),
        entries: Vec::new(),
    });
    let artifacts = release
        .manifest
        .objects
        .iter()
        .filter(|o| matches!(o.role, Role::Function | Role::Layer))
        .map(artifact_key)
        .collect();
    let text = history.push(Entry {
        action: options.action.as_str().to_owned(),
        version: release.manifest.version.clone(),
        manifest: release.manifest_digest.to_string(),
        license: release.license.claims().jti.as_str().to_owned(),
        license_expires: release.license.claims().exp.as_secs(),
        at: UnixTime::now().as_secs(),
        by: aws.caller.clone(),
        artifacts,
        asset_buckets,
    })?;
    record::write_history(aws, &options.stack, text).await
}

/// Stores the license for the agent (after the admin confirmed, before the stack runs).
async fn store_license(aws: &Aws, stack: &str, release: &Release, ui: Ui) -> Result<()> {
    if record::store_license(aws, stack, &release.license_text).await? {
        ui.say(format!(
            "stored the license in SSM as {} (SecureString)",
            record::license_parameter(stack)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_says_what_is_already_in_the_account() {
        let set = crate::stack::ChangeSet {
            name: "consign-1-0-0-1".into(),
            kind: ChangeSetType::Create,
            changes: Vec::new(),
            has_changes: true,
        };
        let said = written_before_asking("consign-artifacts-x", true, 1, false, ("blog", &set));
        assert!(
            said.contains("the artifact bucket consign-artifacts-x (created now"),
            "{said}"
        );
        assert!(
            said.contains("1 function zip in s3://consign-artifacts-x"),
            "{said}"
        );
        assert!(said.contains("empty stack blog"), "{said}");
        assert!(
            said.contains("Nothing else changes until you answer yes"),
            "{said}"
        );
        let update = crate::stack::ChangeSet {
            kind: ChangeSetType::Update,
            ..set
        };
        let said = written_before_asking("b", false, 0, true, ("blog", &update));
        assert!(!said.contains("bucket b ("), "{said}");
        assert!(!said.contains("function zip"), "{said}");
        assert!(said.contains("the template, too large"), "{said}");
        assert!(!said.contains("empty stack"), "{said}");
    }
}
