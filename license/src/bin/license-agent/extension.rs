//! The agent as a Lambda extension. When `AWS_LAMBDA_RUNTIME_API` is set, the agent registers
//! with the Lambda Extensions API under its file name (`license-agent`, the name it has in the
//! layer's `extensions/` folder) for INVOKE and SHUTDOWN events. Lambda freezes the execution
//! environment between invocations, so timers stop: on an INVOKE after a check-in interval has
//! passed the extension starts the check-in at once. On SHUTDOWN it stops the server, which seals
//! the acknowledged usage and tries a last check-in within Lambda's shutdown budget.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Notify;

/// The extension's name: Lambda requires it to equal the executable's file name.
pub const NAME: &str = "license-agent";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    event_type: String,
}

/// Registers and follows events until SHUTDOWN, then rings `stop`. A failure with the API also
/// stops the agent, and is returned so that it exits non-zero.
pub async fn run(stop: Arc<Notify>, wake: Arc<Notify>, interval: u64) -> Result<(), String> {
    let followed = follow(&wake, interval).await.map_err(|e| {
        tracing::error!(error = %e, "the Lambda Extensions API failed; the agent stops");
        e.to_string()
    });
    stop.notify_one();
    followed
}

async fn follow(wake: &Notify, interval: u64) -> anyhow::Result<()> {
    let api = std::env::var("AWS_LAMBDA_RUNTIME_API")?;
    let base = format!("http://{api}/2020-01-01/extension");
    // No timeout: `event/next` blocks until the next invocation, however long that takes.
    let http = reqwest::Client::builder().build()?;
    let registered = http
        .post(format!("{base}/register"))
        .header("Lambda-Extension-Name", NAME)
        .json(&serde_json::json!({"events": ["INVOKE", "SHUTDOWN"]}))
        .send()
        .await?;
    anyhow::ensure!(
        registered.status().is_success(),
        "registration refused with HTTP {}",
        registered.status()
    );
    let id = registered
        .headers()
        .get("Lambda-Extension-Identifier")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("registration returned no Lambda-Extension-Identifier"))?;
    tracing::info!(extension = NAME, "registered as a Lambda extension");
    let mut last_wake = Instant::now();
    loop {
        let event: Event = http
            .get(format!("{base}/event/next"))
            .header("Lambda-Extension-Identifier", &id)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        match event.event_type.as_str() {
            "SHUTDOWN" => return Ok(()),
            _ => {
                if last_wake.elapsed() >= Duration::from_secs(interval) {
                    last_wake = Instant::now();
                    wake.notify_one();
                }
            }
        }
    }
}
