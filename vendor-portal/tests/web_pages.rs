//! The web pages over HTTP, on SQLite and PostgreSQL: listings, search, trials, the buyer's and
//! the vendor's pages, and the attacks each check stands against (forged forms, cross-site
//! posts, script in listings, another buyer's license, a second trial). The same flow in a real
//! Chromium is `tests/tests/web_browser.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use common::server::{Db, TestPortal, start, start_with};
use reqwest::{Method, StatusCode, header};
use serde_json::json;
use tests::visitor::Visitor;
use vendor_portal::server::state::Limits;

async fn listed_blog(portal: &TestPortal) {
    listed_blog_without_release(portal).await;
    publish_blog(portal).await;
}

async fn listed_blog_without_release(portal: &TestPortal) {
    portal.seed_catalog(&portal.token).await;
    portal
        .post(
            "/api/v1/apps/blog/plans",
            json!({"slug": "trial", "name": "Trial", "trial": true, "duration_days": 14,
                   "entitlements": {"features": ["posts"], "max_installations": 1}}),
        )
        .await
        .expect(201);
    let listed = portal
        .call(
            Method::PATCH,
            "/api/v1/apps/blog",
            Some(&portal.token),
            Some(json!({"listed": true, "summary": "A blog in your account", "categories": ["content"]})),
        )
        .await
        .expect(200);
    assert_eq!(listed["listed"], true);
}

/// Publishes the reference app, renamed `blog`, as the app's first release (a trial needs
/// something to install).
async fn publish_blog(portal: &TestPortal) {
    let dir = tempfile::tempdir().unwrap();
    tests::portal::copy_tree(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/serverless-blog"),
        dir.path(),
    );
    let toml = dir.path().join("consign.toml");
    let text = std::fs::read_to_string(&toml).unwrap().replacen(
        "slug = \"serverless-blog\"",
        "slug = \"blog\"",
        1,
    );
    std::fs::write(&toml, text).unwrap();
    let vendor = portal.get("/api/v1/vendor").await.expect(200);
    vendor_portal::server::demo::publish_folder(
        &portal.state,
        &portal.token,
        vendor["id"].as_str().unwrap(),
        dir.path().to_path_buf(),
    )
    .await
    .unwrap();
}

async fn catalogue_lists_searches_and_filters(db: Db) {
    let portal = start(db).await;
    let mut visitor = Visitor::new(&portal.url);
    // Unlisted apps are nowhere on the marketplace.
    portal.seed_catalog(&portal.token).await;
    let page = visitor.get("/").await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("0 apps"), "{}", page.text);
    assert_eq!(visitor.get("/apps/acme/blog").await.status, 404);
    portal
        .call(
            Method::PATCH,
            "/api/v1/apps/blog",
            Some(&portal.token),
            Some(json!({"listed": true, "categories": ["content"]})),
        )
        .await
        .expect(200);
    let other = portal.other_vendor("initech").await;
    portal
        .call(Method::POST, "/api/v1/apps", Some(&other), Some(json!({
            "slug": "ledger", "name": "Ledger 100% Sync", "summary": "Books, in step", "categories": ["finance"], "listed": true})))
        .await
        .expect(201);
    assert!(visitor.get("/").await.text.contains("2 apps"));
    let found = visitor.get("/?q=blog").await.text;
    assert!(
        found.contains("1 app<") && found.contains("/apps/acme/blog"),
        "{found}"
    );
    // LIKE's wildcards are escaped: "100%" matches the literal text only.
    assert!(
        visitor
            .get("/?q=100%25")
            .await
            .text
            .contains("/apps/initech/ledger")
    );
    assert!(visitor.get("/?q=1_0").await.text.contains("0 apps"));
    assert!(
        visitor
            .get("/?category=finance")
            .await
            .text
            .contains("/apps/initech/ledger")
    );
    assert!(
        !visitor
            .get("/?category=finance")
            .await
            .text
            .contains("/apps/acme/blog")
    );
    assert!(visitor.get("/?vendor=acme").await.text.contains("1 app<"));
    let by_vendor = visitor.get("/?sort=vendor").await.text;
    assert!(by_vendor.find("/apps/acme/blog") < by_vendor.find("/apps/initech/ledger"));
    // Unpublishing takes it off again.
    portal
        .call(
            Method::PATCH,
            "/api/v1/apps/blog",
            Some(&portal.token),
            Some(json!({"listed": false})),
        )
        .await
        .expect(200);
    assert_eq!(visitor.get("/apps/acme/blog").await.status, 404);
}
on_both_databases!(catalogue_lists_searches_and_filters);

async fn script_in_a_listing_is_escaped(db: Db) {
    let portal = start(db).await;
    portal
        .post(
            "/api/v1/apps",
            json!({"slug": "xss", "name": "<script>alert(1)</script>",
            "summary": "\"><img src=x onerror=alert(1)>", "categories": ["<b>"], "listed": true}),
        )
        .await
        .expect(201);
    let mut visitor = Visitor::new(&portal.url);
    for path in ["/", "/apps/acme/xss", "/?q=%3Cscript%3E"] {
        let page = visitor.get(path).await;
        assert_eq!(page.status, 200, "{path}");
        assert!(!page.text.contains("<script>"), "{path}: {}", page.text);
        assert!(!page.text.contains("<img src=x"), "{path}");
        assert!(
            page.text.contains("&#60;script&#62;") || path.starts_with("/?q"),
            "{path}"
        );
        let csp = page.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(
            csp.contains("default-src 'none'") && !csp.contains("script-src"),
            "{csp}"
        );
        assert_eq!(page.headers[header::X_FRAME_OPTIONS], "DENY");
    }
}
on_both_databases!(script_in_a_listing_is_escaped);

async fn forged_forms_are_refused(db: Db) {
    let portal = start(db).await;
    let mut visitor = Visitor::new(&portal.url);
    // No token at all: a form posted from a page this portal never served.
    let no_token = visitor
        .send(
            visitor
                .http
                .post(format!("{}/signup", portal.url))
                .form(&[("name", "x")]),
        )
        .await;
    assert_eq!(no_token.status, 403);
    assert!(
        no_token.text.contains("security token"),
        "{}",
        no_token.text
    );
    // A wrong token.
    visitor.get("/signup").await;
    let wrong = visitor
        .send(
            visitor
                .http
                .post(format!("{}/signup", portal.url))
                .form(&[("csrf", "A".repeat(43).as_str()), ("name", "x")]),
        )
        .await;
    assert_eq!(wrong.status, 403);
    // The right token, from another site.
    let csrf = visitor.cookies["__Host-consign_csrf"].clone();
    let cross_site = visitor
        .send(
            visitor
                .http
                .post(format!("{}/signup", portal.url))
                .header(header::ORIGIN, "http://evil.example")
                .form(&[("csrf", csrf.as_str()), ("name", "x")]),
        )
        .await;
    assert_eq!(cross_site.status, 403);
    assert!(cross_site.text.contains("another site"));
    // Nothing was created by any of them.
    let buyers: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM buyers")
        .fetch_one(&portal.state.db.pool)
        .await
        .unwrap();
    assert_eq!(buyers, 0);
}
on_both_databases!(forged_forms_are_refused);

async fn trial_is_bound_to_the_account_and_once_per_app(db: Db) {
    let portal = start(db).await;
    listed_blog(&portal).await;
    let mut buyer = Visitor::new(&portal.url);
    // Without signing in, the trial form sends the buyer to sign in.
    buyer.get("/apps/acme/blog").await;
    let anonymous = buyer
        .post("/apps/acme/blog/trial", &[("plan", "trial")])
        .await;
    assert_eq!(anonymous.status, 303);
    assert!(anonymous.location().starts_with("/login?next="));
    buyer
        .sign_up("pat@initech.example", "Initech, Inc.", "210987654321")
        .await;
    // A plan that is not a trial is refused.
    assert_eq!(
        buyer
            .post("/apps/acme/blog/trial", &[("plan", "standard")])
            .await
            .status,
        422
    );
    let started = buyer
        .post("/apps/acme/blog/trial", &[("plan", "trial")])
        .await;
    assert_eq!(started.status, 303, "{}", started.text);
    let license_path = started.location().split('?').next().unwrap().to_owned();
    let page = buyer.get(started.location()).await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("Your trial license is ready"));
    assert!(page.text.contains("installer login --portal"));
    let file = buyer.get(&format!("{license_path}/file")).await;
    assert_eq!(file.status, 200);
    assert!(
        file.text.starts_with("-----BEGIN CONSIGN LICENSE-----"),
        "{}",
        file.text
    );
    let id = license_path.rsplit('/').next().unwrap();
    let license = portal
        .get(&format!("/api/v1/licenses/{id}"))
        .await
        .expect(200);
    assert_eq!(license["claims"]["trial"], true);
    // The typed account is a hint: the trial binds to the account its first grant or
    // activation proves (tests/tests/account_proofs.rs), so the license names none.
    assert_eq!(license["claims"]["bindings"]["aws_accounts"], json!([]));
    assert_eq!(license["plan"], "trial");
    // The vendor's audit log names the buyer.
    let audit = portal.get("/api/v1/audit").await.expect(200).to_string();
    assert!(audit.contains("pat@initech.example"), "{audit}");
    // A second trial of the same app by the same buyer is refused with the reason.
    let again = buyer
        .post("/apps/acme/blog/trial", &[("plan", "trial")])
        .await;
    assert_eq!(again.status, 409);
    assert!(
        again.text.contains("one trial per app and buyer"),
        "{}",
        again.text
    );
    let mut colleague = Visitor::new(&portal.url);
    colleague
        .sign_up("sam@initech.example", "Initech", "210987654321")
        .await;
    colleague.get("/apps/acme/blog").await;
    // A colleague typing the same account gets a license; the account decides at its proof.
    assert_eq!(
        colleague
            .post("/apps/acme/blog/trial", &[("plan", "trial")])
            .await
            .status,
        303
    );
    // Another buyer cannot see or download the first buyer's license.
    assert_eq!(colleague.get(&license_path).await.status, 404);
    assert_eq!(
        colleague.get(&format!("{license_path}/file")).await.status,
        404
    );
    assert!(!colleague.get("/account").await.text.contains(id));
    // Revoked by the vendor: the buyer's pages say so, with the reason, and offer neither
    // install commands nor the download.
    portal
        .post(
            &format!("/api/v1/licenses/{id}/revoke"),
            json!({"reason": "trial abuse"}),
        )
        .await
        .expect(200);
    let account = buyer.get("/account").await.text;
    assert!(
        account.contains(&format!("data-license-state=\"{id}\">revoked")),
        "{account}"
    );
    let page = buyer.get(&license_path).await.text;
    assert!(
        page.contains("id=\"ended\"") && page.contains("trial abuse"),
        "{page}"
    );
    assert!(
        !page.contains("id=\"download\"") && !page.contains("installer login"),
        "{page}"
    );
}
on_both_databases!(trial_is_bound_to_the_account_and_once_per_app);

async fn trials_are_rate_limited(db: Db) {
    let portal = start_with(
        db,
        Limits {
            trials_per_hour: 1,
            ..Limits::default()
        },
    )
    .await;
    listed_blog(&portal).await;
    let mut buyer = Visitor::new(&portal.url);
    buyer
        .sign_up("pat@initech.example", "Initech", "210987654321")
        .await;
    buyer.get("/apps/acme/blog").await;
    assert_eq!(
        buyer
            .post("/apps/acme/blog/trial", &[("plan", "trial")])
            .await
            .status,
        303
    );
    let limited = buyer
        .post("/apps/acme/blog/trial", &[("plan", "trial")])
        .await;
    assert_eq!(limited.status, 429);
    assert!(limited.text.contains("<html"), "an error page, not JSON");
}
on_both_databases!(trials_are_rate_limited);

/// The app's page offers only what a buyer can use: no trial before the first release (and the
/// trial form refused if posted anyway), sign-up and sign-in that come back to the trial form,
/// and install commands complete with the vendor's root fingerprint and where `installer` comes
/// from.
async fn app_page_offers_what_a_buyer_can_use(db: Db) {
    let portal = start(db).await;
    listed_blog_without_release(&portal).await;
    let mut buyer = Visitor::new(&portal.url);
    let page = buyer.get("/apps/acme/blog").await.text;
    assert!(page.contains("id=\"no-trial\""), "{page}");
    assert!(!page.contains("Sign up to start a trial"), "{page}");
    buyer
        .sign_up("pat@globex.example", "Globex", "123456789012")
        .await;
    buyer.get("/apps/acme/blog").await;
    let refused = buyer
        .post("/apps/acme/blog/trial", &[("plan", "trial")])
        .await;
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert!(refused.text.contains("no release yet"), "{}", refused.text);
    // Refused pages keep the buyer's header.
    assert!(
        refused.text.contains("Sign out Pat Buyer"),
        "{}",
        refused.text
    );

    publish_blog(&portal).await;
    let mut visitor = Visitor::new(&portal.url);
    let page = visitor.get("/apps/acme/blog").await.text;
    assert!(
        page.contains("/signup?next=%2Fapps%2Facme%2Fblog%23trial")
            && page.contains("/login?next=%2Fapps%2Facme%2Fblog%23trial"),
        "{page}"
    );
    let keyset = portal.get("/api/v1/vendors/acme/keyset").await;
    let root = license::Keyset::verify(keyset.text.as_bytes(), &license::TrustPin::default())
        .unwrap()
        .root_fingerprint();
    assert!(page.contains(&format!("--trust-root {root}")), "{page}");
    assert!(
        page.contains("cargo build --release -p installer"),
        "{page}"
    );
    // Signing up from there comes back to the trial form.
    visitor
        .get("/signup?next=%2Fapps%2Facme%2Fblog%23trial")
        .await;
    let signed_up = visitor
        .post(
            "/signup",
            &[
                ("name", "Kim Buyer"),
                ("company", "Hooli"),
                ("email", "kim@hooli.example"),
                ("password", "correct horse battery"),
                ("aws_account", "345678901234"),
                ("next", "/apps/acme/blog#trial"),
            ],
        )
        .await;
    assert_eq!(
        signed_up.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_up.text
    );
    assert_eq!(signed_up.location(), "/apps/acme/blog#trial");
    let page = visitor.get("/apps/acme/blog").await.text;
    assert!(page.contains("id=\"start-trial\""), "{page}");
}
on_both_databases!(app_page_offers_what_a_buyer_can_use);

async fn console_acts_through_the_api(db: Db) {
    let portal = start(db).await;
    listed_blog(&portal).await;
    let license = portal.issue(&portal.token).await;
    let id = license["id"].as_str().unwrap();
    let mut vendor = Visitor::new(&portal.url);
    // Pages need a session.
    let page = vendor.get("/console/customers").await;
    assert_eq!(page.status, 303);
    assert_eq!(
        page.location(),
        "/console/login?next=%2Fconsole%2Fcustomers"
    );
    // The password comes from a member created through the API.
    let member = portal
        .post(
            "/api/v1/members",
            json!({"email": "ops@acme.example", "role": "publisher"}),
        )
        .await
        .expect(201);
    let password = member["password"].as_str().unwrap();
    vendor.get("/console/login").await;
    let wrong = vendor
        .post(
            "/console/login",
            &[
                ("vendor", "acme"),
                ("email", "ops@acme.example"),
                ("password", "nope"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.text.contains("wrong"));
    let signed_in = vendor
        .post(
            "/console/login",
            &[
                ("vendor", "acme"),
                ("email", "ops@acme.example"),
                ("password", password),
                ("next", "/console/customers"),
            ],
        )
        .await;
    assert_eq!(signed_in.status, 303);
    assert_eq!(signed_in.location(), "/console/customers");
    assert!(
        vendor
            .get("/console/customers")
            .await
            .text
            .contains("/console/customers/globex")
    );
    // Suspend, reinstate, revoke: each is the API's change, audited as the member.
    for (action, state) in [
        ("suspend", "suspended"),
        ("reinstate", "active"),
        ("revoke", "revoked"),
    ] {
        let path = format!("/console/licenses/{id}/{action}");
        if action != "reinstate" {
            // Suspending and revoking ask first, on a page that says what they do; nothing
            // changes until the member confirms.
            let asked = vendor.post(&path, &[("reason", "test")]).await;
            assert_eq!(asked.status, 200, "{action}: {}", asked.text);
            assert!(
                asked.text.contains("name=\"confirm\" value=\"yes\""),
                "{}",
                asked.text
            );
            assert!(asked.text.contains("next check-in"), "{}", asked.text);
            assert_ne!(
                portal
                    .get(&format!("/api/v1/licenses/{id}"))
                    .await
                    .expect(200)["state"],
                state,
                "{action} happened before it was confirmed"
            );
        }
        let done = vendor
            .post(&path, &[("reason", "test"), ("confirm", "yes")])
            .await;
        assert_eq!(done.status, 303, "{action}: {}", done.text);
        assert_eq!(
            done.location(),
            format!("/console/customers/globex?done={action}")
        );
        assert_eq!(
            portal
                .get(&format!("/api/v1/licenses/{id}"))
                .await
                .expect(200)["state"],
            state
        );
    }
    let page = vendor
        .get("/console/customers/globex?done=revoke")
        .await
        .text;
    assert!(page.contains("The license is revoked"));
    assert!(page.contains(&format!("data-license-state=\"{id}\">revoked")));
    // Unpublish through the console.
    let unlisted = vendor
        .post("/console/apps/blog/listing", &[("listed", "false")])
        .await;
    assert_eq!(unlisted.status, 303);
    assert_eq!(
        portal.get("/api/v1/apps/blog").await.expect(200)["listed"],
        false
    );
    let audit = vendor.get("/console/audit").await.text;
    assert!(
        audit.contains("license.revoke") && audit.contains("ops@acme.example (publisher, console)"),
        "{audit}"
    );
    assert!(audit.contains("app.unpublish"), "{audit}");
    // The portal holds this vendor's release key, so the console promotes and yanks, signed by
    // the portal.
    let app_page = vendor.get("/console/apps/blog").await.text;
    assert!(app_page.contains("id=\"promote-1.0.0\""), "{app_page}");
    let promoted = vendor
        .post(
            "/console/apps/blog/releases/1.0.0/promote",
            &[("channel", "beta")],
        )
        .await;
    assert_eq!(promoted.status, 303, "{}", promoted.text);
    assert_eq!(promoted.location(), "/console/apps/blog?done=promoted");
    let yanked = vendor
        .post(
            "/console/apps/blog/releases/1.0.0/yank",
            &[("reason", "broken posts")],
        )
        .await;
    assert_eq!(yanked.status, 303, "{}", yanked.text);
    let release = portal
        .get("/api/v1/apps/blog/releases/1.0.0")
        .await
        .expect(200);
    assert_eq!(release["channels"], json!(["stable", "beta"]), "{release}");
    assert_eq!(release["yanked"], "broken posts", "{release}");
    // Unpublished, the app's page is the vendor's alone, and says so.
    let own = vendor.get("/apps/acme/blog").await;
    assert_eq!(own.status, 200);
    assert!(own.text.contains("id=\"unpublished\""), "{}", own.text);
    assert_eq!(
        Visitor::new(&portal.url)
            .get("/apps/acme/blog")
            .await
            .status,
        404
    );
    // An error page keeps the member's header, with a way back to the console.
    let missing = vendor.get("/console/customers/nobody-at-all").await;
    assert_eq!(missing.status, 404);
    assert!(
        missing.text.contains("Sign out ops@acme.example"),
        "{}",
        missing.text
    );
    assert!(
        missing.text.contains("Back to the console"),
        "{}",
        missing.text
    );
    // So does the 404 of an address no route knows.
    let nowhere = vendor.get("/no/such/page").await;
    assert_eq!(nowhere.status, 404);
    assert!(
        nowhere.text.contains("Sign out ops@acme.example"),
        "{}",
        nowhere.text
    );
    assert_eq!(
        Visitor::new(&portal.url).get("/no/such/page").await.status,
        404
    );
    // Another vendor's customer is as absent as one that does not exist.
    let other = portal.other_vendor("initech").await;
    portal
        .call(
            Method::POST,
            "/api/v1/customers",
            Some(&other),
            Some(json!({"slug": "hooli", "name": "Hooli"})),
        )
        .await
        .expect(201);
    let foreign = vendor.get("/console/customers/hooli").await;
    assert_eq!(foreign.status, 404);
    assert!(!foreign.text.contains("Hooli"));
    assert_eq!(vendor.get("/console/customers/nobody").await.status, 404);
    // Sign out ends the session.
    vendor.post("/console/logout", &[]).await;
    assert_eq!(vendor.get("/console").await.status, 303);
}
on_both_databases!(console_acts_through_the_api);

/// Signs `visitor` in to the console as `email`.
async fn console_sign_in(visitor: &mut Visitor, email: &str, password: &str) {
    visitor.get("/console/login").await;
    let signed_in = visitor
        .post(
            "/console/login",
            &[("vendor", "acme"), ("email", email), ("password", password)],
        )
        .await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.text);
}

async fn console_members_page_ends_access(db: Db) {
    let portal = start(db).await;
    for (email, role) in [
        ("boss@acme.example", "owner"),
        ("dev@acme.example", "publisher"),
    ] {
        portal
            .post(
                "/api/v1/members",
                json!({"email": email, "role": role, "password": "a long member password"}),
            )
            .await
            .expect(201);
    }
    let mut developer = Visitor::new(&portal.url);
    console_sign_in(&mut developer, "dev@acme.example", "a long member password").await;
    // A publisher sees the members but no forms.
    let page = developer.get("/console/members").await;
    assert_eq!(page.status, 200);
    assert!(
        page.text.contains("Owners manage members."),
        "{}",
        page.text
    );
    assert!(!page.text.contains("Reset password"));

    let mut boss = Visitor::new(&portal.url);
    console_sign_in(&mut boss, "boss@acme.example", "a long member password").await;
    let members = portal.get("/api/v1/members").await.expect(200);
    let dev_id = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "dev@acme.example")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let page = boss.get("/console/members").await;
    assert!(
        page.text
            .contains(&format!("/console/members/{dev_id}/disable")),
        "{}",
        page.text
    );
    // Disabling from the console ends the developer's console session at once.
    let done = boss
        .post(&format!("/console/members/{dev_id}/disable"), &[])
        .await;
    assert_eq!(done.status, 303, "{}", done.text);
    assert_eq!(done.location(), "/console/members?done=member-disable");
    assert!(boss.get(done.location()).await.text.contains("disabled"));
    assert_eq!(
        developer.get("/console/members").await.status,
        303,
        "the session survived"
    );
    // A password reset shows the new password once, on the page that answers the form.
    boss.post(&format!("/console/members/{dev_id}/enable"), &[])
        .await;
    let reset = boss
        .post(&format!("/console/members/{dev_id}/password"), &[])
        .await;
    assert_eq!(reset.status, 200);
    assert!(reset.text.contains("is shown only now"), "{}", reset.text);
    assert!(
        !boss
            .get("/console/members")
            .await
            .text
            .contains("is shown only now")
    );
    // A forged form (no CSRF token) changes nothing.
    let forged = boss
        .send(
            boss.http
                .post(format!("{}/console/members/{dev_id}/remove", boss.base))
                .form(&[("csrf", "forged")]),
        )
        .await;
    assert_eq!(forged.status, 403);
    assert!(
        portal
            .get("/api/v1/members")
            .await
            .text
            .contains("dev@acme.example")
    );
    let removed = boss
        .post(&format!("/console/members/{dev_id}/remove"), &[])
        .await;
    assert_eq!(removed.location(), "/console/members?done=member-remove");
    assert!(
        !portal
            .get("/api/v1/members")
            .await
            .text
            .contains("dev@acme.example")
    );
}
on_both_databases!(console_members_page_ends_access);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_pages_for_people_and_problems_for_programs() {
    let portal = start(Db::Sqlite).await;
    let mut visitor = Visitor::new(&portal.url);
    let page = visitor.get("/no/such/page").await;
    assert_eq!(page.status, 404);
    assert!(
        page.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text.contains("Start from the marketplace"));
    // A page path with the wrong method is a page too.
    let wrong_method = visitor.get("/logout").await;
    assert_eq!(wrong_method.status, 405);
    assert!(
        wrong_method.text.contains("use its button"),
        "{}",
        wrong_method.text
    );
    // Odd query strings are not errors on the catalogue.
    assert_eq!(visitor.get("/?page=x&sort=%00&q=%FF").await.status, 200);
    let api = visitor.get("/api/v1/nothing").await;
    assert_eq!(api.status, 404);
    assert!(
        api.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .contains("problem+json")
    );
    // A malformed form is a page saying what to do.
    visitor.get("/signup").await;
    let bad = visitor.post("/signup", &[("aws_account", "12")]).await;
    assert_eq!(bad.status, 422);
    assert!(bad.text.contains("Give your name"));
}
