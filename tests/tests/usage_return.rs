//! Air-gapped usage return, with the real binaries: an agent with no portal meters usage; the
//! customer exports it to a plain-JSON file (`license-agent usage export`), the vendor imports
//! it (`vendor-portal usage import`) and the agent takes the acknowledgement back
//! (`license-agent usage ack`), after which nothing is pending. Importing the same file twice
//! counts once; a changed, dropped or reordered record is refused with its index and nothing of
//! the file is counted. On SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use tests::agent::{ACCOUNT, AgentProcess, AgentWorld, REGION, http};
use tests::bin;

/// An agent serving with no portal (air-gapped) on `state`.
fn offline_agent(world: &AgentWorld, state: &Path) -> AgentProcess {
    AgentProcess::start(
        Command::new(bin("license-agent"))
            .env_remove("AWS_LAMBDA_RUNTIME_API")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .args(["serve", "--listen", "127.0.0.1:0", "--license"])
            .arg(&world.license)
            .arg("--trust")
            .arg(&world.keyset)
            .arg("--state-dir")
            .arg(state)
            .args(["--aws-account", ACCOUNT, "--region", REGION]),
    )
}

/// Runs `license-agent ARGS`; its status, stdout and stderr.
fn agent_cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin("license-agent"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `license-agent usage export`'s arguments for `state` into `out`.
fn export_args(world: &AgentWorld, state: &Path, out: &Path) -> Vec<String> {
    [
        "usage",
        "export",
        "-o",
        out.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--license",
        world.license.to_str().unwrap(),
        "--aws-account",
        ACCOUNT,
        "--region",
        REGION,
        "--stack",
        "vault",
        "--app-version",
        "1.0.0",
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .collect()
}

/// `license-agent usage export` of `state` into `out`.
fn export(world: &AgentWorld, state: &Path, out: &Path) -> Value {
    let mut args = export_args(world, state, out);
    args.extend(["--output".to_owned(), "json".to_owned()]);
    let (ok, stdout, stderr) = agent_cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

/// `vendor-portal usage import FILE`: the status, and the stderr.
fn import(world: &AgentWorld, file: &Path) -> (bool, String) {
    let out = world.setup.client(
        &world.portal.url,
        &world.token,
        &["usage", "import", file.to_str().unwrap()],
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The license's usage total of `dimension`.
fn total(world: &AgentWorld, dimension: &str) -> i64 {
    world.usage()["usage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["dimension"] == dimension)
        .map_or(0, |d| d["total"].as_i64().unwrap())
}

fn ack_path(file: &Path) -> PathBuf {
    PathBuf::from(format!("{}.ack.json", file.display()))
}

fn usage_returns_on_paper_and_counts_once(postgres: bool) {
    let world = AgentWorld::new(postgres, &[]);
    let state = world.state_dir("offline");
    let mut agent = offline_agent(&world, &state);
    for (dimension, quantity) in [("api-calls", 7), ("exports", 2), ("api-calls", 5)] {
        let (status, answer) = http::post_json(
            &format!("{}/v1/usage", agent.url),
            &json!({"dimension": dimension, "quantity": quantity}),
        );
        assert_eq!(status, 200, "{answer}");
    }
    // While it runs, the state directory is its own.
    let file = world.dir.path().join("usage-1.json");
    let args = export_args(&world, &state, &file);
    let (ok, _, stderr) = agent_cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!ok && stderr.contains("stop it first"), "{stderr}");
    assert!(agent.terminate().success());

    let summary = export(&world, &state, &file);
    assert_eq!(summary["records"], 2, "{summary}");
    assert_eq!(summary["totals"], json!({"api-calls": 12, "exports": 2}));
    // Plain JSON the customer can read: the records, the placement, nothing encoded.
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written["placement"]["stack"], "vault");
    assert_eq!(
        written["records"][0]["quantity"].as_u64().unwrap()
            + written["records"][1]["quantity"].as_u64().unwrap(),
        14
    );

    let (ok, stderr) = import(&world, &file);
    assert!(ok, "{stderr}");
    assert_eq!(
        (total(&world, "api-calls"), total(&world, "exports")),
        (12, 2)
    );
    let ack = ack_path(&file);
    let acked: Value = serde_json::from_str(&std::fs::read_to_string(&ack).unwrap()).unwrap();
    assert_eq!(
        (
            acked["new_records"].as_u64(),
            acked["records_through"].as_u64()
        ),
        (Some(2), Some(2))
    );
    // The installation is known to the vendor now, with its seat.
    let usage = world.usage();
    assert_eq!(usage["installations"][0]["stack"], "vault");

    // The same file again counts nothing twice.
    let (ok, stderr) = import(&world, &file);
    assert!(ok, "{stderr}");
    assert_eq!(
        (total(&world, "api-calls"), total(&world, "exports")),
        (12, 2)
    );
    let again: Value = serde_json::from_str(&std::fs::read_to_string(&ack).unwrap()).unwrap();
    assert_eq!(again["new_records"], 0);

    // The acknowledgement prunes the agent: nothing pending, the next export is empty.
    let (ok, stdout, stderr) = agent_cli(&[
        "usage",
        "ack",
        ack.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert!(ok, "{stderr}");
    let pruned: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (pruned["forgotten"].as_u64(), pruned["pending"].as_u64()),
        (Some(2), Some(0))
    );
    let empty = world.dir.path().join("usage-2.json");
    assert_eq!(export(&world, &state, &empty)["records"], 0);

    // More usage later continues the chain, and the next import counts only it.
    let mut agent = offline_agent(&world, &state);
    let (status, _) = http::post_json(
        &format!("{}/v1/usage", agent.url),
        &json!({"dimension": "exports", "quantity": 3}),
    );
    assert_eq!(status, 200);
    assert!(agent.terminate().success());
    let next = world.dir.path().join("usage-3.json");
    assert_eq!(export(&world, &state, &next)["records"], 1);
    let (ok, stderr) = import(&world, &next);
    assert!(ok, "{stderr}");
    assert_eq!(total(&world, "exports"), 5);

    // Another agent's acknowledgement is refused and forgets nothing.
    let other = world.state_dir("other");
    let mut second = offline_agent(&world, &other);
    http::post_json(
        &format!("{}/v1/usage", second.url),
        &json!({"dimension": "exports", "quantity": 1}),
    );
    assert!(second.terminate().success());
    let (ok, _, stderr) = agent_cli(&[
        "usage",
        "ack",
        ack.to_str().unwrap(),
        "--state-dir",
        other.to_str().unwrap(),
    ]);
    assert!(!ok && stderr.contains("another installation"), "{stderr}");
}

#[test]
fn usage_returns_on_paper_and_counts_once_on_sqlite() {
    usage_returns_on_paper_and_counts_once(false);
}

#[test]
fn usage_returns_on_paper_and_counts_once_on_postgres() {
    usage_returns_on_paper_and_counts_once(true);
}

fn tampered_exports_are_refused_with_the_record_index(postgres: bool) {
    let world = AgentWorld::new(postgres, &[]);
    let state = world.state_dir("offline");
    let mut agent = offline_agent(&world, &state);
    for dimension in ["alpha", "beta", "gamma", "delta"] {
        let (status, answer) = http::post_json(
            &format!("{}/v1/usage", agent.url),
            &json!({"dimension": dimension, "quantity": 10}),
        );
        assert_eq!(status, 200, "{answer}");
    }
    assert!(agent.terminate().success());
    let file = world.dir.path().join("usage.json");
    assert_eq!(export(&world, &state, &file)["records"], 4);
    let original: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();

    let changed = {
        let mut v = original.clone();
        v["records"][2]["quantity"] = json!(1);
        v
    };
    let dropped = {
        let mut v = original.clone();
        v["records"].as_array_mut().unwrap().remove(1);
        v
    };
    let reordered = {
        let mut v = original.clone();
        v["records"].as_array_mut().unwrap().swap(1, 2);
        v
    };
    let placement = {
        let mut v = original.clone();
        v["placement"]["stack"] = json!("elsewhere");
        v
    };
    for (name, doc, says) in [
        ("changed", changed, "record 2"),
        ("dropped", dropped, "record 1"),
        ("reordered", reordered, "record 1"),
        ("placement", placement, "changed after it was exported"),
    ] {
        let path = world.dir.path().join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
        let (ok, stderr) = import(&world, &path);
        assert!(!ok, "the {name} export was imported");
        assert!(stderr.contains(says), "{name}: {stderr}");
        assert!(
            !ack_path(&path).exists(),
            "{name}: an acknowledgement was written"
        );
    }
    // Nothing of them was counted; the genuine file still imports whole.
    assert_eq!(world.usage()["usage"].as_array().unwrap().len(), 0);
    let (ok, stderr) = import(&world, &file);
    assert!(ok, "{stderr}");
    for dimension in ["alpha", "beta", "gamma", "delta"] {
        assert_eq!(total(&world, dimension), 10);
    }
}

#[test]
fn tampered_exports_are_refused_with_the_record_index_on_sqlite() {
    tampered_exports_are_refused_with_the_record_index(false);
}

#[test]
fn tampered_exports_are_refused_with_the_record_index_on_postgres() {
    tampered_exports_are_refused_with_the_record_index(true);
}
