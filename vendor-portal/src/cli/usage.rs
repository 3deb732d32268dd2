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
}

impl UsageCommand {
    /// Runs the subcommand.
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        let UsageCommand::Show { license, customer } = self;
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
