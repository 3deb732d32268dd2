//! The vendor's whole license flow through the API, on SQLite and PostgreSQL: a license issued
//! from a plan verifies offline against the keyset the portal publishes; every change raises
//! `seq` and re-signs; the signed status tells the truth and binds the caller's nonce; the audit
//! log records every change in an unbroken chain.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use common::server::{Db, TestPortal, start};
use license::status::LicenseState;
use license::{Keyset, TrustPin, UnixTime, VerifyOptions};
use serde_json::json;
use vendor_portal::audit_chain::{AuditEntry, GENESIS, verify_chain};

async fn keyset(portal: &TestPortal) -> license::TrustedKeyset {
    let reply = portal
        .call(
            reqwest::Method::GET,
            "/api/v1/vendors/acme/keyset",
            None,
            None,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    Keyset::verify(reply.text.as_bytes(), &TrustPin::default()).unwrap()
}

async fn audit_entries(portal: &TestPortal) -> Vec<AuditEntry> {
    let page = portal
        .get("/api/v1/audit?after=0&limit=5000")
        .await
        .expect(200);
    serde_json::from_value(page["entries"].clone()).unwrap()
}

async fn license_lifecycle(db: Db) {
    let portal = start(db).await;
    portal.seed_catalog(&portal.token).await;
    let issued = portal.issue(&portal.token).await;
    let id = issued["id"].as_str().unwrap().to_owned();
    assert_eq!(issued["seq"], 1);
    assert_eq!(issued["state"], "active");
    assert_eq!(issued["plan"], "standard");
    // The plan's entitlements and the customer's account binding are in the signed claims.
    let trust = keyset(&portal).await;
    let verified = trust
        .verify_license(
            issued["license"].as_str().unwrap(),
            &VerifyOptions::at(UnixTime::now()),
        )
        .unwrap();
    let claims = verified.claims();
    assert_eq!(claims.iss.as_str(), "acme");
    assert_eq!(claims.sub.as_str(), "globex");
    assert_eq!(claims.aud.as_str(), "blog");
    assert_eq!(claims.entitlements.features.len(), 1);
    assert_eq!(claims.bindings.aws_accounts.len(), 1);
    assert!(claims.exp.as_secs() - claims.iat.as_secs() == 30 * 86_400);

    // Each change raises seq by one and the new file verifies with that seq.
    let mut seq = 1;
    for (action, body, state) in [
        ("suspend", json!({"reason": "unpaid invoice"}), "suspended"),
        ("reinstate", json!({}), "active"),
        ("renew", json!({}), "active"),
        ("revoke", json!({"reason": "contract ended"}), "revoked"),
    ] {
        let changed = portal
            .post(&format!("/api/v1/licenses/{id}/{action}"), body)
            .await
            .expect(200);
        seq += 1;
        assert_eq!(changed["seq"], seq, "{action}");
        assert_eq!(changed["state"], state, "{action}");
        let v = trust
            .verify_license(
                changed["license"].as_str().unwrap(),
                &VerifyOptions::at(UnixTime::now()),
            )
            .unwrap();
        assert_eq!(v.claims().seq, seq as u64);
        assert_eq!(v.claims().jti.as_str(), id);
    }
    let renewed_exp = portal
        .get(&format!("/api/v1/licenses/{id}"))
        .await
        .expect(200)["expires_at"]
        .as_i64()
        .unwrap();
    assert!(
        renewed_exp >= issued["expires_at"].as_i64().unwrap() + 30 * 86_400 - 5,
        "renew extends by the plan's duration"
    );

    // A revoked license changes no more.
    let again = portal
        .post(&format!("/api/v1/licenses/{id}/reinstate"), json!({}))
        .await;
    assert!(again.problem(409).contains("revoked"));

    // The download is the current file.
    let file = portal.get(&format!("/api/v1/licenses/{id}/file")).await;
    assert_eq!(file.status, 200);
    let v = trust
        .verify_license(&file.text, &VerifyOptions::at(UnixTime::now()))
        .unwrap();
    assert_eq!(v.claims().seq, 5);

    // The signed status says revoked at seq 5, and answers this nonce only.
    let nonce = "nonce-for-this-test-0001";
    let status = portal
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/vendors/acme/licenses/{id}/status?nonce={nonce}"),
            None,
            None,
        )
        .await
        .expect(200);
    let lid = license::claims::LicenseId::new(id.clone()).unwrap();
    let signed = trust
        .verify_status(status["signed"].as_str().unwrap(), &lid, nonce)
        .unwrap();
    assert_eq!(signed.state, LicenseState::Revoked);
    assert_eq!(signed.seq, 5);
    assert!(
        trust
            .verify_status(
                status["signed"].as_str().unwrap(),
                &lid,
                "another-nonce-000001"
            )
            .is_err()
    );
    let bad_nonce = portal
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/vendors/acme/licenses/{id}/status?nonce=short"),
            None,
            None,
        )
        .await;
    bad_nonce.problem(400);
    let missing = portal
        .call(
            reqwest::Method::GET,
            &format!(
                "/api/v1/vendors/acme/licenses/lic_000000000000000000000000/status?nonce={nonce}"
            ),
            None,
            None,
        )
        .await;
    missing.problem(404);

    // Listing filters.
    portal.issue(&portal.token).await;
    let all = portal.get("/api/v1/licenses").await.expect(200);
    assert_eq!(all.as_array().unwrap().len(), 2);
    let revoked = portal
        .get("/api/v1/licenses?state=revoked")
        .await
        .expect(200);
    assert_eq!(revoked.as_array().unwrap().len(), 1);
    assert_eq!(revoked[0]["id"], id.as_str());

    // Every change is in the audit log, chained from the genesis hash.
    let entries = audit_entries(&portal).await;
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    for expected in [
        "vendor.create",
        "app.create",
        "plan.create",
        "customer.create",
        "license.issue",
        "license.suspend",
        "license.reinstate",
        "license.renew",
        "license.revoke",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} missing from {actions:?}"
        );
    }
    let (head, _) = verify_chain(0, GENESIS, &entries).unwrap();
    assert_eq!(head, entries.len() as i64);
    let revoke: serde_json::Value = serde_json::from_str(
        &entries
            .iter()
            .find(|e| e.action == "license.revoke")
            .unwrap()
            .entry,
    )
    .unwrap();
    assert_eq!(revoke["detail"]["reason"], "contract ended");
    assert_eq!(revoke["actor"]["email"], "owner@acme.example");
    assert_eq!(revoke["source"], "127.0.0.1");
}
on_both_databases!(license_lifecycle);

/// Tampering with any stored entry is caught by the chain check, and the database refuses to
/// change entries at all.
async fn audit_chain_detects_tampering(db: Db) {
    let portal = start(db).await;
    portal.seed_catalog(&portal.token).await;
    let mut entries = audit_entries(&portal).await;
    assert!(verify_chain(0, GENESIS, &entries).is_ok());
    let mut altered = entries.clone();
    altered[2].entry = altered[2].entry.replace("blog", "b1og");
    assert!(
        verify_chain(0, GENESIS, &altered)
            .unwrap_err()
            .contains("altered")
    );
    let mut dropped = entries.clone();
    dropped.remove(1);
    assert!(
        verify_chain(0, GENESIS, &dropped)
            .unwrap_err()
            .contains("missing")
    );
    entries.swap(1, 2);
    assert!(verify_chain(0, GENESIS, &entries).is_err());
    let update = sqlx::query("UPDATE audit_log SET action = 'nothing' WHERE seq = 1")
        .execute(&portal.state.db.pool)
        .await;
    assert!(update.unwrap_err().to_string().contains("append-only"));
    let delete = sqlx::query("DELETE FROM audit_log")
        .execute(&portal.state.db.pool)
        .await;
    assert!(delete.unwrap_err().to_string().contains("append-only"));
}
on_both_databases!(audit_chain_detects_tampering);

/// Portal-held keys rotate: the new keyset has a higher seq and both keys; licenses signed
/// before still verify, new ones use the new key.
async fn portal_keys_rotate(db: Db) {
    let portal = start(db).await;
    portal.seed_catalog(&portal.token).await;
    let before = portal.issue(&portal.token).await;
    let info = portal
        .post("/api/v1/keys/rotate", json!({}))
        .await
        .expect(200);
    assert_eq!(info["keyset_seq"], 2);
    let trust = keyset(&portal).await;
    assert_eq!(trust.keyset().seq, 2);
    assert_eq!(trust.keyset().license_keys.len(), 2);
    trust
        .verify_license(
            before["license"].as_str().unwrap(),
            &VerifyOptions::at(UnixTime::now()),
        )
        .unwrap();
    let after = portal.issue(&portal.token).await;
    assert_ne!(after["kid"], before["kid"]);
    trust
        .verify_license(
            after["license"].as_str().unwrap(),
            &VerifyOptions::at(UnixTime::now()),
        )
        .unwrap();
}
on_both_databases!(portal_keys_rotate);

/// Listings and customers change in place; a license issued afterwards carries the customer's
/// new accounts, while one issued before keeps what it was signed with.
async fn updates_reach_new_licenses(db: Db) {
    let portal = start(db).await;
    portal.seed_catalog(&portal.token).await;
    let before = portal.issue(&portal.token).await;
    let app = portal
        .call(
            reqwest::Method::PATCH,
            "/api/v1/apps/blog",
            Some(&portal.token),
            Some(json!({"summary": "Now with comments", "categories": ["web"]})),
        )
        .await
        .expect(200);
    assert_eq!(
        (app["name"].as_str(), app["summary"].as_str()),
        (Some("Blog"), Some("Now with comments"))
    );
    let customer = portal
        .call(
            reqwest::Method::PATCH,
            "/api/v1/customers/globex",
            Some(&portal.token),
            Some(json!({"aws_accounts": ["210987654321"]})),
        )
        .await
        .expect(200);
    assert_eq!(customer["aws_accounts"], json!(["210987654321"]));
    let after = portal.issue(&portal.token).await;
    assert_eq!(
        after["claims"]["bindings"]["aws_accounts"],
        json!(["210987654321"])
    );
    assert_eq!(
        before["claims"]["bindings"]["aws_accounts"],
        json!(["123456789012"])
    );
    // Bad values are refused and change nothing; the slug is not a field.
    let bad = portal
        .call(
            reqwest::Method::PATCH,
            "/api/v1/customers/globex",
            Some(&portal.token),
            Some(json!({"aws_accounts": ["12"]})),
        )
        .await;
    bad.problem(422);
    let renamed = portal
        .call(
            reqwest::Method::PATCH,
            "/api/v1/apps/blog",
            Some(&portal.token),
            Some(json!({"slug": "other"})),
        )
        .await;
    renamed.problem(422);
    assert_eq!(
        portal.get("/api/v1/customers/globex").await.expect(200)["aws_accounts"],
        json!(["210987654321"])
    );
    let actions: Vec<String> = audit_entries(&portal)
        .await
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(
        actions.contains(&"app.update".to_owned())
            && actions.contains(&"customer.update".to_owned())
    );
}
on_both_databases!(updates_reach_new_licenses);
