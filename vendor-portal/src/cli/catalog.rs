//! `vendor-portal app|plan|customer`: the vendor's listings, plans and customers on the portal.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{Ctx, Output, field, print_json, print_table, time_field};

/// `app` subcommands.
#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Create an app listing.
    Create(AppCreateArgs),
    /// List the vendor's apps.
    List,
    /// Show one app.
    Show {
        /// The app's slug.
        slug: String,
    },
    /// Change an app's listing (the slug stays).
    Update(AppUpdateArgs),
    /// Publish the app's listing on the marketplace, where buyers find it.
    Publish {
        /// The app's slug.
        slug: String,
    },
    /// Take the app's listing off the marketplace (existing licenses are unaffected).
    Unpublish {
        /// The app's slug.
        slug: String,
    },
}

/// Arguments of `app update`.
#[derive(Debug, Args)]
pub struct AppUpdateArgs {
    /// The app's slug.
    slug: String,
    /// Display name.
    #[arg(long)]
    name: Option<String>,
    /// One line for listings.
    #[arg(long)]
    summary: Option<String>,
    /// A Markdown file with the listing's description.
    #[arg(long)]
    description_file: Option<PathBuf>,
    /// Marketplace categories, replacing the current ones (repeat, or comma-separated).
    #[arg(long, value_delimiter = ',')]
    category: Option<Vec<String>>,
}

/// Arguments of `app create`.
#[derive(Debug, Args)]
pub struct AppCreateArgs {
    /// Unique within the vendor; licenses name it.
    #[arg(long)]
    slug: String,
    /// Display name.
    #[arg(long)]
    name: String,
    /// One line for listings.
    #[arg(long, default_value = "")]
    summary: String,
    /// A Markdown file with the listing's description.
    #[arg(long)]
    description_file: Option<PathBuf>,
    /// Marketplace categories (repeat, or comma-separated).
    #[arg(long, value_delimiter = ',')]
    category: Vec<String>,
}

impl AppCommand {
    /// Runs the subcommand.
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        let portal = ctx.portal()?;
        match self {
            AppCommand::Create(args) => {
                let description = match &args.description_file {
                    Some(path) => std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))?,
                    None => String::new(),
                };
                let app = portal.post(
                    "/api/v1/apps",
                    &json!({"slug": args.slug, "name": args.name, "summary": args.summary,
                            "description": description, "categories": args.category}),
                )?;
                show(
                    ctx.output,
                    &app,
                    &format!("Created app {}", field(&app, "slug")),
                )
            }
            AppCommand::List => {
                let apps = portal.get("/api/v1/apps")?;
                list(
                    ctx.output,
                    &apps,
                    &["slug", "name", "listed", "summary"],
                    &[],
                )
            }
            AppCommand::Show { slug } => {
                let app = portal.get(&format!("/api/v1/apps/{}", path_part(&slug)))?;
                show(ctx.output, &app, &format!("App {}", field(&app, "slug")))
            }
            AppCommand::Publish { slug } => set_listed(ctx, &portal, &slug, true),
            AppCommand::Unpublish { slug } => set_listed(ctx, &portal, &slug, false),
            AppCommand::Update(args) => {
                let mut changes = serde_json::Map::new();
                if let Some(name) = args.name {
                    changes.insert("name".into(), name.into());
                }
                if let Some(summary) = args.summary {
                    changes.insert("summary".into(), summary.into());
                }
                if let Some(path) = &args.description_file {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    changes.insert("description".into(), text.into());
                }
                if let Some(categories) = args.category {
                    changes.insert("categories".into(), json!(categories));
                }
                anyhow::ensure!(
                    !changes.is_empty(),
                    "nothing to change: give --name, --summary, --description-file or --category"
                );
                let app = portal.patch(
                    &format!("/api/v1/apps/{}", path_part(&args.slug)),
                    &Value::Object(changes),
                )?;
                show(
                    ctx.output,
                    &app,
                    &format!("Updated app {}", field(&app, "slug")),
                )
            }
        }
    }
}

fn set_listed(ctx: &Ctx, portal: &crate::client::Portal, slug: &str, listed: bool) -> Result<()> {
    let app = portal.patch(
        &format!("/api/v1/apps/{}", path_part(slug)),
        &json!({"listed": listed}),
    )?;
    let message = if listed {
        format!("Published the listing of {slug} on the marketplace")
    } else {
        format!("Took the listing of {slug} off the marketplace")
    };
    show(ctx.output, &app, &message)
}

/// `plan` subcommands.
#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Add a plan to an app.
    Create(PlanCreateArgs),
    /// List an app's plans.
    List {
        /// The app's slug.
        #[arg(long)]
        app: String,
    },
}

/// Arguments of `plan create`.
#[derive(Debug, Args)]
pub struct PlanCreateArgs {
    /// The app's slug.
    #[arg(long)]
    app: String,
    /// Unique within the app.
    #[arg(long)]
    slug: String,
    /// Display name.
    #[arg(long)]
    name: String,
    /// How long licenses on it last.
    #[arg(long, default_value_t = 365)]
    duration_days: u32,
    /// Licenses on it are trials.
    #[arg(long)]
    trial: bool,
    /// Whether its licenses must prove their AWS account: required, optional, or default
    /// (required when a license names accounts or is a trial).
    #[arg(long, value_parser = ["default", "required", "optional"])]
    account_proof: Option<String>,
    /// Features that are on (comma-separated).
    #[arg(long, value_delimiter = ',')]
    features: Vec<String>,
    /// A JSON file with further entitlements and policies in license-request fields (limits,
    /// quotas, max_installations, channels, versions, checkin_interval, offline_grace, ...).
    #[arg(long)]
    entitlements: Option<PathBuf>,
}

impl PlanCommand {
    /// Runs the subcommand.
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        let portal = ctx.portal()?;
        match self {
            PlanCommand::Create(args) => {
                let mut entitlements = match &args.entitlements {
                    Some(path) => {
                        let text = std::fs::read_to_string(path)
                            .with_context(|| format!("cannot read {}", path.display()))?;
                        serde_json::from_str::<serde_json::Map<String, Value>>(&text)
                            .with_context(|| format!("{} is not a JSON object", path.display()))?
                    }
                    None => serde_json::Map::new(),
                };
                if !args.features.is_empty() {
                    entitlements.insert("features".into(), json!(args.features));
                }
                let plan = portal.post(
                    &format!("/api/v1/apps/{}/plans", path_part(&args.app)),
                    &json!({"slug": args.slug, "name": args.name, "trial": args.trial,
                            "duration_days": args.duration_days, "entitlements": entitlements,
                            "account_proof": args.account_proof}),
                )?;
                show(
                    ctx.output,
                    &plan,
                    &format!(
                        "Created plan {} of {}",
                        field(&plan, "slug"),
                        field(&plan, "app")
                    ),
                )
            }
            PlanCommand::List { app } => {
                let plans = portal.get(&format!("/api/v1/apps/{}/plans", path_part(&app)))?;
                list(
                    ctx.output,
                    &plans,
                    &["slug", "name", "trial", "duration_days"],
                    &[],
                )
            }
        }
    }
}

/// `customer` subcommands.
#[derive(Debug, Subcommand)]
pub enum CustomerCommand {
    /// Create a customer.
    Create(CustomerCreateArgs),
    /// List customers.
    List,
    /// Show one customer.
    Show {
        /// The customer's slug.
        slug: String,
    },
    /// Change a customer (licenses issued later get the new AWS accounts).
    Update(CustomerUpdateArgs),
}

/// Arguments of `customer update`.
#[derive(Debug, Args)]
pub struct CustomerUpdateArgs {
    /// The customer's slug.
    slug: String,
    /// Display name.
    #[arg(long)]
    name: Option<String>,
    /// Contact email.
    #[arg(long)]
    email: Option<String>,
    /// AWS account ids, replacing the current list (repeat for several).
    #[arg(long = "aws-account")]
    aws_accounts: Option<Vec<String>>,
}

/// Arguments of `customer create`.
#[derive(Debug, Args)]
pub struct CustomerCreateArgs {
    /// Unique within the vendor; licenses name it.
    #[arg(long)]
    slug: String,
    /// Display name.
    #[arg(long)]
    name: String,
    /// Contact email.
    #[arg(long)]
    email: Option<String>,
    /// The customer's AWS account id (repeat for several); licenses are bound to them.
    #[arg(long = "aws-account")]
    aws_accounts: Vec<String>,
}

impl CustomerCommand {
    /// Runs the subcommand.
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        let portal = ctx.portal()?;
        match self {
            CustomerCommand::Create(args) => {
                let customer = portal.post(
                    "/api/v1/customers",
                    &json!({"slug": args.slug, "name": args.name, "email": args.email, "aws_accounts": args.aws_accounts}),
                )?;
                show(
                    ctx.output,
                    &customer,
                    &format!("Created customer {}", field(&customer, "slug")),
                )
            }
            CustomerCommand::List => {
                let customers = portal.get("/api/v1/customers")?;
                list(
                    ctx.output,
                    &customers,
                    &["slug", "name", "email", "aws_accounts"],
                    &["created_at"],
                )
            }
            CustomerCommand::Show { slug } => {
                let customer = portal.get(&format!("/api/v1/customers/{}", path_part(&slug)))?;
                show(
                    ctx.output,
                    &customer,
                    &format!("Customer {}", field(&customer, "slug")),
                )
            }
            CustomerCommand::Update(args) => {
                let mut changes = serde_json::Map::new();
                if let Some(name) = args.name {
                    changes.insert("name".into(), name.into());
                }
                if let Some(email) = args.email {
                    changes.insert("email".into(), email.into());
                }
                if let Some(accounts) = args.aws_accounts {
                    changes.insert("aws_accounts".into(), json!(accounts));
                }
                anyhow::ensure!(
                    !changes.is_empty(),
                    "nothing to change: give --name, --email or --aws-account"
                );
                let customer = portal.patch(
                    &format!("/api/v1/customers/{}", path_part(&args.slug)),
                    &Value::Object(changes),
                )?;
                show(
                    ctx.output,
                    &customer,
                    &format!("Updated customer {}", field(&customer, "slug")),
                )
            }
        }
    }
}

/// Percent-encodes a path segment (slugs and ids need none, but input is the user's).
pub fn path_part(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Prints one object: JSON, or a heading and its fields.
pub fn show(output: Output, value: &Value, heading: &str) -> Result<()> {
    match output {
        Output::Json => print_json(value),
        Output::Text => {
            println!("{heading}");
            if let Some(map) = value.as_object() {
                for (name, _) in map.iter().filter(|(n, _)| n.as_str() != "license") {
                    let text = if name.ends_with("_at") {
                        time_field(value, name)
                    } else {
                        field(value, name)
                    };
                    println!("  {name:<14} {text}");
                }
            }
            Ok(())
        }
    }
}

/// Prints an array: JSON, or a table of `columns` and `time_columns`.
pub fn list(output: Output, value: &Value, columns: &[&str], time_columns: &[&str]) -> Result<()> {
    match output {
        Output::Json => print_json(value),
        Output::Text => {
            let rows: Vec<Vec<String>> = value
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .map(|item| {
                            columns
                                .iter()
                                .map(|c| field(item, c))
                                .chain(time_columns.iter().map(|c| time_field(item, c)))
                                .collect()
                        })
                        .collect()
                })
                .unwrap_or_default();
            let headers: Vec<&str> = columns.iter().chain(time_columns).copied().collect();
            print_table(&headers, &rows);
            Ok(())
        }
    }
}
