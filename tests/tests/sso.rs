//! Single sign-on for vendor members against a real OpenID provider (panva's `oidc-provider`
//! on Node.js), on SQLite and PostgreSQL: the authorization code flow with PKCE, membership by
//! verified e-mail, roles from a claim, just-in-time members, requiring SSO; then the attacks,
//! each by name. A forged ID token reaches the portal the way an attacker's would: the real
//! provider runs the real sign-in, and its token response carries the forged token instead
//! (a provider or network path the attacker controls), so every other step stays genuine.
//! The whole sign-in in Chromium is at the end.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tests::browser::Browser;
use tests::oidc::{self, CLIENT_ID, CLIENT_SECRET, Provider, user};
use tests::portal::{PortalProcess, PortalSetup};

struct World {
    setup: PortalSetup,
    portal: PortalProcess,
    token: String,
    provider: Provider,
    // Last: the folder outlives the processes using it.
    _dir: tempfile::TempDir,
}

fn users() -> Value {
    json!({
        "alice": user("Alice@acme.example", true, &[]),
        "carol": user("carol@acme.example", true, &["consign-admins"]),
        "dave": user("dave@acme.example", true, &[]),
        "bob": user("bob@acme.example", false, &[]),
        "eve": user("eve@evil.example", true, &[]),
    })
}

impl World {
    fn new(postgres: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut setup = PortalSetup::new(dir.path(), postgres);
        // The provider is on loopback; the attacks fail many sign-ins from one address.
        setup.extra = vec![
            "--sso-allow-private".into(),
            "--logins-per-minute".into(),
            "0".into(),
        ];
        let token = setup.create_vendor("acme");
        let portal = setup.start();
        let provider = Provider::start(
            dir.path(),
            &format!("{}/console/sso/callback", portal.url),
            users(),
        );
        Self {
            setup,
            portal,
            token,
            provider,
            _dir: dir,
        }
    }

    fn sso(&self, extra: &[&str]) -> std::process::Output {
        let mut args = vec![
            "sso",
            "set",
            "--issuer",
            &self.provider.issuer,
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            CLIENT_SECRET,
            "--domain",
            "acme.example",
            "--role-claim",
            "groups",
            "--role",
            "consign-admins=owner",
            "--scope",
            "groups",
        ];
        args.extend_from_slice(extra);
        self.setup.client(&self.portal.url, &self.token, &args)
    }

    async fn api(&self, method: reqwest::Method, path: &str, body: Value) -> (StatusCode, Value) {
        let answer = reqwest::Client::new()
            .request(method, format!("{}{path}", self.portal.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = answer.status();
        (status, answer.json().await.unwrap_or(Value::Null))
    }

    async fn add_member(&self, email: &str, role: &str) -> String {
        let (status, member) = self
            .api(
                reqwest::Method::POST,
                "/api/v1/members",
                json!({"email": email, "role": role, "password": "a password long enough"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{member}");
        member["id"].as_str().unwrap().to_owned()
    }

    async fn members(&self) -> Vec<Value> {
        let (_, members) = self
            .api(reqwest::Method::GET, "/api/v1/members", Value::Null)
            .await;
        members.as_array().unwrap().clone()
    }

    async fn password_login(&self, email: &str) -> (StatusCode, Value) {
        let answer = reqwest::Client::new()
            .post(format!("{}/api/v1/session", self.portal.url))
            .json(&json!({"vendor": "acme", "email": email, "password": "a password long enough"}))
            .send()
            .await
            .unwrap();
        let status = answer.status();
        (status, answer.json().await.unwrap_or(Value::Null))
    }

    /// A sign-in of `login` whose ID token is replaced by what `forge` makes of the genuine
    /// sign-in's parameters; the portal's answer.
    async fn forged(
        &self,
        login: &str,
        forge: impl FnOnce(&oidc::Started) -> String,
    ) -> oidc::Finished {
        let started = oidc::start(&self.portal.url, "acme").await;
        self.provider.replace_next_id_token(&forge(&started)).await;
        let back = oidc::authenticate(&started, login).await;
        oidc::callback(&back, Some(&started.attempt_cookie)).await
    }
}

fn refused(finished: &oidc::Finished, why: &str) {
    assert_eq!(finished.status, StatusCode::FORBIDDEN, "{}", finished.text);
    assert!(
        finished.session.is_none(),
        "a refused sign-in opened a session"
    );
    assert!(
        oidc::unescape(&finished.text).contains(why),
        "the refusal does not say {why:?}: {}",
        finished.text
    );
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn sign_in_and_membership(postgres: bool) {
    let w = World::new(postgres);
    let alice = w.add_member("alice@acme.example", "publisher").await;
    w.add_member("frank@acme.example", "support").await;

    // Requiring SSO before any sign-in worked would lock everyone out: refused.
    let early = w.sso(&["--require-sso"]);
    assert!(!early.status.success());
    assert!(
        text(&early).contains("sign in through the provider once"),
        "{}",
        text(&early)
    );

    let set = w.sso(&[]);
    assert!(set.status.success(), "{}", text(&set));
    let shown = text(&set);
    assert!(shown.contains("/console/sso/callback"), "{shown}");

    // Alice (her address in another case at the provider) signs in: PKCE, state and nonce were
    // sent, and the session is hers.
    let started = oidc::start(&w.portal.url, "acme").await;
    assert_eq!(started.params["code_challenge_method"], "S256");
    assert_eq!(started.params["code_challenge"].len(), 43);
    assert_eq!(started.params["scope"], "openid email groups");
    assert_eq!(
        started.params["redirect_uri"],
        format!("{}/console/sso/callback", w.portal.url)
    );
    let back = oidc::authenticate(&started, "alice").await;
    let done = oidc::callback(&back, Some(&started.attempt_cookie)).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    let session = done.session.expect("a session");
    let (status, page) = oidc::console(&w.portal.url, &session, "/console").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("alice@acme.example at acme"), "{page}");

    // The same callback again: the attempt is used up.
    let again = oidc::callback(&back, Some(&started.attempt_cookie)).await;
    refused(&again, "already used");

    // Carol is not a member and the vendor admits nobody at sign-in: refused, by name.
    refused(
        &oidc::sign_in(&w.portal.url, "acme", "carol").await,
        "ask an owner to add carol@acme.example",
    );

    // With just-in-time membership, carol (in consign-admins) becomes an owner and dave, with
    // no mapped group, a support member; the audit log says how.
    let jit = w.sso(&["--jit-role", "support"]);
    assert!(jit.status.success(), "{}", text(&jit));
    assert_eq!(
        oidc::sign_in(&w.portal.url, "acme", "carol").await.status,
        StatusCode::OK
    );
    assert_eq!(
        oidc::sign_in(&w.portal.url, "acme", "dave").await.status,
        StatusCode::OK
    );
    let members = w.members().await;
    let role_of = |email: &str| {
        members
            .iter()
            .find(|m| m["email"] == email)
            .map(|m| m["role"].as_str().unwrap().to_owned())
    };
    assert_eq!(role_of("carol@acme.example").as_deref(), Some("owner"));
    assert_eq!(role_of("dave@acme.example").as_deref(), Some("support"));
    let (_, audit) = w
        .api(reqwest::Method::GET, "/api/v1/audit", Value::Null)
        .await;
    assert!(audit.to_string().contains("sso just-in-time"), "{audit}");

    // A disabled member stays out, whatever the provider says.
    let (status, _) = w
        .api(
            reqwest::Method::PATCH,
            &format!("/api/v1/members/{alice}"),
            json!({"disabled": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    refused(
        &oidc::sign_in(&w.portal.url, "acme", "alice").await,
        "is disabled",
    );

    // Requiring SSO now works (a sign-in worked): passwords are refused, tokens still work.
    assert_eq!(
        w.password_login("frank@acme.example").await.0,
        StatusCode::OK
    );
    let require = w.sso(&["--jit-role", "support", "--require-sso"]);
    assert!(require.status.success(), "{}", text(&require));
    let (status, problem) = w.password_login("frank@acme.example").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert!(
        problem.to_string().contains("requires single sign-on"),
        "{problem}"
    );
    let show = w.setup.client_ok(&w.portal.url, &w.token, &["sso", "show"]);
    assert!(show.contains("refused (single sign-on required"), "{show}");

    // Removing SSO lets passwords back in.
    w.setup
        .client_ok(&w.portal.url, &w.token, &["sso", "remove"]);
    assert_eq!(
        w.password_login("frank@acme.example").await.0,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sso_sign_in_and_membership_on_sqlite() {
    sign_in_and_membership(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sso_sign_in_and_membership_on_postgres() {
    sign_in_and_membership(true).await;
}

async fn attacks(postgres: bool) {
    let w = World::new(postgres);
    w.add_member("alice@acme.example", "publisher").await;
    let set = w.sso(&[]);
    assert!(set.status.success(), "{}", text(&set));
    let issuer = w.provider.issuer.clone();
    let email = "alice@acme.example";
    // A genuine sign-in first: it works, and leaves a real ID token to replay.
    assert_eq!(
        oidc::sign_in(&w.portal.url, "acme", "alice").await.status,
        StatusCode::OK
    );
    let (real_token, _) = w.provider.last().await;
    let real_token = real_token.expect("the provider made an ID token");

    // id_token_signed_with_none
    let none = w
        .forged("alice", |s| {
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                b64(&oidc::claims(&issuer, s, email))
            )
        })
        .await;
    refused(&none, "unsigned token is never accepted");

    // id_token_hs256_keyed_with_the_providers_public_key
    let (kid, _, public) = w.provider.signing_key();
    let hs = w
        .forged("alice", |s| {
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            header.kid = Some(kid.clone());
            let key = jsonwebtoken::EncodingKey::from_secret(public.to_string().as_bytes());
            jsonwebtoken::encode(&header, &oidc::claims(&issuer, s, email), &key).unwrap()
        })
        .await;
    refused(&hs, "shared-secret (HMAC) signature");

    // id_token_for_another_audience
    let aud = w
        .forged("alice", |s| {
            let mut c = oidc::claims(&issuer, s, email);
            c["aud"] = json!("another-client");
            w.provider.sign(&c)
        })
        .await;
    refused(&aud, "for another client");

    // id_token_with_several_audiences_and_no_azp
    let azp = w
        .forged("alice", |s| {
            let mut c = oidc::claims(&issuer, s, email);
            c["aud"] = json!([CLIENT_ID, "another-client"]);
            w.provider.sign(&c)
        })
        .await;
    refused(&azp, "no `azp`");

    // id_token_from_another_issuer
    let iss = w
        .forged("alice", |s| {
            let mut c = oidc::claims(&issuer, s, email);
            c["iss"] = json!("https://login.evil.example");
            w.provider.sign(&c)
        })
        .await;
    refused(&iss, "from another issuer");

    // id_token_expired
    let expired = w
        .forged("alice", |s| {
            let mut c = oidc::claims(&issuer, s, email);
            let iat = c["iat"].as_i64().unwrap();
            c["iat"] = json!(iat - 3600);
            c["exp"] = json!(iat - 1800);
            w.provider.sign(&c)
        })
        .await;
    refused(&expired, "has expired");

    // id_token_replayed_nonce: the genuine token of the first sign-in, in a new one.
    let replayed = w.forged("alice", |_| real_token.clone()).await;
    refused(&replayed, "nonce is not this sign-in's");

    // id_token_kid_not_in_jwks: a key the provider never published. The portal reads the
    // JWKS again once, and not again for a second such token within the cooldown.
    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger = Provider::start(stranger_dir.path(), "http://127.0.0.1:1/unused", json!({}));
    let (_, stranger_pem, _) = stranger.signing_key();
    let sign_as_stranger = |claims: &Value, kid: &str| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(stranger_pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    };
    let (_, reads_before) = w.provider.last().await;
    for _ in 0..2 {
        let unknown = w
            .forged("alice", |s| {
                sign_as_stranger(&oidc::claims(&issuer, s, email), "a-key-nobody-published")
            })
            .await;
        refused(&unknown, "does not hold");
    }
    let (_, reads_after) = w.provider.last().await;
    assert_eq!(
        reads_after,
        reads_before + 1,
        "the JWKS re-read is rate-limited"
    );

    // id_token_signed_by_another_key_under_the_providers_kid
    let wrong_key = w
        .forged("alice", |s| {
            sign_as_stranger(&oidc::claims(&issuer, s, email), &kid)
        })
        .await;
    refused(&wrong_key, "signature does not verify");

    // state_mismatch: a code and state from one sign-in, sent with another browser's attempt
    // cookie (login CSRF: an attacker's code in a victim's browser); and with no cookie at all.
    let mine = oidc::start(&w.portal.url, "acme").await;
    let theirs = oidc::start(&w.portal.url, "acme").await;
    let back = oidc::authenticate(&theirs, "alice").await;
    refused(
        &oidc::callback(&back, Some(&mine.attempt_cookie)).await,
        "state does not match",
    );
    let other = oidc::start(&w.portal.url, "acme").await;
    let back = oidc::authenticate(&other, "alice").await;
    refused(
        &oidc::callback(&back, None).await,
        "this browser did not start this sign-in",
    );

    // email_outside_allowed_domains and unverified_email: genuine tokens, refused people.
    refused(
        &oidc::sign_in(&w.portal.url, "acme", "eve").await,
        "not in a domain this vendor allows",
    );
    refused(
        &oidc::sign_in(&w.portal.url, "acme", "bob").await,
        "does not say it verified",
    );

    // Nothing above opened a session or added a member.
    let members = w.members().await;
    assert_eq!(members.len(), 2, "{members:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sso_attacks_on_sqlite() {
    attacks(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sso_attacks_on_postgres() {
    attacks(true).await;
}

async fn rotation(postgres: bool) {
    let mut w = World::new(postgres);
    w.add_member("alice@acme.example", "publisher").await;
    assert!(w.sso(&[]).status.success());
    assert_eq!(
        oidc::sign_in(&w.portal.url, "acme", "alice").await.status,
        StatusCode::OK
    );
    let (old_kid, _, _) = w.provider.signing_key();
    w.provider.rotate_keys();
    let (new_kid, _, _) = w.provider.signing_key();
    assert_ne!(old_kid, new_kid);
    let after = oidc::sign_in(&w.portal.url, "acme", "alice").await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn sso_provider_rotating_its_keys_still_signs_in_on_sqlite() {
    rotation(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sso_provider_rotating_its_keys_still_signs_in_on_postgres() {
    rotation(true).await;
}

async fn settings_refusals(postgres: bool) {
    let w = World::new(postgres);
    // A discovery document for another issuer (a mix-up): refused at setup.
    let (status, problem) = w
        .api(
            reqwest::Method::PUT,
            "/api/v1/sso",
            json!({"issuer": format!("{}/", w.provider.issuer), "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET, "allowed_domains": ["acme.example"]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(problem.to_string().contains("is for issuer"), "{problem}");
    let out = w.setup.client(&w.portal.url, &w.token, &["sso", "show"]);
    assert!(!out.status.success(), "no provider yet, so show fails");
    assert!(
        text(&out).contains("not found") || text(&out).contains("no SSO"),
        "{}",
        text(&out)
    );
    // A vendor without SSO: the sign-in link says so.
    let answer = reqwest::get(format!("{}/console/sso/start?vendor=acme", w.portal.url))
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    assert!(
        answer
            .text()
            .await
            .unwrap()
            .contains("has no single sign-on")
    );
}

/// An owner sets SSO up from the console's form: what the API then shows is what was typed.
async fn console_form(postgres: bool) {
    let w = World::new(postgres);
    w.add_member("olga@acme.example", "owner").await;
    let mut olga = tests::visitor::Visitor::new(&w.portal.url);
    olga.get("/console/login").await;
    let signed_in = olga
        .post(
            "/console/login",
            &[
                ("vendor", "acme"),
                ("email", "olga@acme.example"),
                ("password", "a password long enough"),
            ],
        )
        .await;
    assert_eq!(
        signed_in.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_in.text
    );
    let page = olga.get("/console/sso").await;
    assert!(page.text.contains("/console/sso/callback"), "{}", page.text);
    let saved = olga
        .post(
            "/console/sso",
            &[
                ("issuer", &w.provider.issuer),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("allowed_domains", "acme.example, Example.org"),
                ("role_claim", "groups"),
                ("role_map", "consign-admins=owner\nreaders=support"),
                ("extra_scopes", "groups"),
                ("jit_role", "publisher"),
            ],
        )
        .await;
    assert_eq!(
        Some(saved.location()),
        Some("/console/sso?done=sso-saved"),
        "{}",
        saved.text
    );
    let (_, config) = w
        .api(reqwest::Method::GET, "/api/v1/sso", Value::Null)
        .await;
    assert_eq!(
        config["allowed_domains"],
        json!(["acme.example", "example.org"]),
        "{config}"
    );
    assert_eq!(
        config["role_map"],
        json!({"consign-admins": "owner", "readers": "support"})
    );
    assert_eq!(config["extra_scopes"], json!(["groups"]));
    assert_eq!(config["jit_role"], "publisher");
    assert_eq!(config["require_sso"], false);
    // Ticking "require" before any sign-in worked is refused, and says why.
    let early = olga
        .post(
            "/console/sso",
            &[
                ("issuer", &w.provider.issuer),
                ("client_id", CLIENT_ID),
                ("allowed_domains", "acme.example"),
                ("require_sso", "on"),
            ],
        )
        .await;
    assert_eq!(early.status, StatusCode::CONFLICT, "{}", early.text);
    assert!(oidc::unescape(&early.text).contains("sign in through the provider once"));
    let removed = olga.post("/console/sso/remove", &[]).await;
    assert_eq!(
        Some(removed.location()),
        Some("/console/sso?done=sso-removed")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sso_console_form_on_sqlite() {
    console_form(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sso_console_form_on_postgres() {
    console_form(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sso_settings_refusals_on_sqlite() {
    settings_refusals(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sso_settings_refusals_on_postgres() {
    settings_refusals(true).await;
}

fn artifacts(name: &str) -> PathBuf {
    let dir = std::env::var_os("CONSIGN_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts")
        })
        .join("sso")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

async fn in_chromium(postgres: bool) {
    let w = World::new(postgres);
    w.add_member("alice@acme.example", "publisher").await;
    let set = w.sso(&[]);
    assert!(set.status.success(), "{}", text(&set));
    let name = if postgres {
        "sso-postgres"
    } else {
        "sso-sqlite"
    };
    let url = w.portal.url.clone();
    let issuer = w.provider.issuer.clone();
    tokio::task::spawn_blocking(move || {
        let mut browser = Browser::start(&artifacts(name), &artifacts(name).join("downloads"));
        browser.goto(&format!("{url}/console/login"));
        browser.type_into("#sso-vendor", "acme");
        browser.click("#sso-login");
        browser.wait_for_url("the provider's sign-in page", |u| u.starts_with(&issuer));
        browser.type_into("#login", "alice");
        browser.type_into("#password", oidc::PASSWORD);
        browser.screenshot("provider-sign-in");
        browser.click("#sign-in");
        browser.wait_for_path("/console");
        let page = browser.source();
        assert!(page.contains("alice@acme.example at acme"), "{page}");
        browser.goto(&format!("{url}/console/sso"));
        assert!(browser.text("#sso-config").contains(&issuer));
        browser.screenshot("console-sso");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sso_sign_in_in_chromium_on_sqlite() {
    in_chromium(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sso_sign_in_in_chromium_on_postgres() {
    in_chromium(true).await;
}
