//! `plan`, `install`, `upgrade` and `rollback`: a release from the portal or a kit, deployed
//! into a stack with a change set.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use installer::aws::{Aws, AwsOptions};
use installer::deploy::{self, Action, Options, Ui};
use installer::error::{Code, refused};
use installer::release::{self, Catalog};

use super::{Output, POLL, parse_version, print_json};

#[derive(Debug, Args)]
pub struct Deploying {
    /// The CloudFormation stack's name.
    #[arg(long)]
    pub stack: String,
    /// A template parameter the app lets you set (repeatable).
    #[arg(long = "param", value_name = "K=V", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Deploy without asking for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Allow deploying a version older than the installed one.
    #[arg(long)]
    pub allow_downgrade: bool,
}

/// Where a release comes from: the portal (after `login`) or an air-gapped kit.
#[derive(Debug, Args)]
pub struct From {
    /// The version (with a login).
    #[arg(
        long = "version",
        required_unless_present = "kit",
        conflicts_with = "kit"
    )]
    pub version: Option<String>,
    /// An air-gapped kit (`vendor-portal kit export`).
    #[arg(long, requires_all = ["key", "trust_root"])]
    pub kit: Option<PathBuf>,
    /// The folder holding install.key (`installer keygen`).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// The vendor's root key fingerprint, for a kit.
    #[arg(long, env = "CONSIGN_TRUST_ROOT")]
    pub trust_root: Option<String>,
}

impl From {
    /// The release, verified: from the portal (after `login`) or from the kit.
    pub async fn release(self) -> Result<release::Release> {
        match (self.kit, self.version) {
            (Some(kit), _) => {
                let key = self.key.context("--kit needs --key DIR")?;
                let root = self
                    .trust_root
                    .context("--kit needs --trust-root FINGERPRINT")?;
                release::from_kit(&kit, &key, &root).await
            }
            (None, Some(version)) => {
                let version = parse_version(&version)?;
                Catalog::load().await?.release(&version).await
            }
            (None, None) => bail!("give --version V, or --kit KIT --key DIR"),
        }
    }
}

pub fn parse_param(text: &str) -> Result<(String, String), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not K=V"))?;
    if k.is_empty() {
        return Err(format!("{text:?} has no parameter name"));
    }
    Ok((k.to_owned(), v.to_owned()))
}

pub fn deploy_options(d: Deploying, action: Action) -> Options {
    Options {
        stack: d.stack,
        params: d.params,
        yes: d.yes,
        allow_downgrade: d.allow_downgrade,
        action,
        poll: POLL,
    }
}

pub fn print_report(report: &deploy::Report, output: Output) -> Result<()> {
    match output {
        Output::Json => print_json(report),
        Output::Text => {
            if report.changed {
                println!(
                    "{} {} {} on stack {} ({}){}",
                    match report.action {
                        Action::Install => "Installed",
                        Action::Upgrade => "Upgraded to",
                        Action::Rollback => "Rolled back to",
                    },
                    report.app,
                    report.version,
                    report.stack,
                    report.stack_status,
                    report
                        .previous
                        .as_ref()
                        .map(|p| format!(", from {p}"))
                        .unwrap_or_default()
                );
            } else {
                println!(
                    "{} {} is already installed on stack {}: nothing changed",
                    report.app, report.version, report.stack
                );
            }
            for (k, v) in &report.outputs {
                println!("  {k} = {v}");
            }
            // The app's address, last: the output that is a URL.
            if let Some((name, url)) = report
                .outputs
                .iter()
                .find(|(_, v)| v.starts_with("https://") || v.starts_with("http://"))
            {
                println!("Open {url} ({name})");
            }
            Ok(())
        }
    }
}

/// `installer plan`: the change set a deploy would make, changing nothing.
pub async fn plan(
    deploying: Deploying,
    version: String,
    options: &AwsOptions,
    ui: Ui,
    output: Output,
) -> Result<()> {
    let version = parse_version(&version)?;
    let catalog = Catalog::load().await?;
    let release = catalog.release(&version).await?;
    let aws = Aws::connect(options).await?;
    let plan = deploy::plan(
        &aws,
        release,
        &deploy_options(deploying, Action::Install),
        ui,
    )
    .await?;
    match output {
        Output::Json => print_json(&plan),
        Output::Text => {
            println!(
                "Plan for stack {} ({} change set): {} {}{}",
                plan.stack,
                plan.change_set_type,
                plan.app,
                plan.version,
                plan.installed
                    .as_ref()
                    .map(|v| format!(" (installed: {v})"))
                    .unwrap_or_default()
            );
            println!("Resources:");
            print!("{}", deploy::describe_changes(&plan.changes));
            for machine in &plan.workflows {
                print!("{}", machine.describe(&plan.function_notes));
            }
            match &plan.boundary {
                Some(boundary) => {
                    println!(
                        "Every role is bounded by {} (created at install); no role may ever hold more than:",
                        boundary.arn
                    );
                    for action in &boundary.actions {
                        println!("  {action}");
                    }
                }
                None => println!("The release creates no IAM role."),
            }
            println!("Parameters:");
            for (k, v) in &plan.parameters {
                println!("  {k} = {}", v.as_deref().unwrap_or("(unchanged)"));
            }
            if !plan.capabilities.is_empty() {
                println!("Capabilities: {}", plan.capabilities.join(", "));
            }
            println!("Nothing was changed; the change set was deleted.");
            Ok(())
        }
    }
}

/// `installer install` and `installer upgrade`.
pub async fn install(
    deploying: Deploying,
    from: From,
    action: Action,
    options: &AwsOptions,
    ui: Ui,
    output: Output,
) -> Result<()> {
    let command = if action == Action::Upgrade {
        "upgrade"
    } else {
        "install"
    };
    deploy::require_yes_or_terminal(command, deploying.yes)?;
    let aws = Aws::connect(options).await?;
    let release = from.release().await?;
    let report = deploy::deploy(&aws, release, &deploy_options(deploying, action), ui).await?;
    print_report(&report, output)
}

/// `installer rollback`: the version installed before the current one, if the portal still
/// serves exactly that release.
pub async fn rollback(
    stack: String,
    yes: bool,
    options: &AwsOptions,
    ui: Ui,
    output: Output,
) -> Result<()> {
    deploy::require_yes_or_terminal("rollback", yes)?;
    let aws = Aws::connect(options).await?;
    let history = installer::record::read_history(&aws, &stack)
        .await?
        .ok_or_else(|| {
            refused(
                Code::NotInstalled,
                format!("stack {stack} is not installed in this account and region"),
            )
        })?;
    let previous = history.previous().cloned().ok_or_else(|| {
        refused(
            Code::NoRollback,
            format!("stack {stack} has run only one version: there is nothing to roll back to"),
        )
    })?;
    let release = Catalog::load().await?.release(&previous.version).await?;
    if release.manifest_digest.to_string() != previous.manifest {
        installer::refuse!(
            NoRollback,
            "{} {} on the portal is not the release that was installed (its manifest changed): refusing to roll back to it",
            history.app,
            previous.version
        );
    }
    let deploying = Deploying {
        stack,
        params: Vec::new(),
        yes,
        allow_downgrade: true,
    };
    let report = deploy::deploy(
        &aws,
        release,
        &deploy_options(deploying, Action::Rollback),
        ui,
    )
    .await?;
    print_report(&report, output)
}
