//! `vendor-portal webhook`: endpoints that hear the vendor's events, and their delivery log.

use anyhow::Result;
use clap::Subcommand;
use serde_json::{Value, json};

use super::catalog::{list, path_part, show};
use super::{Ctx, Output, field, print_json, print_table, time_field};

/// `webhook` subcommands.
#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Add an endpoint (owners only); prints its signing secret once.
    Add {
        /// An https URL on a public address.
        url: String,
        /// An event type to send (repeatable; all types when absent). `webhook events` lists
        /// them.
        #[arg(long = "event", value_name = "TYPE")]
        events: Vec<String>,
        /// What it is for.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List endpoints, with deliveries pending and failed.
    List,
    /// Remove an endpoint (owners only); its pending deliveries are cancelled.
    Remove {
        /// The endpoint's id (whk_...).
        id: String,
    },
    /// The event types an endpoint can receive.
    Events,
    /// Send a `webhook.test` event to an endpoint.
    Test {
        /// The endpoint's id (whk_...).
        id: String,
    },
    /// The delivery log of an endpoint: each event, its state and its attempts.
    Deliveries {
        /// The endpoint's id (whk_...).
        id: String,
        /// At most this many, newest first.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Send a delivery again now, with the same webhook-id.
    Redeliver {
        /// The delivery's id (dlv_...), from `webhook deliveries`.
        id: String,
    },
}

impl WebhookCommand {
    /// Runs the subcommand.
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        let portal = ctx.portal()?;
        match self {
            WebhookCommand::Add {
                url,
                events,
                description,
            } => {
                let endpoint = portal.post(
                    "/api/v1/webhooks",
                    &json!({"url": url, "events": events, "description": description}),
                )?;
                match ctx.output {
                    Output::Json => print_json(&endpoint),
                    Output::Text => {
                        println!(
                            "Added webhook endpoint {} for {}",
                            field(&endpoint, "id"),
                            joined(&endpoint["events"])
                        );
                        println!(
                            "  signing secret (shown once, store it with the receiver): {}",
                            field(&endpoint, "secret")
                        );
                        Ok(())
                    }
                }
            }
            WebhookCommand::List => {
                let endpoints = portal.get("/api/v1/webhooks")?;
                list(
                    ctx.output,
                    &endpoints,
                    &["id", "url", "pending", "failed", "description"],
                    &["created_at"],
                )
            }
            WebhookCommand::Remove { id } => {
                let endpoint = portal.delete(&format!("/api/v1/webhooks/{}", path_part(&id)))?;
                show(
                    ctx.output,
                    &endpoint,
                    &format!("Removed webhook endpoint {id}"),
                )
            }
            WebhookCommand::Events => {
                let types = portal.get("/api/v1/webhooks/event-types")?;
                list(ctx.output, &types, &["name", "description"], &[])
            }
            WebhookCommand::Test { id } => {
                let queued = portal.post(
                    &format!("/api/v1/webhooks/{}/test", path_part(&id)),
                    &json!({}),
                )?;
                show(
                    ctx.output,
                    &queued,
                    &format!("Queued a webhook.test event to {id}"),
                )
            }
            WebhookCommand::Deliveries { id, limit } => {
                let log = portal.get(&format!(
                    "/api/v1/webhooks/{}/deliveries?limit={limit}",
                    path_part(&id)
                ))?;
                match ctx.output {
                    Output::Json => print_json(&log),
                    Output::Text => {
                        print_deliveries(&log);
                        Ok(())
                    }
                }
            }
            WebhookCommand::Redeliver { id } => {
                let queued = portal.post(
                    &format!("/api/v1/webhooks/deliveries/{}/redeliver", path_part(&id)),
                    &json!({}),
                )?;
                show(ctx.output, &queued, &format!("Queued {id} again"))
            }
        }
    }
}

fn joined(events: &Value) -> String {
    events
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// The delivery log as a table: one row per delivery, its last attempt's outcome.
fn print_deliveries(log: &Value) {
    let rows: Vec<Vec<String>> = log
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let last = d["history"].as_array().and_then(|h| h.last());
            let outcome = last.map_or_else(String::new, |a| {
                a["error"].as_str().map_or_else(
                    || format!("HTTP {}", a["status"]),
                    |e| e.chars().take(60).collect(),
                )
            });
            vec![
                field(d, "id"),
                field(d, "type"),
                field(d, "state"),
                field(d, "attempts"),
                outcome,
                time_field(d, "created_at"),
            ]
        })
        .collect();
    print_table(
        &["id", "type", "state", "attempts", "last outcome", "created"],
        &rows,
    );
}
