//! `portal-bench`: the portal's loopback benchmark. It starts release `vendor-portal serve`
//! processes and measures, in one run:
//!
//! - the signed status endpoint beside the trivial `/healthz` route of the same server, in
//!   alternating rounds (throughput and p99; the goal is at least half of the trivial route's
//!   throughput; the ratio reported is the median round's), and
//! - license issuance per second on SQLite and on PostgreSQL (goal: 2,000/s on 2 cores).
//!
//! The load generator shares the machine with the portal, as on any 2-core box; figures are
//! reported as measured, and the status route as a ratio to the trivial route.
//!
//! ```text
//! cargo build --release --workspace && target/release/portal-bench [--seconds 5] [--concurrency 16]
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark binary"
)]

use std::process::ExitCode;

use tests::bench::BenchArgs;

use std::sync::Arc;

use serde_json::json;
use tests::load::{MakeRequest, drive};
use tests::portal::{PortalSetup, seed_catalog};

#[derive(Clone, Copy)]
enum Load {
    Get,
    Issue,
}

/// The requests of `load` against `url`.
fn requests(url: Arc<String>, token: Arc<String>, load: Load) -> MakeRequest {
    Arc::new(move |http, worker, n| match load {
        Load::Get => http.get(url.replace("NONCE", &format!("bench-nonce-{worker:04}-{n:012}"))),
        Load::Issue => http
            .post(url.as_str())
            .bearer_auth(token.as_str())
            .json(&json!({"customer": "globex", "app": "blog", "plan": "standard"})),
    })
}

fn run(args: &BenchArgs) {
    let seconds = args.number("--seconds", 5, 1);
    let concurrency = args.number("--concurrency", 16, 4) as usize;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "portal-bench: {seconds} s per measurement, {concurrency} concurrent keep-alive clients on loopback"
    );
    println!();
    println!("| measurement | database | requests/s | p50 | p99 | errors |");
    println!("|---|---|---:|---:|---:|---:|");
    let mut results = Vec::new();
    for postgres in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut setup = PortalSetup::new(dir.path(), postgres);
        setup.extra = vec![
            "--license-writes-per-minute".into(),
            "0".into(),
            "--log-format".into(),
            "json".into(),
        ];
        setup.env = vec![("CONSIGN_LOG".into(), "warn".into())];
        let token = setup.create_vendor("acme");
        let portal = setup.start();
        let db = if postgres { "PostgreSQL" } else { "SQLite" };
        let http = reqwest::Client::new();
        let license = rt.block_on(async {
            seed_catalog(&http, &portal.url, &token).await;
            let r = http
                .post(format!("{}/api/v1/licenses", portal.url))
                .bearer_auth(&token)
                .json(&json!({"customer": "globex", "app": "blog", "plan": "standard"}))
                .send()
                .await
                .unwrap();
            r.json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        });
        let token = Arc::new(token);
        let row = |name: &str, url: String, load: Load| {
            // A short warm-up, then the measurement.
            let make = requests(Arc::new(url), token.clone(), load);
            rt.block_on(drive(Arc::clone(&make), concurrency, 1));
            let run = rt.block_on(drive(make, concurrency, seconds));
            println!(
                "| {name} | {db} | {:.0} | {:.2} ms | {:.2} ms | {} |",
                run.per_second(),
                run.percentile(0.50).as_secs_f64() * 1e3,
                run.percentile(0.99).as_secs_f64() * 1e3,
                run.errors
            );
            run.per_second()
        };
        // The trivial route and the status endpoint take turns, three rounds each, so that
        // whatever else the machine does falls on both; the ratio is the median of the rounds.
        let mut ratios = Vec::new();
        for round in 1..=3 {
            let trivial = row(
                &format!("GET /healthz (trivial route), round {round}"),
                format!("{}/healthz", portal.url),
                Load::Get,
            );
            let status = row(
                &format!("GET signed license status, round {round}"),
                format!(
                    "{}/api/v1/vendors/acme/licenses/{license}/status?nonce=NONCE",
                    portal.url
                ),
                Load::Get,
            );
            ratios.push(status / trivial);
        }
        ratios.sort_by(f64::total_cmp);
        let issue = row(
            "POST /api/v1/licenses (issue)",
            format!("{}/api/v1/licenses", portal.url),
            Load::Issue,
        );
        let (status, trivial) = (ratios[1], 1.0);
        results.push((db, status / trivial, issue));
        drop(portal);
    }
    println!();
    for (db, ratio, issue) in results {
        println!(
            "{db}: status endpoint at {:.2}x the trivial route's throughput (goal >= 0.5); issuance {issue:.0}/s (goal >= 2000/s)",
            ratio
        );
    }
}

fn main() -> ExitCode {
    tests::bench::main(
        "portal-bench",
        "the signed status endpoint against /healthz, and license issuance on SQLite and PostgreSQL (use a release build: cargo build --release --workspace)",
        &[
            "--seconds N    seconds per measurement (5)",
            "--concurrency N    keep-alive clients (16)",
        ],
        run,
    )
}
