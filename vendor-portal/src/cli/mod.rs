//! The vendor's command line: one module per subcommand group, dispatched from [`Command`].

pub mod keys;
pub mod license;
pub mod release;

use clap::{Parser, Subcommand, ValueEnum};

/// How commands print what they produce.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON document on stdout, for scripts.
    Json,
}

/// The Consign vendor portal and the vendor's command line.
#[derive(Debug, Parser)]
#[command(name = "vendor-portal", version, about, propagate_version = true)]
pub struct Cli {
    /// Output format for commands that print data.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,

    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and manage the vendor's root, license-signing and release keys (offline).
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Sign licenses offline with the vendor's license-signing key.
    #[command(subcommand)]
    License(license::LicenseCommand),
    /// Build, inspect and open release bundles.
    #[command(subcommand)]
    Release(release::ReleaseCommand),
}

impl Cli {
    /// Runs the chosen command.
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Keys(cmd) => cmd.run(self.output),
            Command::License(cmd) => cmd.run(self.output),
            Command::Release(cmd) => cmd.run(self.output),
        }
    }
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
