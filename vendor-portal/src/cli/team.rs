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
    /// Change a member's role (owners only); ends their sessions and tokens.
    Role {
        /// The member's id (mem_...) or email.
        member: String,
        /// owner, publisher or support.
        #[arg(long)]
        role: String,
    },
    /// Disable a member (owners only): no sign-in, and their sessions and tokens end at once.
    Disable {
        /// The member's id (mem_...) or email.
        member: String,
    },
    /// Enable a disabled member again (their old tokens stay revoked).
    Enable {
        /// The member's id (mem_...) or email.
        member: String,
    },
    /// Set a member's password (owners only); prints a generated one once. Ends their sessions
    /// and tokens.
    ResetPassword {
        /// The member's id (mem_...) or email.
        member: String,
        /// The new password (at least 12 characters); generated if omitted.
        #[arg(long, env = "CONSIGN_MEMBER_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// Remove a member (owners only): their sessions end and their tokens are deleted.
    Remove {
        /// The member's id (mem_...) or email.
        member: String,
    },
}

/// The id of `member` (an id, or an email looked up in the member list).
fn member_id(portal: &crate::client::Portal, member: &str) -> Result<String> {
    if !member.contains('@') {
        return Ok(member.to_owned());
    }
    let members = portal.get("/api/v1/members")?;
    members
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["email"].as_str() == Some(member))
        .and_then(|m| m["id"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| {
            anyhow::anyhow!("{member} is not a member: `vendor-portal member list` shows who is")
        })
}

/// Prints what a member change ended.
fn changed(ctx: &Ctx, answer: &serde_json::Value, what: &str) -> Result<()> {
    show(
        ctx.output,
        answer,
        &format!(
            "{what}; {} sessions ended, {} tokens revoked",
            answer["sessions_ended"], answer["tokens_revoked"]
        ),
    )
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
                list(
                    ctx.output,
                    &members,
                    &["id", "email", "role", "disabled"],
                    &[],
                )
            }
            MemberCommand::Role { member, role } => {
                let id = member_id(&portal, &member)?;
                let answer = portal.patch(
                    &format!("/api/v1/members/{}", path_part(&id)),
                    &json!({"role": role}),
                )?;
                changed(ctx, &answer, &format!("{member} is now {role}"))
            }
            MemberCommand::Disable { member } => {
                let id = member_id(&portal, &member)?;
                let answer = portal.patch(
                    &format!("/api/v1/members/{}", path_part(&id)),
                    &json!({"disabled": true}),
                )?;
                changed(ctx, &answer, &format!("Disabled {member}"))
            }
            MemberCommand::Enable { member } => {
                let id = member_id(&portal, &member)?;
                let answer = portal.patch(
                    &format!("/api/v1/members/{}", path_part(&id)),
                    &json!({"disabled": false}),
                )?;
                changed(ctx, &answer, &format!("Enabled {member}"))
            }
            MemberCommand::ResetPassword { member, password } => {
                let id = member_id(&portal, &member)?;
                let answer = portal.post(
                    &format!("/api/v1/members/{}/password", path_part(&id)),
                    &json!({"password": password}),
                )?;
                show(
                    ctx.output,
                    &answer,
                    &format!(
                        "Set a new password for {member}; their sessions and tokens ended{}",
                        if answer["password"].is_string() {
                            " (the generated password is shown once)"
                        } else {
                            ""
                        }
                    ),
                )
            }
            MemberCommand::Remove { member } => {
                let id = member_id(&portal, &member)?;
                let answer = portal.delete(&format!("/api/v1/members/{}", path_part(&id)))?;
                changed(ctx, &answer, &format!("Removed {member}"))
            }
        }
    }
}
