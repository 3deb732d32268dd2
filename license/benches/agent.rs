//! What the license agent's in-process check costs (`Agent::check`: read lock, lifecycle gate,
//! clock read, feature search) against the bare feature check on the verified license
//! (`VerifiedLicense::is_feature_allowed`) in the same run.
//!
//! Goal: at least 10 million checks per second per core (100 ns or less each).
//!
//! `cargo bench -p license --bench agent` prints criterion's figures, then a ratio report from
//! interleaved rounds.

#![allow(
    clippy::expect_used,
    reason = "a benchmark with a broken fixture should stop loudly"
)]

use std::hint::black_box;

mod common;

use common::{median, time_per_op};
use criterion::Criterion;
use license::{Agent, Memory, UnixTime, VerifyOptions};

fn main() {
    let now = UnixTime::now();
    let (trusted, armored) = common::vendor_license(
        now.minus(86_400),
        br#"{"sub":"globex","aud":"serverless-blog","exp":4000000000,
            "features":["posts","users","export","sso","audit-log"]}"#,
    );
    let verified = trusted
        .verify_license(&armored, &VerifyOptions::at(now))
        .expect("verifies");
    let agent = Agent::new(trusted, &armored, Memory::default(), now).expect("agent");
    assert!(agent.check("sso", UnixTime::now()).is_ok());

    let mut c = Criterion::default().configure_from_args();
    {
        let mut group = c.benchmark_group("agent");
        group.bench_function("bare_feature_check", |b| {
            b.iter(|| verified.is_feature_allowed(black_box("sso"), now).is_ok())
        });
        group.bench_function("agent_check_with_clock", |b| {
            b.iter(|| agent.check(black_box("sso"), UnixTime::now()).is_ok())
        });
        group.finish();
    }
    c.final_summary();
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let (mut bare, mut full) = (Vec::new(), Vec::new());
    for _ in 0..31 {
        bare.push(time_per_op(200_000, || {
            black_box(verified.is_feature_allowed(black_box("sso"), now).is_ok());
        }));
        full.push(time_per_op(200_000, || {
            black_box(agent.check(black_box("sso"), UnixTime::now()).is_ok());
        }));
    }
    let (bare, full) = (median(bare), median(full));
    let per_second = 1.0 / full.as_secs_f64();
    println!();
    println!("ratio report (medians of 31 interleaved rounds, one core)");
    println!(
        "  bare feature check          {:>8.1} ns   (baseline)",
        bare.as_secs_f64() * 1e9
    );
    println!(
        "  Agent::check with the clock {:>8.1} ns   {:.2}× baseline; {:.1} M checks/s per core (goal ≥ 10 M: {})",
        full.as_secs_f64() * 1e9,
        full.as_secs_f64() / bare.as_secs_f64(),
        per_second / 1e6,
        if per_second >= 10e6 { "met" } else { "NOT met" }
    );
}
