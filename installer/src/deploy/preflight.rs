//! Checks before anything changes: the stack's state and history against the requested
//! action (busy, foreign, downgrade, required releases), the release's capabilities and the
//! admin's parameters.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow};
use aws_sdk_cloudformation::types::{Capability, Parameter};

use super::{Action, Options};
use crate::bucket::artifact_key;
use crate::record::{Entry, History};
use crate::release::Release;
use crate::stack::Stack;

/// Capabilities the installer acknowledges. Macros and transforms (`CAPABILITY_AUTO_EXPAND`)
/// are refused: what is deployed must be exactly the signed template.
pub(crate) const CAPABILITIES: &[&str] = &["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"];

/// The checks against the installed stack: same app, no downgrade without the flag, no skipped
/// required release, nothing in progress. Returns the installed entry, if any.
pub(crate) fn check_against_installed<'h>(
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
    let stack_live = stack.is_some_and(|s| !s.is_vacant());
    check_ownership(
        release,
        options,
        stack,
        history,
        installed.is_some(),
        stack_live,
    )?;
    let Some(current) = installed.filter(|_| stack_live) else {
        return Ok(None);
    };
    check_version_order(release, options, current)?;
    Ok(Some(current))
}

/// Refuses a stack of another app or not made by Consign, and an action that does not fit what
/// is installed (install over another version, upgrade or rollback of nothing).
fn check_ownership(
    release: &Release,
    options: &Options,
    stack: Option<&Stack>,
    history: Option<&History>,
    installed: bool,
    stack_live: bool,
) -> Result<()> {
    let name = &options.stack;
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
    if stack_live && !installed && stack.is_some_and(|s| !s.tags.contains_key("consign:app")) {
        crate::refuse!(
            ForeignStack,
            "stack {name} exists and was not installed by Consign: choose another --stack"
        );
    }
    let current = history.and_then(History::current).filter(|_| stack_live);
    match options.action {
        Action::Install => {
            if let Some(current) = current
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
            if !installed || !stack_live {
                crate::refuse!(
                    NotInstalled,
                    "stack {name} is not installed in this account and region: use `installer install`"
                );
            }
        }
    }
    Ok(())
}

/// Refuses a downgrade without `--allow-downgrade` (a rollback is one on purpose) and an upgrade
/// that skips a required release.
fn check_version_order(release: &Release, options: &Options, current: &Entry) -> Result<()> {
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
    Ok(())
}

pub(crate) fn check_capabilities(release: &Release) -> Result<Vec<Capability>> {
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
pub(crate) type ShownParameters = BTreeMap<String, Option<String>>;

/// The stack's parameters: the installer's own (bucket, code keys), then the admin's, then
/// (on an update) the running values of everything not given.
pub(crate) fn parameters(
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
pub(crate) fn check_params(release: &Release, options: &Options) -> Result<()> {
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
