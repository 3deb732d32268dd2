//! Crash safety: portals are killed with SIGKILL in the middle of concurrent license issuance and
//! renewals, then restarted on the same database. No acknowledged license is lost, no `seq` is
//! acknowledged twice, every license has its audit entry and `vendor-portal audit verify` finds
//! the chain unbroken. On SQLite with one process, and on PostgreSQL with two processes sharing
//! the database (killed one after the other).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tests::portal::{PortalProcess, PortalSetup, seed_catalog};

#[derive(Default)]
struct Acked {
    issued: BTreeSet<String>,
    renew_seqs: Vec<i64>,
}

async fn hammer(
    urls: Vec<String>,
    token: String,
    renew_id: String,
    acked: Arc<Mutex<Acked>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for worker in 0..8usize {
        let (http, token, urls, acked, stop, renew_id) = (
            http.clone(),
            token.clone(),
            urls.clone(),
            acked.clone(),
            stop.clone(),
            renew_id.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let url = &urls[(worker + n) % urls.len()];
                let renew = worker % 4 == 3;
                let request = if renew {
                    http.post(format!("{url}/api/v1/licenses/{renew_id}/renew"))
                        .json(&json!({}))
                } else {
                    http.post(format!("{url}/api/v1/licenses"))
                        .json(&json!({"customer": "globex", "app": "blog", "plan": "standard"}))
                };
                let Ok(response) = request.bearer_auth(&token).send().await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let status = response.status().as_u16();
                let Ok(body) = response.json::<Value>().await else {
                    continue;
                };
                if renew && status == 200 {
                    acked
                        .lock()
                        .unwrap()
                        .renew_seqs
                        .push(body["seq"].as_i64().unwrap());
                } else if status == 201 {
                    acked
                        .lock()
                        .unwrap()
                        .issued
                        .insert(body["id"].as_str().unwrap().to_owned());
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

fn crash_and_recover(postgres: bool, processes: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = PortalSetup::new(dir.path(), postgres);
    setup.extra = vec!["--license-writes-per-minute".into(), "0".into()];
    let token = setup.create_vendor("acme");
    let mut portals: Vec<PortalProcess> = (0..processes).map(|_| setup.start()).collect();
    let urls: Vec<String> = portals.iter().map(|p| p.url.clone()).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    let renew_id = rt.block_on(async {
        seed_catalog(&http, &urls[0], &token).await;
        let r = http
            .post(format!("{}/api/v1/licenses", urls[0]))
            .bearer_auth(&token)
            .json(&json!({"customer": "globex", "app": "blog", "plan": "standard"}))
            .send()
            .await
            .unwrap();
        r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    });

    let acked = Arc::new(Mutex::new(Acked::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = rt.spawn(hammer(
        urls.clone(),
        token.clone(),
        renew_id.clone(),
        acked.clone(),
        stop.clone(),
    ));
    // Let the load build up, then kill each process in turn with SIGKILL while it is busy.
    for portal in &mut portals {
        std::thread::sleep(Duration::from_millis(1500));
        portal.kill9();
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    rt.block_on(load).unwrap();
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    eprintln!(
        "acknowledged {} issuances and {} renewals before the kills",
        acked.issued.len(),
        acked.renew_seqs.len()
    );
    assert!(
        acked.issued.len() > 20,
        "the load issued only {} licenses before the kill",
        acked.issued.len()
    );

    // Restart on the same database.
    let restarted = setup.start();
    let (licenses, audit) = rt.block_on(async {
        let mut licenses: Vec<Value> = Vec::new();
        loop {
            let page: Vec<Value> = http
                .get(format!(
                    "{}/api/v1/licenses?limit=1000&offset={}",
                    restarted.url,
                    licenses.len()
                ))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            licenses.extend(page);
        }
        let audit: Value = http
            .get(format!("{}/api/v1/audit?limit=5000", restarted.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (licenses, audit)
    });
    let stored: BTreeMap<String, &Value> = licenses
        .iter()
        .map(|l| (l["id"].as_str().unwrap().to_owned(), l))
        .collect();
    assert_eq!(stored.len(), licenses.len(), "a license is listed twice");
    // No acknowledged license is lost.
    for id in &acked.issued {
        assert!(
            stored.contains_key(id),
            "acknowledged license {id} was lost"
        );
    }
    // No renewal seq was acknowledged twice, and the license is at least at the highest one.
    let mut seqs = acked.renew_seqs.clone();
    seqs.sort_unstable();
    let before = seqs.len();
    seqs.dedup();
    assert_eq!(
        before,
        seqs.len(),
        "a seq was acknowledged twice: {:?}",
        acked.renew_seqs
    );
    let final_seq = stored[&renew_id]["seq"].as_i64().unwrap();
    assert!(
        final_seq >= seqs.last().copied().unwrap_or(1),
        "the renewed license went back to seq {final_seq}"
    );
    // Every license has exactly one issue entry in the audit log, and nothing else claims one.
    let issue_entries: Vec<String> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "license.issue")
        .map(|e| {
            serde_json::from_str::<Value>(e["entry"].as_str().unwrap()).unwrap()["target"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let unique: BTreeSet<&String> = issue_entries.iter().collect();
    assert_eq!(unique.len(), issue_entries.len());
    assert_eq!(
        unique.len(),
        stored.len(),
        "licenses and audit entries disagree"
    );
    let renew_entries = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "license.renew")
        .count() as i64;
    assert_eq!(
        renew_entries + 1,
        final_seq,
        "each renewal has one entry and one seq"
    );
    let verified = setup.client(&restarted.url, &token, &["audit", "verify"]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
}

#[test]
fn sqlite_portal_killed_during_issuance_loses_nothing() {
    crash_and_recover(false, 1);
}

#[test]
fn two_postgres_portals_killed_during_issuance_lose_nothing() {
    crash_and_recover(true, 2);
}
