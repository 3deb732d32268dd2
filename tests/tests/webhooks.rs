//! Webhooks against a real receiver on loopback: every event type is delivered and verifies
//! under the Standard Webhooks convention; a portal killed with SIGKILL between an event and
//! its delivery delivers it after the restart, under one `webhook-id`; a receiver answering 500
//! then 200 gets the event once acknowledged; two portals on one PostgreSQL deliver each event
//! once; endpoints on private addresses are refused unless the operator allows them; another
//! vendor and a support member can neither read nor change an endpoint.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use license::checkin::TamperReport;
use serde_json::{Value, json};
use tests::agent::{AgentWorld, SignedAgent};
use tests::portal::PortalSetup;
use tests::webhook::{Receiver, verify};

/// `serve` arguments for these tests: loopback receivers, quick sweeps and silence.
const SERVE: &[&str] = &[
    "--webhook-allow-private",
    "--silent-after",
    "2",
    "--sweep-interval",
    "1",
];

/// Runs `vendor-portal ARGS --output json` as the world's vendor.
fn vendor_json(world: &AgentWorld, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    serde_json::from_str(&world.vendor(&all)).unwrap()
}

/// Adds an endpoint for `url` hearing `events` (all when empty); its id and secret.
fn add_endpoint(world: &AgentWorld, url: &str, events: &[&str]) -> (String, String) {
    let mut args = vec!["webhook", "add", url];
    for e in events {
        args.extend(["--event", e]);
    }
    let endpoint = vendor_json(world, &args);
    (
        endpoint["id"].as_str().unwrap().to_owned(),
        endpoint["secret"].as_str().unwrap().to_owned(),
    )
}

/// Every delivered event by type, each verified with `secret`.
fn verified_by_type(receiver: &Receiver, secret: &str) -> BTreeMap<String, Vec<Value>> {
    let mut by_type: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in receiver.received() {
        let event = verify(secret, &r).unwrap_or_else(|e| panic!("{e}: {r:?}"));
        assert!(
            r.id.starts_with("msg_"),
            "webhook-id {:?} is not the event's id",
            r.id
        );
        by_type
            .entry(event["type"].as_str().unwrap().to_owned())
            .or_default()
            .push(event);
    }
    by_type
}

fn every_event_type_is_delivered_and_verifies(postgres: bool) {
    let world = AgentWorld::with_serve_args(postgres, &[], SERVE);
    let receiver = Receiver::start(&[]);
    let (endpoint, secret) = add_endpoint(&world, &receiver.url, &[]);

    // A metered plan whose licenses end inside their expiry warning, and a trial plan.
    let (metered_file, metered) = world.metered_license(10, r#"{"amount": 10, "period": "month"}"#);
    world.vendor(&[
        "plan",
        "create",
        "--app",
        "serverless-blog",
        "--slug",
        "try",
        "--name",
        "Try",
        "--trial",
        "--duration-days",
        "14",
        "--features",
        "posts",
    ]);
    let trial_file = world.dir.path().join("trial.lic");
    world.vendor(&[
        "license",
        "issue",
        "--customer",
        "globex",
        "--app",
        "serverless-blog",
        "--plan",
        "try",
        "-o",
        trial_file.to_str().unwrap(),
    ]);
    for action in ["renew", "suspend", "reinstate"] {
        world.vendor(&["license", action, &metered]);
    }

    // An installation that activates, passes its quota, reports tampering, has usage refused,
    // then falls silent.
    let mut agent = SignedAgent::activate_license(&world, &metered_file, "shop");
    let (status, answer) = agent.send(&[11]);
    assert_eq!(status, 200, "{answer}");
    let report = TamperReport {
        at: license::UnixTime::now(),
        code: "clock_skew".into(),
        detail: "the clock went back 3 hours".into(),
    };
    let (status, answer) = agent.send_with(&[], "1.0.0", vec![report]);
    assert_eq!(status, 200, "{answer}");
    let gap = agent.record(agent.n + 2, &agent.head, 1);
    let (status, answer) = agent.send_raw(vec![gap]);
    assert_eq!(status, 409, "{answer}");

    // A second installation that is uninstalled.
    SignedAgent::activate_license(&world, &metered_file, "gone");
    let (status, answer) = tests::agent::http::post_json(
        &format!("{}/api/v1/installations/remove", world.portal.url),
        &json!({"license": std::fs::read_to_string(&metered_file).unwrap(),
            "aws_account": tests::agent::ACCOUNT, "region": tests::agent::REGION, "stack": "gone"}),
    );
    assert_eq!(status, 200, "{answer}");

    // A grant refused: a version that was never published.
    let (status, answer) = tests::agent::http::post_json(
        &format!("{}/api/v1/grants", world.portal.url),
        &json!({"license": std::fs::read_to_string(&world.license).unwrap(),
            "app": "serverless-blog", "version": "9.9.9",
            "public_key": tests::b64([7u8; 32])}),
    );
    assert!((400..500).contains(&status), "{status} {answer}");

    world.vendor(&["license", "revoke", &metered]);
    world.vendor(&["webhook", "test", &endpoint]);

    let wanted: BTreeSet<&str> = [
        "license.issued",
        "license.renewed",
        "license.suspended",
        "license.reinstated",
        "license.revoked",
        "license.expiring",
        "trial.started",
        "installation.activated",
        "installation.removed",
        "installation.silent",
        "usage.over_limit",
        "usage.refused",
        "grant.refused",
        "tamper.reported",
        "webhook.test",
    ]
    .into();
    receiver.wait_until("every event type", Duration::from_secs(60), |seen| {
        let types: BTreeSet<String> = seen
            .iter()
            .filter_map(|r| serde_json::from_str::<Value>(&r.body).ok())
            .filter_map(|e| e["type"].as_str().map(str::to_owned))
            .collect();
        wanted.iter().all(|w| types.contains(*w))
    });
    let by_type = verified_by_type(&receiver, &secret);
    let documented: BTreeSet<String> = vendor_json(&world, &["webhook", "events"])
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        documented,
        wanted
            .iter()
            .map(|w| (*w).to_owned())
            .collect::<BTreeSet<_>>(),
        "the documented event types are the ones delivered"
    );

    // What each says.
    let over = &by_type["usage.over_limit"][0]["data"];
    assert_eq!(over["id"], metered.as_str());
    assert_eq!(
        (over["dimension"].as_str(), over["used"].as_i64()),
        (Some("api-calls"), Some(11))
    );
    assert_eq!(over["amount"], 10);
    // Both licenses end inside the default 30-day warning; the metered one is suspended and
    // revoked along the way (only active licenses are warned about), the trial never is.
    let expiring = &by_type["license.expiring"];
    assert!(
        expiring
            .iter()
            .any(|e| e["data"]["plan"] == "try" && e["data"]["days_left"].as_i64() <= Some(14)),
        "{expiring:?}"
    );
    assert_eq!(by_type["tamper.reported"][0]["data"]["code"], "clock_skew");
    let silent = &by_type["installation.silent"];
    assert!(
        silent.iter().any(|e| e["data"]["stack"] == "shop"),
        "{silent:?}"
    );
    assert_eq!(by_type["grant.refused"][0]["data"]["version"], "9.9.9");
    assert!(
        by_type["usage.refused"][0]["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("missing")
    );
    assert_eq!(by_type["trial.started"].len(), 1);
    assert!(
        by_type["license.issued"]
            .iter()
            .all(|e| e["timestamp"].as_str().unwrap().ends_with('Z')),
        "timestamps are RFC 3339 UTC"
    );
    // Each event once: as many distinct ids as events, once each (no retries were needed).
    let ids: Vec<String> = receiver.received().iter().map(|r| r.id.clone()).collect();
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(
        ids.len(),
        distinct.len(),
        "an event was delivered twice: {ids:?}"
    );

    // The delivery log shows each as delivered with its attempt.
    let log = vendor_json(
        &world,
        &["webhook", "deliveries", &endpoint, "--limit", "200"],
    );
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), ids.len());
    assert!(
        log.iter()
            .all(|d| d["state"] == "delivered" && d["history"][0]["status"] == 200),
        "{log:?}"
    );
    // A redelivery goes out again with the same webhook-id.
    let first = log.last().unwrap();
    world.vendor(&["webhook", "redeliver", first["id"].as_str().unwrap()]);
    let event = first["event"].as_str().unwrap().to_owned();
    receiver.wait_until("the redelivery", Duration::from_secs(20), |seen| {
        seen.iter().filter(|r| r.id == event).count() == 2
    });
}

#[test]
fn every_event_type_is_delivered_and_verifies_on_sqlite() {
    every_event_type_is_delivered_and_verifies(false);
}

#[test]
fn every_event_type_is_delivered_and_verifies_on_postgres() {
    every_event_type_is_delivered_and_verifies(true);
}

/// The deliveries of `endpoint`, from the delivery log.
fn log_of(world: &AgentWorld, endpoint: &str) -> Vec<Value> {
    vendor_json(world, &["webhook", "deliveries", endpoint])
        .as_array()
        .unwrap()
        .clone()
}

fn a_receiver_answering_500_then_200_gets_the_event_once_acknowledged(postgres: bool) {
    let world = AgentWorld::with_serve_args(postgres, &[], SERVE);
    let receiver = Receiver::start(&[500]);
    let (endpoint, secret) = add_endpoint(&world, &receiver.url, &["license.suspended"]);
    world.vendor(&["license", "suspend", &world.license_id]);
    let seen = receiver.wait_until("the retry", Duration::from_secs(30), |seen| {
        seen.iter().any(|r| r.answered == 200)
    });
    assert_eq!(
        seen.iter().map(|r| r.answered).collect::<Vec<_>>(),
        vec![500, 200]
    );
    assert_eq!(
        seen[0].id, seen[1].id,
        "a retry carries the same webhook-id"
    );
    for r in &seen {
        verify(&secret, r).unwrap();
    }
    let log = log_of(&world, &endpoint);
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["state"], "delivered");
    assert_eq!(log[0]["attempts"], 2);
    let statuses: Vec<&Value> = log[0]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["status"])
        .collect();
    assert_eq!(statuses, [&json!(500), &json!(200)]);
    // Acknowledged: nothing more is sent.
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(receiver.received().len(), 2);
}

#[test]
fn a_receiver_answering_500_then_200_gets_the_event_once_acknowledged_on_sqlite() {
    a_receiver_answering_500_then_200_gets_the_event_once_acknowledged(false);
}

#[test]
fn a_receiver_answering_500_then_200_gets_the_event_once_acknowledged_on_postgres() {
    a_receiver_answering_500_then_200_gets_the_event_once_acknowledged(true);
}

fn a_portal_killed_before_delivery_delivers_after_restart(postgres: bool) {
    let mut world = AgentWorld::with_serve_args(postgres, &[], SERVE);
    // The first attempt fails, so the event waits for its retry: that is when the portal dies.
    let receiver = Receiver::start(&[503]);
    let (endpoint, secret) = add_endpoint(&world, &receiver.url, &["license.revoked"]);
    world.vendor(&["license", "revoke", &world.license_id]);
    receiver.wait_until("the first attempt", Duration::from_secs(20), |seen| {
        !seen.is_empty()
    });
    // The failed attempt is recorded and the retry is due in 5 s: the event waits in the outbox.
    tests::agent::wait_for(
        "the first attempt recorded",
        Duration::from_secs(20),
        || (log_of(&world, &endpoint)[0]["attempts"] == 1).then_some(()),
    );
    world.portal.kill9();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        receiver.received().len(),
        1,
        "nothing is sent while the portal is down"
    );
    world.portal = world.setup.start();
    let seen = receiver.wait_until(
        "the delivery after the restart",
        Duration::from_secs(30),
        |seen| seen.iter().any(|r| r.answered == 200),
    );
    std::thread::sleep(Duration::from_secs(2));
    let seen_now = receiver.received();
    assert_eq!(
        seen_now.len(),
        seen.len(),
        "delivered once acknowledged: {seen_now:?}"
    );
    let ids: BTreeSet<&str> = seen_now.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 1, "exactly one distinct webhook-id: {ids:?}");
    let event = verify(&secret, seen_now.last().unwrap()).unwrap();
    assert_eq!(event["type"], "license.revoked");
    assert_eq!(event["data"]["id"], world.license_id.as_str());
}

#[test]
fn a_portal_killed_before_delivery_delivers_after_restart_on_sqlite() {
    a_portal_killed_before_delivery_delivers_after_restart(false);
}

#[test]
fn a_portal_killed_before_delivery_delivers_after_restart_on_postgres() {
    a_portal_killed_before_delivery_delivers_after_restart(true);
}

#[test]
fn two_portals_on_postgres_deliver_each_event_once() {
    let world = AgentWorld::with_serve_args(true, &[], SERVE);
    let second = world.setup.start();
    let receiver = Receiver::start(&[]);
    let (_, secret) = add_endpoint(&world, &receiver.url, &["license.issued"]);
    let n = 40;
    let mut issued = BTreeSet::new();
    for i in 0..n {
        let url = if i % 2 == 0 {
            &world.portal.url
        } else {
            &second.url
        };
        let out = world.setup.client_ok(
            url,
            &world.token,
            &[
                "license",
                "issue",
                "--customer",
                "globex",
                "--app",
                "serverless-blog",
                "--features",
                "posts",
                "--expires",
                "+200d",
                "--output",
                "json",
                "-o",
                world.dir.path().join(format!("l{i}.lic")).to_str().unwrap(),
            ],
        );
        let printed: Value = serde_json::from_str(&out).unwrap();
        issued.insert(printed["license"]["id"].as_str().unwrap().to_owned());
    }
    receiver.wait_until("every license.issued", Duration::from_secs(60), |seen| {
        seen.len() >= n
    });
    // Both processes send; give a duplicate the time to show.
    std::thread::sleep(Duration::from_secs(3));
    let seen = receiver.received();
    let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
    let mut licenses = BTreeSet::new();
    for r in &seen {
        *per_id.entry(r.id.clone()).or_default() += 1;
        let event = verify(&secret, r).unwrap();
        licenses.insert(event["data"]["id"].as_str().unwrap().to_owned());
    }
    assert!(
        per_id.values().all(|n| *n == 1),
        "an event was sent twice: {per_id:?}"
    );
    assert_eq!(licenses, issued, "every issued license was announced once");
}

#[test]
fn endpoints_on_private_addresses_are_refused_without_the_operator_flag() {
    let dir = tempfile::tempdir().unwrap();
    let setup = PortalSetup::new(dir.path(), false);
    let token = setup.create_vendor("acme");
    let portal = setup.start();
    // A listener on loopback: nothing may reach it.
    let receiver = Receiver::start(&[]);
    let port = receiver
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/hook")
        .to_owned();
    for (url, code) in [
        (receiver.url.clone(), "must be https"),
        (
            format!("https://127.0.0.1:{port}/hook"),
            "private, loopback or link-local",
        ),
        (
            "https://localhost/hook".to_owned(),
            "private, loopback or link-local",
        ),
        (
            "https://169.254.169.254/latest/meta-data/".to_owned(),
            "private, loopback or link-local",
        ),
        (
            "https://10.0.0.8/hook".to_owned(),
            "private, loopback or link-local",
        ),
        (
            "https://[::1]/hook".to_owned(),
            "private, loopback or link-local",
        ),
        (
            "https://[::ffff:127.0.0.1]/hook".to_owned(),
            "private, loopback or link-local",
        ),
        (
            "https://user:secret@example.com/hook".to_owned(),
            "user or password",
        ),
        ("ftp://example.com/hook".to_owned(), "must be https"),
    ] {
        let out = setup.client(&portal.url, &token, &["webhook", "add", &url]);
        assert!(!out.status.success(), "{url} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(code), "{url}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // An unknown event type is named.
    let out = setup.client(
        &portal.url,
        &token,
        &[
            "webhook",
            "add",
            "https://example.com/hook",
            "--event",
            "license.stolen",
        ],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("license.stolen"));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        receiver.received().is_empty(),
        "the portal made a request to loopback"
    );
}

#[test]
fn another_vendor_and_a_support_member_cannot_touch_an_endpoint() {
    let world = AgentWorld::with_serve_args(false, &[], SERVE);
    let receiver = Receiver::start(&[]);
    let (endpoint, _) = add_endpoint(&world, &receiver.url, &[]);
    world.vendor(&["webhook", "test", &endpoint]);
    receiver.wait_until("the test event", Duration::from_secs(20), |s| !s.is_empty());
    let delivery = log_of(&world, &endpoint)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Another vendor on the same portal: every path answers as if the endpoint did not exist.
    let other = world.setup.create_vendor("rival");
    for args in [
        vec!["webhook", "deliveries", endpoint.as_str()],
        vec!["webhook", "remove", endpoint.as_str()],
        vec!["webhook", "test", endpoint.as_str()],
        vec!["webhook", "redeliver", delivery.as_str()],
    ] {
        let out = world.setup.client(&world.portal.url, &other, &args);
        assert!(!out.status.success(), "{args:?} worked for another vendor");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not_found")
                || String::from_utf8_lossy(&out.stderr).contains("no webhook"),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let listed = world.setup.client_ok(
        &world.portal.url,
        &other,
        &["webhook", "list", "--output", "json"],
    );
    assert_eq!(serde_json::from_str::<Value>(&listed).unwrap(), json!([]));

    // A support member reads the log but cannot add or remove endpoints.
    let member = vendor_json(
        &world,
        &[
            "member",
            "add",
            "--email",
            "help@acme.test",
            "--role",
            "support",
        ],
    );
    let password = member["password"].as_str().unwrap();
    let support_token = support_token(&world, "help@acme.test", password);
    let out = world.setup.client(
        &world.portal.url,
        &support_token,
        &["webhook", "add", "https://example.com/x"],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("owner"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = world.setup.client(
        &world.portal.url,
        &support_token,
        &["webhook", "remove", &endpoint],
    );
    assert!(!out.status.success());
    world.setup.client_ok(
        &world.portal.url,
        &support_token,
        &["webhook", "deliveries", &endpoint],
    );
    // The secret is shown once: never in a list.
    assert!(
        !world
            .vendor(&["webhook", "list", "--output", "json"])
            .contains("whsec_")
    );
}

/// A token for the member `email` signed in with `password`.
fn support_token(world: &AgentWorld, email: &str, password: &str) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let url = &world.portal.url;
        let login = http
            .post(format!("{url}/api/v1/session"))
            .json(&json!({"vendor": "acme", "email": email, "password": password}))
            .send()
            .await
            .unwrap();
        assert!(login.status().is_success(), "{}", login.status());
        let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
        let session = cookie.split(';').next().unwrap().to_owned();
        let token: Value = http
            .post(format!("{url}/api/v1/tokens"))
            .header("cookie", session)
            .header("origin", url.as_str())
            .json(&json!({"name": "support"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        token["token"]
            .as_str()
            .unwrap_or_else(|| panic!("{token}"))
            .to_owned()
    })
}
