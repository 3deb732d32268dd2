//! `vendor-portal token|member`: API tokens and the vendor's members.

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::json;

use super::catalog::{list, path_part, show};
use super::{Ctx, Output, print_json};

/// `token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token acting as you; prints the secret once.
    Create(TokenCreateArgs),
    /// List tokens (owners see all, others their own).
    List,
    /// Revoke a token at once.
    Revoke {
        /// The token's id (tok_...), from `token list`.
        id: String,
    },
}

/// Arguments of `token create`.
#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// What it is for.
    #[arg(long)]
    name: String,
    /// Days until it expires (never by default).
    #[arg(long)]
    expires_in_days: Option<u32>,
}

impl TokenCommand {
    /// Runs the subcommand.
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        let portal = ctx.portal()?;
        match self {
            TokenCommand::Create(args) => {
                let token = portal.post(
                    "/api/v1/tokens",
                    &json!({"name": args.name, "expires_in_days": args.expires_in_days}),
                )?;
                match ctx.output {
                    Output::Json => print_json(&token),
                    Output::Text => {
                        println!(
                            "Created token {} ({})",
                            super::field(&token, "id"),
                            super::field(&token, "name")
                        );
                        println!(
                            "  secret (shown once, store it now): {}",
                            super::field(&token, "token")
                        );
                        Ok(())
                    }
                }
            }
            TokenCommand::List => {
                let tokens = portal.get("/api/v1/tokens")?;
                list(
                    ctx.output,
                    &tokens,
                    &["id", "name", "hint", "member"],
                    &["created_at", "last_used_at", "expires_at", "revoked_at"],
                )
            }
            TokenCommand::Revoke { id } => {
                let token = portal.post(
                    &format!("/api/v1/tokens/{}/revoke", path_part(&id)),
                    &json!({}),
                )?;
                show(ctx.output, &token, &format!("Revoked token {id}"))
            }
        }
    }
}

/// `member` subcommands.
#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Add a member (owners only); prints a generated password once.
    Add {
        /// Their email.
        #[arg(long)]
        email: String,
        /// owner, publisher or support.
        #[arg(long)]
        role: String,
    },
    /// List members.
    List,
}

impl MemberCommand {
    /// Runs the subcommand.
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        let portal = ctx.portal()?;
        match self {
            MemberCommand::Add { email, role } => {
                let member =
                    portal.post("/api/v1/members", &json!({"email": email, "role": role}))?;
                show(
                    ctx.output,
                    &member,
                    &format!("Added {email} as {role} (the password is shown once)"),
                )
            }
            MemberCommand::List => {
                let members = portal.get("/api/v1/members")?;
                list(ctx.output, &members, &["id", "email", "role"], &[])
            }
        }
    }
}
