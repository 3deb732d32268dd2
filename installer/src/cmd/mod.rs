//! The subcommands, one file each; `main.rs` parses the command line and dispatches here.

pub mod deploying;
pub mod iam_policy;
pub mod keygen;
pub mod login;
pub mod status;
pub mod support_bundle;
pub mod uninstall;
pub mod verify;
pub mod versions;

use std::time::Duration;

use anyhow::{Result, anyhow};
use clap::ValueEnum;

/// How a command answers: text for people, or one JSON document on stdout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Text for people.
    #[default]
    Text,
    /// One JSON document.
    Json,
}

pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub fn parse_version(text: &str) -> Result<semver::Version> {
    semver::Version::parse(text.trim_start_matches('v'))
        .map_err(|e| anyhow!("{text:?} is not a version ({e}): give one like 1.2.0"))
}

pub const POLL: Duration = Duration::from_secs(2);
