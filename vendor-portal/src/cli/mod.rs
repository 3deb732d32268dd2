//! The vendor's command line: one module per subcommand group, dispatched from [`Command`].
//! Offline commands (`keys init`, `license sign`, `release ...`) work on files; client commands
//! talk to a portal given by `--portal`/`PORTAL_URL` with `--token`/`PORTAL_TOKEN`; `serve` and
//! `admin` run on the portal's machine against its database.

pub mod admin;
pub mod audit;
pub mod catalog;
pub mod keys;
pub mod kit;
pub mod license;
pub mod publish;
pub mod release;
pub mod serve;
pub mod sso;
pub mod support;
pub mod team;
pub mod usage;
pub mod webhook;

use clap::{Parser, Subcommand, ValueEnum};

use crate::client::Portal;

/// How commands print what they produce.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Lines and tables for people.
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

    /// The portal's URL, for commands that talk to one.
    #[arg(long, global = true, env = "PORTAL_URL")]
    pub portal: Option<String>,

    /// A vendor API token (cns_...), for commands that talk to a portal.
    #[arg(long, global = true, env = "PORTAL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// What every command gets: the output format and how to reach the portal.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Output format.
    pub output: Output,
    /// `--portal`.
    pub portal: Option<String>,
    /// `--token`.
    pub token: Option<String>,
}

impl Ctx {
    /// A client for the portal.
    pub fn portal(&self) -> anyhow::Result<Portal> {
        Portal::new(self.portal.clone(), self.token.clone())
    }
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the portal server.
    Serve(serve::ServeArgs),
    /// Administer the portal on its own machine (creates vendors).
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// The vendor's keys: create them offline, register them with the portal, rotate.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// App listings on the portal.
    #[command(subcommand)]
    App(catalog::AppCommand),
    /// Plans of an app on the portal.
    #[command(subcommand)]
    Plan(catalog::PlanCommand),
    /// Customers on the portal.
    #[command(subcommand)]
    Customer(catalog::CustomerCommand),
    /// Issue and manage licenses on the portal, or sign one offline.
    #[command(subcommand)]
    License(license::LicenseCommand),
    /// API tokens.
    #[command(subcommand)]
    Token(team::TokenCommand),
    /// Members of the vendor and their roles.
    #[command(subcommand)]
    Member(team::MemberCommand),
    /// Read and verify the vendor's audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Build, inspect and open release bundles; push and publish them.
    #[command(subcommand)]
    Release(release::ReleaseCommand),
    /// Air-gapped kits: one file with a release, its metadata, the license and wrapped keys.
    #[command(subcommand)]
    Kit(kit::KitCommand),
    /// A license's installations, versions in use and usage.
    #[command(subcommand)]
    Usage(usage::UsageCommand),
    /// Webhook endpoints that hear license, trial, installation, usage and tamper events.
    #[command(subcommand)]
    Webhook(webhook::WebhookCommand),
    /// Support bundles: the vendor's support key, and opening the bundles customers send.
    #[command(subcommand)]
    Support(support::SupportCommand),
    /// Single sign-on for the vendor's members through an OpenID Connect provider.
    #[command(subcommand)]
    Sso(sso::SsoCommand),
}

impl Cli {
    /// Runs the chosen command.
    pub fn run(self) -> anyhow::Result<()> {
        let ctx = Ctx {
            output: self.output,
            portal: self.portal,
            token: self.token,
        };
        match self.command {
            Command::Serve(args) => serve::run(args),
            Command::Admin(cmd) => cmd.run(&ctx),
            Command::Keys(cmd) => cmd.run(&ctx),
            Command::App(cmd) => cmd.run(&ctx),
            Command::Plan(cmd) => cmd.run(&ctx),
            Command::Customer(cmd) => cmd.run(&ctx),
            Command::License(cmd) => cmd.run(&ctx),
            Command::Token(cmd) => cmd.run(&ctx),
            Command::Member(cmd) => cmd.run(&ctx),
            Command::Audit(cmd) => cmd.run(&ctx),
            Command::Webhook(cmd) => cmd.run(&ctx),
            Command::Support(cmd) => cmd.run(&ctx),
            Command::Sso(cmd) => cmd.run(&ctx),
            Command::Release(cmd) => cmd.run(&ctx),
            Command::Kit(cmd) => cmd.run(&ctx),
            Command::Usage(cmd) => cmd.run(&ctx),
        }
    }
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints rows under headers, columns aligned.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let text = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        println!("{}", text.trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for row in rows {
        line(row.clone());
    }
    if rows.is_empty() {
        println!("(none)");
    }
}

/// A JSON field as display text ("-" when absent).
pub fn field(value: &serde_json::Value, name: &str) -> String {
    match value.get(name) {
        None | Some(serde_json::Value::Null) => "-".to_owned(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// A Unix-seconds JSON field as RFC 3339 text.
pub fn time_field(value: &serde_json::Value, name: &str) -> String {
    value
        .get(name)
        .and_then(serde_json::Value::as_u64)
        .and_then(::license::UnixTime::from_secs)
        .map_or_else(|| "-".to_owned(), |t| t.to_string())
}

/// Parses a time for `--expires`: RFC 3339, Unix seconds, or `+N` days (`+30d`) from now.
pub fn parse_time(text: &str) -> Result<u64, String> {
    if let Some(days) = text.strip_prefix('+').and_then(|t| t.strip_suffix('d')) {
        let days: u64 = days
            .parse()
            .map_err(|_| format!("{text:?}: write +N d, e.g. +30d"))?;
        return Ok(::license::UnixTime::now().plus(days * 86_400).as_secs());
    }
    ::license::UnixTime::parse(text)
        .map(|t| t.as_secs())
        .ok_or_else(|| {
            format!(
                "{text:?} is not a time: use RFC 3339 (2027-01-31T00:00:00Z), Unix seconds, or +30d"
            )
        })
}
