//! Proofs of AWS account, attacked on moto with two accounts (the default one, and a second one
//! reached by assuming a role in it): a signed `sts:GetCallerIdentity` with a portal nonce,
//! which the portal checks and sends to an allowlisted STS endpoint (here moto's, configured
//! with `CONSIGN_STS_ENDPOINT`). Each test is named after the attack.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::io::Read as _;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use base64::Engine as _;
use license::proof::{self, AccountProof};
use serde_json::{Value, json};
use tests::agent::http::post_json;
use tests::install::{ACCOUNT, NEIGHBOUR, REGION, World};

/// The default account's credentials on moto.
fn home_credentials() -> Credentials {
    Credentials::new("testing", "testing", None, None, "test")
}

/// Credentials in the second account: a role assumed in it.
fn neighbour_credentials(world: &World) -> Credentials {
    let kw = world.neighbour(
        "print(json.dumps({k: kw[k] for k in ('aws_access_key_id', 'aws_secret_access_key', 'aws_session_token')}))",
    );
    let text = |k: &str| kw[k].as_str().unwrap().to_owned();
    Credentials::new(
        text("aws_access_key_id"),
        text("aws_secret_access_key"),
        Some(text("aws_session_token")),
        None,
        "test",
    )
}

fn nonce(world: &World) -> String {
    let (status, answer) = post_json(
        &format!("{}/api/v1/proofs/nonce", world.portal.url),
        &json!({}),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["header"], proof::NONCE_HEADER);
    answer["nonce"].as_str().unwrap().to_owned()
}

/// A proof signed at `time` with `credentials`, carrying `nonce` in a signed header.
fn signed(
    world: &World,
    credentials: Credentials,
    nonce: Option<&str>,
    time: SystemTime,
) -> AccountProof {
    let url = proof::endpoint_for(REGION, Some(&world.moto.endpoint()));
    proof::sign(credentials, REGION, &url, nonce, time).unwrap()
}

/// `POST /api/v1/proofs` for the license in `file`.
fn prove(world: &World, file: &str, proof: &AccountProof) -> (u16, Value) {
    let license = std::fs::read_to_string(world.p(file)).unwrap();
    post_json(
        &format!("{}/api/v1/proofs", world.portal.url),
        &json!({"license": license, "proof": proof}),
    )
}

fn assert_refused(answer: &(u16, Value), code: &str) -> String {
    assert_eq!(answer.0, 403, "{}", answer.1);
    assert_eq!(answer.1["code"], code, "{}", answer.1);
    answer.1["detail"].as_str().unwrap().to_owned()
}

/// `installer login` with the neighbour's credentials.
fn login_as_neighbour(
    world: &World,
    file: &str,
    credentials: &Credentials,
) -> std::process::Output {
    let args = world.login_args(file);
    world
        .installer_command(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .env("AWS_ACCESS_KEY_ID", credentials.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", credentials.secret_access_key())
        .env("AWS_SESSION_TOKEN", credentials.session_token().unwrap())
        .output()
        .unwrap()
}

/// A grant request for the blog 1.0.0 with the license in `file`, reporting the home account,
/// with a fresh public key made of byte `key` and, when given, `proof`.
fn grant(world: &World, file: &str, key: u8, proof: Option<&AccountProof>) -> (u16, Value) {
    let license = std::fs::read_to_string(world.p(file)).unwrap();
    let mut body = json!({"license": license, "app": "serverless-blog", "version": "1.0.0",
        "public_key": base64::engine::general_purpose::STANDARD.encode([key; 32]),
        "aws_account": ACCOUNT});
    if let Some(proof) = proof {
        body["account_proof"] = json!(proof);
    }
    post_json(&format!("{}/api/v1/grants", world.portal.url), &body)
}

/// `installer login` with the neighbour's credentials fails, naming both accounts.
fn neighbour_login_is_refused(world: &World, file: &str, neighbour: &Credentials) {
    let out = login_as_neighbour(world, file, neighbour);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(ACCOUNT) && stderr.contains(NEIGHBOUR),
        "{stderr}"
    );
}

#[test]
fn a_license_bound_to_one_account_used_from_another_is_refused_naming_both() {
    let world = World::new();
    world.license("globex.lic", &[]);
    let neighbour = neighbour_credentials(&world);

    // The installer, run with the second account's credentials.
    neighbour_login_is_refused(&world, "globex.lic", &neighbour);

    // A patched installer that reports the licensed account but can only prove its own.
    let proof = signed(&world, neighbour, Some(&nonce(&world)), SystemTime::now());
    let detail = assert_refused(
        &grant(&world, "globex.lic", 7, Some(&proof)),
        "wrong_account",
    );
    assert!(
        detail.contains(ACCOUNT) && detail.contains(NEIGHBOUR),
        "{detail}"
    );
    // And one that says nothing of a proof.
    assert_refused(&grant(&world, "globex.lic", 8, None), "proof_required");
    // The refusals are in the vendor's audit log; no grant was issued.
    let audit = world.vendor(&["audit", "list", "--output", "json"]);
    assert!(audit.contains("grant.refuse"), "{audit}");
    assert!(!audit.contains("\"grant.issue\""), "{audit}");
}

#[test]
fn a_replayed_proof_is_refused() {
    let world = World::new();
    world.license("globex.lic", &[]);
    let proof = signed(
        &world,
        home_credentials(),
        Some(&nonce(&world)),
        SystemTime::now(),
    );
    let (status, first) = prove(&world, "globex.lic", &proof);
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["proven"]["account"], ACCOUNT);
    assert!(
        first["proven"]["arn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:")
    );
    let detail = assert_refused(&prove(&world, "globex.lic", &proof), "proof_replayed");
    assert!(detail.contains("fresh nonce"), "{detail}");
    // The proven ARN is in the audit log.
    let audit = world.vendor(&["audit", "list", "--output", "json"]);
    assert!(
        audit.contains("license.prove") && audit.contains("proven_arn"),
        "{audit}"
    );
}

#[test]
fn a_proof_with_a_stale_date_is_refused() {
    let world = World::new();
    world.license("globex.lic", &[]);
    let old = SystemTime::now() - Duration::from_secs(600);
    let proof = signed(&world, home_credentials(), Some(&nonce(&world)), old);
    let detail = assert_refused(&prove(&world, "globex.lic", &proof), "proof_stale");
    assert!(detail.contains("300 s"), "{detail}");
    // A nonce the portal never issued, even well formed, is no better.
    let made_up = format!("pn_{}", "A".repeat(43));
    let proof = signed(
        &world,
        home_credentials(),
        Some(&made_up),
        SystemTime::now(),
    );
    assert_refused(&prove(&world, "globex.lic", &proof), "proof_replayed");
}

#[test]
fn a_proof_for_a_non_sts_url_makes_the_portal_send_nothing() {
    let world = World::new();
    world.license("globex.lic", &[]);
    // A listener that counts every connection made to it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    let watcher = std::thread::spawn(move || {
        while !stopping.load(Ordering::SeqCst) {
            if let Ok((mut stream, _)) = listener.accept() {
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = stream.read(&mut [0u8; 64]);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://localhost:{port}/"),
        "https://sts.amazonaws.com.attacker.example/".to_owned(),
    ] {
        let proof = proof::sign(
            home_credentials(),
            REGION,
            &url,
            Some(&nonce(&world)),
            SystemTime::now(),
        )
        .unwrap();
        let detail = assert_refused(&prove(&world, "globex.lic", &proof), "proof_endpoint");
        assert!(detail.contains("not an STS endpoint"), "{detail}");
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "the portal connected to the proof's URL"
    );
}

#[test]
fn a_proof_whose_nonce_is_not_signed_is_refused() {
    let world = World::new();
    world.license("globex.lic", &[]);
    // Signed without the nonce, which is added afterwards: a proof lifted from elsewhere could
    // be given any nonce this way.
    let mut proof = signed(&world, home_credentials(), None, SystemTime::now());
    proof
        .headers
        .insert(proof::NONCE_HEADER.to_owned(), nonce(&world));
    let detail = assert_refused(&prove(&world, "globex.lic", &proof), "proof_unsigned_nonce");
    assert!(detail.contains(proof::NONCE_HEADER), "{detail}");
}

#[test]
fn an_unproven_grant_passes_only_where_the_vendor_made_proof_optional() {
    let world = World::new();
    let unproven = |file: &str, n: u8| grant(&world, file, n, None);
    // Names the customer's account: proofs are required by default.
    world.license("bound.lic", &[]);
    assert_refused(&unproven("bound.lic", 1), "proof_required");
    world.license("explicit.lic", &["--account-proof", "required"]);
    assert_refused(&unproven("explicit.lic", 2), "proof_required");
    // The vendor let this one go without (older installers): the reported account is checked.
    world.license("optional.lic", &["--account-proof", "optional"]);
    let (status, answer) = unproven("optional.lic", 3);
    assert_eq!(status, 200, "{answer}");
    // A plan can say so for its licenses, and a license on it can say otherwise.
    world.vendor(&[
        "plan",
        "create",
        "--app",
        "serverless-blog",
        "--slug",
        "lax",
        "--name",
        "Lax",
        "--features",
        "posts,users",
        "--account-proof",
        "optional",
    ]);
    world.license("on-plan.lic", &["--plan", "lax"]);
    let (status, answer) = unproven("on-plan.lic", 4);
    assert_eq!(status, 200, "{answer}");
    world.license(
        "strict-on-plan.lic",
        &["--plan", "lax", "--account-proof", "default"],
    );
    assert_refused(&unproven("strict-on-plan.lic", 5), "proof_required");
    // The real installer proves either way, and installs.
    world.login("explicit.lic");
    world.installer_ok(&[
        "install",
        "--stack",
        "proven",
        "--version",
        "1.0.0",
        "--yes",
    ]);
    let audit = world.vendor(&["audit", "list", "--output", "json"]);
    assert!(audit.contains("arn:aws:"), "{audit}");
}

#[test]
fn a_trial_started_twice_from_one_proven_account_under_two_sign_ups_is_refused() {
    let world = World::new();
    world.vendor(&["app", "publish", "serverless-blog"]);
    world.vendor(&[
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
        "posts,users",
    ]);
    // Two sign-ups, each typing a different account: what buyers type is only a hint.
    let first = market::trial(&world, "ann@one.example", "222222222222");
    let second = market::trial(&world, "bob@two.example", "333333333333");
    world.vendor(&["license", "download", &first, "-o", &world.p("first.lic")]);
    world.vendor(&["license", "download", &second, "-o", &world.p("second.lic")]);

    // The first trial binds to the account its installer proves.
    world.login("first.lic");
    // The second, proven from the same account, is refused.
    let args = world.login_args("second.lic");
    let out = world.installer(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("already used a trial")
            && stderr.contains(ACCOUNT)
            && stderr.contains(&first),
        "{stderr}"
    );
    // Logged in without AWS, its install proves the account at the grant: refused there too.
    world.login_without_aws("second.lic");
    let out = world.installer(&[
        "install",
        "--stack",
        "second",
        "--version",
        "1.0.0",
        "--yes",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("already used a trial"), "{stderr}");

    // The first trial, bound to the home account, cannot move to the neighbour's.
    neighbour_login_is_refused(&world, "first.lic", &neighbour_credentials(&world));
}

/// A buyer on the marketplace, over plain HTTP: sign up, start the trial, and the new license's id.
mod market {
    use tests::install::World;
    use tests::visitor::{Visitor, license_of};

    /// Signs up `email` typing `account`, starts the blog's trial; the license id.
    pub fn trial(world: &World, email: &str, account: &str) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut buyer = Visitor::new(&world.portal.url);
            buyer.sign_up(email, "Initech", account).await;
            let started = buyer.start_trial("acme", "serverless-blog").await;
            assert_eq!(started.status.as_u16(), 303, "{}", started.text);
            license_of(&started)
        })
    }
}
