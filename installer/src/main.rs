//! `installer`: the enterprise admin's command line. It logs in with a license, lists the
//! versions the license may install, plans (a CloudFormation change set, shown before anything
//! changes), installs, upgrades, rolls back, uninstalls and reports status in the admin's own
//! AWS account, and installs from air-gapped kits. Each command is a thin layer over the
//! library (`installer::deploy`, `installer::release`, ...).

mod cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use installer::aws::AwsOptions;
use installer::deploy::{Action, Ui};
use installer::error::code_of;
use serde_json::json;

use self::cmd::Output;
use self::cmd::deploying::{Deploying, From};

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
    /// A deployment role CloudFormation acts through (made from `installer iam-policy
    /// --deployment-role`): your own credentials then need only the stack, the artifact bucket
    /// and iam:PassRole on this role.
    #[arg(long, global = true, env = "CONSIGN_ROLE_ARN")]
    role_arn: Option<String>,
    #[command(subcommand)]
    command: Command,
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
    /// Log in to a vendor's portal with your license, pinning the vendor's root key, and prove
    /// your AWS account to the portal (a signed sts:GetCallerIdentity; no credentials are sent).
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
    /// Collect what the vendor needs to help with a stack (status, events, resources, function
    /// configuration and logs, the license agent's state, the installation record), redacted,
    /// into a file you read first; --upload seals it to the vendor's support key and sends it.
    #[command(name = "support-bundle")]
    SupportBundle {
        /// The stack.
        #[arg(long)]
        stack: String,
        /// Where to write it (support-STACK.tar.gz).
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
        /// How far back events and logs go: 30m, 1h, 2d.
        #[arg(long, default_value = "1h", value_parser = cmd::support_bundle::parse_since)]
        since: u64,
        /// Your own redaction patterns: one regular expression per line (# comments).
        #[arg(long, value_name = "FILE")]
        redact: Option<PathBuf>,
        /// Seal it to the vendor's support key (X25519) and send it to the portal, which only
        /// stores it.
        #[arg(long)]
        upload: bool,
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
        /// Print instead what writing the installation's permissions boundary takes (for the
        /// admin who approves what the release's roles may do).
        #[arg(long)]
        boundary_admin: bool,
        /// Print instead a deployment role named NAME for CloudFormation to act through (its
        /// trust and policy) and what your own credentials then need (use with --role-arn).
        #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "consign-deployer")]
        deployment_role: Option<String>,
    },
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

fn aws_options(cli: &Cli) -> AwsOptions {
    AwsOptions {
        endpoint_url: cli.endpoint_url.clone(),
        profile: cli.profile.clone(),
        region: cli.region.clone(),
        role_arn: cli.role_arn.clone(),
    }
}

async fn run(cli: Cli) -> Result<()> {
    let ui = Ui {
        json: cli.output == Output::Json,
    };
    let options = aws_options(&cli);
    let output = cli.output;
    match cli.command {
        Command::Keygen { out } => cmd::keygen::keygen(&out, output),
        Command::Verify {
            bundle,
            trust,
            trust_root,
        } => cmd::verify::verify(&bundle, &trust, trust_root, output),
        Command::Login {
            portal,
            license,
            trust_root,
        } => cmd::login::login(&portal, &license, trust_root, &options, output).await,
        Command::Versions => cmd::versions::versions(output).await,
        Command::Plan { deploying, version } => {
            cmd::deploying::plan(deploying, version, &options, ui, output).await
        }
        Command::Install { deploying, from } => {
            cmd::deploying::install(deploying, from, Action::Install, &options, ui, output).await
        }
        Command::Upgrade { deploying, from } => {
            cmd::deploying::install(deploying, from, Action::Upgrade, &options, ui, output).await
        }
        Command::Rollback { stack, yes } => {
            cmd::deploying::rollback(stack, yes, &options, ui, output).await
        }
        Command::Uninstall {
            stack,
            yes,
            purge_artifacts,
        } => cmd::uninstall::run(stack, yes, purge_artifacts, &options, ui, output).await,
        Command::Status { stack } => cmd::status::run(stack, &options, output).await,
        Command::SupportBundle {
            stack,
            out,
            since,
            redact,
            upload,
        } => {
            let ask = cmd::support_bundle::Ask {
                stack,
                out,
                since,
                redact,
                upload,
            };
            cmd::support_bundle::run(ask, &options, output).await
        }
        Command::IamPolicy {
            version,
            stack,
            boundary_admin,
            deployment_role,
        } => cmd::iam_policy::run(version, stack, boundary_admin, deployment_role).await,
    }
}
