//! `vendor-portal sso`: the vendor's single sign-on (an OpenID Connect provider).

use anyhow::{Result, bail};
use clap::Subcommand;
use serde_json::{Map, Value, json};

use super::catalog::show;
use super::{Ctx, Output, field, print_json};

/// `sso` subcommands.
#[derive(Debug, Subcommand)]
pub enum SsoCommand {
    /// Show the identity provider, the redirect URI to register with it and the sign-in link.
    Show,
    /// Set the identity provider (owners only). The portal reads its discovery document now.
    Set {
        /// The issuer URL, exactly as the provider's discovery document names it.
        #[arg(long)]
        issuer: String,
        /// The client id the provider gave the portal.
        #[arg(long)]
        client_id: String,
        /// The client secret (from the environment, so it stays out of shell history); kept
        /// as it is when absent on a change.
        #[arg(long, env = "CONSIGN_SSO_CLIENT_SECRET", hide_env_values = true)]
        client_secret: Option<String>,
        /// An e-mail domain whose people may sign in (repeatable, at least one).
        #[arg(long = "domain", value_name = "DOMAIN", required = true)]
        domains: Vec<String>,
        /// An ID token claim whose values name roles (`groups`).
        #[arg(long)]
        role_claim: Option<String>,
        /// A claim value and the role it maps to (repeatable): `--role consign-admins=owner`.
        #[arg(long = "role", value_name = "VALUE=ROLE")]
        roles: Vec<String>,
        /// A scope to ask for besides `openid email` (repeatable): `--scope groups`.
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// Add people the provider vouches for as members at their first sign-in, with this
        /// role (support or publisher) unless the role claim maps them to another.
        #[arg(long, value_name = "ROLE")]
        jit_role: Option<String>,
        /// Refuse password sign-ins (API tokens still work). Needs one working SSO sign-in
        /// with these settings first.
        #[arg(long)]
        require_sso: bool,
    },
    /// Remove the identity provider (owners only): members sign in with passwords again.
    Remove,
}

impl SsoCommand {
    /// Runs the subcommand.
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        let portal = ctx.portal()?;
        match self {
            SsoCommand::Show => {
                let config = portal.get("/api/v1/sso")?;
                describe(ctx.output, &config, "Single sign-on")
            }
            SsoCommand::Set {
                issuer,
                client_id,
                client_secret,
                domains,
                role_claim,
                roles,
                scopes,
                jit_role,
                require_sso,
            } => {
                let mut role_map = Map::new();
                for pair in &roles {
                    let Some((value, role)) = pair.rsplit_once('=') else {
                        bail!(
                            "--role takes VALUE=ROLE, as --role consign-admins=owner (got {pair:?})"
                        );
                    };
                    role_map.insert(value.to_owned(), Value::String(role.to_owned()));
                }
                let config = portal.put(
                    "/api/v1/sso",
                    &json!({"issuer": issuer, "client_id": client_id, "client_secret": client_secret,
                        "allowed_domains": domains, "role_claim": role_claim, "role_map": role_map,
                        "extra_scopes": scopes, "jit_role": jit_role, "require_sso": require_sso}),
                )?;
                describe(ctx.output, &config, "Single sign-on is set")
            }
            SsoCommand::Remove => {
                let config = portal.delete("/api/v1/sso")?;
                show(
                    ctx.output,
                    &json!({"issuer": config["issuer"]}),
                    "Removed single sign-on; members sign in with passwords again",
                )
            }
        }
    }
}

fn describe(output: Output, config: &Value, heading: &str) -> Result<()> {
    if output == Output::Json {
        return print_json(config);
    }
    println!("{heading}");
    println!("  issuer         {}", field(config, "issuer"));
    println!("  client id      {}", field(config, "client_id"));
    let domains: Vec<&str> = config["allowed_domains"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    println!("  domains        {}", domains.join(", "));
    if let Some(claim) = config["role_claim"].as_str() {
        let map: Vec<String> = config["role_map"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("?")))
                    .collect()
            })
            .unwrap_or_default();
        println!("  role claim     {claim} {}", map.join(" "));
    }
    let jit = config["jit_role"].as_str().map_or_else(
        || "refused until an owner adds them".to_owned(),
        |r| format!("become members ({r})"),
    );
    println!("  new people     {jit}");
    println!(
        "  passwords      {}",
        if config["require_sso"].as_bool() == Some(true) {
            "refused (single sign-on required; API tokens still work)"
        } else {
            "accepted"
        }
    );
    println!(
        "  verified       {}",
        if config["verified_at"].is_null() {
            "no sign-in yet: try the sign-in link before --require-sso".to_owned()
        } else {
            super::time_field(config, "verified_at")
        }
    );
    println!(
        "Register this redirect URI with the provider: {}",
        field(config, "redirect_uri")
    );
    println!("Members sign in at: {}", field(config, "sign_in_url"));
    Ok(())
}
