//! The license agent's state in Lambda: execution environments come and go, each with its own
//! `/tmp`, so the agent keeps its state in the DynamoDB table the stack declares (moto's here).
//! Each environment is a license agent started as Lambda starts an extension, with the Lambda
//! Extensions API on loopback; the portal sits behind a man in the middle that can take it down.
//!
//! The attacks: a customer who wants a revoked license back cold-starts every environment
//! while keeping the portal away; and Lambda itself, recycling environments while usage is
//! metered and the portal is down, must not make the vendor lose or double a single event.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tests::agent::{AgentWorld, wait_for};
use tests::lambda::{Environment, Function};
use tests::mitm::Mitm;
use tests::moto::Moto;

const TABLE: &str = "blog-prod-LicenseAgentState";
const LIMIT: Duration = Duration::from_secs(60);

/// The function, and the way to its table: moto, one request at a time (DynamoDB applies
/// conditional writes atomically; moto's threads do not).
fn function(world: &AgentWorld, portal: &Mitm, moto: &Moto) -> (Function, Mitm) {
    moto.create_agent_state_table(TABLE);
    let dynamodb = Mitm::serial(&moto.endpoint());
    let function = Function {
        license: world.license.clone(),
        keyset: world.keyset.clone(),
        portal: portal.url.clone(),
        stack: "blog-prod".into(),
        table: Some((TABLE.into(), dynamodb.url.clone())),
        interval: 1,
    };
    (function, dynamodb)
}

fn activated(env: &Environment) {
    wait_for("the activation", LIMIT, || {
        (!env.agent.get("/v1/license").1["installation"].is_null()).then_some(())
    });
}

/// The items of the state table whose sort key starts with `prefix`.
fn items(moto: &Moto, prefix: &str) -> usize {
    moto.scan(TABLE)
        .iter()
        .filter(|i| i["sk"]["S"].as_str().unwrap_or("").starts_with(prefix))
        .count()
}

#[test]
fn revoked_license_with_the_portal_unreachable_stays_restricted_in_every_cold_started_environment()
{
    let world = AgentWorld::new(false, &[]);
    let moto = Moto::start();
    let portal = Mitm::start(&world.portal.url);
    let (function, _dynamodb) = function(&world, &portal, &moto);
    let tmp = |n: usize| world.dir.path().join(format!("env-{n}"));

    let mut first = function.cold_start(&tmp(1));
    activated(&first);
    assert_eq!(first.agent.get("/v1/entitlements/posts").0, 200);
    world.vendor(&["license", "revoke", &world.license_id]);
    wait_for("the revocation", LIMIT, || {
        let (status, body) = first.agent.get("/v1/entitlements/posts");
        (status == 403 && body["code"] == "revoked").then_some(())
    });
    // The round that heard it has saved it in the table.
    wait_for("the revocation in the table", LIMIT, || {
        moto.scan(TABLE)
            .iter()
            .any(|i| {
                i["sk"]["S"] == "state"
                    && i["body"]["S"]
                        .as_str()
                        .is_some_and(|b| b.contains(r#""portal_state":"revoked""#))
            })
            .then_some(())
    });

    // The customer keeps the portal away and has Lambda throw every environment out (killed
    // frozen, /tmp gone with it), then cold-starts new ones, several at once.
    portal.set_down(true);
    first.agent.kill9();
    std::fs::remove_dir_all(&first.tmp).unwrap();
    let fresh: Vec<Environment> = (2..=4).map(|n| function.cold_start(&tmp(n))).collect();
    for env in &fresh {
        let (status, body) = env.agent.get("/v1/entitlements/posts");
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["code"], "revoked", "{body}");
        assert_eq!(body["state"], "RESTRICTED", "{body}");
    }
    // Rounds with the portal down change nothing.
    std::thread::sleep(Duration::from_millis(2500));
    for env in &fresh {
        let (status, body) = env.agent.get("/v1/entitlements/posts");
        assert_eq!((status, &body["code"]), (403, &json!("revoked")), "{body}");
        assert!(
            env.agent.get("/v1/license").1["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("unreachable")),
            "the portal is down"
        );
    }
    // Every environment is the same agent: one installation key for the installation.
    let agents: Vec<Value> = fresh
        .iter()
        .map(|e| e.agent.get("/v1/license").1["agent"].clone())
        .collect();
    assert!(agents.iter().all(|a| *a == agents[0]), "{agents:?}");
}

/// One usage event of the test: its id, dimension and quantity.
fn event(i: usize) -> Value {
    let dimension = if i.is_multiple_of(3) {
        "gb-processed"
    } else {
        "api-calls"
    };
    json!({"id": format!("ev-{i}"), "dimension": dimension, "quantity": i % 13 + 1})
}

#[test]
fn ten_thousand_usage_events_across_three_recycled_environments_reach_the_portal_exactly_once() {
    const EVENTS: usize = 10_000;
    const SLOTS: usize = 3;
    const WORKERS: usize = 4;
    let world = AgentWorld::new(false, &[]);
    let moto = Moto::start();
    let portal = Mitm::start(&world.portal.url);
    let (function, _dynamodb) = function(&world, &portal, &moto);
    let tmp = |name: &str| world.dir.path().join(name);

    let mut envs: Vec<Environment> = (0..SLOTS)
        .map(|slot| function.cold_start(&tmp(&format!("slot-{slot}-0"))))
        .collect();
    activated(&envs[0]);
    let urls: Arc<Vec<Mutex<String>>> = Arc::new(
        envs.iter()
            .map(|e| Mutex::new(e.agent.url.clone()))
            .collect(),
    );

    // Functions in the three environments meter concurrently; an event whose answer did not
    // come (its environment was killed under it) is sent again, with the same id, to whatever
    // environment Lambda runs next in that slot.
    let done = Arc::new(AtomicUsize::new(0));
    let retried = Arc::new(AtomicUsize::new(0));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let posters: Vec<_> = (0..SLOTS * WORKERS)
        .map(|worker| {
            let (urls, done, retried, http) = (
                Arc::clone(&urls),
                Arc::clone(&done),
                Arc::clone(&retried),
                http.clone(),
            );
            runtime.spawn(async move {
                let slot = worker / WORKERS;
                for i in (worker..EVENTS).step_by(SLOTS * WORKERS) {
                    loop {
                        let url = urls[slot].lock().unwrap().clone();
                        let sent = http
                            .post(format!("{url}/v1/usage"))
                            .json(&event(i))
                            .send()
                            .await;
                        if let Ok(answer) = sent
                            && answer.status() == 200
                        {
                            break;
                        }
                        retried.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let reached = |n: usize| {
        wait_for(
            &format!("{n} events acknowledged"),
            Duration::from_secs(300),
            || (done.load(Ordering::Relaxed) >= n).then_some(()),
        );
    };

    reached(EVENTS / 5);
    portal.set_down(true);
    reached(EVENTS * 2 / 5);
    // Lambda kills slot 0's environment (no SHUTDOWN, /tmp gone) and cold-starts another.
    envs[0].agent.kill9();
    std::fs::remove_dir_all(&envs[0].tmp).unwrap();
    envs[0] = function.cold_start(&tmp("slot-0-1"));
    *urls[0].lock().unwrap() = envs[0].agent.url.clone();
    reached(EVENTS * 3 / 5);
    // Slot 1's environment is spun down the polite way: SHUTDOWN, with the portal still down.
    envs[1].api.shutdown();
    let exit = envs[1].agent.wait();
    assert!(exit.success(), "{exit:?}");
    std::fs::remove_dir_all(&envs[1].tmp).unwrap();
    envs[1] = function.cold_start(&tmp("slot-1-1"));
    *urls[1].lock().unwrap() = envs[1].agent.url.clone();
    reached(EVENTS * 4 / 5);
    portal.set_down(false);
    for poster in posters {
        runtime.block_on(poster).unwrap();
    }

    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..EVENTS {
        let e = event(i);
        *expected
            .entry(e["dimension"].as_str().unwrap().to_owned())
            .or_default() += e["quantity"].as_u64().unwrap();
    }
    let totals = || -> BTreeMap<String, u64> {
        world.usage()["usage"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["dimension"].as_str().unwrap().to_owned(),
                    d["total"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let mut seen = BTreeMap::new();
    let arrived = (0..1200).any(|_| {
        seen = totals();
        if seen == expected {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
        false
    });
    let logs: Vec<String> = envs
        .iter()
        .map(|e| {
            let log = e.agent.log.lock().unwrap().clone();
            let lines: Vec<&str> = log.lines().collect();
            lines[lines.len().saturating_sub(15)..].join("\n")
        })
        .collect();
    assert!(
        arrived,
        "{}\nthe portal holds {seen:?}, the functions metered {expected:?} ({} posts retried)",
        logs.join("\n---\n"),
        retried.load(Ordering::Relaxed)
    );
    // Nothing more arrives later (no event counted twice), and the table keeps nothing the
    // portal has not got: no journal batch left, no record unacknowledged.
    wait_for("the table to empty", LIMIT, || {
        (items(&moto, "jrn#") == 0 && items(&moto, "rec#") == 0).then_some(())
    });
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(totals(), expected);
}
