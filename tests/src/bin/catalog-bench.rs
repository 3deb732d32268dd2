//! `catalog-bench`: the marketplace catalogue under concurrent load, with 1,000 published
//! listings from 10 vendors, beside the same server's static stylesheet in the same run.
//!
//! It starts a release `vendor-portal serve` on SQLite and on PostgreSQL, seeds the listings
//! through the API, then measures in alternating rounds (so that whatever else the machine does
//! falls on all of them): the static page, the catalogue's first page, a word search and a
//! category filter. Each is a paced run (a fixed request rate over concurrent keep-alive
//! clients; a late request counts from when it was due) and a closed-loop run (each client
//! sends its next request when the last one answered). The goal is a catalogue p99 under 20 ms
//! at the paced rate; every figure is also given as a ratio to the static page's.
//!
//! ```text
//! cargo build --release --workspace && target/release/catalog-bench [--apps 1000] [--seconds 5] [--rate 200] [--concurrency 16]
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark binary"
)]

use std::process::ExitCode;

use tests::bench::BenchArgs;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tests::load::{MakeRequest, drive, paced};
use tests::portal::PortalSetup;

const WORDS: [&str; 10] = [
    "billing",
    "analytics",
    "search",
    "backup",
    "invoices",
    "alerts",
    "forms",
    "reports",
    "sync",
    "audit",
];
const CATEGORIES: [&str; 5] = ["finance", "data", "web", "observability", "automation"];

fn get(url: String) -> MakeRequest {
    Arc::new(move |http, _, _| http.get(url.as_str()))
}

async fn seed(http: &reqwest::Client, url: &str, tokens: &[String], apps: usize) {
    let mut pending = Vec::new();
    for i in 0..apps {
        let token = tokens[i % tokens.len()].clone();
        let body = json!({
            "slug": format!("app-{i:04}"),
            "name": format!("{} {} {i}", WORDS[i % WORDS.len()], WORDS[(i / 10) % WORDS.len()]),
            "summary": format!("A serverless {} tool that runs in your AWS account", WORDS[(i / 3) % WORDS.len()]),
            "description": "Deployed with CloudFormation by the Consign installer.",
            "categories": [CATEGORIES[i % CATEGORIES.len()], CATEGORIES[(i / 5) % CATEGORIES.len()]],
            "listed": true,
        });
        let request = http
            .post(format!("{url}/api/v1/apps"))
            .bearer_auth(token)
            .json(&body);
        pending.push(async move {
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        });
        if pending.len() == 16 {
            futures_util::future::join_all(pending.drain(..)).await;
        }
    }
    futures_util::future::join_all(pending).await;
}

fn run(args: &BenchArgs) {
    let apps = args.number("--apps", 1000, 20) as usize;
    let seconds = args.number("--seconds", 5, 1);
    let rounds = args.number("--rounds", 3, 1);
    let rate = args.number("--rate", 200, 50);
    let concurrency = args.number("--concurrency", 16, 4) as usize;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "catalog-bench: {apps} listed apps; {seconds} s per measurement; paced at {rate} requests/s and closed-loop, {concurrency} keep-alive clients on loopback"
    );
    println!();
    println!("| page | database | load | requests/s | p50 | p99 | p99 / static p99 | errors |");
    println!("|---|---|---|---:|---:|---:|---:|---:|");
    let mut summary = Vec::new();
    for postgres in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut setup = PortalSetup::new(dir.path(), postgres);
        setup.extra = vec!["--log-format".into(), "json".into()];
        setup.env = vec![("CONSIGN_LOG".into(), "warn".into())];
        let tokens: Vec<String> = (0..10)
            .map(|v| setup.create_vendor(&format!("vendor-{v}")))
            .collect();
        let portal = setup.start();
        let db = if postgres { "PostgreSQL" } else { "SQLite" };
        let http = reqwest::Client::new();
        rt.block_on(seed(&http, &portal.url, &tokens, apps));
        let pages = [
            ("static stylesheet", "/static/site.css".to_owned()),
            ("catalogue, first page", "/".to_owned()),
            ("catalogue, word search", "/?q=billing+analytics".to_owned()),
            (
                "catalogue, category and sort",
                "/?category=finance&sort=newest".to_owned(),
            ),
        ];
        // p99s of each page, per round, for both loads.
        let mut worst_catalogue_paced = Duration::ZERO;
        for round in 1..=rounds {
            for (load, closed) in [("paced", false), ("closed loop", true)] {
                let mut static_p99 = Duration::ZERO;
                for (name, path) in &pages {
                    let make = get(format!("{}{path}", portal.url));
                    rt.block_on(drive(Arc::clone(&make), concurrency, 1));
                    let run = if closed {
                        rt.block_on(drive(make, concurrency, seconds))
                    } else {
                        rt.block_on(paced(make, concurrency, rate, seconds))
                    };
                    let p99 = run.percentile(0.99);
                    if name.starts_with("static") {
                        static_p99 = p99;
                    } else if !closed {
                        worst_catalogue_paced = worst_catalogue_paced.max(p99);
                    }
                    println!(
                        "| {name} (round {round}) | {db} | {load} | {:.0} | {:.2} ms | {:.2} ms | {:.1}x | {} |",
                        run.per_second(),
                        run.percentile(0.50).as_secs_f64() * 1e3,
                        p99.as_secs_f64() * 1e3,
                        p99.as_secs_f64() / static_p99.as_secs_f64().max(1e-9),
                        run.errors
                    );
                }
            }
        }
        summary.push((db, worst_catalogue_paced));
        drop(portal);
    }
    println!();
    for (db, p99) in summary {
        println!(
            "{db}: the catalogue's worst p99 at {rate} requests/s over all rounds and pages was {:.2} ms (goal < 20 ms)",
            p99.as_secs_f64() * 1e3
        );
    }
}

fn main() -> ExitCode {
    tests::bench::main(
        "catalog-bench",
        "the marketplace catalogue at N listings, paced, against the static stylesheet of the same server",
        &[
            "--apps N    listings (1000)",
            "--seconds N    seconds per page (5)",
            "--rounds N    alternating rounds (3)",
            "--rate N    requests per second (200)",
            "--concurrency N    clients (16)",
        ],
        run,
    )
}
