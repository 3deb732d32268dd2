//! `vendor-portal admin`: commands run on the portal's machine, against its database.

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use serde_json::json;

use super::serve::StorageArgs;
use super::{Ctx, Output, print_json};
use crate::server;

/// `admin` subcommands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a vendor with portal-held keys and an owner; prints the first API token once.
    CreateVendor(CreateVendorArgs),
    /// Set a member's password (generated and shown once unless given), e.g. for the demo's
    /// owner after a restart; ends their browser sessions.
    ResetPassword(ResetPasswordArgs),
}

/// Arguments of `admin reset-password`.
#[derive(Debug, Args)]
pub struct ResetPasswordArgs {
    /// The vendor's slug.
    #[arg(long)]
    vendor: String,
    /// The member's email.
    #[arg(long)]
    email: String,
    /// The new password (at least 12 characters); generated and shown once if omitted.
    #[arg(long, env = "CONSIGN_NEW_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    #[command(flatten)]
    storage: StorageArgs,
}

/// Arguments of `admin create-vendor`.
#[derive(Debug, Args)]
pub struct CreateVendorArgs {
    /// The vendor's slug (licenses name it as issuer).
    #[arg(long)]
    slug: String,
    /// The vendor's display name.
    #[arg(long)]
    name: String,
    /// The first owner's email (default owner@SLUG.example).
    #[arg(long)]
    owner_email: Option<String>,
    #[command(flatten)]
    storage: StorageArgs,
}

impl AdminCommand {
    /// Runs the subcommand.
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        match self {
            AdminCommand::CreateVendor(args) => create_vendor(args, ctx.output),
            AdminCommand::ResetPassword(args) => reset_password(args, ctx.output),
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn reset_password(args: ResetPasswordArgs, output: Output) -> Result<()> {
    let reset = runtime()?.block_on(async {
        let state = server::open(&args.storage.config()).await?;
        server::domain::members::admin_reset_password(
            &state,
            &args.vendor,
            &args.email,
            &server::whoami(),
            args.password.clone(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot reset the password of {}: {}", args.email, e.detail))
    })?;
    match output {
        Output::Json => print_json(&json!(reset))?,
        Output::Text => {
            match &reset.password {
                Some(password) => println!(
                    "New password for {} (vendor {}), shown once: {password}",
                    reset.member.email, args.vendor
                ),
                None => println!(
                    "Password set for {} (vendor {})",
                    reset.member.email, args.vendor
                ),
            }
            println!("  their browser sessions ended; their API tokens still work");
        }
    }
    Ok(())
}

fn create_vendor(args: CreateVendorArgs, output: Output) -> Result<()> {
    let runtime = runtime()?;
    let email = args
        .owner_email
        .clone()
        .unwrap_or_else(|| format!("owner@{}.example", args.slug));
    let created = runtime.block_on(async {
        let state = server::open(&args.storage.config()).await?;
        server::create_vendor(&state, &args.slug, &args.name, &email)
            .await
            .map_err(|e| anyhow::anyhow!("cannot create vendor {}: {}", args.slug, e.detail))
    })?;
    match output {
        Output::Json => print_json(&json!(created))?,
        Output::Text => {
            println!("Created vendor {} ({})", created.slug, created.id);
            println!(
                "  owner:            {} (password, shown once: {})",
                created.owner_email, created.owner_password
            );
            println!("  API token (shown once, store it now):");
            println!("    {}", created.token);
            println!(
                "  signing keys:     held by the portal (root {}); register your own with `vendor-portal keys register --keys DIR`",
                created.root_fingerprint
            );
        }
    }
    Ok(())
}
