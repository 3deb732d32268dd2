//! A customer with root on their own account holds the agent's installation key, so it can sign
//! any usage record and check-in it likes. Whatever it signs, the portal answers with a 4xx and
//! keeps serving usage: quantities are bounded per record and per (license, dimension, hour),
//! strings are bounded, and every sum is formed with checked or saturating arithmetic. On SQLite
//! and PostgreSQL, against a real portal process.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use license::SigningKey;
use license::checkin::{
    ACTIVATION, Activation, CHECKIN, Checkin, GENESIS, MAX_HOUR_QUANTITY, MAX_RECORD_QUANTITY,
    Placement, RecordBody, Signed, TamperReport, UsageRecord, fresh_nonce,
};
use serde_json::Value;
use tests::agent::{AgentWorld, http};

/// An agent of the customer's own making: it holds its key and signs what it wants.
struct RogueAgent {
    key: SigningKey,
    agent: String,
    license: license::claims::LicenseId,
    n: u64,
    head: String,
    url: String,
    /// The hour every record is in (fixed, so a test straddling an hour still fills one).
    hour: u64,
}

impl RogueAgent {
    fn activate(world: &AgentWorld) -> Self {
        let key = SigningKey::generate().unwrap();
        let activation = Activation {
            account_proof: None,
            license: std::fs::read_to_string(&world.license).unwrap(),
            public_key: key.public_key(),
            placement: Placement {
                aws_account: "123456789012".into(),
                region: "eu-west-1".into(),
                stack: "blog".into(),
                version: "1.0.0".into(),
            },
            nonce: fresh_nonce().unwrap(),
            time: license::UnixTime::now(),
        };
        let signed = Signed::sign(ACTIVATION, &activation, &key).unwrap();
        let (status, answer) = http::post_json(
            &format!("{}/api/v1/installations", world.portal.url),
            &serde_json::to_value(&signed).unwrap(),
        );
        assert_eq!(status, 200, "{answer}");
        Self {
            key,
            agent: answer["agent"].as_str().unwrap().to_owned(),
            license: world.license_id.parse().unwrap(),
            n: 0,
            head: GENESIS.to_owned(),
            url: format!("{}/api/v1/installations/checkin", world.portal.url),
            hour: {
                let now = license::UnixTime::now().as_secs();
                now - now % 3600
            },
        }
    }

    /// Record `n` after `prev`: `quantity` units of api-calls in the agent's hour.
    fn record(&self, n: u64, prev: &str, quantity: u64) -> UsageRecord {
        UsageRecord::seal(
            RecordBody {
                id: format!("{}:{n}", self.agent),
                agent: self.agent.clone(),
                license: self.license.clone(),
                n,
                dimension: "api-calls".into(),
                hour: license::UnixTime::from_secs(self.hour).unwrap(),
                quantity,
                events: 1,
                prev: prev.to_owned(),
            },
            &self.key,
        )
        .unwrap()
    }

    /// Checks in `quantities` as the next records (the chain advances only when accepted).
    fn send(&mut self, quantities: &[u64]) -> (u16, Value) {
        self.send_with(quantities, "1.0.0", vec![])
    }

    fn send_with(
        &mut self,
        quantities: &[u64],
        version: &str,
        reports: Vec<TamperReport>,
    ) -> (u16, Value) {
        let (mut n, mut head) = (self.n, self.head.clone());
        let mut records = Vec::new();
        for q in quantities {
            n += 1;
            let record = self.record(n, &head, *q);
            head.clone_from(&record.hash);
            records.push(record);
        }
        let checkin = Checkin {
            account_proof: None,
            agent: self.agent.clone(),
            license: self.license.clone(),
            license_seq: 1,
            version: version.into(),
            nonce: fresh_nonce().unwrap(),
            time: license::UnixTime::now(),
            records,
            reports,
        };
        let signed = Signed::sign(CHECKIN, &checkin, &self.key).unwrap();
        let (status, answer) = http::post_json(&self.url, &serde_json::to_value(&signed).unwrap());
        if status == 200 {
            (self.n, self.head) = (n, head);
        }
        (status, answer)
    }
}

fn usage_that_would_overflow_is_refused_with_a_4xx(postgres: bool) {
    let world = AgentWorld::new(postgres, &[]);
    let mut rogue = RogueAgent::activate(&world);
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
