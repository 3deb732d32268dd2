//! `proof-bench`: how fast the portal checks account proofs. It starts moto (the STS the proofs
//! go to) and a release `vendor-portal serve` on SQLite, signs proofs over portal nonces ahead
//! of the measurement (signing is the caller's cost, not the portal's), and measures in one run,
//! in alternating rounds:
//!
//! - `GET /healthz`, the trivial route of the same portal;
//! - `POST /api/v1/proofs`: check the proof, use its nonce up, send it to STS, read the answer,
//!   audit it;
//! - the same GetCallerIdentity sent straight to moto's STS: the floor a proof cannot beat.
//!
//! Proofs per second are reported as ratios to both, the median of three rounds.
//!
//! ```text
//! cargo build --release --workspace && target/release/proof-bench [--seconds 5] [--concurrency 8]
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark binary"
)]

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use aws_credential_types::Credentials;
use license::proof::{self, AccountProof};
use serde_json::json;
use tests::bench::BenchArgs;
use tests::load::{MakeRequest, drive};
use tests::portal::{PortalSetup, seed_catalog};

const REGION: &str = "us-east-1";

/// `count` proofs over fresh portal nonces.
async fn proofs(
    http: &reqwest::Client,
    portal: &str,
    sts: &str,
    count: usize,
) -> Vec<AccountProof> {
    let credentials = Credentials::new("testing", "testing", None, None, "bench");
    let url = proof::endpoint_for(REGION, Some(sts));
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let answer: serde_json::Value = http
            .post(format!("{portal}/api/v1/proofs/nonce"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let nonce = answer["nonce"].as_str().unwrap();
        out.push(
            proof::sign(
                credentials.clone(),
                REGION,
                &url,
                Some(nonce),
                SystemTime::now(),
            )
            .unwrap(),
        );
    }
    out
}

fn run(args: &BenchArgs) {
    tests::bench::require_moto();
    let seconds = args.number("--seconds", 5, 1);
    let concurrency = args.number("--concurrency", 8, 2) as usize;
    // Enough signed proofs for three rounds at a rate well above what moto answers.
    let supply = args.number("--proofs", 6000, 800) as usize;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let moto = tests::moto::Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut setup = PortalSetup::new(dir.path(), false);
    setup.extra = vec!["--proof-nonces-per-minute".into(), "0".into()];
    setup.env = vec![
        ("CONSIGN_LOG".into(), "warn".into()),
        ("CONSIGN_STS_ENDPOINT".into(), moto.endpoint()),
    ];
    let token = setup.create_vendor("acme");
    let portal = setup.start();
    let http = reqwest::Client::new();
    let (license, signed) = rt.block_on(async {
        seed_catalog(&http, &portal.url, &token).await;
        let issued: serde_json::Value = http
            .post(format!("{}/api/v1/licenses", portal.url))
            .bearer_auth(&token)
            .json(&json!({"customer": "globex", "app": "blog", "plan": "standard"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let license = issued["license"]["license"]
            .as_str()
            .or(issued["license"].as_str())
            .unwrap()
            .to_owned();
        (
            license,
            proofs(&http, &portal.url, &moto.endpoint(), supply).await,
        )
    });
    println!(
        "proof-bench: {seconds} s per measurement, {concurrency} concurrent keep-alive clients on loopback, {} proofs signed beforehand",
        signed.len()
    );
    println!();
    println!("| measurement | requests/s | p50 | p99 | errors |");
    println!("|---|---:|---:|---:|---:|");
    let signed = Arc::new(signed);
    let next = Arc::new(AtomicUsize::new(0));
    let license = Arc::new(license);
    let (portal_url, sts_url) = (Arc::new(portal.url.clone()), Arc::new(moto.endpoint()));
    let healthz: MakeRequest = {
        let url = Arc::clone(&portal_url);
        Arc::new(move |http, _, _| http.get(format!("{url}/healthz")))
    };
    let prove: MakeRequest = {
        let (url, signed, next, license) = (
            Arc::clone(&portal_url),
            Arc::clone(&signed),
            Arc::clone(&next),
            Arc::clone(&license),
        );
        Arc::new(move |http, _, _| {
            let i = next.fetch_add(1, Ordering::Relaxed) % signed.len();
            http.post(format!("{url}/api/v1/proofs"))
                .json(&json!({"license": license.as_str(), "proof": signed[i]}))
        })
    };
    let direct: MakeRequest = {
        let (url, signed) = (Arc::clone(&sts_url), Arc::clone(&signed));
        Arc::new(move |http, _, n| {
            let p = &signed[usize::try_from(n).unwrap_or(0) % signed.len()];
            let mut request = http.post(format!("{url}/")).body(proof::BODY);
            for (k, v) in &p.headers {
                request = request.header(k, v);
            }
            request
        })
    };
    let row = |name: &str, make: &MakeRequest| {
        let run = rt.block_on(drive(Arc::clone(make), concurrency, seconds));
        println!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms | {} |",
            run.per_second(),
            run.percentile(0.50).as_secs_f64() * 1e3,
            run.percentile(0.99).as_secs_f64() * 1e3,
            run.errors
        );
        run.per_second()
    };
    let (mut to_trivial, mut to_sts) = (Vec::new(), Vec::new());
    for round in 1..=3 {
        let trivial = row(
            &format!("GET /healthz (trivial route), round {round}"),
            &healthz,
        );
        let sts = row(
            &format!("GetCallerIdentity straight to moto, round {round}"),
            &direct,
        );
        let proofs = row(&format!("POST /api/v1/proofs, round {round}"), &prove);
        to_trivial.push(proofs / trivial);
        to_sts.push(proofs / sts);
    }
    let used = next.load(Ordering::Relaxed);
    if used > signed.len() {
        println!(
            "\n({used} proofs were asked for and {} signed: the rest were replays, refused and counted as errors; raise --proofs)",
            signed.len()
        );
    }
    to_trivial.sort_by(f64::total_cmp);
    to_sts.sort_by(f64::total_cmp);
    println!();
    println!(
        "proofs verified at {:.3}x the trivial route's throughput and {:.2}x STS's own (moto's) GetCallerIdentity rate (medians of 3 rounds)",
        to_trivial[1], to_sts[1]
    );
}

fn main() -> ExitCode {
    tests::bench::main(
        "proof-bench",
        "account proofs verified per second against moto's STS, beside /healthz and STS itself (use a release build: cargo build --release --workspace)",
        &[
            "--seconds N    seconds per measurement (5)",
            "--concurrency N    keep-alive clients (8)",
            "--proofs N    proofs signed beforehand (6000)",
        ],
        run,
    )
}
