//! Deploying a verified release into the admin's account with a CloudFormation change set:
//! preflight checks that refuse before anything changes, the artifact bucket, content-addressed
//! uploads, the license parameter, the change set (shown, confirmed, executed), stack events
//! until the stack settles, static assets, and the installation's record in the account.
//!
//! Order matters: every refusal (license binding, window, revocation at the portal, downgrade,
//! skipped required release, a tampered object) happens before the first write to the account,
//! so a refused run leaves the account as it was.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use aws_sdk_cloudformation::types::{
    Capability, ChangeSetStatus, ChangeSetType, Parameter, StackStatus, Tag,
};
use bundles::{ObjectEntry, Role};
use futures_util::StreamExt as _;
use license::UnixTime;
use license::process::Progress;
use serde::Serialize;

use crate::aws::{Aws, is_missing_stack};
use crate::bucket::{self, artifact_key};
use crate::record::{self, Entry, History};
use crate::release::Release;

/// Templates larger than this go through S3 (CloudFormation's limit for a template body).
const MAX_TEMPLATE_BODY: usize = 51_200;
/// Capabilities the installer acknowledges. Macros and transforms (`CAPABILITY_AUTO_EXPAND`)
/// are refused: what is deployed must be exactly the signed template.
const CAPABILITIES: &[&str] = &["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"];
/// Parallel uploads.
const UPLOADS: usize = 4;

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

/// One change in a change set.
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    /// `Add`, `Modify`, `Remove`.
    pub action: String,
    /// The logical id.
    pub logical_id: String,
    /// The resource type.
    pub resource_type: String,
    /// `True`, `False`, `Conditional` (for `Modify`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replacement: Option<String>,
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
    /// Parameters (`null`: unchanged from the running stack).
    pub parameters: BTreeMap<String, Option<String>>,
    /// Capabilities acknowledged.
    pub capabilities: Vec<String>,
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

/// The stack as CloudFormation describes it.
#[derive(Clone, Debug, Default)]
pub struct Stack {
    /// Its status.
    pub status: String,
    /// Why, if CloudFormation says.
    pub reason: Option<String>,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// Its parameters.
    pub parameters: BTreeMap<String, String>,
    /// Its outputs.
    pub outputs: BTreeMap<String, String>,
}

impl Stack {
    /// Left by a CREATE change set that never ran, or a failed first create: no installation.
    pub(crate) fn is_vacant(&self) -> bool {
        matches!(
            self.status.as_str(),
            "REVIEW_IN_PROGRESS" | "ROLLBACK_COMPLETE" | "ROLLBACK_FAILED" | "CREATE_FAILED"
        )
    }

    fn is_busy(&self) -> bool {
        self.status.ends_with("_IN_PROGRESS") && self.status != "REVIEW_IN_PROGRESS"
    }
}

/// Describes `name` (`None`: no such stack).
pub async fn describe_stack(aws: &Aws, name: &str) -> Result<Option<Stack>> {
    let out = match aws.cfn.describe_stacks().stack_name(name).send().await {
        Ok(out) => out,
        Err(e) if is_missing_stack(&e) => return Ok(None),
        Err(e) => return Err(aws.explain(e, "cloudformation:DescribeStacks", name)),
    };
    let Some(stack) = out.stacks().first() else {
        return Ok(None);
    };
    let status = stack
        .stack_status()
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default();
    if status == "DELETE_COMPLETE" {
        return Ok(None);
    }
    Ok(Some(Stack {
        status,
        reason: stack.stack_status_reason().map(str::to_owned),
        tags: stack
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
            .collect(),
        parameters: stack
            .parameters()
            .iter()
            .filter_map(|p| {
                Some((
                    p.parameter_key()?.to_owned(),
                    p.parameter_value()?.to_owned(),
                ))
            })
            .collect(),
        outputs: stack
            .outputs()
            .iter()
            .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
            .collect(),
    }))
}

/// Prints progress on stderr.
#[derive(Clone, Copy, Debug)]
pub struct Ui {
    /// Quiet (JSON output): progress lines still go to stderr, bars only on a terminal.
    pub json: bool,
}

impl Ui {
    /// A progress line.
    pub fn say(&self, line: impl AsRef<str>) {
        eprintln!("{}", line.as_ref());
    }
}

/// The checks against the installed stack: same app, no downgrade without the flag, no skipped
/// required release, nothing in progress. Returns the installed entry, if any.
fn check_against_installed<'h>(
    release: &Release,
    options: &Options,
    stack: Option<&Stack>,
    history: Option<&'h History>,
) -> Result<Option<&'h Entry>> {
    let name = &options.stack;
    if let Some(stack) = stack
        && stack.is_busy()
    {
        crate::refuse!(
            StackBusy,
            "stack {name} is busy ({}): wait until it settles, then run the command again",
            stack.status
        );
    }
    let installed = history.and_then(History::current);
    if let Some(history) = history
        && history.app != release.app()
    {
        crate::refuse!(
            ForeignStack,
            "stack {name} runs {}, not {}: choose another --stack",
            history.app,
            release.app()
        );
    }
    let stack_live = stack.is_some_and(|s| !s.is_vacant());
    if stack_live
        && installed.is_none()
        && stack.is_some_and(|s| !s.tags.contains_key("consign:app"))
    {
        crate::refuse!(
            ForeignStack,
            "stack {name} exists and was not installed by Consign: choose another --stack"
        );
    }
    match options.action {
        Action::Install => {
            if let Some(current) = installed
                && stack_live
                && current.version != release.manifest.version
            {
                crate::refuse!(
                    AlreadyInstalled,
                    "stack {name} already runs {} {}: use `installer upgrade --stack {name} --version {}`",
                    release.app(),
                    current.version,
                    release.manifest.version
                );
            }
        }
        Action::Upgrade | Action::Rollback => {
            if installed.is_none() || !stack_live {
                crate::refuse!(
                    NotInstalled,
                    "stack {name} is not installed in this account and region: use `installer install`"
                );
            }
        }
    }
    let Some(current) = installed.filter(|_| stack_live) else {
        return Ok(None);
    };
    let target = &release.manifest.version;
    if *target < current.version && !options.allow_downgrade && options.action != Action::Rollback {
        crate::refuse!(
            Downgrade,
            "{target} is older than the installed {}: refusing a downgrade (pass --allow-downgrade, or use `installer rollback`)",
            current.version
        );
    }
    if *target > current.version && options.action != Action::Rollback {
        let skipped: Vec<String> = release
            .all
            .iter()
            .filter(|r| {
                r.required
                    && r.yanked.is_none()
                    && r.version > current.version
                    && r.version < *target
            })
            .map(|r| r.version.to_string())
            .collect();
        if let Some(first) = skipped.last() {
            crate::refuse!(
                RequiredRelease,
                "{} {first} is a required release between {} and {target}: upgrade to {first} first",
                release.app(),
                current.version
            );
        }
    }
    Ok(Some(current))
}

fn check_capabilities(release: &Release) -> Result<Vec<Capability>> {
    release
        .manifest
        .capabilities
        .iter()
        .map(|c| {
            if CAPABILITIES.contains(&c.as_str()) {
                Ok(Capability::from(c.as_str()))
            } else {
                Err(crate::error::refused(
                    crate::error::Code::BadParameter,
                    format!(
                        "the release needs the capability {c}, which the installer does not grant (it grants {})",
                        CAPABILITIES.join(", ")
                    ),
                ))
            }
        })
        .collect()
}

/// Parameters as a plan shows them (`None`: the running stack's value is kept).
type ShownParameters = BTreeMap<String, Option<String>>;

/// The stack's parameters: the installer's own (bucket, code keys), then the admin's, then
/// (on an update) the running values of everything not given.
fn parameters(
    release: &Release,
    options: &Options,
    bucket: &str,
    running: Option<&Stack>,
) -> Result<(Vec<Parameter>, ShownParameters)> {
    let m = &release.manifest;
    let allowed: Vec<&str> = m.parameters.iter().map(|p| p.name.as_str()).collect();
    let mut shown = BTreeMap::new();
    let mut out = Vec::new();
    let mut set = |key: &str, value: Option<String>| {
        let mut p = Parameter::builder().parameter_key(key);
        p = match &value {
            Some(v) => p.parameter_value(v),
            None => p.use_previous_value(true),
        };
        out.push(p.build());
        shown.insert(key.to_owned(), value);
    };
    if let Some(name) = &m.artifact_bucket_parameter {
        set(name, Some(bucket.to_owned()));
    }
    if let Some(name) = &m.version_parameter {
        set(name, Some(m.version.to_string()));
    }
    for f in &m.functions {
        let entry = m
            .objects
            .iter()
            .find(|o| o.path == f.object)
            .ok_or_else(|| anyhow!("the manifest has no object for function {}", f.name))?;
        set(&f.code_parameter, Some(artifact_key(entry)));
    }
    for l in &m.layers {
        let entry = m
            .objects
            .iter()
            .find(|o| o.path == l.object)
            .ok_or_else(|| anyhow!("the manifest has no object for layer {}", l.name))?;
        set(&l.code_parameter, Some(artifact_key(entry)));
    }
    check_params(release, options)?;
    let given: BTreeMap<&String, &String> = options.params.iter().map(|(k, v)| (k, v)).collect();
    for name in &allowed {
        match given.get(&(*name).to_owned()) {
            Some(value) => set(name, Some((*value).clone())),
            None if running.is_some_and(|s| s.parameters.contains_key(*name)) => set(name, None),
            None => {}
        }
    }
    Ok((out, shown))
}

/// Refuses `--param` names the app does not let the admin set (the installer's own parameters,
/// such as code keys, included).
fn check_params(release: &Release, options: &Options) -> Result<()> {
    let m = &release.manifest;
    let allowed: Vec<&str> = m.parameters.iter().map(|p| p.name.as_str()).collect();
    for (key, _) in &options.params {
        if !allowed.contains(&key.as_str()) {
            crate::refuse!(
                BadParameter,
                "{key} is not a parameter of {} (its parameters: {})",
                m.app,
                if allowed.is_empty() {
                    "none".to_owned()
                } else {
                    allowed.join(", ")
                }
            );
        }
    }
    Ok(())
}

/// The objects a deploy needs decrypted: the template, the functions not in the bucket yet,
/// and the static assets.
async fn needed_objects(
    aws: &Aws,
    release: &Release,
    bucket: &str,
    bucket_exists: bool,
) -> Result<(Vec<ObjectEntry>, usize)> {
    let m = &release.manifest;
    let mut wanted = Vec::new();
    let mut skipped = 0;
    for entry in &m.objects {
        match entry.role {
            Role::Template | Role::Asset => wanted.push(entry.clone()),
            Role::Function | Role::Layer => {
                if bucket_exists
                    && bucket::is_proven(aws, bucket, &artifact_key(entry), &entry.digest).await?
                {
                    skipped += 1;
                } else if !wanted
                    .iter()
                    .any(|w: &ObjectEntry| w.digest == entry.digest)
                {
                    wanted.push(entry.clone());
                }
            }
        }
    }
    Ok((wanted, skipped))
}

/// Uploads the decrypted function zips the bucket lacks, in parallel.
async fn upload_functions(
    aws: &Aws,
    release: &Release,
    bucket: &str,
    files: &BTreeMap<String, PathBuf>,
) -> Result<Vec<String>> {
    let mut jobs = Vec::new();
    let mut seen = BTreeSet::new();
    for entry in &release.manifest.objects {
        if matches!(entry.role, Role::Function | Role::Layer)
            && let Some(file) = files.get(entry.path.as_str())
            && seen.insert(artifact_key(entry))
        {
            jobs.push((artifact_key(entry), file.clone(), entry.size, &entry.digest));
        }
    }
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let total = jobs.iter().map(|j| j.2).sum();
    let progress = Progress::new(&format!("uploading {} functions", jobs.len()), total);
    let tick = progress.tick();
    let mut tasks =
        futures_util::stream::iter(jobs.into_iter().map(|(key, file, size, digest)| {
            let tick = &tick;
            async move {
                bucket::upload(aws, bucket, &key, &file, "application/zip", digest).await?;
                tick(size);
                Ok::<_, anyhow::Error>(key)
            }
        }))
        .buffer_unordered(UPLOADS);
    let mut uploaded = Vec::new();
    while let Some(result) = tasks.next().await {
        uploaded.push(result?);
    }
    progress.finish();
    uploaded.sort();
    Ok(uploaded)
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "txt" | "md" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// Uploads each asset set into the bucket its stack output names; unchanged files are skipped.
async fn upload_assets(
    aws: &Aws,
    release: &Release,
    outputs: &BTreeMap<String, String>,
    files: &BTreeMap<String, PathBuf>,
) -> Result<(usize, Vec<String>)> {
    let mut count = 0;
    let mut buckets = Vec::new();
    for set in &release.manifest.assets {
        let bucket = outputs.get(&set.bucket_output).ok_or_else(|| {
            anyhow!(
                "the stack has no output {} naming the bucket for the {} assets: the release is broken; tell the vendor",
                set.bucket_output,
                set.name
            )
        })?;
        buckets.push(bucket.clone());
        let prefix = format!("assets/{}/", set.name);
        for path in &set.files {
            let key = path.as_str().strip_prefix(&prefix).unwrap_or(path.as_str());
            let entry = release
                .manifest
                .object(path)
                .ok_or_else(|| anyhow!("the manifest has no object {path}"))?;
            if bucket::is_proven(aws, bucket, key, &entry.digest).await? {
                continue;
            }
            let file = files
                .get(path.as_str())
                .ok_or_else(|| anyhow!("asset {path} was not decrypted"))?;
            bucket::upload(aws, bucket, key, file, content_type(key), &entry.digest).await?;
            count += 1;
        }
    }
    Ok((count, buckets))
}

/// The template's outputs that are a plain `Ref` to a resource, by output name.
fn ref_outputs(template: &serde_json::Value) -> BTreeMap<String, String> {
    let resources = template.get("Resources").and_then(|r| r.as_object());
    template
        .get("Outputs")
        .and_then(|o| o.as_object())
        .map(|outputs| {
            outputs
                .iter()
                .filter_map(|(name, o)| {
                    let target = o.get("Value")?.get("Ref")?.as_str()?;
                    resources?
                        .contains_key(target)
                        .then(|| (name.clone(), target.to_owned()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The stack's outputs. CloudFormation lists them once the stack settles; moto does not rebuild
/// them after a change set executes, so when none are listed, the outputs of the stack's own
/// template that are a `Ref` to a resource are read from the resources' physical ids instead.
pub(crate) async fn outputs(aws: &Aws, stack: &str) -> Result<BTreeMap<String, String>> {
    let mut out = describe_stack(aws, stack)
        .await?
        .map(|s| s.outputs)
        .unwrap_or_default();
    if !out.is_empty() {
        return Ok(out);
    }
    let template = match aws.cfn.get_template().stack_name(stack).send().await {
        Ok(t) => t.template_body().unwrap_or_default().to_owned(),
        Err(e) if is_missing_stack(&e) => return Ok(out),
        Err(e) => return Err(aws.explain(e, "cloudformation:GetTemplate", stack)),
    };
    let template: serde_json::Value = serde_json::from_str(&template).unwrap_or_default();
    let wanted: Vec<(String, String)> = ref_outputs(&template)
        .into_iter()
        .filter(|(name, _)| !out.contains_key(name))
        .collect();
    if wanted.is_empty() {
        return Ok(out);
    }
    // One listing for every resource (moto also fails DescribeStackResource on a stack with a
    // resource its conditions left out).
    let mut physical = BTreeMap::new();
    let mut next: Option<String> = None;
    loop {
        let page = aws
            .cfn
            .list_stack_resources()
            .stack_name(stack)
            .set_next_token(next.take())
            .send()
            .await
            .map_err(|e| aws.explain(e, "cloudformation:ListStackResources", stack))?;
        for r in page.stack_resource_summaries() {
            if let (Some(logical), Some(id)) = (r.logical_resource_id(), r.physical_resource_id()) {
                physical.insert(logical.to_owned(), id.to_owned());
            }
        }
        match page.next_token() {
            Some(token) if !token.is_empty() => next = Some(token.to_owned()),
            _ => break,
        }
    }
    for (name, logical) in wanted {
        if let Some(id) = physical.get(&logical) {
            out.insert(name, id.clone());
        }
    }
    Ok(out)
}

fn change_set_name(version: &semver::Version) -> String {
    let v: String = version
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("consign-{v}-{}", UnixTime::now().as_secs())
}

/// A change set created and described.
struct ChangeSet {
    name: String,
    kind: ChangeSetType,
    changes: Vec<Change>,
    /// False when CloudFormation found nothing to change.
    has_changes: bool,
}

async fn create_change_set(
    aws: &Aws,
    release: &Release,
    stack: &str,
    kind: ChangeSetType,
    template: TemplateRef,
    parameters: Vec<Parameter>,
    capabilities: Vec<Capability>,
) -> Result<ChangeSet> {
    let name = change_set_name(&release.manifest.version);
    let tags = [
        ("consign:app", release.app().to_owned()),
        ("consign:version", release.manifest.version.to_string()),
        ("consign:manifest", release.manifest_digest.to_string()),
        (
            "consign:license",
            release.license.claims().jti.as_str().to_owned(),
        ),
    ];
    let mut request = aws
        .cfn
        .create_change_set()
        .stack_name(stack)
        .change_set_name(&name)
        .change_set_type(kind.clone())
        .set_parameters(Some(parameters))
        .set_capabilities(Some(capabilities))
        .description(format!(
            "Consign: {} {}",
            release.app(),
            release.manifest.version
        ));
    for (key, value) in tags {
        request = request.tags(Tag::builder().key(key).value(value).build());
    }
    request = match template {
        TemplateRef::Body(body) => request.template_body(body),
        TemplateRef::Url(url) => request.template_url(url),
    };
    request
        .send()
        .await
        .map_err(|e| aws.explain(e, "cloudformation:CreateChangeSet", stack))?;
    // Change sets are ready in seconds; poll until CloudFormation has computed it.
    let mut waited = Duration::ZERO;
    loop {
        let described = aws
            .cfn
            .describe_change_set()
            .stack_name(stack)
            .change_set_name(&name)
            .send()
            .await
            .map_err(|e| aws.explain(e, "cloudformation:DescribeChangeSet", &name))?;
        match described.status() {
            Some(ChangeSetStatus::CreateComplete) => {
                let changes = described
                    .changes()
                    .iter()
                    .filter_map(|c| c.resource_change())
                    .map(|r| Change {
                        action: r
                            .action()
                            .map(|a| a.as_str().to_owned())
                            .unwrap_or_default(),
                        logical_id: r.logical_resource_id().unwrap_or_default().to_owned(),
                        resource_type: r.resource_type().unwrap_or_default().to_owned(),
                        replacement: r.replacement().map(|x| x.as_str().to_owned()),
                    })
                    .collect();
                return Ok(ChangeSet {
                    name,
                    kind,
                    changes,
                    has_changes: true,
                });
            }
            Some(ChangeSetStatus::Failed) => {
                let reason = described.status_reason().unwrap_or_default().to_owned();
                // "The submitted information didn't contain changes": not a failure.
                if reason.contains("didn't contain changes") || reason.contains("No updates") {
                    delete_change_set(aws, stack, &name).await?;
                    return Ok(ChangeSet {
                        name,
                        kind,
                        changes: Vec::new(),
                        has_changes: false,
                    });
                }
                delete_change_set(aws, stack, &name).await.ok();
                crate::refuse!(
                    DeployFailed,
                    "CloudFormation refused the change set for {stack}: {reason}"
                );
            }
            _ if waited > Duration::from_secs(600) => {
                bail!("the change set {name} was not ready after 10 minutes")
            }
            _ => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                waited += Duration::from_millis(500);
            }
        }
    }
}

async fn delete_change_set(aws: &Aws, stack: &str, name: &str) -> Result<()> {
    aws.cfn
        .delete_change_set()
        .stack_name(stack)
        .change_set_name(name)
        .send()
        .await
        .map_err(|e| aws.explain(e, "cloudformation:DeleteChangeSet", name))?;
    Ok(())
}

enum TemplateRef {
    Body(String),
    Url(String),
}

/// The template as a body, or (over CloudFormation's body limit) uploaded to the bucket.
async fn template_ref(
    aws: &Aws,
    bucket: &str,
    entry: &ObjectEntry,
    file: &Path,
    may_upload: bool,
) -> Result<TemplateRef> {
    let body = std::fs::read_to_string(file).context("the template is not UTF-8")?;
    if body.len() <= MAX_TEMPLATE_BODY {
        return Ok(TemplateRef::Body(body));
    }
    let key = format!("templates/{}.json", entry.digest.hex());
    if !bucket::is_proven(aws, bucket, &key, &entry.digest).await? {
        if !may_upload {
            bail!(
                "the template is over {MAX_TEMPLATE_BODY} bytes and must be read from the artifact bucket, which has no copy yet: run `installer install` (plan works once the bucket has it)"
            );
        }
        bucket::upload(aws, bucket, &key, file, "application/json", &entry.digest).await?;
    }
    Ok(TemplateRef::Url(format!(
        "https://{bucket}.s3.{}.amazonaws.com/{key}",
        aws.region
    )))
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
    release.grant(&aws.account).await?;
    let (wanted, skipped) = needed_objects(aws, release, &bucket, bucket_exists).await?;
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let total = wanted.iter().map(|w| w.sealed_size).sum();
    let progress = Progress::new(&format!("fetching {} objects", wanted.len()), total);
    let files = release.fetch(&wanted, dir.path(), &progress.tick()).await?;
    progress.finish();
    if !ui.json {
        ui.say(format!(
            "verified {} {}: {} objects decrypted and checked against the signed manifest",
            release.app(),
            release.manifest.version,
            files.len()
        ));
    }
    let template_file = files.get(template_entry.path.as_str()).ok_or_else(|| {
        crate::error::refused(
            crate::error::Code::Declined,
            format!("the template was not decrypted"),
        )
    })?;
    let template: serde_json::Value = serde_json::from_slice(&std::fs::read(template_file)?)
        .context("the release's template is not JSON")?;
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
    let set = match create_change_set(
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
    if set.has_changes {
        delete_change_set(aws, &options.stack, &set.name).await?;
    }
    if kind == ChangeSetType::Create {
        delete_stack_quietly(aws, &options.stack).await?;
    }
    Ok(Plan {
        stack: options.stack.clone(),
        app: release.app().to_owned(),
        version: release.manifest.version.to_string(),
        installed: p.installed.map(|e| e.version.to_string()),
        change_set_type: kind.as_str().to_owned(),
        changes: set.changes,
        iam_actions: release.manifest.actions(),
        parameters: shown,
        capabilities: release.manifest.capabilities.clone(),
    })
}

pub(crate) async fn delete_stack_quietly(aws: &Aws, stack: &str) -> Result<()> {
    aws.cfn
        .delete_stack()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| aws.explain(e, "cloudformation:DeleteStack", stack))?;
    Ok(())
}

/// The change set as lines for a person.
pub fn describe_changes(changes: &[Change]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    if changes.is_empty() {
        s.push_str("  (no resource changes)\n");
    }
    for c in changes {
        let sign = match c.action.as_str() {
            "Add" => "+",
            "Remove" => "-",
            _ => "~",
        };
        let replace = match c.replacement.as_deref() {
            Some("True") => "  (REPLACED)",
            Some("Conditional") => "  (may be replaced)",
            _ => "",
        };
        let _ = writeln!(
            s,
            "  {sign} {:<8} {:<28} {}{replace}",
            c.action, c.logical_id, c.resource_type
        );
    }
    s
}

/// Asks the admin `question` at the terminal, unless `yes`; anything but yes stops with
/// `declined` (which says what did not happen).
pub fn confirm(question: &str, yes: bool, declined: &str) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        crate::refuse!(
            NeedsConfirmation,
            "{question} needs a yes: run it in a terminal to confirm, or pass --yes"
        );
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        bail!("{declined}")
    }
}

/// Refuses a non-interactive run without `--yes` before anything happens.
pub fn require_yes_or_terminal(command: &str, yes: bool) -> Result<()> {
    if !yes && !std::io::stdin().is_terminal() {
        crate::refuse!(
            NeedsConfirmation,
            "`installer {command}` asks for confirmation and this run is not interactive: pass --yes to proceed without asking"
        );
    }
    Ok(())
}

/// Installs, upgrades or rolls back.
pub async fn deploy(aws: &Aws, mut release: Release, options: &Options, ui: Ui) -> Result<Report> {
    let p = prepare(aws, &mut release, options, true, ui).await?;
    let name = options.stack.as_str();
    let version = release.manifest.version.to_string();
    let live = p.stack.as_ref().filter(|s| !s.is_vacant()).cloned();
    if p.noop {
        let outputs = outputs(aws, name).await?;
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
            outputs,
        });
    }

    // From here on the account changes.
    let recorded = bucket::ensure(aws, &p.bucket, p.bucket_ours, ui).await?;
    if recorded != p.bucket {
        bail!(
            "another installer recorded the artifact bucket {recorded} while this one prepared {}: run the command again",
            p.bucket
        );
    }
    let uploaded = upload_functions(aws, &release, &p.bucket, &p.files).await?;
    ui.say(format!(
        "artifacts in s3://{}: {} uploaded, {} already there",
        p.bucket,
        uploaded.len(),
        p.skipped
    ));
    if let Some(stack) = p.stack.as_ref().filter(|s| s.is_vacant()) {
        ui.say(format!(
            "stack {name} holds no installation ({}): deleting it before creating it again",
            stack.status
        ));
        delete_stack_quietly(aws, name).await?;
        watch(aws, name, None, options.poll, 0, ui).await.ok();
    }
    let (parameters, _) = parameters(&release, options, &p.bucket, live.as_ref())?;
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
    let set = create_change_set(
        aws,
        &release,
        name,
        kind,
        template,
        parameters,
        p.capabilities.clone(),
    )
    .await?;
    let status = if set.has_changes {
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
        if let Err(e) = confirm(
            &format!("deploy {} {version} to stack {name}?", release.app()),
            options.yes,
            "stopped: nothing was deployed (the uploaded artifacts stay in the bucket for next time)",
        ) {
            delete_change_set(aws, name, &set.name).await.ok();
            if set.kind == ChangeSetType::Create {
                delete_stack_quietly(aws, name).await.ok();
            }
            return Err(e);
        }
        store_license(aws, name, &release, ui).await?;
        let marker = newest_event(aws, name).await?;
        execute(aws, name, &set.name, &p.template).await?;
        let total = p
            .template
            .get("Resources")
            .and_then(|r| r.as_object())
            .map_or(0, serde_json::Map::len);
        watch(aws, name, marker, options.poll, total, ui).await?
    } else {
        ui.say(format!("stack {name} needs no resource changes"));
        store_license(aws, name, &release, ui).await?;
        live.map(|s| s.status).unwrap_or_default()
    };
    let outputs = outputs(aws, name).await?;
    let (assets_uploaded, asset_buckets) = upload_assets(aws, &release, &outputs, &p.files).await?;
    if assets_uploaded > 0 {
        ui.say(format!("uploaded {assets_uploaded} static files"));
    }
    let mut history = p.history.clone().unwrap_or_else(|| History {
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
    record::write_history(aws, name, text).await?;
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

pub(crate) async fn newest_event(aws: &Aws, stack: &str) -> Result<Option<String>> {
    match aws
        .cfn
        .describe_stack_events()
        .stack_name(stack)
        .send()
        .await
    {
        Ok(out) => Ok(out
            .stack_events()
            .first()
            .and_then(|e| e.event_id())
            .map(str::to_owned)),
        Err(e) if is_missing_stack(&e) => Ok(None),
        Err(e) => Err(aws.explain(e, "cloudformation:DescribeStackEvents", stack)),
    }
}

/// Executes the change set. A failing resource makes CloudFormation end in a failed or
/// rolled-back status, which [`watch`] reports; moto instead fails the ExecuteChangeSet call
/// itself with the resource's error and no name, so the resource is found as the one the stack
/// cannot describe.
async fn execute(
    aws: &Aws,
    stack: &str,
    change_set: &str,
    template: &serde_json::Value,
) -> Result<()> {
    let Err(err) = aws
        .cfn
        .execute_change_set()
        .stack_name(stack)
        .change_set_name(change_set)
        .send()
        .await
    else {
        return Ok(());
    };
    let explained = aws.explain(err, "cloudformation:ExecuteChangeSet", stack);
    let message = explained.to_string();
    if message.starts_with("cannot reach") || message.starts_with("AWS denied") {
        return Err(explained);
    }
    let reason = message
        .strip_prefix(&format!(
            "cloudformation:ExecuteChangeSet on {stack} failed: "
        ))
        .unwrap_or(&message)
        .to_owned();
    let resources = template
        .get("Resources")
        .and_then(|r| r.as_object())
        .cloned()
        .unwrap_or_default();
    for (logical, body) in &resources {
        let kind = body.get("Type").and_then(|t| t.as_str()).unwrap_or("?");
        if let Err(e) = aws
            .cfn
            .describe_stack_resource()
            .stack_name(stack)
            .logical_resource_id(logical)
            .send()
            .await
        {
            // The failing resource answers with the very error the execution failed with.
            if aws
                .explain(e, "create", logical)
                .to_string()
                .contains(&reason)
            {
                crate::refuse!(
                    DeployFailed,
                    "stack {stack} failed: resource {logical} ({kind}) could not be created: {reason}. Fix the cause and run the command again, or `installer uninstall --stack {stack}`"
                );
            }
        }
    }
    Err(explained.context(format!("stack {stack} failed")))
}

/// Streams stack events until the stack settles; the final status, or the failed resource and
/// its reason as an error.
pub(crate) async fn watch(
    aws: &Aws,
    stack: &str,
    mut marker: Option<String>,
    poll: Duration,
    total: usize,
    ui: Ui,
) -> Result<String> {
    let mut first_failure: Option<String> = None;
    let mut settled_resources = BTreeSet::new();
    let started = std::time::Instant::now();
    loop {
        let out = match aws
            .cfn
            .describe_stack_events()
            .stack_name(stack)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if is_missing_stack(&e) => return Ok("DELETE_COMPLETE".into()),
            Err(e) => return Err(aws.explain(e, "cloudformation:DescribeStackEvents", stack)),
        };
        // Newest first, down to the marker; printed oldest first.
        let mut fresh = Vec::new();
        for event in out.stack_events() {
            if event.event_id().map(str::to_owned) == marker {
                break;
            }
            fresh.push(event.clone());
        }
        if let Some(newest) = out.stack_events().first() {
            marker = newest.event_id().map(str::to_owned);
        }
        for event in fresh.iter().rev() {
            let status = event
                .resource_status()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default();
            let logical = event.logical_resource_id().unwrap_or_default();
            let kind = event.resource_type().unwrap_or_default();
            let reason = event.resource_status_reason().unwrap_or_default();
            let at = event.timestamp().map(|t| t.to_string()).unwrap_or_default();
            if logical != stack && status.ends_with("_COMPLETE") {
                settled_resources.insert(logical.to_owned());
            }
            let counter = if total > 0 {
                format!("[{:>2}/{total}] ", settled_resources.len().min(total))
            } else {
                String::new()
            };
            ui.say(format!(
                "  {counter}{at}  {status:<22} {logical} ({kind}) {reason}"
            ));
            if status.ends_with("_FAILED") && first_failure.is_none() && logical != stack {
                first_failure = Some(format!("resource {logical} ({kind}) failed: {reason}"));
            }
        }
        let Some(current) = describe_stack(aws, stack).await? else {
            return Ok("DELETE_COMPLETE".into());
        };
        let status = current.status.clone();
        let settled = !status.ends_with("_IN_PROGRESS");
        if settled {
            let failed = status.ends_with("_FAILED")
                || status.contains("ROLLBACK")
                || status == StackStatus::DeleteFailed.as_str();
            if failed {
                let why = first_failure
                    .or(current.reason)
                    .unwrap_or_else(|| "CloudFormation gave no reason".into());
                crate::refuse!(
                    DeployFailed,
                    "stack {stack} ended in {status}: {why}. Fix the cause and run the command again"
                );
            }
            return Ok(status);
        }
        if started.elapsed() > Duration::from_secs(3 * 3600) {
            bail!("stack {stack} did not settle within 3 hours (still {status})");
        }
        tokio::time::sleep(poll).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_outputs_are_those_naming_a_resource() {
        let template = serde_json::json!({
            "Resources": {"SiteBucket": {"Type": "AWS::S3::Bucket"}},
            "Parameters": {"Stage": {"Type": "String"}},
            "Outputs": {
                "SiteBucketName": {"Value": {"Ref": "SiteBucket"}},
                "StageName": {"Value": {"Ref": "Stage"}},
                "Url": {"Value": {"Fn::Sub": "https://${SiteBucket}"}}
            }
        });
        let outputs = ref_outputs(&template);
        assert_eq!(outputs.len(), 1);
        assert_eq!(
            outputs.get("SiteBucketName").map(String::as_str),
            Some("SiteBucket")
        );
    }

    #[test]
    fn changes_read_as_add_modify_replace_remove() {
        let change = |action: &str, replacement: Option<&str>| Change {
            action: action.into(),
            logical_id: "Posts".into(),
            resource_type: "AWS::Lambda::Function".into(),
            replacement: replacement.map(str::to_owned),
        };
        let text = describe_changes(&[
            change("Add", None),
            change("Modify", Some("False")),
            change("Modify", Some("True")),
            change("Modify", Some("Conditional")),
            change("Remove", None),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].trim_start().starts_with("+ Add"), "{text}");
        assert!(lines[1].trim_start().starts_with("~ Modify") && !lines[1].contains("REPLACED"));
        assert!(lines[2].ends_with("(REPLACED)"), "{text}");
        assert!(lines[3].ends_with("(may be replaced)"), "{text}");
        assert!(lines[4].trim_start().starts_with("- Remove"), "{text}");
        assert!(describe_changes(&[]).contains("no resource changes"));
    }

    #[test]
    fn vacant_and_busy_stacks() {
        let stack = |status: &str| Stack {
            status: status.into(),
            ..Stack::default()
        };
        assert!(stack("REVIEW_IN_PROGRESS").is_vacant());
        assert!(stack("ROLLBACK_COMPLETE").is_vacant());
        assert!(!stack("UPDATE_ROLLBACK_COMPLETE").is_vacant());
        assert!(stack("UPDATE_IN_PROGRESS").is_busy());
        assert!(!stack("REVIEW_IN_PROGRESS").is_busy());
    }
}
