//! How the API treats callers and bad input, on SQLite and PostgreSQL: problem documents for
//! every malformed request, Idempotency-Key replays, rate limits with Retry-After, roles, token
//! revocation, browser sessions, and registering the vendor's own keys.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use common::server::{Db, start, start_with};
use reqwest::Method;
use serde_json::{Value, json};
use vendor_portal::server::state::Limits;

async fn malformed_requests_get_problems(db: Db) {
    let portal = start(db).await;
    let url = |p: &str| format!("{}{p}", portal.url);
    let send = |body: &'static str, content_type: &'static str| {
        portal
            .http
            .post(url("/api/v1/apps"))
            .bearer_auth(&portal.token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let cases = [
        ("{\"slug\": \"x\", ", "application/json", 400, "bad JSON"),
        (
            "{\"slug\": \"x\", \"name\": \"X\", \"colour\": \"red\"}",
            "application/json",
            422,
            "unknown field",
        ),
        (
            "{\"slug\": 7, \"name\": \"X\"}",
            "application/json",
            422,
            "wrong type",
        ),
        (
            "{\"name\": \"X\"}",
            "application/json",
            422,
            "missing field",
        ),
        (
            "slug=x",
            "application/x-www-form-urlencoded",
            415,
            "wrong media type",
        ),
        (
            "{\"slug\": \"Not A Slug\", \"name\": \"X\"}",
            "application/json",
            422,
            "invalid slug",
        ),
    ];
    for (body, content_type, status, what) in cases {
        let r = send(body, content_type).await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{what}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{what}"
        );
        let problem: Value = r.json().await.unwrap();
        assert!(!problem["detail"].as_str().unwrap().is_empty(), "{what}");
    }
    let huge = "x".repeat(2 * 1024 * 1024);
    // Its own client: the portal answers 413 without reading the body and closes that
    // connection, which a shared pool might otherwise reuse for the next request.
    let r = reqwest::Client::new()
        .post(url("/api/v1/apps"))
        .bearer_auth(&portal.token)
        .header("content-type", "application/json")
        .body(format!("{{\"slug\": \"{huge}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = portal
        .call(
            Method::GET,
            "/api/v1/nothing-here",
            Some(&portal.token),
            None,
        )
        .await;
    r.problem(404);
    let r = portal
        .call(
            Method::PUT,
            "/api/v1/apps",
            Some(&portal.token),
            Some(json!({})),
        )
        .await;
    r.problem(405);
    let r = portal.get("/api/v1/licenses?limit=lots").await;
    r.problem(400);
    // A license that cannot be made (expiry in the past) is refused with the reason.
    portal.seed_catalog(&portal.token).await;
    let r = portal
        .post(
            "/api/v1/licenses",
            json!({"customer": "globex", "app": "blog", "expires_at": 1000}),
        )
        .await;
    assert!(r.problem(422).contains("cannot be issued"));
    let r = portal
        .post(
            "/api/v1/licenses",
            json!({"customer": "nobody", "app": "blog"}),
        )
        .await;
    assert!(r.problem(404).contains("customer"));
    let r = portal
        .post(
            "/api/v1/apps/blog/plans",
            json!({"slug": "p", "name": "P", "duration_days": 1, "entitlements": {"exp": 5}}),
        )
        .await;
    assert!(r.problem(422).contains("exp"));
}
on_both_databases!(malformed_requests_get_problems);

async fn idempotency_key_replays(db: Db) {
    let portal = start(db).await;
    portal.seed_catalog(&portal.token).await;
    let issue = |key: &'static str, plan: &'static str| {
        portal
            .http
            .post(format!("{}/api/v1/licenses", portal.url))
            .bearer_auth(&portal.token)
            .header("idempotency-key", key)
            .json(&json!({"customer": "globex", "app": "blog", "plan": plan}))
            .send()
    };
    let first = issue("key-1", "standard").await.unwrap();
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotency-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let second = issue("key-1", "standard").await.unwrap();
    assert_eq!(second.status(), 201);
    assert_eq!(second.headers()["idempotency-replayed"], "true");
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["id"], second["id"], "the replay is the same license");
    let listed = portal.get("/api/v1/licenses").await.expect(200);
    assert_eq!(listed.as_array().unwrap().len(), 1, "nothing issued twice");
    // The same key for another request is refused.
    let reused = issue("key-1", "other").await.unwrap();
    assert_eq!(reused.status(), 422);
    // Concurrent requests with one key: one license.
    let racers: Vec<_> = (0..8).map(|_| issue("key-2", "standard")).collect();
    let mut ids = std::collections::BTreeSet::new();
    for r in futures_util::future::join_all(racers).await {
        let r = r.unwrap();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        ids.insert(v["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    let listed = portal.get("/api/v1/licenses").await.expect(200);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    // A failed request is not recorded: fixing it and retrying with the key works.
    let bad = portal
        .http
        .post(format!("{}/api/v1/customers", portal.url))
        .bearer_auth(&portal.token)
        .header("idempotency-key", "key-3")
        .json(&json!({"slug": "initech", "name": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
}
on_both_databases!(idempotency_key_replays);

async fn rate_limits_answer_429(db: Db) {
    let limits = Limits {
        license_writes_per_minute: 3,
        auth_failures_per_minute: 2,
        logins_per_minute: 2,
        ..Limits::default()
    };
    let portal = start_with(db, limits).await;
    portal.seed_catalog(&portal.token).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = portal
            .post(
                "/api/v1/licenses",
                json!({"customer": "globex", "app": "blog"}),
            )
            .await;
        if r.status == 429 {
            let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=60).contains(&retry));
            r.problem(429);
        }
        statuses.push(r.status.as_u16());
    }
    // Limits count per minute window; a window edge may fall inside the loop.
    assert!(
        statuses.iter().filter(|s| **s == 201).count() <= 6,
        "{statuses:?}"
    );
    assert!(statuses.contains(&429), "{statuses:?}");
    // Guessing tokens.
    let mut statuses = Vec::new();
    for i in 0..5 {
        let r = portal
            .call(
                Method::GET,
                "/api/v1/apps",
                Some(&format!("cns_guess{i}")),
                None,
            )
            .await;
        statuses.push(r.status.as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    // Guessing passwords.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = portal
            .call(Method::POST, "/api/v1/session", None, Some(json!({"vendor": "acme", "email": "owner@acme.example", "password": "wrong-password!"})))
            .await;
        statuses.push(r.status.as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
}
on_both_databases!(rate_limits_answer_429);

/// Sends a wrong-password login with `X-Forwarded-For: forwarded`; its status.
async fn guess_with_forwarded_for(portal: &common::server::TestPortal, forwarded: &str) -> u16 {
    portal
        .http
        .post(format!("{}/api/v1/session", portal.url))
        .header("x-forwarded-for", forwarded)
        .json(&json!({"vendor": "acme", "email": "owner@acme.example", "password": "wrong-password!"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn rotating_forwarded_for_does_not_escape_rate_limits(db: Db) {
    // No trusted proxy: the header is the client's own word, and ignored.
    let limits = Limits {
        logins_per_minute: 2,
        ..Limits::default()
    };
    let portal = start_with(db, limits).await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        statuses.push(guess_with_forwarded_for(&portal, &format!("198.51.100.{i}")).await);
    }
    assert!(
        statuses.contains(&429),
        "a fresh X-Forwarded-For escaped the limit: {statuses:?}"
    );

    // Behind a trusted proxy (the test's own loopback), each client has its own budget, and a
    // client that prepends addresses of its choosing still counts as itself.
    let limits = Limits {
        logins_per_minute: 2,
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        ..Limits::default()
    };
    let portal = start_with(db, limits).await;
    let mut first = Vec::new();
    for i in 0..6 {
        first.push(guess_with_forwarded_for(&portal, &format!("10.9.9.{i}, 203.0.113.1")).await);
    }
    assert!(first.contains(&429), "{first:?}");
    assert_eq!(
        guess_with_forwarded_for(&portal, "203.0.113.2").await,
        401,
        "another client behind the proxy was limited too"
    );
}
on_both_databases!(rotating_forwarded_for_does_not_escape_rate_limits);

/// A page on another site (or a sibling subdomain) that gets the browser to send the session
/// cookie cannot change anything through the API: cookie-authenticated writes need this
/// site's `Origin`. Tokens are unaffected.
async fn cross_site_writes_with_the_session_cookie_are_refused(db: Db) {
    let portal = start(db).await;
    portal
        .post("/api/v1/members", json!({"email": "ops@acme.example", "role": "owner", "password": "a long owner password"}))
        .await
        .expect(201);
    let login = portal
        .http
        .post(format!("{}/api/v1/session", portal.url))
        .json(&json!({"vendor": "acme", "email": "ops@acme.example", "password": "a long owner password"}))
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-consign_session="), "{cookie}");
    assert!(cookie.contains("Path=/") && cookie.contains("Secure") && !cookie.contains("Domain"));
    let session = cookie.split(';').next().unwrap().to_owned();
    let create = |origin: Option<&str>, slug: &str| {
        let mut r = portal
            .http
            .post(format!("{}/api/v1/customers", portal.url))
            .header("cookie", session.clone())
            .json(&json!({"slug": slug, "name": "Made by a page"}));
        if let Some(origin) = origin {
            r = r.header("origin", origin);
        }
        r.send()
    };
    for origin in [
        None,
        Some("https://evil.example"),
        Some("null"),
        Some("http://127.0.0.1.evil.example"),
    ] {
        let r = create(origin, "cross-site").await.unwrap();
        assert_eq!(r.status(), 403, "{origin:?}");
        assert!(r.text().await.unwrap().contains("Origin"));
    }
    assert_eq!(portal.get("/api/v1/customers/cross-site").await.status, 404);
    // From the portal's own pages it works, and reads never need an Origin.
    let own = portal.url.clone();
    assert_eq!(create(Some(&own), "same-site").await.unwrap().status(), 201);
    let read = portal
        .http
        .get(format!("{}/api/v1/customers", portal.url))
        .header("cookie", session.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    // A token needs no Origin.
    portal
        .post(
            "/api/v1/customers",
            json!({"slug": "by-token", "name": "Token"}),
        )
        .await
        .expect(201);
}
on_both_databases!(cross_site_writes_with_the_session_cookie_are_refused);

/// POSTs `body` to `path` with `token` and `Idempotency-Key: key`: (status, replayed, body).
async fn post_keyed(
    portal: &common::server::TestPortal,
    token: &str,
    key: &str,
    path: &str,
    body: Value,
) -> (u16, bool, Value) {
    let r = portal
        .http
        .post(format!("{}{path}", portal.url))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let replayed = r.headers().contains_key("idempotency-replayed");
    (status, replayed, r.json().await.unwrap_or(Value::Null))
}

async fn idempotency_replays_need_a_live_credential_and_hold_no_secret(db: Db) {
    let portal = start(db).await;
    let a = portal.token.clone();
    // A new token: the first answer shows its secret, a replay does not, nor does the store.
    let (status, _, first) = post_keyed(
        &portal,
        &a,
        "k-token",
        "/api/v1/tokens",
        json!({"name": "ci"}),
    )
    .await;
    assert_eq!(status, 201);
    let secret = first["token"].as_str().unwrap().to_owned();
    let (status, replayed, again) = post_keyed(
        &portal,
        &a,
        "k-token",
        "/api/v1/tokens",
        json!({"name": "ci"}),
    )
    .await;
    assert_eq!((status, replayed), (201, true));
    assert_eq!(again["id"], first["id"]);
    assert!(
        !again.to_string().contains(&secret),
        "a replay leaked the token: {again}"
    );
    // The same for a generated password.
    let (status, _, member) = post_keyed(
        &portal,
        &a,
        "k-member",
        "/api/v1/members",
        json!({"email": "new@acme.example", "role": "support"}),
    )
    .await;
    assert_eq!(status, 201);
    let password = member["password"].as_str().unwrap().to_owned();
    let (_, replayed, again) = post_keyed(
        &portal,
        &a,
        "k-member",
        "/api/v1/members",
        json!({"email": "new@acme.example", "role": "support"}),
    )
    .await;
    assert!(replayed);
    assert!(
        again["password"].is_null(),
        "a replay leaked the password: {again}"
    );
    let stored: Vec<String> = sqlx::query("SELECT body FROM idempotency_keys")
        .fetch_all(&portal.state.db.pool)
        .await
        .unwrap()
        .iter()
        .map(|row| sqlx::Row::get(row, "body"))
        .collect();
    for body in &stored {
        assert!(
            !body.contains(&secret) && !body.contains(&password),
            "stored: {body}"
        );
    }

    // A token that is revoked gets no replay of what it did while it was valid.
    let (status, _, made) = post_keyed(
        &portal,
        &secret,
        "k-made",
        "/api/v1/tokens",
        json!({"name": "made"}),
    )
    .await;
    assert_eq!(status, 201);
    portal
        .post(
            &format!("/api/v1/tokens/{}/revoke", first["id"].as_str().unwrap()),
            json!({}),
        )
        .await
        .expect(200);
    let (status, replayed, answer) = post_keyed(
        &portal,
        &secret,
        "k-made",
        "/api/v1/tokens",
        json!({"name": "made"}),
    )
    .await;
    assert_eq!((status, replayed), (401, false), "{answer}");
    assert!(
        !answer.to_string().contains(made["id"].as_str().unwrap()),
        "{answer}"
    );
}
on_both_databases!(idempotency_replays_need_a_live_credential_and_hold_no_secret);

/// A member's credentials as a client holds them: a session cookie and an API token.
struct MemberAccess {
    session: String,
    token: String,
}

async fn sign_in(
    portal: &common::server::TestPortal,
    email: &str,
    password: &str,
) -> reqwest::Response {
    portal
        .http
        .post(format!("{}/api/v1/session", portal.url))
        .json(&json!({"vendor": "acme", "email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

impl MemberAccess {
    async fn open(portal: &common::server::TestPortal, email: &str, password: &str) -> Self {
        let login = sign_in(portal, email, password).await;
        assert_eq!(login.status(), 200);
        let cookie = login.headers()["set-cookie"].to_str().unwrap();
        let session = cookie.split(';').next().unwrap().to_owned();
        let token: Value = portal
            .http
            .post(format!("{}/api/v1/tokens", portal.url))
            .header("cookie", &session)
            .header("origin", &portal.url)
            .json(&json!({"name": "laptop"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Self {
            session,
            token: token["token"].as_str().unwrap().to_owned(),
        }
    }

    /// (session status, token status) for a read, twice each (the second from the cache).
    async fn statuses(&self, portal: &common::server::TestPortal) -> (u16, u16) {
        let mut out = (0, 0);
        for _ in 0..2 {
            out.0 = portal
                .http
                .get(format!("{}/api/v1/apps", portal.url))
                .header("cookie", &self.session)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            out.1 = portal
                .call(Method::GET, "/api/v1/apps", Some(&self.token), None)
                .await
                .status
                .as_u16();
        }
        out
    }
}

async fn members_lose_access_at_once(db: Db) {
    let portal = start(db).await;
    let password = "a long member password";
    let member = portal
        .post(
            "/api/v1/members",
            json!({"email": "dev@acme.example", "role": "publisher", "password": password}),
        )
        .await
        .expect(201);
    let id = member["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/members/{id}");
    let patch = |body: Value| {
        let path = path.clone();
        let portal = &portal;
        async move {
            portal
                .call(Method::PATCH, &path, Some(&portal.token), Some(body))
                .await
        }
    };

    // Disabled: the session and the token (both just used, so cached) stop working at once,
    // and signing in is refused until an owner enables the member again.
    let access = MemberAccess::open(&portal, "dev@acme.example", password).await;
    assert_eq!(access.statuses(&portal).await, (200, 200));
    let changed = patch(json!({"disabled": true})).await.expect(200);
    assert_eq!(
        (
            changed["sessions_ended"].as_u64(),
            changed["tokens_revoked"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(access.statuses(&portal).await, (401, 401));
    let refused = sign_in(&portal, "dev@acme.example", password).await;
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("disabled"));
    patch(json!({"disabled": false})).await.expect(200);
    assert_eq!(
        access.statuses(&portal).await,
        (401, 401),
        "old credentials stay ended"
    );

    // A role change ends what was issued under the old role.
    let access = MemberAccess::open(&portal, "dev@acme.example", password).await;
    assert_eq!(access.statuses(&portal).await, (200, 200));
    let changed = patch(json!({"role": "support"})).await.expect(200);
    assert_eq!(changed["role"], "support");
    assert_eq!(access.statuses(&portal).await, (401, 401));

    // A password reset: the old password and credentials end, the generated one works.
    let access = MemberAccess::open(&portal, "dev@acme.example", password).await;
    let reset = portal
        .post(&format!("{path}/password"), json!({}))
        .await
        .expect(200);
    let fresh = reset["password"].as_str().unwrap().to_owned();
    assert_eq!(access.statuses(&portal).await, (401, 401));
    assert_eq!(
        sign_in(&portal, "dev@acme.example", password)
            .await
            .status(),
        401
    );
    let access = MemberAccess::open(&portal, "dev@acme.example", &fresh).await;
    assert_eq!(access.statuses(&portal).await, (200, 200));

    // Removed: nothing of theirs works, and they are gone from the list.
    portal
        .call(Method::DELETE, &path, Some(&portal.token), None)
        .await
        .expect(200);
    assert_eq!(access.statuses(&portal).await, (401, 401));
    assert_eq!(
        sign_in(&portal, "dev@acme.example", &fresh).await.status(),
        401
    );
    let members = portal.get("/api/v1/members").await.expect(200);
    assert!(
        !members.to_string().contains("dev@acme.example"),
        "{members}"
    );
    assert_eq!(
        portal
            .call(Method::DELETE, &path, Some(&portal.token), None)
            .await
            .status,
        404
    );

    // Only owners manage members, and the vendor always keeps an enabled owner.
    portal
        .post(
            "/api/v1/members",
            json!({"email": "help@acme.example", "role": "support", "password": password}),
        )
        .await
        .expect(201);
    let helper = MemberAccess::open(&portal, "help@acme.example", password).await;
    let me = portal.get("/api/v1/vendor").await.expect(200);
    let owner_path = format!("/api/v1/members/{}", me["member"]["id"].as_str().unwrap());
    let r = portal
        .call(
            Method::PATCH,
            &owner_path,
            Some(&helper.token),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    for (method, body) in [
        (Method::PATCH, Some(json!({"disabled": true}))),
        (Method::PATCH, Some(json!({"role": "support"}))),
        (Method::DELETE, None),
    ] {
        let r = portal
            .call(method, &owner_path, Some(&portal.token), body)
            .await;
        assert_eq!(r.status, 409, "{}", r.text);
        assert!(r.text.contains("owner"), "{}", r.text);
    }
    assert_eq!(portal.get("/api/v1/apps").await.status, 200);
    // Every change is in the audit log.
    let audit = portal.get("/api/v1/audit").await.expect(200);
    for action in [
        "member.disable",
        "member.enable",
        "member.update",
        "member.password",
        "member.remove",
    ] {
        assert!(
            audit.to_string().contains(action),
            "{action} is not audited: {audit}"
        );
    }
}
on_both_databases!(members_lose_access_at_once);

async fn roles_tokens_and_sessions(db: Db) {
    let portal = start(db).await;
    portal.seed_catalog(&portal.token).await;
    // A support member reads but cannot change.
    let member = portal
        .post("/api/v1/members", json!({"email": "help@acme.example", "role": "support", "password": "a long support password"}))
        .await
        .expect(201);
    assert!(
        member["password"].is_null(),
        "a given password is not echoed"
    );
    let login = portal
        .http
        .post(format!("{}/api/v1/session", portal.url))
        .json(&json!({"vendor": "acme", "email": "help@acme.example", "password": "a long support password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let session = cookie.split(';').next().unwrap().to_owned();
    let as_support = |method: Method, path: &str, body: Option<Value>| {
        let mut r = portal
            .http
            .request(method, format!("{}{path}", portal.url))
            .header("cookie", session.clone());
        if let Some(body) = body {
            r = r.json(&body);
        }
        r.send()
    };
    let me: Value = as_support(Method::GET, "/api/v1/vendor", None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["member"]["role"], "support");
    assert_eq!(
        as_support(Method::GET, "/api/v1/licenses", None)
            .await
            .unwrap()
            .status(),
        200
    );
    let denied = as_support(
        Method::POST,
        "/api/v1/licenses",
        Some(json!({"customer": "globex", "app": "blog"})),
    )
    .await
    .unwrap();
    assert_eq!(denied.status(), 403);
    let denied = as_support(Method::POST, "/api/v1/keys/rotate", Some(json!({})))
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    // Wrong passwords and unknown members get the same answer.
    for (email, password) in [
        ("help@acme.example", "wrong password!!"),
        ("nobody@acme.example", "a long support password"),
    ] {
        let r = portal
            .call(
                Method::POST,
                "/api/v1/session",
                None,
                Some(json!({"vendor": "acme", "email": email, "password": password})),
            )
            .await;
        assert_eq!(r.problem(401), "the vendor, email or password is wrong");
    }
    // Logging out ends the session.
    let out = as_support(Method::DELETE, "/api/v1/session", None)
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert_eq!(
        as_support(Method::GET, "/api/v1/vendor", None)
            .await
            .unwrap()
            .status(),
        401
    );

    // Tokens: shown once, listed by hint, revoked at once.
    let created = portal
        .post("/api/v1/tokens", json!({"name": "ci"}))
        .await
        .expect(201);
    let secret = created["token"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("cns_"));
    let listed = portal.get("/api/v1/tokens").await.expect(200);
    let text = listed.to_string();
    assert!(!text.contains(&secret), "a listing never shows a secret");
    assert!(text.contains(created["hint"].as_str().unwrap()));
    assert_eq!(
        portal
            .call(Method::GET, "/api/v1/apps", Some(&secret), None)
            .await
            .status,
        200
    );
    let id = created["id"].as_str().unwrap();
    portal
        .post(&format!("/api/v1/tokens/{id}/revoke"), json!({}))
        .await
        .expect(200);
    let r = portal
        .call(Method::GET, "/api/v1/apps", Some(&secret), None)
        .await;
    r.problem(401);
    // Nothing stores the secret itself.
    let stored: Vec<(String,)> = sqlx::query_as("SELECT token_hash FROM api_tokens")
        .fetch_all(&portal.state.db.pool)
        .await
        .unwrap();
    assert!(
        stored
            .iter()
            .all(|(h,)| h.len() == 64 && !h.contains("cns_"))
    );
    let hashes: Vec<(Option<String>,)> = sqlx::query_as("SELECT password_hash FROM members")
        .fetch_all(&portal.state.db.pool)
        .await
        .unwrap();
    assert!(
        hashes
            .iter()
            .all(|(h,)| h.as_deref().is_some_and(|h| h.starts_with("$argon2id$")))
    );
}
on_both_databases!(roles_tokens_and_sessions);

async fn registered_keys_take_over(db: Db) {
    use license::{Keyset, TrustPin, UnixTime, VerifyOptions};
    let portal = start(db).await;
    portal.seed_catalog(&portal.token).await;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    common::ok(common::portal(&[
        "keys",
        "init",
        "--out",
        keys.to_str().unwrap(),
        "--issuer",
        "acme",
    ]));
    let keyset = std::fs::read_to_string(keys.join("keyset.json")).unwrap();
    let pem = std::fs::read_to_string(keys.join("license-signing.key")).unwrap();
    // Without the signing key the portal could not issue: refused.
    let r = portal
        .post("/api/v1/keys/register", json!({"keyset": keyset}))
        .await;
    r.problem(422);
    let info = portal
        .post(
            "/api/v1/keys/register",
            json!({"keyset": keyset, "license_signing_key": pem}),
        )
        .await
        .expect(200);
    assert_eq!(info["custody"], "vendor");
    let held: Vec<&str> = info["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["held_by_portal"] == true)
        .map(|k| k["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        held,
        vec!["license"],
        "root and release keys left the portal: {info}"
    );
    // Licenses now verify against the vendor's own keyset file.
    let local = Keyset::verify(keyset.as_bytes(), &TrustPin::default()).unwrap();
    let issued = portal.issue(&portal.token).await;
    local
        .verify_license(
            issued["license"].as_str().unwrap(),
            &VerifyOptions::at(UnixTime::now()),
        )
        .unwrap();
    let served = portal
        .call(Method::GET, "/api/v1/vendors/acme/keyset", None, None)
        .await;
    assert_eq!(
        served.text, keyset,
        "the portal serves the vendor's keyset byte for byte"
    );
    // The portal cannot rotate an offline root; a replayed or foreign keyset is refused.
    portal
        .post("/api/v1/keys/rotate", json!({}))
        .await
        .problem(409);
    portal
        .post("/api/v1/keys/register", json!({"keyset": keyset}))
        .await
        .problem(409);
    let other = dir.path().join("other");
    common::ok(common::portal(&[
        "keys",
        "init",
        "--out",
        other.to_str().unwrap(),
        "--issuer",
        "acme",
    ]));
    let foreign = std::fs::read_to_string(other.join("keyset.json")).unwrap();
    assert!(
        portal
            .post("/api/v1/keys/register", json!({"keyset": foreign}))
            .await
            .problem(409)
            .contains("root")
    );
    let wrong_issuer = dir.path().join("wrong");
    common::ok(common::portal(&[
        "keys",
        "init",
        "--out",
        wrong_issuer.to_str().unwrap(),
        "--issuer",
        "globex",
    ]));
    let text = std::fs::read_to_string(wrong_issuer.join("keyset.json")).unwrap();
    assert!(
        portal
            .post("/api/v1/keys/register", json!({"keyset": text}))
            .await
            .problem(422)
            .contains("issuer")
    );
    let mut doc: Value = serde_json::from_str(&keyset).unwrap();
    doc["signed"]["seq"] = json!(9);
    let tampered = serde_json::to_string_pretty(&doc).unwrap();
    portal
        .post("/api/v1/keys/register", json!({"keyset": tampered}))
        .await
        .problem(422);
    // Rotating locally and registering again moves the portal to the new key.
    common::ok(common::portal(&[
        "keys",
        "rotate",
        "--keys",
        keys.to_str().unwrap(),
    ]));
    let rotated = std::fs::read_to_string(keys.join("keyset.json")).unwrap();
    let pem = std::fs::read_to_string(keys.join("license-signing.key")).unwrap();
    let info = portal
        .post(
            "/api/v1/keys/register",
            json!({"keyset": rotated, "license_signing_key": pem}),
        )
        .await
        .expect(200);
    assert_eq!(info["keyset_seq"], 2);
    let after = portal.issue(&portal.token).await;
    assert_ne!(after["kid"], issued["kid"]);
    // A keyset signed locally later (here after rotating the release key) is uploaded alone:
    // the portal keeps signing with the license key it holds.
    common::ok(common::portal(&[
        "keys",
        "rotate",
        "--keys",
        keys.to_str().unwrap(),
        "--release",
    ]));
    let newer = std::fs::read_to_string(keys.join("keyset.json")).unwrap();
    let info = portal
        .post("/api/v1/keys/register", json!({"keyset": newer}))
        .await
        .expect(200);
    assert_eq!(info["keyset_seq"], 3);
    let served = portal
        .call(Method::GET, "/api/v1/vendors/acme/keyset", None, None)
        .await;
    assert_eq!(served.text, newer);
    let last = portal.issue(&portal.token).await;
    assert_eq!(last["kid"], after["kid"]);
    Keyset::verify(newer.as_bytes(), &TrustPin::default())
        .unwrap()
        .verify_license(
            last["license"].as_str().unwrap(),
            &VerifyOptions::at(UnixTime::now()),
        )
        .unwrap();
}
on_both_databases!(registered_keys_take_over);

/// Starting with another master key than the database was created with fails at once, and the
/// signing keys in the database are sealed, never PEM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_key_guards_signing_keys() {
    use vendor_portal::server::{self, Config};
    let dir = tempfile::tempdir().unwrap();
    let first = common::server::master_key_file(dir.path());
    let config = Config {
        master_key_file: Some(first),
        ..Config::embedded(dir.path().join("data"))
    };
    let state = server::open(&config).await.unwrap();
    server::create_vendor(&state, "acme", "Acme", "o@acme.example")
        .await
        .unwrap();
    let sealed: Vec<(Option<String>,)> = sqlx::query_as("SELECT sealed_private FROM vendor_keys")
        .fetch_all(&state.db.pool)
        .await
        .unwrap();
    assert_eq!(sealed.len(), 3);
    assert!(sealed.iter().all(|(s,)| {
        s.as_deref()
            .is_some_and(|s| s.starts_with("v1.") && !s.contains("PRIVATE"))
    }));
    state.db.pool.close().await;
    let other_dir = tempfile::tempdir().unwrap();
    let wrong = Config {
        master_key_file: Some(common::server::master_key_file(other_dir.path())),
        ..config
    };
    let err = server::open(&wrong).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("not the one this database was created with"),
        "{err:#}"
    );
}

/// Housekeeping deletes expired sessions, old rate-limit windows, idempotency records past
/// their day, mail settled a month ago and expired sign-in attempts, and nothing else.
async fn housekeeping_deletes_only_what_expired(db: Db) {
    let portal = start(db).await;
    let pool = &portal.state.db.pool;
    let now = vendor_portal::server::base::now();
    let owner: (String, String) = sqlx::query_as("SELECT vendor_id, id FROM members LIMIT 1")
        .fetch_one(pool)
        .await
        .unwrap();
    for (bucket, start) in [("old", now - 7200), ("new", now)] {
        sqlx::query("INSERT INTO rate_limits (bucket, window_start, hits) VALUES ($1, $2, 1)")
            .bind(bucket)
            .bind(start)
            .execute(pool)
            .await
            .unwrap();
    }
    for (key, at) in [("old", now - 2 * 86_400), ("new", now)] {
        sqlx::query("INSERT INTO idempotency_keys (scope, idem_key, request_hash, status, body, created_at) VALUES ('s', $1, 'h', 201, '{}', $2)")
            .bind(key).bind(at).execute(pool).await.unwrap();
    }
    for (id, expires) in [("old", now - 1), ("new", now + 3600)] {
        sqlx::query("INSERT INTO sessions (id_hash, vendor_id, member_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(id).bind(&owner.0).bind(&owner.1).bind(now).bind(expires).execute(pool).await.unwrap();
    }
    for (id, sent) in [("old", Some(now - 31 * 86_400)), ("new", None)] {
        sqlx::query("INSERT INTO mail_outbox (id, cause, to_addr, subject, body, created_at, next_attempt_at, attempts, sent_at) VALUES ($1, $1, 'a@b.example', 's', 'b', $2, $2, 1, $3)")
            .bind(id).bind(now - 31 * 86_400).bind(sent).execute(pool).await.unwrap();
    }
    for (id, expires) in [("old", now - 1), ("new", now + 600)] {
        sqlx::query("INSERT INTO sso_attempts (id_hash, vendor_id, state, nonce, code_verifier, created_at, expires_at) VALUES ($1, $2, 's', 'n', 'v', $3, $4)")
            .bind(id).bind(&owner.0).bind(now).bind(expires).execute(pool).await.unwrap();
    }
    vendor_portal::server::housekeeping(&portal.state)
        .await
        .unwrap();
    for (table, column) in [
        ("rate_limits", "bucket"),
        ("idempotency_keys", "idem_key"),
        ("sessions", "id_hash"),
        ("mail_outbox", "id"),
        ("sso_attempts", "id_hash"),
    ] {
        let left: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {column} FROM {table} WHERE {column} IN ('old', 'new')"
        )))
        .fetch_all(pool)
        .await
        .unwrap();
        assert_eq!(left, vec![("new".to_owned(),)], "{table}");
    }
}
on_both_databases!(housekeeping_deletes_only_what_expired);
