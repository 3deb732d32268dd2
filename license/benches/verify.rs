//! What verifying a license costs, against a bare Ed25519 verification of the same bytes measured
//! in the same run, and what a cached entitlement check costs once the license is verified.
//!
//! Goals: full verification (armour, JWS, header, signature, strict claims, times) at most 1.3×
//! the bare signature check; a cached feature check under 100 ns.
//!
//! `cargo bench -p license --bench verify` prints criterion's figures, then a ratio report from
//! interleaved rounds (bare, full, bare, full, ...) so that both sides see the same machine state.

#![allow(
    clippy::expect_used,
    reason = "a benchmark with a broken fixture should stop loudly"
)]

use std::hint::black_box;
use std::time::Duration;

mod common;

use common::{median, time_per_op};
use criterion::Criterion;
use license::{TrustedKeyset, UnixTime, VerifyOptions};

struct Setup {
    armored: String,
    signing_input: Vec<u8>,
    payload: Vec<u8>,
    signature: Vec<u8>,
    public_key: license::PublicKey,
    trusted: TrustedKeyset,
    options: VerifyOptions,
}

fn setup() -> Setup {
    let now = UnixTime::parse("2026-11-26").unwrap_or(UnixTime::MAX);
    // A realistic license: features, a limit, a quota, bindings, a version range.
    let (trusted, armored) = common::vendor_license(
        now,
        br#"{"sub":"globex","aud":"serverless-blog","exp":1900000000,
            "features":["posts","users","export","sso","audit-log"],
            "aws_accounts":["123456789012","210987654321"],"regions":["eu-west-1","us-east-1"],
            "max_installations":3,"limits":{"seats":{"max":50,"overage":10}},
            "quotas":{"api-calls":{"amount":1000000,"period":"month"}},"versions":">=1.0.0, <2.0.0"}"#,
    );
    let compact = license::armor::dearmor(&armored).expect("armour");
    let (input, sig) = compact.rsplit_once('.').expect("jws");
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let signature = b64.decode(sig).expect("b64");
    let payload = b64
        .decode(input.split_once('.').expect("jws").1)
        .expect("b64");
    let kid = license::decode_unverified(&armored).expect("decodes").kid;
    let public_key = trusted.license_key(&kid).expect("key").public_key;
    Setup {
        armored,
        signing_input: input.as_bytes().to_vec(),
        payload,
        signature,
        public_key,
        trusted,
        options: VerifyOptions::at(now),
    }
}

fn main() {
    let s = setup();
    let verified = s
        .trusted
        .verify_license(&s.armored, &s.options)
        .expect("verifies");
    let now = s.options.now;
    assert!(s.public_key.verify(&s.signing_input, &s.signature));

    let mut c = Criterion::default().configure_from_args();
    {
        let mut group = c.benchmark_group("license");
        group.bench_function("bare_ed25519_verify", |b| {
            b.iter(|| {
                s.public_key
                    .verify(black_box(&s.signing_input), black_box(&s.signature))
            })
        });
        group.bench_function("full_verify", |b| {
            b.iter(|| {
                s.trusted
                    .verify_license(black_box(&s.armored), &s.options)
                    .is_ok()
            })
        });
        // Stages of the full verification, to see where its overhead goes.
        group.bench_function("stage_dearmor", |b| {
            b.iter(|| license::armor::dearmor(black_box(&s.armored)).is_ok())
        });
        group.bench_function("stage_claims_parse", |b| {
            b.iter(|| license::Claims::from_json(black_box(&s.payload)).is_ok())
        });
        group.bench_function("cached_feature_check", |b| {
            b.iter(|| verified.is_feature_allowed(black_box("sso"), now).is_ok())
        });
        group.bench_function("cached_limit_check", |b| {
            b.iter(|| {
                verified
                    .limit(black_box("seats"), black_box(42), now)
                    .is_ok()
            })
        });
        group.finish();
    }
    c.final_summary();

    // The ratio report: interleaved rounds, medians. Skipped under `cargo test --benches`.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let (mut bare, mut full, mut cached) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..31 {
        bare.push(time_per_op(400, || {
            black_box(
                s.public_key
                    .verify(black_box(&s.signing_input), black_box(&s.signature)),
            );
        }));
        full.push(time_per_op(400, || {
            black_box(
                s.trusted
                    .verify_license(black_box(&s.armored), &s.options)
                    .is_ok(),
            );
        }));
        cached.push(time_per_op(200_000, || {
            black_box(verified.is_feature_allowed(black_box("sso"), now).is_ok());
        }));
    }
    let (bare, full, cached) = (median(bare), median(full), median(cached));
    let ratio = full.as_secs_f64() / bare.as_secs_f64();
    println!();
    println!(
        "ratio report (medians of 31 interleaved rounds, {} byte license)",
        s.armored.len()
    );
    println!(
        "  bare Ed25519 verify         {:>10.2} µs   (baseline)",
        bare.as_secs_f64() * 1e6
    );
    println!(
        "  full license verification   {:>10.2} µs   {ratio:.3}× baseline (goal ≤ 1.3×: {})",
        full.as_secs_f64() * 1e6,
        if ratio <= 1.3 { "met" } else { "NOT met" }
    );
    println!(
        "  cached feature check        {:>10.1} ns   {:.5}× baseline (goal < 100 ns: {})",
        cached.as_secs_f64() * 1e9,
        cached.as_secs_f64() / bare.as_secs_f64(),
        if cached < Duration::from_nanos(100) {
            "met"
        } else {
            "NOT met"
        }
    );
}
