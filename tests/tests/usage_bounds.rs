//! A customer with root on their own account holds the agent's installation key, so it can sign
//! any usage record and check-in it likes. Whatever it signs, the portal answers with a 4xx and
//! keeps serving usage: quantities are bounded per record and per (license, dimension, hour),
//! strings are bounded, and every sum is formed with checked or saturating arithmetic. On SQLite
//! and PostgreSQL, against a real portal process.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use license::checkin::{MAX_HOUR_QUANTITY, MAX_RECORD_QUANTITY, TamperReport};
use tests::agent::{AgentWorld, SignedAgent};

fn usage_that_would_overflow_is_refused_with_a_4xx(postgres: bool) {
    let world = AgentWorld::new(postgres, &[]);
    let mut rogue = SignedAgent::activate(&world);
    assert_eq!(rogue.send(&[5]).0, 200);

    // One record past the per-record bound, and records whose sum overflows 64 bits.
    for attack in [
        vec![MAX_RECORD_QUANTITY + 1],
        vec![i64::MAX as u64, i64::MAX as u64],
    ] {
        let (status, answer) = rogue.send(&attack);
        assert_eq!(status, 422, "{attack:?}: {answer}");
        assert!(
            answer["detail"].as_str().unwrap().contains("units"),
            "{answer}"
        );
    }
    // Fill the hour up to its bound with records within the per-record bound.
    let per_hour = MAX_HOUR_QUANTITY / MAX_RECORD_QUANTITY;
    let mut left = per_hour - 1;
    while left > 0 {
        let batch = left.min(500);
        let mut quantities = vec![MAX_RECORD_QUANTITY; batch as usize];
        if left == per_hour - 1 {
            quantities[0] = MAX_RECORD_QUANTITY - 5;
        }
        let (status, answer) = rogue.send(&quantities);
        assert_eq!(status, 200, "{answer}");
        left -= batch;
    }
    let (status, answer) = rogue.send(&[MAX_RECORD_QUANTITY]);
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = rogue.send(&[1]);
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["detail"].as_str().unwrap().contains("past"),
        "{answer}"
    );

    // Strings a check-in carries are bounded too.
    let (status, _) = rogue.send_with(&[], &"9".repeat(10_000), vec![]);
    assert_eq!(status, 422);
    let long = TamperReport {
        at: license::UnixTime::now(),
        code: "x".into(),
        detail: "y".repeat(100_000),
    };
    assert_eq!(rogue.send_with(&[], "1.0.0", vec![long]).0, 422);

    // The vendor still reads the usage, exactly.
    let usage = world.usage();
    assert_eq!(
        usage["usage"][0]["total"].as_u64(),
        Some(MAX_HOUR_QUANTITY),
        "{usage}"
    );
    let customer = world.customer_usage();
    assert_eq!(
        customer["totals"][0]["total"].as_u64(),
        Some(MAX_HOUR_QUANTITY)
    );
}

#[test]
fn usage_that_would_overflow_is_refused_with_a_4xx_on_sqlite() {
    usage_that_would_overflow_is_refused_with_a_4xx(false);
}

#[test]
fn usage_that_would_overflow_is_refused_with_a_4xx_on_postgres() {
    usage_that_would_overflow_is_refused_with_a_4xx(true);
}
