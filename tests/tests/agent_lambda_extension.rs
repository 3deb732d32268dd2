//! The agent as a Lambda extension: started with no arguments and its settings in the
//! environment, it registers with the Lambda Extensions API as `license-agent` for INVOKE and
//! SHUTDOWN, serves the function while the environment lives, and on SHUTDOWN seals the usage it
//! took, checks in a last time and exits. The Extensions API here is a small server that speaks
//! its protocol (register, event/next) on loopback, as the Lambda runtime does.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use tests::agent::{ACCOUNT, AgentProcess, AgentWorld, REGION, http, wait_for};
use tests::lambda::ExtensionsApi;

#[test]
fn runs_as_a_lambda_extension_and_flushes_usage_on_shutdown() {
    let world = AgentWorld::new(false, &[]);
    let api = ExtensionsApi::start();
    let seen = &api.seen;
    let state = world.state_dir("lambda-tmp");
    let mut agent = AgentProcess::start(
        Command::new(tests::bin("license-agent"))
            .env("AWS_LAMBDA_RUNTIME_API", &api.addr)
            .env("CONSIGN_LICENSE_FILE", &world.license)
            .env("CONSIGN_TRUST", &world.keyset)
            .env("CONSIGN_PORTAL_URL", &world.portal.url)
            .env("CONSIGN_AGENT_STATE_DIR", &state)
            .env("CONSIGN_AGENT_LISTEN", "127.0.0.1:0")
            .env("CONSIGN_AWS_ACCOUNT", ACCOUNT)
            .env("CONSIGN_NO_ACCOUNT_PROOF", "true")
            .env("AWS_REGION", REGION)
            .env("CONSIGN_STACK", "blog-prod")
            .env("CONSIGN_APP_VERSION", "1.0.0"),
    );
    wait_for("the registration", Duration::from_secs(20), || {
        (!seen.lock().unwrap().registered.is_empty()).then_some(())
    });
    let (name, events) = seen.lock().unwrap().registered[0].clone();
    assert_eq!(name, "license-agent");
    assert_eq!(events, json!({"events": ["INVOKE", "SHUTDOWN"]}));
    wait_for("the activation", Duration::from_secs(20), || {
        (!agent.get("/v1/license").1["installation"].is_null()).then_some(())
    });

    // The function meters while it runs.
    let (status, _) = agent.get("/v1/entitlements/posts");
    assert_eq!(status, 200);
    for q in [3, 4, 5] {
        let (status, answer) = http::post_json(
            &format!("{}/v1/usage", agent.url),
            &json!({"dimension": "api-calls", "quantity": q}),
        );
        assert_eq!(status, 200, "{answer}");
    }

    // Lambda spins the environment down: the agent seals, checks in and exits on its own.
    api.shutdown();
    let exit = agent.wait();
    assert!(exit.success(), "{exit:?}\n{}", agent.log.lock().unwrap());
    let usage = world.usage();
    assert_eq!(usage["usage"][0]["dimension"], "api-calls", "{usage}");
    assert_eq!(usage["usage"][0]["total"], 12, "{usage}");
    // Logs are JSON lines for CloudWatch.
    let log = agent.log.lock().unwrap().clone();
    assert!(
        log.lines()
            .any(|l| l.starts_with('{') && l.contains("registered as a Lambda extension")),
        "{log}"
    );
}

#[test]
fn an_unreachable_extensions_api_stops_the_agent_with_an_error() {
    let world = AgentWorld::new(false, &[]);
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = Command::new(tests::bin("license-agent"))
        .env("AWS_LAMBDA_RUNTIME_API", closed.to_string())
        .env("CONSIGN_LICENSE_FILE", &world.license)
        .env("CONSIGN_TRUST", &world.keyset)
        .env("CONSIGN_AGENT_STATE_DIR", world.state_dir("no-api"))
        .env("CONSIGN_AGENT_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: the Lambda Extensions API failed"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
