//! `webhook-bench`: how fast the portal delivers webhooks. It starts a release `vendor-portal
//! serve` on SQLite with an endpoint on a local receiver (a real HTTP server in this process)
//! that hears `license.issued`, and measures in one run, in alternating rounds:
//!
//! - `GET /healthz`, the trivial route of the same portal;
//! - issuing licenses (`POST /api/v1/licenses`), each of which writes a `license.issued` event
//!   to the outbox in its own transaction;
//! - the deliveries those events caused: deliveries per second (from the first event to the
//!   last delivery) and the delay from each event's acknowledgement to its arrival at the
//!   receiver (p50, p99).
//!
//! Deliveries per second are reported as ratios to the trivial route and to the rate events
//! were made, the median of three rounds.
//!
//! ```text
//! cargo build --release --workspace && target/release/webhook-bench [--seconds 5] [--concurrency 8]
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark binary"
)]

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tests::bench::BenchArgs;
use tests::load::{MakeRequest, drive};
use tests::portal::{PortalSetup, seed_catalog};
use tests::webhook::Receiver;

/// Issues licenses with `concurrency` clients for `seconds`: each license's id and when its
/// issuance was acknowledged, and when the first request was sent.
async fn issue_for(
    url: &str,
    token: &str,
    concurrency: usize,
    seconds: u64,
) -> (Instant, Vec<(String, Instant)>) {
    let http = reqwest::Client::new();
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, url, token, acked) = (
            http.clone(),
            url.to_owned(),
            token.to_owned(),
            Arc::clone(&acked),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                let Ok(response) = http
                    .post(format!("{url}/api/v1/licenses"))
                    .bearer_auth(&token)
                    .json(&json!({"customer": "globex", "app": "blog", "plan": "standard"}))
                    .send()
                    .await
                else {
                    continue;
                };
                let at = Instant::now();
                if response.status() != 201 {
                    continue;
                }
                let body: Value = response.json().await.unwrap_or(Value::Null);
                if let Some(id) = body["id"].as_str() {
                    acked.lock().unwrap().push((id.to_owned(), at));
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    (started, acked)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn run(args: &BenchArgs) {
    let seconds = args.number("--seconds", 5, 1);
    let concurrency = args.number("--concurrency", 8, 2) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut setup = PortalSetup::new(dir.path(), false);
    setup.extra = vec![
        "--webhook-allow-private".into(),
        "--license-writes-per-minute".into(),
        "0".into(),
    ];
    setup.env = vec![("CONSIGN_LOG".into(), "warn".into())];
    let token = setup.create_vendor("acme");
    let portal = setup.start();
    let receiver = Receiver::start(&[]);
    let http = reqwest::Client::new();
    rt.block_on(async {
        seed_catalog(&http, &portal.url, &token).await;
        let r = http
            .post(format!("{}/api/v1/webhooks", portal.url))
            .bearer_auth(&token)
            .json(&json!({"url": receiver.url, "events": ["license.issued"]}))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "the endpoint was not added: {}",
            r.text().await.unwrap()
        );
    });
    println!(
        "webhook-bench: {seconds} s per measurement, {concurrency} concurrent keep-alive clients on loopback, one endpoint on a local receiver"
    );
    println!();
    println!("| measurement | per second | p50 | p99 | errors |");
    println!("|---|---:|---:|---:|---:|");
    let healthz: MakeRequest = {
        let url = portal.url.clone();
        Arc::new(move |http, _, _| http.get(format!("{url}/healthz")))
    };
    let (mut to_trivial, mut to_events) = (Vec::new(), Vec::new());
    for round in 1..=3 {
        let trivial = rt.block_on(drive(Arc::clone(&healthz), concurrency, seconds));
        println!(
            "| GET /healthz (trivial route), round {round} | {:.0} | {:.2} ms | {:.2} ms | {} |",
            trivial.per_second(),
            trivial.percentile(0.50).as_secs_f64() * 1e3,
            trivial.percentile(0.99).as_secs_f64() * 1e3,
            trivial.errors
        );
        let seen_before = receiver.received().len();
        let (started, acked) = rt.block_on(issue_for(&portal.url, &token, concurrency, seconds));
        let issued_rate = acked.len() as f64 / started.elapsed().as_secs_f64();
        println!("| POST /api/v1/licenses (events made), round {round} | {issued_rate:.0} | | | |");
        let received = receiver.wait_until(
            "every license.issued of the round",
            Duration::from_secs(120),
            |seen| seen.len() >= seen_before + acked.len(),
        );
        let arrivals: HashMap<String, Instant> = received[seen_before..]
            .iter()
            .filter_map(|r| {
                let event: Value = serde_json::from_str(&r.body).ok()?;
                Some((event["data"]["id"].as_str()?.to_owned(), r.at))
            })
            .collect();
        let mut delays: Vec<Duration> = acked
            .iter()
            .filter_map(|(id, at)| {
                arrivals
                    .get(id)
                    .map(|got| got.saturating_duration_since(*at))
            })
            .collect();
        delays.sort();
        let last = arrivals.values().max().copied().unwrap_or(started);
        let delivered_rate = arrivals.len() as f64 / last.duration_since(started).as_secs_f64();
        println!(
            "| webhook deliveries, round {round} | {delivered_rate:.0} | {:.2} ms | {:.2} ms | {} |",
            percentile(&delays, 0.50).as_secs_f64() * 1e3,
            percentile(&delays, 0.99).as_secs_f64() * 1e3,
            acked.len() - delays.len()
        );
        to_trivial.push(delivered_rate / trivial.per_second());
        to_events.push(delivered_rate / issued_rate);
    }
    to_trivial.sort_by(f64::total_cmp);
    to_events.sort_by(f64::total_cmp);
    println!();
    println!(
        "webhooks delivered at {:.3}x the trivial route's throughput and {:.2}x the rate events were made (medians of 3 rounds); the delay is from the event's acknowledgement to its arrival",
        to_trivial[1], to_events[1]
    );
}

fn main() -> ExitCode {
    tests::bench::main(
        "webhook-bench",
        "webhook deliveries per second to a local receiver and the delay from event to delivery, beside /healthz (use a release build: cargo build --release --workspace)",
        &[
            "--seconds N    seconds per measurement (5)",
            "--concurrency N    keep-alive clients (8)",
        ],
        run,
    )
}
