//! `license-agent serve` against a running portal, as a function in any language sees it:
//! activation, entitlement checks over localhost, a renewal picked up without a restart,
//! revocation denied from the next check-in on, seats, and the outbox. On SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::Duration;

use serde_json::{Value, json};
use tests::agent::{ACCOUNT, AgentWorld, REGION, http, wait_for};

const LIMIT: Duration = Duration::from_secs(30);

fn sent_count(agent: &tests::agent::AgentProcess) -> usize {
    agent.get("/v1/outbox").1["sent"]
        .as_array()
        .map_or(0, Vec::len)
}

fn activation_checkins_renewal_and_revocation(postgres: bool) {
    let world = AgentWorld::new(postgres, &["--max-installations", "2"]);
    let agent = world.agent(&world.state_dir("agent-a"), "blog-prod", 1);

    let info = wait_for("the first check-in", LIMIT, || {
        let (_, info) = agent.get("/v1/license");
        (!info["last_checkin"].is_null() && !info["installation"].is_null()).then_some(info)
    });
    assert_eq!(info["license"], world.license_id.as_str());
    assert_eq!(info["lifecycle"]["state"], "ACTIVE");
    assert_eq!(info["checkins"], "on");

    let (status, body) = agent.get("/v1/entitlements/posts");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["allowed"], true);
    assert_eq!(body["state"], "ACTIVE");
    let (status, body) = agent.get("/v1/entitlements/users");
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "not_entitled");
    let (status, body) = agent.get("/v1/entitlements/posts?in_use=lots");
    assert_eq!(status, 400, "{body}");

    // The vendor sees the installation and the version it runs.
    let usage = world.usage();
    assert_eq!(usage["seats_in_use"], 1);
    assert_eq!(usage["max_installations"], 2);
    assert_eq!(usage["installations"][0]["stack"], "blog-prod");
    assert_eq!(usage["installations"][0]["aws_account"], ACCOUNT);
    assert_eq!(
        usage["versions"],
        json!([{"version": "1.0.0", "installations": 1}])
    );
    // And per customer, over all its licenses.
    let by_customer = world.customer_usage();
    assert_eq!(by_customer["seats_in_use"], 1, "{by_customer}");
    assert_eq!(
        by_customer["licenses"][0]["license"],
        world.license_id.as_str()
    );
    let text = world.vendor(&["usage", "show", "--customer", "globex"]);
    assert!(text.contains("Customer globex: seats in use 1"), "{text}");
    assert!(text.contains("blog-prod"), "{text}");

    // A renewal reaches the running agent with the next check-in, no restart.
    world.vendor(&["license", "renew", &world.license_id, "--expires", "+400d"]);
    wait_for("the renewed license", LIMIT, || {
        let (_, info) = agent.get("/v1/license");
        (info["claims"]["seq"] == 2).then_some(())
    });
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let key = world.state_dir("agent-a").join("installation-key.pem");
        let mode = std::fs::metadata(key).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the installation key is the owner's alone"
        );
    }
    // The agent runs the renewal first and keeps it on disk just after: wait for the file, or
    // this reads in between (seen once in CI).
    let kept = wait_for("the renewal kept on disk", LIMIT, || {
        std::fs::read_to_string(world.state_dir("agent-a").join("license.lic")).ok()
    });
    assert!(
        kept.contains("BEGIN CONSIGN LICENSE"),
        "the renewal is kept for restarts"
    );
    let log = agent.log.lock().unwrap().clone();
    assert!(
        log.contains("license renewed by the vendor: revision 2 runs now"),
        "{log}"
    );

    // Someone swaps the license file for a forgery: the agent keeps the genuine license and
    // reports it home, once, where it lands in the vendor's audit log.
    let genuine = std::fs::read_to_string(&world.license).unwrap();
    let forged = genuine.replacen("eyJ", "eyK", 1);
    std::fs::write(&world.license, forged).unwrap();
    let reports = || -> Vec<Value> {
        let entries: Value = serde_json::from_str(
            &world.vendor(&["audit", "list", "--last", "50", "--output", "json"]),
        )
        .unwrap();
        entries
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "agent.report")
            .cloned()
            .collect()
    };
    wait_for("the tamper report in the audit log", LIMIT, || {
        (!reports().is_empty()).then_some(())
    });
    let seen = sent_count(&agent);
    wait_for("two more check-ins", LIMIT, || {
        (sent_count(&agent) >= seen + 2).then_some(())
    });
    let audit = reports();
    assert_eq!(audit.len(), 1, "reported once: {audit:?}");
    assert!(
        audit[0]["entry"]
            .as_str()
            .unwrap()
            .contains("license_source"),
        "{audit:?}"
    );
    let (status, _) = agent.get("/v1/entitlements/posts");
    assert_eq!(status, 200, "the genuine license still runs");
    std::fs::write(&world.license, genuine).unwrap();

    // Revocation: denied from the first check-in that starts after it.
    let before = sent_count(&agent);
    world.vendor(&[
        "license",
        "revoke",
        &world.license_id,
        "--reason",
        "contract ended",
    ]);
    wait_for("two more check-ins", LIMIT, || {
        (sent_count(&agent) >= before + 2).then_some(())
    });
    let (status, body) = agent.get("/v1/entitlements/posts");
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "revoked");
    assert_eq!(body["state"], "RESTRICTED");
    // The agent's log says what happened, not a generic change.
    let log = agent.log.lock().unwrap().clone();
    assert!(
        log.contains("license revoked by the vendor: entitlement checks are refused from now on"),
        "{log}"
    );

    // The outbox shows exactly what went home: signed payloads naming the agent and its nonce.
    let (_, outbox) = agent.get("/v1/outbox");
    let sent = outbox["sent"].as_array().unwrap();
    let first = &sent[0];
    assert!(
        first["url"]
            .as_str()
            .unwrap()
            .ends_with("/api/v1/installations")
    );
    assert_eq!(first["payload"]["placement"]["stack"], "blog-prod");
    let checkin = sent.last().unwrap();
    let body: Value = serde_json::from_str(checkin["body"].as_str().unwrap()).unwrap();
    assert!(body["payload"].is_string() && body["signature"].is_string());
    assert!(checkin["payload"]["nonce"].is_string());
    assert_eq!(checkin["status"], 200);
}

#[test]
fn activation_checkins_renewal_and_revocation_on_sqlite() {
    activation_checkins_renewal_and_revocation(false);
}

#[test]
fn activation_checkins_renewal_and_revocation_on_postgres() {
    activation_checkins_renewal_and_revocation(true);
}

fn seats(postgres: bool) {
    let world = AgentWorld::new(postgres, &["--max-installations", "1"]);
    let mut first = world.agent(&world.state_dir("s1-a"), "blog-one", 1);
    wait_for("the first stack's activation", LIMIT, || {
        (!first.get("/v1/license").1["installation"].is_null()).then_some(())
    });
    // A second execution environment of the same stack shares its seat.
    let mut sibling = world.agent(&world.state_dir("s1-b"), "blog-one", 1);
    wait_for("the sibling's activation", LIMIT, || {
        (!sibling.get("/v1/license").1["installation"].is_null()).then_some(())
    });
    assert_eq!(
        first.get("/v1/license").1["installation"],
        sibling.get("/v1/license").1["installation"]
    );
    // Another stack is one installation too many.
    let second = world.agent(&world.state_dir("s2"), "blog-two", 1);
    let error = wait_for("the refusal", LIMIT, || {
        second.get("/v1/license").1["last_error"]
            .as_str()
            .map(str::to_owned)
    });
    assert!(error.contains("seat_limit"), "{error}");
    assert!(second.get("/v1/license").1["installation"].is_null());
    assert_eq!(world.usage()["seats_in_use"], 1);

    // The first stack is uninstalled: its functions (and agents) are gone, and `installer
    // uninstall` frees its seat; the second stack takes it.
    first.kill9();
    sibling.kill9();
    let license = std::fs::read_to_string(&world.license).unwrap();
    let (status, removed) = http::post_json(
        &format!("{}/api/v1/installations/remove", world.portal.url),
        &json!({"license": license, "aws_account": ACCOUNT, "region": REGION, "stack": "blog-one"}),
    );
    assert_eq!(status, 200, "{removed}");
    assert!(removed["installation"].is_string());
    wait_for("the second stack's activation", LIMIT, || {
        (!second.get("/v1/license").1["installation"].is_null()).then_some(())
    });
    let usage = world.usage();
    assert_eq!(usage["seats_in_use"], 1);
    let stacks: Vec<(String, bool)> = usage["installations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["stack"].as_str().unwrap().to_owned(),
                i["removed_at"].is_null(),
            )
        })
        .collect();
    assert!(stacks.contains(&("blog-one".into(), false)), "{stacks:?}");
    assert!(stacks.contains(&("blog-two".into(), true)), "{stacks:?}");
}

#[test]
fn seats_beyond_the_maximum_are_refused_and_an_uninstalled_stack_frees_its_seat_on_sqlite() {
    seats(false);
}

#[test]
fn seats_beyond_the_maximum_are_refused_and_an_uninstalled_stack_frees_its_seat_on_postgres() {
    seats(true);
}

#[test]
fn check_ins_off_for_a_license_that_allows_it() {
    // No --portal: the agent never calls home, and says so; the default policy then counts the
    // offline time (visible as a warning in the logs, GRACE after a day).
    let world = AgentWorld::new(false, &[]);
    let state = world.state_dir("air-gapped");
    let agent = tests::agent::AgentProcess::start(
        std::process::Command::new(tests::bin("license-agent"))
            .args(["serve", "--listen", "127.0.0.1:0", "--license"])
            .arg(&world.license)
            .arg("--trust")
            .arg(&world.keyset)
            .arg("--state-dir")
            .arg(&state),
    );
    let (_, info) = agent.get("/v1/license");
    assert_eq!(info["checkins"], "off");
    assert_eq!(info["lifecycle"]["state"], "ACTIVE");
    let (status, _) = agent.get("/v1/entitlements/posts");
    assert_eq!(status, 200);
    let (_, outbox) = agent.get("/v1/outbox");
    assert_eq!(outbox["sent"], json!([]));
    let log = agent.log.lock().unwrap().clone();
    assert!(log.contains("check-ins are off"), "{log}");
}

#[test]
fn bad_requests_get_one_clear_error() {
    let world = AgentWorld::new(false, &[]);
    let agent = world.agent(&world.state_dir("bad"), "blog-prod", 3600);
    let usage = format!("{}/v1/usage", agent.url);
    for (body, says) in [
        (
            json!({"dimension": "API CALLS", "quantity": 1}),
            "dimension",
        ),
        (json!({"dimension": "api-calls", "quantity": 0}), "quantity"),
        (json!({"dimension": "api-calls"}), "quantity"),
        (
            json!({"dimension": "api-calls", "quantity": 1, "extra": true}),
            "unknown field",
        ),
        (
            json!({"dimension": "api-calls", "quantity": 1, "id": "has spaces"}),
            "id",
        ),
    ] {
        let (status, answer) = http::post_json(&usage, &body);
        assert_eq!(status, 400, "{body} -> {answer}");
        assert!(answer["error"].as_str().unwrap().contains(says), "{answer}");
    }
    let (status, answer) = agent.get("/v1/nothing-here");
    assert_eq!(status, 404);
    assert!(answer["error"].is_string());
    // A license file that is not one: exit 1 with one sentence.
    let junk = world.dir.path().join("junk.lic");
    std::fs::write(&junk, "not a license").unwrap();
    let out = std::process::Command::new(tests::bin("license-agent"))
        .args(["serve", "--listen", "127.0.0.1:0", "--license"])
        .arg(&junk)
        .arg("--trust")
        .arg(&world.keyset)
        .arg("--state-dir")
        .arg(world.state_dir("junk"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: the license is not valid"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Sends `request` (raw HTTP/1.1, `Connection: close`) to the agent at `url`; the status and
/// the body.
fn raw(url: &str, request: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

/// What a web page in the customer's browser can make the browser send to the agent: a "simple"
/// cross-origin POST (`text/plain`, no preflight), and any request under a name of its own that
/// it rebinds to 127.0.0.1 (its own `Host`). Neither meters nor reads anything.
#[test]
fn cross_origin_style_post_with_text_plain_and_a_foreign_host_is_refused() {
    let world = AgentWorld::new(false, &[]);
    let agent = world.agent(&world.state_dir("door"), "blog-prod", 3600);
    let host = agent.url.trim_start_matches("http://").to_owned();
    let port = host.rsplit(':').next().unwrap().to_owned();
    let body = r#"{"dimension":"api-calls","quantity":7}"#;
    let post = |host: &str, content_type: &str| {
        format!(
            "POST /v1/usage HTTP/1.1\r\nHost: {host}\r\nOrigin: http://evil.example\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let (status, answer) = raw(&agent.url, &post(&host, "text/plain"));
    assert_eq!(status, 415, "{answer}");
    assert!(answer.contains("application/json"), "{answer}");
    let (status, answer) = raw(
        &agent.url,
        &post(&format!("evil.example:{port}"), "application/json"),
    );
    assert_eq!(status, 421, "{answer}");
    assert!(answer.contains(&agent.url), "{answer}");
    // Reads too: a rebound name cannot read the license.
    let (status, answer) = raw(
        &agent.url,
        &format!(
            "GET /v1/license HTTP/1.1\r\nHost: rebound.evil.example:{port}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 421, "{answer}");
    assert!(!answer.contains(&world.license_id), "{answer}");
    // The agent's own callers still get in, by address or as localhost, and nothing refused was
    // counted: the first accepted event is the journal's first.
    let (status, answer) = raw(
        &agent.url,
        &post(
            &format!("localhost:{port}"),
            "application/json; charset=utf-8",
        ),
    );
    assert_eq!(status, 200, "{answer}");
    let accepted: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(accepted["seq"], 1, "{accepted}");
    let (status, _) = agent.get("/v1/license");
    assert_eq!(status, 200);
}

/// The state directory holds the installation key, the license and the usage journal: another
/// user on the host reads none of it. Every file is 0600 and the directory 0700, whatever the
/// umask, including files made after the first check-in (the journal, the outbox, the ledger).
#[cfg(unix)]
#[test]
fn state_files_are_the_owners_alone() {
    use std::os::unix::fs::PermissionsExt as _;
    let world = AgentWorld::new(false, &[]);
    let dir = world.state_dir("private");
    let agent = world.agent(&dir, "blog-prod", 1);
    let (status, answer) = http::post_json(
        &format!("{}/v1/usage", agent.url),
        &json!({"dimension": "api-calls", "quantity": 2}),
    );
    assert_eq!(status, 200, "{answer}");
    wait_for("a check-in with the usage", LIMIT, || {
        (sent_count(&agent) >= 2).then_some(())
    });
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "the state directory");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        seen.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    for file in ["installation-key.pem", "journal.log", "agent-state.json"] {
        assert!(
            seen.iter().any(|s| s == file),
            "{file} is missing from {seen:?}"
        );
    }
}
