//! `agent-state-bench`: what keeping the license agent's state in DynamoDB costs, beside the
//! same agent with its state in a directory, in one run. Two release `license-agent serve`
//! processes check in with one portal; one keeps its state in a directory, the other in a
//! DynamoDB table (moto's, behind a counting proxy, on loopback). It measures:
//!
//! - the entitlement check, `GET /v1/entitlements/posts`, closed loop, alternating rounds on
//!   the two agents (goal: the same within noise, the check never touching the table), and
//!   the table calls made during the table agent's rounds (goal: none);
//! - the table calls of a check-in round with no usage, of usage events posted one at a time
//!   and sixteen at a time (each answered only once its batch is in the table), and of the
//!   check-in round that seals them (goal: at most one write per check-in and per batch);
//! - the size of the state item (DynamoDB bills a write per KB, a strongly consistent read per
//!   4 KB).
//!
//! ```text
//! cargo build --release --workspace && target/release/agent-state-bench [--seconds 3] [--concurrency 16]
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark binary"
)]

use std::process::ExitCode;

use tests::bench::BenchArgs;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tests::agent::{ACCOUNT, AgentProcess, AgentWorld, REGION, wait_for};
use tests::load::{MakeRequest, drive};
use tests::mitm::Mitm;
use tests::moto::Moto;

const TABLE: &str = "bench-LicenseAgentState";
/// Seconds between the agents' check-ins.
const INTERVAL: u64 = 3;

fn get(url: String) -> MakeRequest {
    Arc::new(move |http, _, _| http.get(url.as_str()))
}

fn agent(world: &AgentWorld, state: &Path, table: Option<&str>) -> AgentProcess {
    let mut command = Command::new(tests::bin("license-agent"));
    command
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .env("RUST_LOG", "error")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        // The bench's portal has no STS to send account proofs to.
        .env("CONSIGN_NO_ACCOUNT_PROOF", "true")
        .args(["serve", "--listen", "127.0.0.1:0", "--license"])
        .arg(&world.license)
        .arg("--trust")
        .arg(&world.keyset)
        .args(["--portal", &world.portal.url])
        .args(["--checkin-interval", &INTERVAL.to_string()])
        .arg("--state-dir")
        .arg(state)
        .args(["--aws-account", ACCOUNT, "--region", REGION])
        .args(["--stack", "bench", "--app-version", "1.0.0"]);
    if let Some(endpoint) = table {
        command
            .env("AWS_ENDPOINT_URL", endpoint)
            .args(["--state-table", TABLE]);
    }
    AgentProcess::start(&mut command)
}

/// Table calls between two readings of the proxy's counts.
fn calls(before: &BTreeMap<String, usize>, after: &BTreeMap<String, usize>) -> String {
    let mut parts: Vec<String> = after
        .iter()
        .filter_map(|(op, n)| {
            let d = n - before.get(op).copied().unwrap_or(0);
            (d > 0).then(|| format!("{d} {op}"))
        })
        .collect();
    if parts.is_empty() {
        parts.push("none".into());
    }
    parts.join(", ")
}

fn writes(before: &BTreeMap<String, usize>, after: &BTreeMap<String, usize>) -> usize {
    ["PutItem", "TransactWriteItems", "BatchWriteItem"]
        .iter()
        .map(|op| after.get(*op).unwrap_or(&0) - before.get(*op).unwrap_or(&0))
        .sum()
}

fn run(args: &BenchArgs) {
    tests::bench::require_moto();
    let seconds = args.number("--seconds", 3, 1);
    let concurrency = args.number("--concurrency", 16, 4) as usize;

    let world = AgentWorld::new(false, &[]);
    let moto = Moto::start();
    moto.create_agent_state_table(TABLE);
    let proxy = Mitm::start(&moto.endpoint());
    let files = agent(&world, &world.state_dir("files"), None);
    let table = agent(&world, &world.state_dir("table"), Some(&proxy.url));
    for a in [&files, &table] {
        wait_for("the activation", Duration::from_secs(30), || {
            (!a.get("/v1/license").1["installation"].is_null()).then_some(())
        });
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let check = |a: &AgentProcess| format!("{}/v1/entitlements/posts", a.url);
    rt.block_on(drive(get(check(&files)), concurrency, 1));
    rt.block_on(drive(get(check(&table)), concurrency, 1));

    println!("## The entitlement check, state in a directory beside state in a table");
    println!();
    println!("| measurement | requests/s | p50 | p99 | errors | table calls meanwhile |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let row = |name: &str, run: &tests::load::Run, calls: &str| {
        println!(
            "| {name} | {:.0} | {:.3} ms | {:.3} ms | {} | {calls} |",
            run.per_second(),
            run.percentile(0.50).as_secs_f64() * 1e3,
            run.percentile(0.99).as_secs_f64() * 1e3,
            run.errors
        );
    };
    let mut ratios = Vec::new();
    let mut checks = 0;
    let mut during = BTreeMap::new();
    for round in 1..=3 {
        let base = rt.block_on(drive(get(check(&files)), concurrency, seconds));
        row(&format!("state directory, round {round}"), &base, "-");
        let before = proxy.counts();
        let run = rt.block_on(drive(get(check(&table)), concurrency, seconds));
        let after = proxy.counts();
        row(
            &format!("state table, round {round}"),
            &run,
            &calls(&before, &after),
        );
        checks += run.requests;
        for (op, n) in &after {
            *during.entry(op.clone()).or_insert(0) += n - before.get(op).copied().unwrap_or(0);
        }
        ratios.push(run.per_second() / base.per_second());
    }
    ratios.sort_by(f64::total_cmp);
    let table_writes_in_checks = writes(&BTreeMap::new(), &during);
    println!();
    println!(
        "state table ÷ state directory (median round): {:.2}× (goal: the same within noise)",
        ratios[1]
    );
    println!(
        "table writes during {checks} checks: {table_writes_in_checks} (only the check-in rounds that fell in those seconds, {}; goal: none from the checks)",
        calls(&BTreeMap::new(), &during)
    );

    println!();
    println!("## What the table costs");
    println!();
    let round = || {
        // One whole check-in round: wait for the next one to start and end.
        let last = table.get("/v1/license").1["last_checkin"].clone();
        wait_for("a check-in", Duration::from_secs(30), || {
            (table.get("/v1/license").1["last_checkin"] != last).then_some(())
        });
        std::thread::sleep(Duration::from_millis(300));
    };
    round();
    let before = proxy.counts();
    round();
    let after = proxy.counts();
    println!(
        "- a check-in round with no usage: {} ({} write)",
        calls(&before, &after),
        writes(&before, &after)
    );
    let http = reqwest::Client::new();
    let usage = format!("{}/v1/usage", table.url);
    let post = |n: usize, parallel: usize| {
        let before = proxy.counts();
        rt.block_on(async {
            let mut tasks = Vec::new();
            for worker in 0..parallel {
                let (http, usage) = (http.clone(), usage.clone());
                tasks.push(tokio::spawn(async move {
                    for i in (worker..n).step_by(parallel) {
                        let answer = http
                            .post(&usage)
                            .json(&serde_json::json!({"dimension": "api-calls", "quantity": 1, "id": format!("b-{parallel}-{i}")}))
                            .send()
                            .await
                            .unwrap();
                        assert!(answer.status().is_success());
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        });
        let after = proxy.counts();
        let puts = after.get("PutItem").unwrap_or(&0) - before.get("PutItem").unwrap_or(&0);
        println!(
            "- {n} usage events, {parallel} at a time: {} ({:.2} writes per event)",
            calls(&before, &after),
            puts as f64 / n as f64
        );
    };
    post(200, 1);
    post(2000, concurrency);
    let before = proxy.counts();
    round();
    let after = proxy.counts();
    println!(
        "- the check-in round that seals them and sends them: {}",
        calls(&before, &after)
    );
    let state = moto
        .scan(TABLE)
        .into_iter()
        .find(|i| i["sk"]["S"] == "state")
        .unwrap();
    let bytes = state["body"]["S"].as_str().unwrap_or("").len();
    println!(
        "- the state item: {:.1} KB (a write of it is {} write units, a strongly consistent read {} read units)",
        bytes as f64 / 1024.0,
        bytes.div_ceil(1024),
        bytes.div_ceil(4096)
    );
}

fn main() -> ExitCode {
    tests::bench::main(
        "agent-state-bench",
        "the license agent's usage events with file state against DynamoDB state (moto), and the writes each costs",
        &[
            "--seconds N    seconds per measurement (3)",
            "--concurrency N    clients (16)",
        ],
        run,
    )
}
