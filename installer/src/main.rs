//! `installer`: the enterprise admin's command line.
//!
//! Today it verifies bundles (`installer verify`) and creates the static install key for
//! air-gapped kits (`installer keygen`); its library verifies releases through TUF and opens kits.
//! Logging in with a license, planning, installing, upgrading, rolling back and uninstalling in
//! the admin's AWS account arrive with issue 6.

use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use bundles::open::check_all;
use bundles::{BundleReader, Limits};
use clap::{Parser, Subcommand, ValueEnum};
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
}

fn main() -> ExitCode {
    license::process::guarded_main(|| {
        let cli = Cli::parse();
        let output = cli.output;
        match run(cli) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                let sentence = license::process::error_sentence(&err);
                if output == Output::Json {
                    let code = err
                        .downcast_ref::<bundles::Error>()
                        .map_or("error", bundles::Error::code);
                    println!(
                        "{}",
                        json!({ "verified": false, "code": code, "error": sentence })
                    );
                }
                eprintln!("error: {sentence}");
                ExitCode::FAILURE
            }
        }
    })
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Keygen { out } => {
            let public = installer::keys::generate(&out)?;
            match cli.output {
                Output::Json => println!(
                    "{}",
                    json!({"public_key": public, "secret": out.join(installer::keys::SECRET), "public": out.join(installer::keys::PUBLIC)})
                ),
                Output::Text => {
                    println!("{public}");
                    eprintln!(
                        "install key written to {} (keep it secret); give the vendor the public key above for `kit export --recipient`",
                        out.join(installer::keys::SECRET).display()
                    );
                }
            }
            Ok(())
        }
        Command::Verify {
            bundle,
            trust,
            trust_root,
        } => {
            let keyset_bytes = std::fs::read(&trust)
                .with_context(|| format!("cannot read the keyset {}", trust.display()))?;
            let pin = TrustPin {
                root_fingerprint: trust_root,
                min_seq: 0,
            };
            let keyset = Keyset::verify(&keyset_bytes, &pin)
                .with_context(|| format!("the keyset {} is not trusted", trust.display()))?;
            let file = std::fs::File::open(&bundle)
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
            match cli.output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "verified": true,
                        "signed_by": kid,
                        "objects_checked": objects,
                        "iam_actions": manifest.actions(),
                        "manifest": manifest,
                    }))?
                ),
                Output::Text => {
                    println!(
                        "VERIFIED: signed by release key {kid}; {objects} objects match the signed manifest"
                    );
                    print!("{}", manifest.describe());
                }
            }
            Ok(())
        }
    }
}
