//! `vendor-portal usage`: a license's installations, the versions they run and the usage their
//! license agents reported.

use anyhow::Result;
use clap::Subcommand;

use super::catalog::path_part;
use super::{Ctx, Output, field, print_json, print_table, time_field};

/// `usage` subcommands.
#[derive(Debug, Subcommand)]
pub enum UsageCommand {
    /// Show a license's (or every license of a customer's) installations, versions in use and
    /// usage per dimension.
    Show {
        /// The license id.
        #[arg(
            long,
            required_unless_present = "customer",
            conflicts_with = "customer"
        )]
        license: Option<String>,
        /// The customer's slug: all of its licenses, with totals.
        #[arg(long)]
        customer: Option<String>,
    },
    /// Import the usage an air-gapped agent exported (`license-agent usage export`) and write
    /// the acknowledgement the customer takes back (`license-agent usage ack`).
    Import {
        /// The export file.
        file: std::path::PathBuf,
        /// Where to write the acknowledgement (default: FILE with `.ack.json`).
        #[arg(long)]
        ack: Option<std::path::PathBuf>,
    },
    /// Billing-ready usage: per customer, license and dimension, per hour, day or month, with
    /// the overage of each quota (CSV or JSON).
    Export(ExportArgs),
}

/// Arguments of `usage export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// hour, day or month.
    #[arg(long, default_value = "day")]
    granularity: String,
    /// From this time (RFC 3339, YYYY-MM-DD or Unix seconds; default: 31 days ago).
    #[arg(long)]
    from: Option<String>,
    /// Until this time, exclusive (default: now).
    #[arg(long)]
    to: Option<String>,
    /// Only this customer (slug).
    #[arg(long)]
    customer: Option<String>,
    /// Only this license.
    #[arg(long)]
    license: Option<String>,
    /// csv or json.
    #[arg(long, default_value = "csv")]
    format: String,
    /// Write to this file instead of stdout.
    #[arg(short = 'o', long = "out")]
    out: Option<std::path::PathBuf>,
}

impl UsageCommand {
    /// Runs the subcommand.
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        match self {
            UsageCommand::Show { license, customer } => show(ctx, license, customer),
            UsageCommand::Import { file, ack } => import(ctx, &file, ack),
            UsageCommand::Export(args) => export(ctx, &args),
        }
    }
}

fn import(ctx: &Ctx, file: &std::path::Path, ack: Option<std::path::PathBuf>) -> Result<()> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the usage export {}", file.display()))?;
    let export: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a usage export (JSON from `license-agent usage export`)",
            file.display()
        )
    })?;
    let answer = ctx.portal()?.post("/api/v1/usage/import", &export)?;
    let ack = ack.unwrap_or_else(|| {
        let mut name = file.as_os_str().to_owned();
        name.push(".ack.json");
        std::path::PathBuf::from(name)
    });
    std::fs::write(&ack, serde_json::to_vec_pretty(&answer)?)
        .with_context(|| format!("cannot write {}", ack.display()))?;
    match ctx.output {
        Output::Json => print_json(&answer),
        Output::Text => {
            println!(
                "Imported usage of agent {}: {} new records, counted through record {}",
                field(&answer, "agent"),
                field(&answer, "new_records"),
                field(&answer, "records_through")
            );
            println!(
                "  acknowledgement: {} (the customer runs `license-agent usage ack {}`)",
                ack.display(),
                ack.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            );
            Ok(())
        }
    }
}

fn export(ctx: &Ctx, args: &ExportArgs) -> Result<()> {
    use anyhow::Context as _;
    let mut query = vec![
        format!("granularity={}", path_part(&args.granularity)),
        format!("format={}", path_part(&args.format)),
    ];
    for (name, value) in [
        ("from", &args.from),
        ("to", &args.to),
        ("customer", &args.customer),
        ("license", &args.license),
    ] {
        if let Some(v) = value {
            query.push(format!("{name}={}", path_part(v)));
        }
    }
    let text = ctx
        .portal()?
        .get_text(&format!("/api/v1/usage/export?{}", query.join("&")))?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, &text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("Wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

fn show(ctx: &Ctx, license: Option<String>, customer: Option<String>) -> Result<()> {
    {
        let path = match (&license, &customer) {
            (Some(id), _) => format!("/api/v1/licenses/{}/usage", path_part(id)),
            (None, Some(slug)) => format!("/api/v1/customers/{}/usage", path_part(slug)),
            (None, None) => anyhow::bail!("give --license ID or --customer SLUG"),
        };
        let usage = ctx.portal()?.get(&path)?;
        if ctx.output == Output::Json {
            return print_json(&usage);
        }
        if license.is_some() {
            print_usage(&usage);
            return Ok(());
        }
        println!(
            "Customer {}: seats in use {}",
            field(&usage, "customer"),
            field(&usage, "seats_in_use")
        );
        let totals: Vec<Vec<String>> = items(&usage, "totals")
            .iter()
            .map(|t| vec![field(t, "dimension"), field(t, "total")])
            .collect();
        print_table(&["dimension", "total"], &totals);
        for l in items(&usage, "licenses") {
            println!();
            print_usage(l);
        }
        Ok(())
    }
}

fn items<'a>(value: &'a serde_json::Value, name: &str) -> &'a [serde_json::Value] {
    value
        .get(name)
        .and_then(serde_json::Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn print_usage(usage: &serde_json::Value) {
    let license = field(usage, "license");
    let seats = match usage
        .get("max_installations")
        .and_then(serde_json::Value::as_u64)
    {
        Some(max) => format!("{} of {max}", field(usage, "seats_in_use")),
        None => format!("{} (no limit)", field(usage, "seats_in_use")),
    };
    println!("License {license}: seats in use {seats}");
    println!();
    let rows: Vec<Vec<String>> = items(usage, "installations")
        .iter()
        .map(|i| {
            vec![
                field(i, "id"),
                field(i, "aws_account"),
                field(i, "region"),
                field(i, "stack"),
                field(i, "version"),
                time_field(i, "last_seen_at"),
                match i.get("removed_at").and_then(serde_json::Value::as_u64) {
                    Some(_) => format!("uninstalled {}", time_field(i, "removed_at")),
                    None => "live".to_owned(),
                },
            ]
        })
        .collect();
    print_table(
        &[
            "installation",
            "account",
            "region",
            "stack",
            "version",
            "last seen",
            "state",
        ],
        &rows,
    );
    println!();
    let rows: Vec<Vec<String>> = items(usage, "versions")
        .iter()
        .map(|v| vec![field(v, "version"), field(v, "installations")])
        .collect();
    print_table(&["version", "installations"], &rows);
    println!();
    let rows: Vec<Vec<String>> = items(usage, "usage")
        .iter()
        .map(|d| {
            let hours = items(d, "hours");
            let last = hours
                .last()
                .map(|h| format!("{} at {}", field(h, "quantity"), time_field(h, "hour")))
                .unwrap_or_else(|| "-".to_owned());
            vec![
                field(d, "dimension"),
                field(d, "total"),
                field(d, "records"),
                last,
            ]
        })
        .collect();
    print_table(&["dimension", "total", "records", "latest hour"], &rows);
}
