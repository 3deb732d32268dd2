//! Mail to buyers and customers through a real SMTP server (aiosmtpd), on SQLite and PostgreSQL:
//! e-mail verification before a trial, password reset (a reused and an expired link, the same
//! answer for an unknown address), each notice (suspended, revoked, expiring, trial ending, a new
//! release with the upgrade command), and the outbox under SIGKILL.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use tests::mail::{Received, Smtp};
use tests::portal::{PortalProcess, PortalSetup, copy_tree, issue_license, seed_vendor};
use tests::visitor::Visitor;

fn setup(dir: &Path, postgres: bool, smtp: &Smtp) -> PortalSetup {
    let mut setup = PortalSetup::new(dir, postgres);
    setup.extra = vec![
        "--smtp-url".into(),
        smtp.url.clone(),
        "--mail-from".into(),
        "Consign Test <portal@consign.example>".into(),
        "--sweep-interval".into(),
        "1".into(),
        "--signups-per-hour".into(),
        "0".into(),
        "--trials-per-hour".into(),
        "0".into(),
    ];
    setup
}

/// Every link in a mail points at the portal itself.
fn links_only_to(mail: &Received, portal: &str) {
    let body = mail.body();
    for word in body.split_whitespace() {
        if word.contains("://") {
            assert!(
                word.starts_with(portal),
                "a mail links elsewhere: {word}\n{body}"
            );
        }
    }
    assert!(
        mail.header("Content-Type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "{:?}",
        mail.header("Content-Type")
    );
}

fn unescape(html: &str) -> String {
    tests::oidc::unescape(html)
}

/// The demo portal sending mail to a fresh SMTP server: the folder (kept until the end), the
/// server, the setup and the portal.
fn demo_with_mail(postgres: bool) -> (tempfile::TempDir, Smtp, PortalSetup, PortalProcess) {
    let dir = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(dir.path(), None);
    let setup = setup(dir.path(), postgres, &smtp);
    let (portal, _) = setup.start_demo();
    (dir, smtp, setup, portal)
}

async fn verification(postgres: bool) {
    let (_dir, smtp, _setup, portal) = demo_with_mail(postgres);
    let mut buyer = Visitor::new(&portal.url);
    buyer
        .sign_up("pat@initech.example", "Initech", "123456789012")
        .await;

    // Unverified: the trial waits, and one mail goes out however often the buyer tries today.
    for _ in 0..2 {
        let refused = buyer.start_trial("acme", "serverless-blog").await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
        assert!(
            unescape(&refused.text).contains("Confirm your e-mail first"),
            "{}",
            refused.text
        );
    }
    let mail = smtp.wait_for("pat@initech.example", "Confirm your e-mail");
    let subject = mail.header("Subject").unwrap();
    assert!(
        subject.contains("Serverless Blog") && subject.contains("Acme"),
        "{subject}"
    );
    links_only_to(&mail, &portal.url);
    std::thread::sleep(Duration::from_secs(2));
    let sent: Vec<Received> = smtp
        .received()
        .into_iter()
        .filter(|m| m.to == ["pat@initech.example"])
        .collect();
    assert_eq!(sent.len(), 1, "one verification mail per cause");

    // The link verifies once and comes back to the app; then the trial starts.
    let link = mail.link(&format!("{}/verify?token=", portal.url)).unwrap();
    let opened = buyer.get(&link).await;
    assert_eq!(opened.status, StatusCode::SEE_OTHER, "{}", opened.text);
    assert_eq!(
        Some(opened.location()),
        Some("/apps/acme/serverless-blog?done=verified")
    );
    let again = buyer.get(&link).await;
    assert_eq!(again.status, StatusCode::FORBIDDEN);
    assert!(unescape(&again.text).contains("this link is used, expired"));
    let started = buyer.start_trial("acme", "serverless-blog").await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_buyer_verifies_their_email_before_a_trial_on_sqlite() {
    verification(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_buyer_verifies_their_email_before_a_trial_on_postgres() {
    verification(true).await;
}

/// The portal's database, for what a test cannot reach otherwise (time, attempt counts).
async fn database(setup: &PortalSetup) -> sqlx::AnyPool {
    let url = setup
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", setup.data.join("portal.db").display()));
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(&url).await.unwrap()
}

/// An hour passes for every mailed link.
async fn expire_tokens(setup: &PortalSetup) {
    let pool = database(setup).await;
    sqlx::query("UPDATE mail_tokens SET expires_at = 1")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

/// A new password sent with `token` is refused, saying `why`.
async fn refused_reset(visitor: &mut Visitor, token: &str, why: &str) {
    let answer = visitor
        .post(
            "/reset",
            &[("token", token), ("password", "yet another password")],
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.text);
    assert!(unescape(&answer.text).contains(why), "{}", answer.text);
}

async fn reset(postgres: bool) {
    let (_dir, smtp, setup, portal) = demo_with_mail(postgres);
    let mut buyer = Visitor::new(&portal.url);
    buyer
        .sign_up("pat@initech.example", "Initech", "123456789012")
        .await;
    assert_eq!(buyer.get("/account").await.status, StatusCode::OK);

    // A stranger asks for a known and an unknown address: the same answer.
    let mut stranger = Visitor::new(&portal.url);
    stranger.get("/forgot").await;
    let known = stranger
        .post("/forgot", &[("email", "pat@initech.example")])
        .await;
    let unknown = stranger
        .post("/forgot", &[("email", "nobody@initech.example")])
        .await;
    assert_eq!(known.status, StatusCode::SEE_OTHER);
    assert_eq!(
        (known.status, known.location()),
        (unknown.status, unknown.location())
    );
    let mail = smtp.wait_for("pat@initech.example", "Choose a new password");
    links_only_to(&mail, &portal.url);
    let link = mail.link(&format!("{}/reset?token=", portal.url)).unwrap();
    let token = link.split("token=").nth(1).unwrap().to_owned();

    // Opening the link uses nothing up; a short password is refused; then it works, once.
    assert_eq!(stranger.get(&link).await.status, StatusCode::OK);
    let weak = stranger
        .post("/reset", &[("token", &token), ("password", "short")])
        .await;
    assert_eq!(weak.status, StatusCode::UNPROCESSABLE_ENTITY);
    let set = stranger
        .post(
            "/reset",
            &[("token", &token), ("password", "a brand new password")],
        )
        .await;
    assert_eq!(
        Some(set.location()),
        Some("/login?done=reset"),
        "{}",
        set.text
    );
    refused_reset(&mut stranger, &token, "this link is used").await;
    // The buyer's old session ended; the new password signs in.
    assert_eq!(buyer.get("/account").await.status, StatusCode::SEE_OTHER);
    buyer.get("/login").await;
    let login = buyer
        .post(
            "/login",
            &[
                ("email", "pat@initech.example"),
                ("password", "a brand new password"),
            ],
        )
        .await;
    assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.text);

    // An expired link is refused.
    stranger
        .post("/forgot", &[("email", "pat@initech.example")])
        .await;
    let second = loop {
        let mails: Vec<Received> = smtp
            .received()
            .into_iter()
            .filter(|m| {
                m.header("Subject")
                    .is_some_and(|s| s.contains("new password"))
            })
            .collect();
        if mails.len() == 2 {
            break mails[1].clone();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let link = second
        .link(&format!("{}/reset?token=", portal.url))
        .unwrap();
    let token = link.split("token=").nth(1).unwrap().to_owned();
    expire_tokens(&setup).await;
    refused_reset(&mut stranger, &token, "expired").await;
    // Nothing was ever mailed to the unknown address.
    assert!(
        smtp.received()
            .iter()
            .all(|m| m.to != ["nobody@initech.example"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_buyer_resets_a_forgotten_password_once_on_sqlite() {
    reset(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_buyer_resets_a_forgotten_password_once_on_postgres() {
    reset(true).await;
}

fn notices(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(dir.path(), None);
    let setup = setup(dir.path(), postgres, &smtp);
    let token = setup.create_vendor("acme");
    let portal = setup.start();
    let (url, t) = (portal.url.as_str(), token.as_str());
    let run = |args: &[&str]| setup.client_ok(url, t, args);
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let to = "ops@globex.example";
    seed_vendor(&setup, url, t, &p("keys"), &["--email", to]);
    run(&[
        "plan",
        "create",
        "--app",
        "serverless-blog",
        "--slug",
        "trial",
        "--name",
        "Trial",
        "--trial",
        "--duration-days",
        "14",
        "--features",
        "posts",
    ]);
    let license = issue_license(
        &setup,
        url,
        t,
        &dir.path().join("a.lic"),
        &["--channel", "stable"],
    );

    // A release on a channel the license may install: a notice with the upgrade command.
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/serverless-blog"),
        &dir.path().join("blog"),
    );
    run(&[
        "release",
        "build",
        &p("blog"),
        "--keys",
        &p("keys"),
        "-o",
        &p("blog.bundle"),
    ]);
    run(&[
        "release",
        "push",
        &p("blog.bundle"),
        "--keys",
        &p("keys"),
        "--channel",
        "stable",
    ]);
    let release = smtp.wait_for(to, "is out");
    let body = release.body();
    assert!(
        body.contains("installer upgrade --stack YOUR-STACK --version 1.0.0"),
        "{body}"
    );
    assert!(
        release
            .header("Subject")
            .unwrap()
            .contains("Serverless Blog")
    );
    links_only_to(&release, url);

    // Suspended, then revoked.
    run(&["license", "suspend", &license, "--reason", "unpaid invoice"]);
    links_only_to(&smtp.wait_for(to, "suspended"), url);
    run(&["license", "revoke", &license, "--reason", "contract ended"]);
    let revoked = smtp.wait_for(to, "revoked");
    assert!(revoked.body().contains(&license));

    // Ending soon: a license in its expiry warning, and a trial three days out.
    issue_license(
        &setup,
        url,
        t,
        &dir.path().join("b.lic"),
        &["--expires", "+10d"],
    );
    links_only_to(&smtp.wait_for(to, "your license expires on"), url);
    issue_license(
        &setup,
        url,
        t,
        &dir.path().join("c.lic"),
        &["--plan", "trial", "--expires", "+2d"],
    );
    let trial = smtp.wait_for(to, "your trial ends on");
    assert!(trial.body().contains("Serverless Blog"), "{}", trial.body());
    // Each cause once: the sweep runs every second, and nothing came twice.
    std::thread::sleep(Duration::from_secs(3));
    let subjects: Vec<String> = smtp
        .received()
        .iter()
        .filter_map(|m| m.header("Subject"))
        .collect();
    let mut unique = subjects.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(subjects.len(), unique.len(), "{subjects:?}");
}

#[test]
fn license_and_release_notices_reach_the_customer_on_sqlite() {
    notices(false);
}

#[test]
fn license_and_release_notices_reach_the_customer_on_postgres() {
    notices(true);
}

async fn sigkill(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    // The server holds the first message's end of data for three seconds.
    let smtp = Smtp::start(dir.path(), Some(3.0));
    let mut setup = setup(dir.path(), postgres, &smtp);
    setup.extra.extend(["--mail-timeout".into(), "5".into()]);
    // No demo: its seeding mails a release notice, which would be the held first message.
    let mut portal = setup.start();
    let mut buyer = Visitor::new(&portal.url);
    buyer
        .sign_up("pat@initech.example", "Initech", "123456789012")
        .await;
    buyer.get("/forgot").await;
    buyer
        .post("/forgot", &[("email", "pat@initech.example")])
        .await;
    // The portal is killed while the server has the mail but has not acknowledged it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    portal.kill9();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        smtp.received().is_empty(),
        "the server kept an unacknowledged mail"
    );
    let restarted: PortalProcess = setup.start();
    let mail = smtp.wait_for("pat@initech.example", "Choose a new password");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = smtp.received();
    assert_eq!(all.len(), 1, "sent once in all");
    assert!(
        mail.header("Message-ID")
            .is_some_and(|id| id.contains("@consign.example"))
    );
    // Two attempts: the one the kill cut short, and the one after its lease ran out.
    let pool = database(&setup).await;
    let row = sqlx::query("SELECT attempts FROM mail_outbox WHERE to_addr = 'pat@initech.example'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(sqlx::Row::get::<i64, _>(&row, "attempts"), 2);
    pool.close().await;
    drop(restarted);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_outbox_sends_once_across_a_sigkill_on_sqlite() {
    sigkill(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_outbox_sends_once_across_a_sigkill_on_postgres() {
    sigkill(true).await;
}

fn artifacts(name: &str) -> std::path::PathBuf {
    let dir = std::env::var_os("CONSIGN_TEST_ARTIFACTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts"))
        .join("mail")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The buyer's mail flows in Chromium: sign up, try a trial, open the mailed link, start the
/// trial; sign out, forget the password, set a new one from the mailed link, sign in with it.
fn in_chromium(postgres: bool) {
    let (dir, smtp, _setup, portal) = demo_with_mail(postgres);
    let url = portal.url.clone();
    let name = if postgres {
        "mail-postgres"
    } else {
        "mail-sqlite"
    };
    let mut buyer = tests::browser::Browser::start(&artifacts(name), &dir.path().join("downloads"));
    buyer.goto(&format!("{url}/apps/acme/serverless-blog"));
    buyer.click("a[href^='/signup?next=']");
    buyer.type_into("#name", "Pat Buyer");
    buyer.type_into("#company", "Initech");
    buyer.type_into("#email", "pat@initech.example");
    buyer.type_into("#password", "correct horse battery");
    buyer.type_into("#aws_account", "210987654321");
    buyer.click("#signup");
    buyer.wait_for_url("the blog's page again", |u| {
        u.contains("/apps/acme/serverless-blog")
    });
    buyer.click("#start-trial");
    buyer.wait_for_url("the refusal", |u| u.ends_with("/trial"));
    assert!(
        unescape(&buyer.source()).contains("Confirm your e-mail first"),
        "{}",
        buyer.source()
    );
    buyer.screenshot("verify-first");
    let mail = smtp.wait_for("pat@initech.example", "Confirm your e-mail");
    buyer.goto(&mail.link(&format!("{url}/verify?token=")).unwrap());
    buyer.wait_for_url("the app's page, verified", |u| u.contains("done=verified"));
    buyer.screenshot("verified");
    buyer.click("#start-trial");
    buyer.wait_for_url("the trial license", |u| u.contains("done=trial"));

    buyer.click("form[action='/logout'] button");
    buyer.wait_for_path("/");
    buyer.goto(&format!("{url}/login"));
    buyer.click("#forgot");
    buyer.wait_for_path("/forgot");
    buyer.type_into("#email", "pat@initech.example");
    buyer.click("#send-reset");
    buyer.wait_for_url("the sign-in page with its notice", |u| {
        u.contains("done=forgot")
    });
    let mail = smtp.wait_for("pat@initech.example", "Choose a new password");
    buyer.goto(&mail.link(&format!("{url}/reset?token=")).unwrap());
    buyer.type_into("#password", "a brand new password");
    buyer.screenshot("choose-a-password");
    buyer.click("#set-password");
    buyer.wait_for_url("the sign-in page", |u| u.contains("done=reset"));
    buyer.type_into("#email", "pat@initech.example");
    buyer.type_into("#password", "a brand new password");
    buyer.click("#login");
    buyer.wait_for_path("/account");
    assert!(buyer.source().contains("Pat Buyer"));
}

#[test]
fn a_buyers_mail_links_in_chromium_on_sqlite() {
    in_chromium(false);
}

#[test]
fn a_buyers_mail_links_in_chromium_on_postgres() {
    in_chromium(true);
}
