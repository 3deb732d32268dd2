//! The marketplace and the vendor console in a real Chromium (Debian's, over WebDriver), on the
//! portal's demo data: a buyer searches, opens the reference blog's page, reads what it creates
//! and which IAM actions it holds and the complete install commands, signs up from the page and
//! comes back to it, starts a trial, downloads the license, and `license-agent verify` accepts
//! it; an app with no release offers no trial. The vendor signs in, finds the trial customer and
//! revokes the license after confirming, reads the audit log in words and the release notes,
//! promotes a release the portal signs for it, unpublishes the blog and still sees its page
//! marked unpublished; the buyer gets a 404 that keeps their header, and the license page shows
//! the revocation's reason with nothing to download. Each step's screenshot is saved under
//! `target/test-artifacts/web_browser/<database>/`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::PathBuf;
use std::process::Command;

use tests::bin;
use tests::browser::Browser;
use tests::portal::PortalSetup;

fn artifacts(name: &str) -> PathBuf {
    let dir = std::env::var_os("CONSIGN_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts")
        })
        .join("web_browser")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn buyer_and_vendor_in_chromium(postgres: bool) {
    let name = if postgres { "postgres" } else { "sqlite" };
    let dir = tempfile::tempdir().unwrap();
    let setup = PortalSetup::new(dir.path(), postgres);
    let (portal, password) = setup.start_demo();
    let url = portal.url.clone();
    let shots = artifacts(name);

    // The buyer searches the catalogue and opens the blog.
    let mut buyer = Browser::start(&shots.join("buyer"), &dir.path().join("downloads"));
    buyer.goto(&format!("{url}/"));
    assert!(
        buyer.text("#result-count").contains("6 apps"),
        "{}",
        buyer.source()
    );
    buyer.screenshot("catalogue");
    // From the keyboard: the search form submits on Enter (WebDriver's key U+E007).
    buyer.type_into("#q", "blog\u{E007}");
    buyer.wait_for_url("the search's results", |url| url.contains("q=blog"));
    assert_eq!(buyer.text("#result-count"), "1 app");
    buyer.screenshot("search-blog");
    buyer.click("a[href='/apps/acme/serverless-blog']");
    buyer.wait_for_path("/apps/acme/serverless-blog");
    let page = buyer.source();
    for expected in [
        "AWS::DynamoDB::Table",
        "AWS::Lambda::Function",
        "AWS::ApiGateway::Method",
        "dynamodb:Query",
        "s3:GetObject",
        "PostsFunction uses PostsTable",
    ] {
        assert!(page.contains(expected), "the blog's page lacks {expected}");
    }
    assert_eq!(buyer.count("figure svg.architecture"), 1);
    buyer.screenshot("blog-page");
    // On a phone's width the page does not scroll sideways: wide tables and the diagram scroll
    // inside their own boxes.
    buyer.resize(390, 844);
    let overflow = buyer.evaluate(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
    );
    assert_eq!(overflow.as_i64(), Some(0), "the page is wider than a phone");
    buyer.screenshot("blog-page-on-a-phone");
    buyer.resize(1280, 1000);

    // The install commands are complete: the root fingerprint to pin, and where `installer`
    // comes from.
    let commands = buyer.text("#install-commands");
    assert!(commands.contains("--trust-root sha256:"), "{commands}");
    assert!(
        buyer
            .source()
            .contains("cargo build --release -p installer")
    );

    // An app with no release yet offers no trial.
    buyer.goto(&format!("{url}/apps/initech/log-lens"));
    assert_eq!(buyer.count("#start-trial"), 0);
    assert_eq!(buyer.count("#no-trial"), 1, "{}", buyer.source());
    buyer.screenshot("no-release-no-trial");
    buyer.goto(&format!("{url}/apps/acme/serverless-blog"));

    // Sign up from the blog's page, come back to it, start the trial.
    buyer.click("a[href^='/signup?next=']");
    buyer.type_into("#name", "Pat Buyer");
    buyer.type_into("#company", "Initech");
    buyer.type_into("#email", "pat@initech.example");
    buyer.type_into("#password", "correct horse battery");
    buyer.type_into("#aws_account", "210987654321");
    buyer.screenshot("signup");
    buyer.click("#signup");
    buyer.wait_for_url("the blog's page again", |url| {
        url.ends_with("/apps/acme/serverless-blog#trial")
    });
    buyer.screenshot("back-on-the-blog-page");
    buyer.click("#start-trial");
    let license_url = buyer.wait_for_url("the new license's page", |url| {
        url.contains("/account/licenses/lic_")
    });
    assert_eq!(buyer.text("#license-state"), "active");
    assert!(buyer.text("#versions").contains("1.0.0"));
    assert!(buyer.text("#commands").contains("installer login --portal"));
    buyer.screenshot("trial-license");
    let license_id = license_url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();

    // The downloaded file verifies against the vendor's published keyset.
    buyer.click("#download");
    let file = buyer.downloaded("serverless-blog.lic");
    let keyset = tests::agent::http::get_json(&format!("{url}/api/v1/vendors/acme/keyset")).1;
    let trust = dir.path().join("keyset.json");
    std::fs::write(&trust, keyset.to_string()).unwrap();
    let verified = Command::new(bin("license-agent"))
        .args(["verify", "--license"])
        .arg(&file)
        .arg("--trust")
        .arg(&trust)
        .args(["--aws-account", "210987654321", "--region", "eu-west-1"])
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "license-agent verify refused the downloaded trial: {}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(String::from_utf8_lossy(&verified.stdout).contains(&license_id));

    // The vendor signs in to the console, finds the trial customer and revokes the license.
    let mut vendor = Browser::start(&shots.join("vendor"), &dir.path().join("vendor-downloads"));
    vendor.goto(&format!("{url}/console"));
    vendor.wait_for_path("/console/login");
    vendor.type_into("#vendor", "acme");
    vendor.type_into("#email", "owner@acme.example");
    vendor.type_into("#password", &password);
    vendor.screenshot("console-login");
    vendor.click("#login");
    vendor.wait_for_path("/console");
    vendor.screenshot("console");
    vendor.click("a[href='/console/customers']");
    let customers = vendor.text("#customers");
    assert!(
        customers.contains("Initech") && customers.contains("marketplace trial"),
        "{customers}"
    );
    vendor.screenshot("customers");
    vendor.click("#customers a[href^='/console/customers/initech-']");
    let customer_url = vendor.url();
    vendor.type_into(&format!("#reason-{license_id}"), "trial abuse");
    vendor.click(&format!("#revoke-{license_id}"));
    // Revoking asks first, saying what it does; nothing has changed yet.
    vendor.wait_for_url("the page that asks", |url| url.ends_with("/revoke"));
    assert!(
        vendor.source().contains("cannot be undone"),
        "{}",
        vendor.source()
    );
    assert_eq!(vendor.count("#confirm"), 1);
    vendor.screenshot("revoke-asks-first");
    vendor.goto(&customer_url);
    assert_eq!(
        vendor.text(&format!("[data-license-state='{license_id}']")),
        "active"
    );
    vendor.type_into(&format!("#reason-{license_id}"), "trial abuse");
    vendor.click(&format!("#revoke-{license_id}"));
    vendor.wait_for_url("the page that asks", |url| url.ends_with("/revoke"));
    vendor.click("#confirm");
    vendor.wait_for_url("the page after revoking", |url| url.contains("done=revoke"));
    assert_eq!(
        vendor.text(&format!("[data-license-state='{license_id}']")),
        "revoked"
    );
    assert!(vendor.source().contains("The license is revoked"));
    vendor.screenshot("revoked-in-console");

    // The audit log says who, in words.
    vendor.goto(&format!("{url}/console/audit"));
    let audit = vendor.source();
    assert!(
        audit.contains("owner@acme.example (owner, console)"),
        "{audit}"
    );
    assert!(
        audit.contains("pat@initech.example, a marketplace buyer"),
        "{audit}"
    );
    vendor.screenshot("audit-in-words");

    // The app's console page shows the release notes; unpublishing is its own audit entry, and
    // the vendor still sees the page, marked unpublished.
    vendor.goto(&format!("{url}/console/apps/serverless-blog"));
    assert!(
        vendor.text(".release-notes").contains("First release"),
        "{}",
        vendor.source()
    );
    vendor.screenshot("release-notes");
    // The demo vendor's release key is the portal's: the console promotes, and says who signed.
    vendor.type_into("[id='channel-1.0.0']", "beta");
    vendor.click("[id='promote-1.0.0']");
    vendor.wait_for_url("the page after promoting", |url| {
        url.contains("done=promoted")
    });
    assert!(
        vendor.source().contains("the portal signed it"),
        "{}",
        vendor.source()
    );
    vendor.screenshot("promoted-by-the-portal");
    vendor.click("#unpublish");
    vendor.wait_for_url("the page after unpublishing", |url| {
        url.contains("done=unlisted")
    });
    vendor.goto(&format!("{url}/console/audit"));
    assert!(vendor.source().contains("app.unpublish"));
    vendor.goto(&format!("{url}/apps/acme/serverless-blog"));
    assert_eq!(vendor.count("#unpublished"), 1, "{}", vendor.source());
    vendor.screenshot("unpublished-for-the-vendor");

    // For the buyer the page is gone, and the error page keeps their header and real links.
    buyer.goto(&format!("{url}/apps/acme/serverless-blog"));
    let gone = buyer.source();
    assert!(gone.contains("Not found"), "{gone}");
    assert!(gone.contains("Sign out Pat Buyer"), "{gone}");
    assert_eq!(buyer.count("a[href='/account']"), 1);
    buyer.screenshot("not-found-keeps-the-header");

    // The buyer's license page shows it revoked, with the reason, and nothing to install or
    // download.
    buyer.goto(license_url.split('?').next().unwrap_or(&license_url));
    assert_eq!(buyer.text("#license-state"), "revoked");
    assert!(buyer.text("#ended").contains("trial abuse"));
    assert_eq!(buyer.count("#download"), 0);
    assert_eq!(buyer.count("#commands"), 0);
    buyer.screenshot("revoked-for-buyer");
}

#[test]
fn buyer_and_vendor_in_chromium_on_sqlite() {
    buyer_and_vendor_in_chromium(false);
}

#[test]
fn buyer_and_vendor_in_chromium_on_postgres() {
    buyer_and_vendor_in_chromium(true);
}

/// The vendor adds a webhook endpoint in the console, reads its secret once, sends a test event
/// that a real receiver verifies with that secret, and sees it delivered in the log; the
/// customer page downloads billing-ready usage as CSV with the session it is signed in with.
fn webhooks_and_billing_downloads_in_chromium(postgres: bool) {
    let name = if postgres {
        "webhooks-postgres"
    } else {
        "webhooks-sqlite"
    };
    let dir = tempfile::tempdir().unwrap();
    let mut setup = PortalSetup::new(dir.path(), postgres);
    setup.extra = vec!["--webhook-allow-private".into()];
    let (portal, password) = setup.start_demo();
    let url = portal.url.clone();
    let receiver = tests::webhook::Receiver::start(&[]);
    let downloads = dir.path().join("downloads");
    let mut vendor = Browser::start(&artifacts(name), &downloads);
    vendor.goto(&format!("{url}/console/login"));
    vendor.type_into("#vendor", "acme");
    vendor.type_into("#email", "owner@acme.example");
    vendor.type_into("#password", &password);
    vendor.click("#login");
    vendor.wait_for_path("/console");
    vendor.click("a[href='/console/webhooks']");
    vendor.wait_for_path("/console/webhooks");
    vendor.type_into("#webhook-url", &receiver.url);
    vendor.type_into("#webhook-description", "billing system");
    vendor.click("#add-webhook");
    let notice = vendor.text("#webhook-secret");
    let secret = notice
        .split_whitespace()
        .find(|w| w.starts_with("whsec_"))
        .unwrap_or_else(|| panic!("no secret in {notice:?}"))
        .to_owned();
    vendor.screenshot("webhook-added");
    // Shown once: not on the page again.
    vendor.goto(&format!("{url}/console/webhooks"));
    assert!(!vendor.source().contains(&secret));
    vendor.click("button[id^='test-']");
    vendor.wait_for_url("the page after the test", |u| {
        u.contains("done=webhook-test")
    });
    let seen = receiver.wait_until("the test event", std::time::Duration::from_secs(20), |s| {
        !s.is_empty()
    });
    let event = tests::webhook::verify(&secret, &seen[0]).unwrap();
    assert_eq!(event["type"], "webhook.test");
    vendor.goto(&format!("{url}/console/webhooks"));
    let log = vendor.text(".deliveries");
    assert!(
        log.contains("webhook.test") && log.contains("delivered"),
        "{log}"
    );
    assert!(log.contains("HTTP 200"), "{log}");
    vendor.screenshot("webhook-delivered");

    // Billing-ready usage from the customer's page, with the browser's own session.
    vendor.goto(&format!("{url}/console/customers/globex"));
    vendor.click("#usage-csv-day");
    let now = license::UnixTime::now().as_secs() - 31 * 86_400;
    let from = jiff::Timestamp::from_second(i64::try_from(now - now % 86_400).unwrap()).unwrap();
    let file = vendor.downloaded(&format!("usage-day-{}.csv", &from.to_string()[..10]));
    let csv = std::fs::read_to_string(file).unwrap();
    assert!(
        csv.starts_with("id,customer,license,app,plan,dimension,granularity,start,end,quantity"),
        "{csv}"
    );

    // A support bundle globex's installer sent (sealed bytes, sent with its license) is listed
    // on the customer's page, with how to open it.
    // The page's CSP lets it fetch nothing, so the browser reads the license as a page and the
    // installer's upload (which needs no session, only the license) is made from here.
    vendor.goto(&format!("{url}/api/v1/licenses?customer=globex"));
    let body = vendor.evaluate("return document.body.innerText");
    let list: serde_json::Value = serde_json::from_str(body.as_str().unwrap()).unwrap();
    let license = list.get("licenses").unwrap_or(&list)[0]["license"].clone();
    assert!(license.is_string(), "{list}");
    let (status, sent) = tests::agent::http::post_json(
        &format!("{url}/api/v1/support/bundles"),
        &serde_json::json!({"license": license, "stack": "blog-prod", "aws_account": "123456789012",
            "region": "eu-west-1", "sealed": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b"consign-wrap-v1\0sealed")}),
    );
    assert_eq!(status, 201, "{sent}");
    let id = sent["id"].as_str().unwrap().to_owned();
    vendor.goto(&format!("{url}/console/customers/globex"));
    let listed = vendor.text("#support-bundles");
    assert!(
        listed.contains(&id) && listed.contains("blog-prod"),
        "{listed}"
    );
    vendor.screenshot("support-bundles");
}

#[test]
fn webhooks_and_billing_downloads_in_chromium_on_sqlite() {
    webhooks_and_billing_downloads_in_chromium(false);
}

#[test]
fn webhooks_and_billing_downloads_in_chromium_on_postgres() {
    webhooks_and_billing_downloads_in_chromium(true);
}
