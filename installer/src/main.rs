//! `installer`: the enterprise admin's command line. It logs in with a license, lists the
//! versions the license may install, plans (a CloudFormation change set, shown before anything
//! changes), installs, upgrades, rolls back, uninstalls and reports status in the admin's own
//! AWS account, and installs from air-gapped kits. Each command is a thin layer over the
//! library (`installer::deploy`, `installer::release`, ...).

use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use bundles::open::check_all;
use bundles::{BundleReader, Limits};
use clap::{Args, Parser, Subcommand, ValueEnum};
use installer::aws::{Aws, AwsOptions};
use installer::deploy::{self, Action, Options, Ui};
use installer::error::{Code, code_of, refused};
use installer::home::Login;
use installer::portal::Portal;
use installer::release::{self, Catalog};
use license::{Keyset, TrustPin, UnixTime};
use serde_json::json;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
enum Output {
    #[default]
    Text,
    Json,
}

/// Deploy a vendor's app into your own AWS account.
#[derive(Debug, Parser)]
#[command(name = "installer", version, about)]
struct Cli {
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// An AWS endpoint for every service (an emulator); AWS_ENDPOINT_URL works too.
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    /// The AWS profile.
    #[arg(long, global = true)]
    profile: Option<String>,
    /// The AWS region.
    #[arg(long, global = true)]
    region: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Deploying {
    /// The CloudFormation stack's name.
    #[arg(long)]
    stack: String,
    /// A template parameter the app lets you set (repeatable).
    #[arg(long = "param", value_name = "K=V", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// Deploy without asking for confirmation.
    #[arg(long)]
    yes: bool,
    /// Allow deploying a version older than the installed one.
    #[arg(long)]
    allow_downgrade: bool,
}

/// Where a release comes from: the portal (after `login`) or an air-gapped kit.
#[derive(Debug, Args)]
struct From {
    /// The version (with a login).
    #[arg(
        long = "version",
        required_unless_present = "kit",
        conflicts_with = "kit"
    )]
    version: Option<String>,
    /// An air-gapped kit (`vendor-portal kit export`).
    #[arg(long, requires_all = ["key", "trust_root"])]
    kit: Option<PathBuf>,
    /// The folder holding install.key (`installer keygen`).
    #[arg(long)]
    key: Option<PathBuf>,
    /// The vendor's root key fingerprint, for a kit.
    #[arg(long, env = "CONSIGN_TRUST_ROOT")]
    trust_root: Option<String>,
}

impl From {
    async fn release(self) -> Result<release::Release> {
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

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the static install key pair that vendors wrap air-gapped kits to; prints the
    /// public key to give the vendor.
    Keygen {
        /// The folder for install.key (secret, 0600) and install.pub.
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
    },
    /// Verify a bundle's signature and structure without its keys, and show what it would create
    /// in your account and which IAM permissions it would hold.
    Verify {
        /// The bundle.
        bundle: PathBuf,
        /// The vendor's keyset.json.
        #[arg(long)]
        trust: PathBuf,
        /// Pin the vendor's root key (sha256:<hex>, from the vendor, out of band).
        #[arg(long)]
        trust_root: Option<String>,
    },
    /// Log in to a vendor's portal with your license, pinning the vendor's root key.
    Login {
        /// The vendor's portal.
        #[arg(long, env = "PORTAL_URL")]
        portal: String,
        /// Your license file.
        #[arg(long)]
        license: PathBuf,
        /// The vendor's root key fingerprint (sha256:<hex>), confirmed with the vendor out of
        /// band; without it you are asked to confirm the one the portal shows.
        #[arg(long)]
        trust_root: Option<String>,
    },
    /// List the versions of the app and whether your license may install them.
    Versions,
    /// Show the change set installing or upgrading to a version would make, changing nothing.
    Plan {
        #[command(flatten)]
        deploying: Deploying,
        /// The version.
        #[arg(long = "version")]
        version: String,
    },
    /// Install a version (from the portal) or an air-gapped kit into a new stack.
    #[command(disable_version_flag = true)]
    Install {
        #[command(flatten)]
        deploying: Deploying,
        #[command(flatten)]
        from: From,
    },
    /// Upgrade an installed stack to a version (from the portal) or to an air-gapped kit's.
    #[command(disable_version_flag = true)]
    Upgrade {
        #[command(flatten)]
        deploying: Deploying,
        #[command(flatten)]
        from: From,
    },
    /// Return an installed stack to the version installed before the current one.
    Rollback {
        /// The stack.
        #[arg(long)]
        stack: String,
        /// Deploy without asking for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Delete an installed stack and say what stays.
    Uninstall {
        /// The stack.
        #[arg(long)]
        stack: String,
        /// Delete without asking for confirmation.
        #[arg(long)]
        yes: bool,
        /// Also delete this stack's function artifacts that no other installation uses.
        #[arg(long)]
        purge_artifacts: bool,
    },
    /// Show what is installed in a stack, read from the account.
    Status {
        /// The stack.
        #[arg(long)]
        stack: String,
    },
    /// Print the least-privilege IAM policy the installer needs to deploy a version.
    #[command(name = "iam-policy", disable_version_flag = true)]
    IamPolicy {
        /// The version.
        #[arg(long = "version")]
        version: String,
        /// Scope the policy to this stack name.
        #[arg(long)]
        stack: Option<String>,
    },
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not K=V"))?;
    if k.is_empty() {
        return Err(format!("{text:?} has no parameter name"));
    }
    Ok((k.to_owned(), v.to_owned()))
}

fn main() -> ExitCode {
    license::process::guarded_main(|| {
        let cli = Cli::parse();
        let output = cli.output;
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("error: cannot start the runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        match runtime.block_on(run(cli)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                let sentence = license::process::error_sentence(&err);
                if output == Output::Json {
                    let code = code_of(&err);
                    println!(
                        "{}",
                        json!({ "ok": false, "verified": false, "code": code, "error": sentence })
                    );
                }
                eprintln!("error: {sentence}");
                ExitCode::FAILURE
            }
        }
    })
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn aws_options(cli: &Cli) -> AwsOptions {
    AwsOptions {
        endpoint_url: cli.endpoint_url.clone(),
        profile: cli.profile.clone(),
        region: cli.region.clone(),
    }
}

fn parse_version(text: &str) -> Result<semver::Version> {
    semver::Version::parse(text.trim_start_matches('v'))
        .map_err(|e| anyhow!("{text:?} is not a version ({e}): give one like 1.2.0"))
}

const POLL: Duration = Duration::from_secs(2);

async fn run(cli: Cli) -> Result<()> {
    let ui = Ui {
        json: cli.output == Output::Json,
    };
    let options = aws_options(&cli);
    match cli.command {
        Command::Keygen { out } => keygen(&out, cli.output),
        Command::Verify {
            bundle,
            trust,
            trust_root,
        } => verify(&bundle, &trust, trust_root, cli.output),
        Command::Login {
            portal,
            license,
            trust_root,
        } => login(&portal, &license, trust_root, cli.output).await,
        Command::Versions => versions(cli.output).await,
        Command::Plan { deploying, version } => {
            let version = parse_version(&version)?;
            let catalog = Catalog::load().await?;
            let release = catalog.release(&version).await?;
            let aws = Aws::connect(&options).await?;
            let plan = deploy::plan(
                &aws,
                release,
                &deploy_options(deploying, Action::Install),
                ui,
            )
            .await?;
            match cli.output {
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
                    println!("IAM actions the stack's roles will hold:");
                    for action in &plan.iam_actions {
                        println!("  {action}");
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
        Command::Install { deploying, from } => {
            deploy::require_yes_or_terminal("install", deploying.yes)?;
            let aws = Aws::connect(&options).await?;
            let release = from.release().await?;
            let report = deploy::deploy(
                &aws,
                release,
                &deploy_options(deploying, Action::Install),
                ui,
            )
            .await?;
            print_report(&report, cli.output)
        }
        Command::Upgrade { deploying, from } => {
            deploy::require_yes_or_terminal("upgrade", deploying.yes)?;
            let aws = Aws::connect(&options).await?;
            let release = from.release().await?;
            let report = deploy::deploy(
                &aws,
                release,
                &deploy_options(deploying, Action::Upgrade),
                ui,
            )
            .await?;
            print_report(&report, cli.output)
        }
        Command::Rollback { stack, yes } => {
            deploy::require_yes_or_terminal("rollback", yes)?;
            let aws = Aws::connect(&options).await?;
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
                    format!(
                        "stack {stack} has run only one version: there is nothing to roll back to"
                    ),
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
            print_report(&report, cli.output)
        }
        Command::Uninstall {
            stack,
            yes,
            purge_artifacts,
        } => {
            deploy::require_yes_or_terminal("uninstall", yes)?;
            let aws = Aws::connect(&options).await?;
            deploy::confirm(
                &format!("delete stack {stack} and everything it created?"),
                yes,
                "stopped: nothing was deleted",
            )?;
            let mut done =
                installer::inventory::uninstall(&aws, &stack, purge_artifacts, POLL, ui).await?;
            // The stack is gone; its seat on the vendor's portal is freed when the portal can be
            // reached (air-gapped installs have none to free).
            if let (Some(license), Ok(login)) = (&done.license, Login::read()) {
                let freed = async {
                    Portal::new(&login.portal)?
                        .free_seat(license, &aws.account, &aws.region, &stack)
                        .await
                };
                match freed.await {
                    Ok(seat) => done.seat_freed = seat,
                    Err(e) => done.left.push(format!(
                        "the installation's seat on the vendor's portal ({}): it could not be freed ({}); ask the vendor to free it",
                        login.portal,
                        license::process::error_sentence(&e)
                    )),
                }
            }
            match cli.output {
                Output::Json => print_json(&done),
                Output::Text => {
                    println!(
                        "Uninstalled {}: stack {}; {} static file(s) and {} artifact(s) removed.",
                        done.stack,
                        if done.deleted {
                            "deleted"
                        } else {
                            "was already gone"
                        },
                        done.assets_removed,
                        done.artifacts_removed
                    );
                    if let Some(seat) = &done.seat_freed {
                        println!(
                            "Freed the license seat of installation {seat} on the vendor's portal."
                        );
                    }
                    for left in &done.left {
                        println!("Left in the account: {left}");
                    }
                    Ok(())
                }
            }
        }
        Command::Status { stack } => {
            let aws = Aws::connect(&options).await?;
            let status = installer::inventory::status(&aws, &stack).await?;
            match cli.output {
                Output::Json => print_json(&status),
                Output::Text => {
                    if !status.installed {
                        println!(
                            "Stack {stack} is not installed in account {} {}{}",
                            aws.account,
                            aws.region,
                            status
                                .stack_status
                                .as_ref()
                                .map(|s| format!(" (a stack by that name is {s})"))
                                .unwrap_or_default()
                        );
                        return Ok(());
                    }
                    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                    println!("Stack:     {stack} ({})", dash(&status.stack_status));
                    println!("App:       {} {}", dash(&status.app), dash(&status.version));
                    println!("Bundle:    {}", dash(&status.manifest));
                    println!(
                        "License:   {} (expires {})",
                        dash(&status.license),
                        dash(&status.license_expires)
                    );
                    println!(
                        "Installed: {} by {}",
                        dash(&status.installed_at),
                        dash(&status.installed_by)
                    );
                    if !status.outputs.is_empty() {
                        println!("Outputs:");
                        for (k, v) in &status.outputs {
                            println!("  {k} = {v}");
                        }
                    }
                    println!("History:");
                    for e in &status.history {
                        println!(
                            "  {}  {:<8} {}",
                            installer::inventory::time(e.at),
                            e.action,
                            e.version
                        );
                    }
                    Ok(())
                }
            }
        }
        Command::IamPolicy { version, stack } => {
            let version = parse_version(&version)?;
            let release = Catalog::load().await?.release(&version).await?;
            let (policy, unmapped) = installer::iam::policy(&release.manifest, stack.as_deref());
            for kind in &unmapped {
                eprintln!(
                    "warning: the template declares {kind}, whose permissions the installer does not know: add them by hand"
                );
            }
            print_json(&policy)
        }
    }
}

fn deploy_options(d: Deploying, action: Action) -> Options {
    Options {
        stack: d.stack,
        params: d.params,
        yes: d.yes,
        allow_downgrade: d.allow_downgrade,
        action,
        poll: POLL,
    }
}

fn print_report(report: &deploy::Report, output: Output) -> Result<()> {
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
            Ok(())
        }
    }
}

async fn login(
    portal_url: &str,
    license_path: &std::path::Path,
    trust_root: Option<String>,
    output: Output,
) -> Result<()> {
    let text = std::fs::read_to_string(license_path)
        .with_context(|| format!("cannot read the license {}", license_path.display()))?;
    let unverified = license::verify::decode_unverified(&text)
        .with_context(|| format!("{} is not a license", license_path.display()))?;
    let claim = |name: &str| {
        unverified
            .claims
            .get(name)
            .and_then(|v| v.as_str())
            .and_then(|v| license::claims::Slug::new(v).ok())
            .map(|v| v.as_str().to_owned())
            .ok_or_else(|| {
                anyhow!("the license names no valid {name}: it is not a Consign license")
            })
    };
    let vendor = claim("iss")?;
    let app = claim("aud")?;
    let portal = Portal::new(portal_url)?;
    let keyset_bytes = portal.keyset(&vendor).await?;
    let shown = Keyset::verify(
        &keyset_bytes,
        &TrustPin {
            root_fingerprint: None,
            min_seq: 0,
        },
    )
    .context("the vendor's keyset is not valid")?
    .root_fingerprint();
    let root = match trust_root {
        Some(pinned) => {
            if pinned != shown {
                installer::refuse!(
                    UntrustedRoot,
                    "the portal's keyset is rooted in {shown}, not in the pinned {pinned}: do not trust this portal for {vendor} until the vendor confirms the fingerprint"
                );
            }
            pinned
        }
        None => {
            use std::io::IsTerminal as _;
            if !std::io::stdin().is_terminal() {
                installer::refuse!(
                    UntrustedRoot,
                    "{vendor}'s root key fingerprint is {shown}: confirm it with the vendor out of band, then pass --trust-root {shown}"
                );
            }
            deploy::confirm(
                &format!(
                    "{vendor}'s root key fingerprint is\n  {shown}\nDoes it match the one the vendor gave you?"
                ),
                false,
                "not logged in: the fingerprint was not confirmed",
            )?;
            shown
        }
    };
    let licensed = release::verify_license(&keyset_bytes, &root, 0, &text)?;
    let claims = licensed.license.claims();
    let login = Login {
        portal: portal.base().to_owned(),
        vendor: vendor.clone(),
        app: app.clone(),
        root_fingerprint: root.clone(),
        keyset_seq: licensed.keyset.keyset().seq,
        license: text,
    };
    let repo = installer::tuf::load_over_http(
        &portal.tuf_base(&vendor, &app),
        &root,
        |n| portal.root(&vendor, &app, n),
        &login.datastore()?,
    )
    .await?;
    let releases = installer::tuf::releases(&repo)?;
    login.save()?;
    let summary = json!({
        "portal": login.portal,
        "vendor": vendor,
        "app": app,
        "customer": claims.sub.as_str(),
        "license": claims.jti.as_str(),
        "plan": claims.plan.as_str(),
        "expires": claims.exp.to_string(),
        "features": claims.entitlements.features,
        "aws_accounts": claims.bindings.aws_accounts,
        "regions": claims.bindings.regions,
        "root_fingerprint": root,
        "releases": releases.len(),
    });
    match output {
        Output::Json => print_json(&summary),
        Output::Text => {
            println!(
                "Logged in to {} as {} for {app} (license {}, expires {}).",
                login.portal, claims.sub, claims.jti, claims.exp
            );
            println!("Vendor {vendor}'s root key {root} is pinned.");
            println!(
                "{} releases published; `installer versions` lists them.",
                releases.len()
            );
            Ok(())
        }
    }
}

async fn versions(output: Output) -> Result<()> {
    let catalog = Catalog::load().await?;
    let rows: Vec<_> = catalog
        .releases
        .iter()
        .map(|r| {
            let refusal = catalog.refusal(r);
            json!({
                "version": r.version.to_string(),
                "channels": r.channels,
                "required": r.required,
                "yanked": r.yanked,
                "published_at": installer::inventory::time(r.published_at),
                "min_installer_version": r.min_installer_version.to_string(),
                "installable": refusal.is_none() && r.yanked.is_none(),
                "not_installable_because": refusal,
            })
        })
        .collect();
    match output {
        Output::Json => print_json(&json!({"app": catalog.login.app, "versions": rows})),
        Output::Text => {
            println!("{} ({}):", catalog.login.app, catalog.login.vendor);
            for r in &catalog.releases {
                let refusal = catalog.refusal(r);
                let mut marks = Vec::new();
                if r.required {
                    marks.push("REQUIRED".to_owned());
                }
                if let Some(reason) = &r.yanked {
                    marks.push(format!("YANKED: {reason}"));
                } else if let Some(why) = &refusal {
                    marks.push(format!("not licensed: {why}"));
                }
                let channels: Vec<&str> = r.channels.iter().map(|c| c.as_str()).collect();
                println!(
                    "  {:<10} {:<16} published {}  {}",
                    r.version.to_string(),
                    channels.join(","),
                    installer::inventory::time(r.published_at),
                    marks.join("; ")
                );
            }
            Ok(())
        }
    }
}

fn keygen(out: &std::path::Path, output: Output) -> Result<()> {
    let public = installer::keys::generate(out)?;
    match output {
        Output::Json => print_json(
            &json!({"public_key": public, "secret": out.join(installer::keys::SECRET), "public": out.join(installer::keys::PUBLIC)}),
        ),
        Output::Text => {
            println!("{public}");
            eprintln!(
                "install key written to {} (keep it secret); give the vendor the public key above for `kit export --recipient`",
                out.join(installer::keys::SECRET).display()
            );
            Ok(())
        }
    }
}

fn verify(
    bundle: &std::path::Path,
    trust: &std::path::Path,
    trust_root: Option<String>,
    output: Output,
) -> Result<()> {
    let keyset_bytes = std::fs::read(trust)
        .with_context(|| format!("cannot read the keyset {}", trust.display()))?;
    let pin = TrustPin {
        root_fingerprint: trust_root,
        min_seq: 0,
    };
    let keyset = Keyset::verify(&keyset_bytes, &pin)
        .with_context(|| format!("the keyset {} is not trusted", trust.display()))?;
    let file = std::fs::File::open(bundle)
        .with_context(|| format!("cannot read the bundle {}", bundle.display()))?;
    let refused = || format!("{} is refused", bundle.display());
    let reader = BundleReader::open(
        BufReader::with_capacity(256 * 1024, file),
        &keyset,
        UnixTime::now(),
        &Limits::default(),
    )
    .with_context(refused)?;
    let manifest = reader.manifest().clone();
    let kid = reader.signature().kid.clone();
    let objects = check_all(reader).with_context(refused)?;
    match output {
        Output::Json => print_json(&json!({
            "verified": true,
            "signed_by": kid,
            "objects_checked": objects,
            "iam_actions": manifest.actions(),
            "manifest": manifest,
        })),
        Output::Text => {
            println!(
                "VERIFIED: signed by release key {kid}; {objects} objects match the signed manifest"
            );
            print!("{}", manifest.describe());
            Ok(())
        }
    }
}
