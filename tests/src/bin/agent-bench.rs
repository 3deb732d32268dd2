//! `agent-bench`: the license agent's localhost benchmark. It starts a release
//! `license-agent serve` and measures, in one run:
//!
//! - closed loop, alternating rounds: `GET /v1/entitlements/posts` beside the trivial `/healthz`
//!   route of the same server (goal: at least half the trivial route's throughput; the ratio
//!   reported is the median round's);
//! - paced at `--rate` requests per second (10,000 by default): the entitlement check's p50 and
//!   p99, latency counted from each request's scheduled start (goal: p99 under 1 ms), beside the
//!   trivial route paced the same way.
//!
//! The load generator shares the machine with the agent, as a function would.
//!
//! ```text
//! cargo build --release --workspace && target/release/agent-bench [--seconds 4] [--concurrency 16] [--rate 10000]
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark binary"
)]

use std::process::ExitCode;

use tests::bench::BenchArgs;

use std::process::Command;
use std::sync::Arc;

use tests::agent::AgentProcess;
use tests::load::{MakeRequest, drive, paced};

fn get(url: String) -> MakeRequest {
    Arc::new(move |http, _, _| http.get(url.as_str()))
}

fn run(args: &BenchArgs) {
    let seconds = args.number("--seconds", 4, 1);
    let concurrency = args.number("--concurrency", 16, 4) as usize;
    let rate = args.number("--rate", 10_000, 500);

    let dir = tempfile::tempdir().unwrap();
    let vendor = tests::Vendor::new();
    let keyset = dir.path().join("keyset.json");
    let license = dir.path().join("bench.lic");
    std::fs::write(&keyset, &vendor.keyset_json).unwrap();
    std::fs::write(&license, vendor.sign(&vendor.claims())).unwrap();
    let agent = AgentProcess::start(
        Command::new(tests::bin("license-agent"))
            .env_remove("AWS_LAMBDA_RUNTIME_API")
            .env("RUST_LOG", "error")
            .args(["serve", "--listen", "127.0.0.1:0", "--license"])
            .arg(&license)
            .arg("--trust")
            .arg(&keyset)
            .arg("--state-dir")
            .arg(dir.path().join("state")),
    );
    let trivial = format!("{}/healthz", agent.url);
    let check = format!("{}/v1/entitlements/posts", agent.url);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(drive(get(check.clone()), concurrency, 1));

    println!("| measurement | requests/s | p50 | p99 | errors |");
    println!("| --- | --- | --- | --- | --- |");
    let row = |name: &str, run: &tests::load::Run| {
        println!(
            "| {name} | {:.0} | {:.3} ms | {:.3} ms | {} |",
            run.per_second(),
            run.percentile(0.50).as_secs_f64() * 1e3,
            run.percentile(0.99).as_secs_f64() * 1e3,
            run.errors
        );
    };
    let mut ratios = Vec::new();
    for round in 1..=3 {
        let base = rt.block_on(drive(get(trivial.clone()), concurrency, seconds));
        row(
            &format!("GET /healthz (trivial route), round {round}"),
            &base,
        );
        let run = rt.block_on(drive(get(check.clone()), concurrency, seconds));
        row(&format!("GET /v1/entitlements/posts, round {round}"), &run);
        ratios.push(run.per_second() / base.per_second());
    }
    ratios.sort_by(f64::total_cmp);
    let base = rt.block_on(paced(get(trivial), concurrency, rate, seconds));
    row(&format!("/healthz paced at {rate}/s"), &base);
    let run = rt.block_on(paced(get(check), concurrency, rate, seconds));
    row(&format!("/v1/entitlements/posts paced at {rate}/s"), &run);
    let p99 = run.percentile(0.99);
    println!();
    println!(
        "entitlement check ÷ trivial route (median round): {:.2}× (goal ≥ 0.5×: {})",
        ratios[1],
        if ratios[1] >= 0.5 { "met" } else { "NOT met" }
    );
    println!(
        "entitlement check p99 at {rate}/s: {:.3} ms, {:.2}× the trivial route's {:.3} ms (goal < 1 ms: {})",
        p99.as_secs_f64() * 1e3,
        p99.as_secs_f64() / base.percentile(0.99).as_secs_f64().max(1e-9),
        base.percentile(0.99).as_secs_f64() * 1e3,
        if p99.as_secs_f64() < 1e-3 {
            "met"
        } else {
            "NOT met"
        }
    );
}

fn main() -> ExitCode {
    tests::bench::main(
        "agent-bench",
        "the license agent's entitlement checks against its own /healthz, paced",
        &[
            "--seconds N    seconds per measurement (4)",
            "--concurrency N    clients (16)",
            "--rate N    requests per second (10000)",
        ],
        run,
    )
}
