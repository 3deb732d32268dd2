//! Metering that loses nothing and counts nothing twice: the agent is killed with SIGKILL while
//! it takes 10,000 usage events, restarted, and the events it did not acknowledge are sent again
//! with their ids; the portal's totals then equal exactly what the callers sent. Uploading the
//! same records again changes nothing, and a record changed or deleted on the way is refused.
//! On SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use license::SigningKey;
use license::checkin::{CHECKIN, Checkin, RecordBody, Signed, UsageRecord, fresh_nonce};
use serde_json::{Value, json};
use tests::agent::{AgentWorld, http, wait_for};

const EVENTS: usize = 10_000;
const WORKERS: usize = 16;
const LIMIT: Duration = Duration::from_secs(60);

fn quantity(i: usize) -> u64 {
    (i % 5) as u64 + 1
}

/// Sends events `todo` to the agent at `url` from [`WORKERS`] tasks; returns the acknowledged
/// indices and how many of them were answered as duplicates.
fn send(url: &str, todo: Vec<usize>, acked: &Arc<Mutex<HashSet<usize>>>) -> usize {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let todo = Arc::new(todo);
    let next = Arc::new(AtomicUsize::new(0));
    let duplicates = Arc::new(AtomicUsize::new(0));
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let mut tasks = Vec::new();
        for _ in 0..WORKERS {
            let (http, todo, next, acked, duplicates) = (
                http.clone(),
                Arc::clone(&todo),
                Arc::clone(&next),
                Arc::clone(acked),
                Arc::clone(&duplicates),
            );
            let url = format!("{url}/v1/usage");
            tasks.push(tokio::spawn(async move {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = todo.get(k) else { break };
                    let body = json!({"dimension": "api-calls", "quantity": quantity(i), "id": format!("ev-{i}")});
                    let Ok(response) = http.post(&url).json(&body).send().await else {
                        continue;
                    };
                    if response.status() != 200 {
                        continue;
                    }
                    let Ok(answer) = response.json::<Value>().await else {
                        continue;
                    };
                    if answer["accepted"] == true {
                        if answer["duplicate"] == true {
                            duplicates.fetch_add(1, Ordering::Relaxed);
                        }
                        acked.lock().unwrap().insert(i);
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
    duplicates.load(Ordering::Relaxed)
}

fn total(world: &AgentWorld) -> i64 {
    world.usage()["usage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["dimension"] == "api-calls")
        .map_or(0, |d| d["total"].as_i64().unwrap())
}

fn uploaded(agent: &tests::agent::AgentProcess) -> bool {
    let (_, outbox) = agent.get("/v1/outbox");
    outbox["pending"]["records"] == json!([]) && outbox["pending"]["unsealed_events"] == json!([])
}

fn kill_9_while_metering(postgres: bool) {
    let world = AgentWorld::new(postgres, &[]);
    let state = world.state_dir("meter");
    let agent = world.agent(&state, "blog-prod", 1);
    let acked = Arc::new(Mutex::new(HashSet::new()));

    // SIGKILL once 4,000 events are acknowledged, with up to 16 more in flight.
    let pid = agent.pid();
    let watch = Arc::clone(&acked);
    let killer = std::thread::spawn(move || {
        wait_for("4,000 acknowledged events", LIMIT, || {
            (watch.lock().unwrap().len() >= 4000).then_some(())
        });
        std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
    });
    send(&agent.url, (0..EVENTS).collect(), &acked);
    killer.join().unwrap();
    drop(agent);
    let first_run = acked.lock().unwrap().len();
    assert!(
        (4000..EVENTS).contains(&first_run),
        "killed after {first_run} events"
    );

    // Restart on the same state and send what was not acknowledged, with the same ids.
    let agent = world.agent(&state, "blog-prod", 1);
    let missing: Vec<usize> = (0..EVENTS)
        .filter(|i| !acked.lock().unwrap().contains(i))
        .collect();
    send(&agent.url, missing, &acked);
    assert_eq!(
        acked.lock().unwrap().len(),
        EVENTS,
        "every event acknowledged"
    );

    wait_for("every record uploaded", LIMIT, || {
        uploaded(&agent).then_some(())
    });
    let expected: u64 = (0..EVENTS).map(quantity).sum();
    assert_eq!(total(&world), i64::try_from(expected).unwrap());

    // Uploading the same records again changes nothing.
    let (_, outbox) = agent.get("/v1/outbox");
    let sent = outbox["sent"].as_array().unwrap();
    let with_records: Vec<&Value> = sent
        .iter()
        .filter(|s| {
            s["payload"]["records"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        })
        .collect();
    assert!(!with_records.is_empty());
    for entry in &with_records {
        let body: Value = serde_json::from_str(entry["body"].as_str().unwrap()).unwrap();
        let (status, answer) = http::post_json(entry["url"].as_str().unwrap(), &body);
        assert_eq!(status, 200, "{answer}");
    }
    assert_eq!(total(&world), i64::try_from(expected).unwrap());

    // With the agent's own key, a record changed after it was sent, and one that skips a
    // deleted predecessor, are both refused.
    let key =
        SigningKey::from_pem(&std::fs::read_to_string(state.join("installation-key.pem")).unwrap())
            .unwrap();
    let last: UsageRecord = serde_json::from_value(
        with_records.last().unwrap()["payload"]["records"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone(),
    )
    .unwrap();
    let checkin_url = format!("{}/api/v1/installations/checkin", world.portal.url);
    let post = |record: UsageRecord| {
        let checkin = Checkin {
            account_proof: None,
            agent: last.body.agent.clone(),
            license: last.body.license.clone(),
            license_seq: 1,
            version: "1.0.0".into(),
            nonce: fresh_nonce().unwrap(),
            time: license::UnixTime::now(),
            records: vec![record],
            reports: vec![],
        };
        let signed = Signed::sign(CHECKIN, &checkin, &key).unwrap();
        http::post_json(&checkin_url, &serde_json::to_value(&signed).unwrap())
    };
    let inflated = UsageRecord::seal(
        RecordBody {
            quantity: last.body.quantity + 1000,
            ..last.body.clone()
        },
        &key,
    )
    .unwrap();
    let (status, answer) = post(inflated);
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .contains("other contents"),
        "{answer}"
    );
    let n = last.body.n + 2;
    let skipping = UsageRecord::seal(
        RecordBody {
            id: format!("{}:{n}", last.body.agent),
            n,
            prev: last.hash.clone(),
            ..last.body.clone()
        },
        &key,
    )
    .unwrap();
    let (status, answer) = post(skipping);
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["detail"].as_str().unwrap().contains("missing"),
        "{answer}"
    );
    // A record signed by someone else's key is refused before anything is stored.
    let stranger = SigningKey::generate().unwrap();
    let forged = UsageRecord::seal(
        RecordBody {
            id: format!("{}:{}", last.body.agent, last.body.n + 1),
            n: last.body.n + 1,
            prev: last.hash.clone(),
            ..last.body.clone()
        },
        &stranger,
    )
    .unwrap();
    let (status, answer) = post(forged);
    assert_eq!(status, 422, "{answer}");
    // The vendor sees both refusals in the audit log.
    let audit: Value =
        serde_json::from_str(&world.vendor(&["audit", "list", "--last", "50", "--output", "json"]))
            .unwrap();
    let refused = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "usage.refuse")
        .count();
    assert_eq!(refused, 2, "{audit}");
    assert_eq!(total(&world), i64::try_from(expected).unwrap());
    // The vendor console draws it: one chart for the dimension, whose description states the
    // exact total (today's bar holds it all).
    let page =
        tests::portal::console_page(&world.portal.url, &world.token, "/console/customers/globex");
    assert_eq!(page.matches("<svg").count(), 1, "{page}");
    assert!(
        page.contains(&format!("{expected} api-calls in all")),
        "the usage chart does not state {expected} api-calls: {page}"
    );
}

#[test]
fn kill_9_during_10000_usage_events_loses_nothing_and_counts_nothing_twice_on_sqlite() {
    kill_9_while_metering(false);
}

#[test]
fn kill_9_during_10000_usage_events_loses_nothing_and_counts_nothing_twice_on_postgres() {
    kill_9_while_metering(true);
}
