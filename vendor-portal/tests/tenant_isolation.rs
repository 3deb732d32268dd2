//! Tenant isolation, walked over every endpoint of the OpenAPI document, on SQLite and
//! PostgreSQL: with vendor B's token nothing of vendor A's is read or changed, and a foreign id
//! gets the same 404 as an id that does not exist; with no token every protected endpoint is
//! 401. A new endpoint is walked as soon as it is in the document; one without a request body
//! here fails the test until it gets one.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use common::server::{Db, start_with};
use reqwest::Method;
use serde_json::{Value, json};

/// A request body for each POST and PATCH: creations under B's own names (so that A's names in paths stay
/// foreign to B), everything else naming A's things.
fn body_for(path: &str) -> Value {
    match path {
        "/api/v1/apps" => json!({"slug": "b-blog", "name": "B's blog"}),
        "/api/v1/apps/{app}/plans" => json!({"slug": "standard", "name": "S", "duration_days": 5}),
        "/api/v1/customers" => json!({"slug": "b-globex", "name": "B's globex"}),
        "/api/v1/licenses" => json!({"customer": "globex", "app": "blog", "plan": "standard"}),
        "/api/v1/licenses/{id}/renew" => json!({}),
        "/api/v1/licenses/{id}/suspend"
        | "/api/v1/licenses/{id}/reinstate"
        | "/api/v1/licenses/{id}/revoke" => {
            json!({"reason": "attack"})
        }
        "/api/v1/members" => json!({"email": "new@initech.example", "role": "owner"}),
        "/api/v1/members/{id}" => json!({"disabled": true}),
        "/api/v1/members/{id}/password" => json!({"password": "a long stolen password"}),
        "/api/v1/tokens" => json!({"name": "stolen"}),
        "/api/v1/tokens/{id}/revoke" => json!({}),
        "/api/v1/keys/register" => json!({"keyset": "{}"}),
        "/api/v1/keys/rotate" => json!({}),
        "/api/v1/session" => {
            json!({"vendor": "acme", "email": "owner@acme.example", "password": "guess-guess-guess"})
        }
        "/api/v1/apps/{app}/releases/missing" => json!({"digests": []}),
        "/api/v1/apps/{app}/releases/{version}/change" => json!({"yank": "attack"}),
        "/api/v1/licenses/{id}/kit-keys" => {
            json!({"version": "1.0.0", "recipient": "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="})
        }
        "/api/v1/grants" => json!({"license": "x", "app": "blog", "version": "1.0.0",
                                   "public_key": "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="}),
        "/api/v1/installations" | "/api/v1/installations/checkin" => {
            json!({"payload": "e30", "signature": "AAAA"})
        }
        "/api/v1/proofs/nonce" => json!({}),
        "/api/v1/proofs" => json!({"license": "x", "proof": {"url": "https://sts.amazonaws.com/",
                                                           "headers": {}, "body": ""}}),
        "/api/v1/installations/remove" => json!({"license": "x", "aws_account": "123456789012",
                                                 "region": "eu-west-1", "stack": "blog"}),
        "/api/v1/webhooks" => json!({"url": "https://example.com/b-hook"}),
        "/api/v1/usage/import" => json!({"format": "consign-usage-export-v1"}),
        "/api/v1/support/key" => {
            json!({"public_key": "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="})
        }
        "/api/v1/support/bundles" => {
            json!({"license": "x", "stack": "blog", "aws_account": "123456789012",
                                            "region": "eu-west-1", "sealed": ""})
        }
        "/api/v1/webhooks/{id}/test" | "/api/v1/webhooks/deliveries/{id}/redeliver" => json!({}),
        // PUT
        "/api/v1/apps/{app}/releases/{version}" => {
            json!({"manifest": "{}", "signature": {"kid": "k", "signature": ""}, "keys": "{}"})
        }
        "/api/v1/apps/{app}/tuf/root" | "/api/v1/apps/{app}/tuf/targets" => json!({}),
        "/api/v1/sso" => json!({"issuer": "https://127.0.0.1", "client_id": "stolen",
                                "client_secret": "x", "allowed_domains": ["acme.example"]}),
        "/api/v1/objects/{digest}" | "/api/v1/objects/{digest}/parts/{n}" => json!({}),
        "/api/v1/objects/{digest}/complete" => json!({"parts": 1}),
        // PATCH
        "/api/v1/apps/{app}" => json!({"name": "Defaced"}),
        "/api/v1/customers/{customer}" => json!({"aws_accounts": ["999999999999"]}),
        other => panic!("tenant_isolation.rs has no request body for {other}: add one"),
    }
}

async fn every_endpoint_isolates_vendors(db: Db) {
    // The walk makes two unauthenticated calls per endpoint: more than the default failed-auth
    // limit allows one address in a minute.
    let limits = vendor_portal::server::state::Limits {
        auth_failures_per_minute: 10_000,
        // A's webhook endpoint is on loopback (nothing listens there).
        webhook_allow_private: true,
        ..Default::default()
    };
    let portal = start_with(db, limits).await;
    let a = portal.token.clone();
    portal.seed_catalog(&a).await;
    let license = portal.issue(&a).await;
    let license_id = license["id"].as_str().unwrap().to_owned();
    let a_token = portal
        .post("/api/v1/tokens", json!({"name": "a's"}))
        .await
        .expect(201);
    let a_token_id = a_token["id"].as_str().unwrap().to_owned();
    let a_app_id = portal.get("/api/v1/apps/blog").await.expect(200)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let a_customer_id = portal.get("/api/v1/customers/globex").await.expect(200)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let a_keyset = portal
        .call(Method::GET, "/api/v1/vendors/acme/keyset", None, None)
        .await
        .text;
    let a_endpoint = portal
        .post(
            "/api/v1/webhooks",
            json!({"url": "http://127.0.0.1:9/a-hook", "description": "A's receiver"}),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let a_delivery = portal
        .post(&format!("/api/v1/webhooks/{a_endpoint}/test"), json!({}))
        .await
        .expect(202)["delivery"]
        .as_str()
        .unwrap()
        .to_owned();
    // A support bundle A's customer sent (sealed bytes the portal only stores).
    let a_bundle = portal
        .call(
            Method::POST,
            "/api/v1/support/bundles",
            None,
            Some(json!({"license": license["license"], "stack": "blog", "aws_account": "123456789012",
                "region": "eu-west-1", "sealed": "Y29uc2lnbi13cmFwLXYxAHNlYWxlZA=="})),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let a_audit_head = portal.get("/api/v1/audit").await.expect(200)["head_seq"].clone();
    let a_secrets = [
        license_id.as_str(),
        a_token_id.as_str(),
        a_app_id.as_str(),
        a_customer_id.as_str(),
        "owner@acme.example",
        "Globex",
        "a-hook",
        "A's receiver",
    ];

    let b = portal.other_vendor("initech").await;
    let doc = portal
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await
        .expect(200);
    let mut walked = 0;
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let secured = op.get("security").is_some();
            let public_vendor_path = template.starts_with("/api/v1/vendors/{vendor}");
            let fill = |id: &str| {
                template
                    .replace("{app}", "blog")
                    .replace("{customer}", "globex")
                    .replace("{vendor}", "acme")
                    .replace("{id}", id)
                    .replace("{version}", "1.0.0")
                    .replace("{n}", "0")
                    .replace(
                        "{digest}",
                        "sealed-sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                    )
            };
            let a_id = if template.starts_with("/api/v1/tokens") {
                &a_token_id
            } else if template.starts_with("/api/v1/support/bundles/") {
                &a_bundle
            } else if template.starts_with("/api/v1/webhooks/deliveries/") {
                &a_delivery
            } else if template.starts_with("/api/v1/webhooks/") {
                &a_endpoint
            } else {
                &license_id
            };
            let path = fill(a_id);
            let path = if template.ends_with("/status") {
                format!("{path}?nonce=isolation-walk-nonce")
            } else {
                path
            };
            let body = (method == Method::POST || method == Method::PATCH || method == Method::PUT)
                .then(|| body_for(template));
            walked += 1;

            // No credentials: every protected endpoint refuses.
            if secured {
                let r = portal.call(method.clone(), &path, None, body.clone()).await;
                assert_eq!(
                    r.status, 401,
                    "{method} {template} without a token: {}",
                    r.text
                );
                let r = portal
                    .call(
                        method.clone(),
                        &path,
                        Some("cns_not-a-real-token"),
                        body.clone(),
                    )
                    .await;
                assert_eq!(
                    r.status, 401,
                    "{method} {template} with a bad token: {}",
                    r.text
                );
            }
            if public_vendor_path || !secured {
                continue;
            }
            // Vendor B: nothing of A's comes back, whatever the status.
            let r = portal
                .call(method.clone(), &path, Some(&b), body.clone())
                .await;
            assert!(r.status.as_u16() < 500, "{method} {template}: {}", r.text);
            // The caller's own input echoed in an error is not a leak.
            let answer = if template.contains("{id}") {
                r.text.replace(a_id.as_str(), "ID")
            } else {
                r.text.clone()
            };
            for secret in a_secrets {
                assert!(
                    !answer.contains(secret),
                    "{method} {template} as B leaked {secret}: {}",
                    r.text
                );
            }
            // A's ids in the path: the same 404 as an id that does not exist. (Object uploads
            // name no one's resource: objects are stored per vendor.)
            if template.contains('{') && !template.starts_with("/api/v1/objects/") {
                assert_eq!(r.status, 404, "{method} {template} as B: {}", r.text);
                let missing = portal
                    .call(
                        method.clone(),
                        &fill("lic_ffffffffffffffffffffffff"),
                        Some(&b),
                        body.clone(),
                    )
                    .await;
                let (got, expected) = (r.json(), missing.json());
                assert_eq!(got["code"], expected["code"], "{template}");
                let normalise = |v: &Value| {
                    v["detail"]
                        .as_str()
                        .unwrap()
                        .replace(a_id.as_str(), "ID")
                        .replace("lic_ffffffffffffffffffffffff", "ID")
                };
                assert_eq!(normalise(&got), normalise(&expected), "{template}");
            }
        }
    }
    assert!(walked >= 30, "walked only {walked} operations");

    // A's things are as they were.
    let still = portal
        .get(&format!("/api/v1/licenses/{license_id}"))
        .await
        .expect(200);
    assert_eq!(
        (still["state"].as_str(), still["seq"].as_i64()),
        (Some("active"), Some(1))
    );
    assert_eq!(
        portal
            .call(
                Method::GET,
                "/api/v1/apps",
                Some(a_token["token"].as_str().unwrap()),
                None
            )
            .await
            .status,
        200
    );
    assert_eq!(
        portal
            .call(Method::GET, "/api/v1/vendors/acme/keyset", None, None)
            .await
            .text,
        a_keyset
    );
    assert_eq!(
        portal.get("/api/v1/audit").await.expect(200)["head_seq"],
        a_audit_head
    );
    assert_eq!(
        portal.get("/api/v1/apps/blog").await.expect(200)["name"],
        "Blog"
    );
    // B's own namespace got B's things.
    assert_eq!(
        portal
            .call(Method::GET, "/api/v1/apps/b-blog", Some(&b), None)
            .await
            .expect(200)["name"],
        "B's blog"
    );
}
on_both_databases!(every_endpoint_isolates_vendors);

/// Installations are freed by the license's own vendor only: vendor B registers keys of its
/// own and signs a license carrying vendor A's license id, then asks to free A's seat.
async fn another_vendors_seat_cannot_be_freed(db: Db) {
    let portal = start_with(db, Default::default()).await;
    let a = portal.token.clone();
    portal.seed_catalog(&a).await;
    let license = portal.issue(&a).await;
    let license_id = license["id"].as_str().unwrap().to_owned();
    // A's customer runs the license in a stack (the seat, as an activation records it).
    let vendor_id: String = sqlx::Row::get(
        &sqlx::query("SELECT vendor_id FROM licenses WHERE id = $1")
            .bind(&license_id)
            .fetch_one(&portal.state.db.pool)
            .await
            .unwrap(),
        "vendor_id",
    );
    sqlx::query(
        "INSERT INTO installations (id, vendor_id, license_id, aws_account, region, stack, version, \
         created_at, last_seen_at) VALUES ('ins_a', $1, $2, '123456789012', 'eu-west-1', 'blog', '1.0.0', 1, 1)",
    )
    .bind(&vendor_id)
    .bind(&license_id)
    .execute(&portal.state.db.pool)
    .await
    .unwrap();

    // Vendor B holds its own keys, registered with the portal.
    let b = portal.other_vendor("initech").await;
    let mut keys = tests::Vendor::with_seq(7);
    keys.keyset.issuer = Some("initech".parse().unwrap());
    keys.keyset_json = keys.keyset.sign(&keys.root).unwrap();
    portal
        .call(
            Method::POST,
            "/api/v1/keys/register",
            Some(&b),
            Some(json!({"keyset": keys.keyset_json,
                        "license_signing_key": keys.signer.to_pem().as_str()})),
        )
        .await
        .expect(200);
    let mut claims = keys.claims();
    claims.jti = license_id.parse().unwrap();
    let forged = keys.sign(&claims);
    let remove = json!({"license": forged, "aws_account": "123456789012",
                        "region": "eu-west-1", "stack": "blog"});
    let r = portal
        .call(
            Method::POST,
            "/api/v1/installations/remove",
            None,
            Some(remove),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert!(r.text.contains("was not issued by initech"), "{}", r.text);
    let removed: Option<i64> = sqlx::Row::get(
        &sqlx::query("SELECT removed_at FROM installations WHERE id = 'ins_a'")
            .fetch_one(&portal.state.db.pool)
            .await
            .unwrap(),
        "removed_at",
    );
    assert_eq!(removed, None, "vendor B freed vendor A's seat");
}
on_both_databases!(another_vendors_seat_cannot_be_freed);
