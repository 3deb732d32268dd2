//! `license-agent`: checks licenses for an installation.
//!
//! `inspect` decodes without trusting, `verify` checks a license against the vendor's keyset, and
//! `serve` runs the agent: entitlement checks on localhost for functions in any language,
//! check-ins with the vendor's portal, and metering (see `serve.rs`). Started with no arguments
//! inside AWS Lambda (as an extension from a layer), it serves with its settings from the
//! environment.

mod airgap;
mod extension;
mod home;
mod meter;
mod portal;
mod serve;
mod table;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use license::{Error, TrustState, UnixTime, VerifiedLicense};
use serde_json::json;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
enum Output {
    #[default]
    Text,
    Json,
}

/// Checks Consign licenses for an installation.
#[derive(Debug, Parser)]
#[command(name = "license-agent", version, about)]
struct Cli {
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show what a license says WITHOUT checking it (nothing shown is trustworthy).
    Inspect {
        /// The armoured license file.
        file: PathBuf,
    },
    /// Verify a license against the vendor's keyset: exit 0 with its entitlements, or exit 1
    /// with the reason.
    Verify(VerifyArgs),
    /// Run the agent: answer entitlement checks on localhost, check in with the vendor's
    /// portal, and meter usage.
    Serve(Box<serve::ServeArgs>),
    /// Air-gapped usage return: export the usage not yet acknowledged to a file for the
    /// vendor, and take the vendor's acknowledgement back.
    #[command(subcommand)]
    Usage(airgap::UsageCommand),
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The armoured license file.
    #[arg(long)]
    license: PathBuf,
    /// The vendor's keyset.json.
    #[arg(long)]
    trust: PathBuf,
    /// Pin the vendor's root key (sha256:<hex> from `vendor-portal keys fingerprint`).
    #[arg(long)]
    trust_root: Option<String>,
    /// Remember the root, keyset seq and license seq here, refusing older ones next time.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Verify as of this time (YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or Unix seconds) instead of now.
    #[arg(long, value_parser = parse_time)]
    at: Option<UnixTime>,
    /// Also check that the license may run in this AWS account.
    #[arg(long, requires = "region")]
    aws_account: Option<String>,
    /// Also check that the license may run in this AWS region.
    #[arg(long, requires = "aws_account")]
    region: Option<String>,
}

fn parse_time(text: &str) -> Result<UnixTime, String> {
    UnixTime::parse(text)
        .ok_or_else(|| format!("{text:?} is not YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or Unix seconds"))
}

const STATE_FILE: &str = "trust-state.json";
const MAX_FILE_LEN: u64 = 1024 * 1024;

pub(crate) fn read_limited(path: &Path, what: &str) -> Result<Vec<u8>> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read the {what} {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read the {what} {}", path.display()))?;
    anyhow::ensure!(
        bytes.len() as u64 <= MAX_FILE_LEN,
        "the {what} {} is over {MAX_FILE_LEN} bytes: it is not a Consign {what}",
        path.display()
    );
    Ok(bytes)
}

fn read_text(path: &Path, what: &str) -> Result<String> {
    String::from_utf8(read_limited(path, what)?)
        .with_context(|| format!("the {what} {} is not text", path.display()))
}

fn main() -> ExitCode {
    license::process::guarded_main(|| {
        init_logging();
        let cli = Cli::parse();
        let output = cli.output;
        match run(cli) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                let sentence = license::process::error_sentence(&err);
                if output == Output::Json {
                    let code = err.downcast_ref::<Error>().map_or("error", Error::code);
                    println!(
                        "{}",
                        json!({ "valid": false, "code": code, "error": sentence })
                    );
                }
                eprintln!("error: {sentence}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Logs go to stderr (JSON lines inside Lambda, where CloudWatch collects them);
/// `RUST_LOG` filters them.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Inspect { file }) => inspect(&file, cli.output),
        Some(Command::Verify(args)) => verify(args, cli.output),
        Some(Command::Serve(args)) => serve::run(*args),
        Some(Command::Usage(cmd)) => cmd.run(cli.output),
        // Lambda starts an extension with no arguments: serve, configured by the environment.
        None if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() => {
            let cli = Cli::try_parse_from([extension::NAME, "serve"])?;
            run(cli)
        }
        None => {
            use clap::CommandFactory as _;
            Cli::command().print_help()?;
            std::process::exit(2);
        }
    }
}

fn inspect(file: &Path, output: Output) -> Result<()> {
    let text = read_text(file, "license")?;
    let decoded = license::decode_unverified(&text)?;
    let warning = "UNVERIFIED: this shows what the license says, not whether it is genuine; run `license-agent verify` to check it";
    eprintln!("{warning}");
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "verified": false,
                "warning": warning,
                "kid": decoded.kid,
                "claims": decoded.claims,
            }))?
        ),
        Output::Text => {
            println!("*** {warning} ***");
            println!("signed with key: {}", decoded.kid);
            println!("{}", serde_json::to_string_pretty(&decoded.claims)?);
        }
    }
    Ok(())
}

fn verify(args: VerifyArgs, output: Output) -> Result<()> {
    let keyset_bytes = read_limited(&args.trust, "keyset")?;
    let license_text = read_text(&args.license, "license")?;
    let now = args.at.unwrap_or_else(UnixTime::now);
    let state_path = args.state_dir.as_ref().map(|dir| dir.join(STATE_FILE));
    let mut state = match &state_path {
        Some(path) if path.exists() => serde_json::from_slice(&read_limited(path, "trust state")?)
            .with_context(|| {
                format!(
                    "{} is not a trust state file; delete it to start over",
                    path.display()
                )
            })?,
        _ => TrustState::default(),
    };
    if let Some(pin) = args.trust_root {
        if let Some(pinned) = &state.root_fingerprint {
            anyhow::ensure!(
                *pinned == pin,
                "--trust-root {pin} differs from the root {pinned} pinned in the state directory"
            );
        }
        state.root_fingerprint = Some(pin);
    }
    let keyset = state
        .accept_keyset(&keyset_bytes)
        .with_context(|| format!("the keyset {} is not trusted", args.trust.display()))?;
    let verified = state.accept_license(&keyset, &license_text, now)?;
    if let (Some(dir), Some(path)) = (&args.state_dir, &state_path) {
        home::create_private_dir(dir)?;
        home::write_atomic(path, &serde_json::to_vec_pretty(&state)?)?;
    }
    if let (Some(account), Some(region)) = (&args.aws_account, &args.region) {
        verified.check_placement(account, region).with_context(|| {
            format!("the license may not run in account {account}, region {region}")
        })?;
    }
    let lifecycle = verified.lifecycle(now, None);
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "valid": true,
                "kid": verified.kid(),
                "keyset_seq": keyset.keyset().seq,
                "root_fingerprint": keyset.root_fingerprint(),
                "state": lifecycle,
                "claims": verified.claims(),
            }))?
        ),
        Output::Text => print_summary(&verified, &keyset, &lifecycle),
    }
    Ok(())
}

fn list<T: std::fmt::Display>(items: &[T], empty: &str) -> String {
    if items.is_empty() {
        empty.to_owned()
    } else {
        items
            .iter()
            .map(T::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn print_summary(
    verified: &VerifiedLicense,
    keyset: &license::TrustedKeyset,
    lifecycle: &license::Lifecycle,
) {
    let c = verified.claims();
    println!(
        "VALID license {} (seq {}) for customer {}, app {}, plan {}",
        c.jti, c.seq, c.sub, c.aud, c.plan
    );
    println!(
        "  issued by {} with key {}, keyset seq {}, root {}",
        c.iss,
        verified.kid(),
        keyset.keyset().seq,
        keyset.root_fingerprint()
    );
    println!(
        "  valid {} to {}; term {} to {}",
        c.nbf, c.exp, c.term.start, c.term.end
    );
    match (&lifecycle.reason, lifecycle.until) {
        (Some(reason), Some(until)) => {
            println!("  state {} until {until}: {reason}", lifecycle.state)
        }
        (Some(reason), None) => println!("  state {}: {reason}", lifecycle.state),
        _ => println!("  state {}", lifecycle.state),
    }
    if let Some(warning) = &lifecycle.warning {
        println!("  warning: {warning}");
    }
    let e = &c.entitlements;
    println!("  features: {}", list(&e.features, "none"));
    let overage = |o: Option<u64>| o.map(|o| format!(" (+{o} overage)")).unwrap_or_default();
    for (name, limit) in &e.limits {
        println!("  limit {name}: {}{}", limit.max, overage(limit.overage));
    }
    for (name, quota) in &e.quotas {
        println!(
            "  quota {name}: {} per {}{}",
            quota.amount,
            quota.period,
            overage(quota.overage)
        );
    }
    let b = &c.bindings;
    let installs = b
        .max_installations
        .map_or("unlimited".to_owned(), |n| n.to_string());
    println!(
        "  AWS accounts: {}; regions: {}; installations: {installs}",
        list(&b.aws_accounts, "any"),
        list(&b.regions, "any")
    );
    let d = &c.distribution;
    let cutoff = d
        .published_before
        .map(|t| format!(", published before {t}"))
        .unwrap_or_default();
    println!(
        "  releases: channels {}, versions {}{cutoff}",
        list(&d.channels, "none"),
        d.versions.as_str()
    );
}

/// An AWS SDK error in one phrase for people: the service's code and message when AWS answered,
/// else why it could not be reached (never the SDK's debug form).
pub(crate) fn aws_phrase<E>(e: &E) -> String
where
    E: aws_sdk_ssm::error::ProvideErrorMetadata + std::error::Error,
{
    match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => aws_sdk_ssm::error::DisplayErrorContext(e).to_string(),
    }
}
