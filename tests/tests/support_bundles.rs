//! Support bundles on moto: functions' logs hold every kind of secret (planted with boto3, as a
//! function writing them would), a function's environment holds a secret value, and the license
//! agent's state table holds a private key. `installer support-bundle` collects the stack's
//! status, events, resources, function configuration and logs, the agent's state and the
//! installation record; nothing planted survives in the bundle (each value searched for in every
//! file), each redaction leaves its marker and its place, and the customer's own pattern file
//! works. With `--upload` the bundle is sealed to the vendor's support key: the portal stores
//! bytes it cannot read, `vendor-portal support open` opens them to exactly the customer's file,
//! another vendor gets nothing, and a support key swapped on the portal is refused.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use serde_json::Value;
use tests::install::World;

const STACK: &str = "blog";

/// Every file of a `.tar.gz`, by path.
fn unpack(bytes: &[u8]) -> BTreeMap<String, String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut files = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        files.insert(path, text);
    }
    files
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn nothing_secret_survives_in_a_support_bundle_and_the_portal_cannot_read_it() {
    let world = World::new();
    world.license("globex.lic", &["--features", "posts"]);
    world.login("globex.lic");
    world.installer_ok(&["install", "--stack", STACK, "--version", "1.0.0", "--yes"]);
    let license_text = std::fs::read_to_string(world.p("globex.lic")).unwrap();
    let license_body: String = license_text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("");

    let secret_key = "Zx9Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0LzXcVbNm1Q";
    assert_eq!(secret_key.len(), 40);
    let planted: Vec<(&str, String)> = vec![
        ("aws_access_key", "AKIAQWERTYUIOPASDFGH".into()),
        ("aws_secret_key", secret_key.into()),
        (
            "aws_session_token",
            format!("IQoJb3JpZ2luX2VjEPlanted{}", "Zm9vYmFy".repeat(8)),
        ),
        ("bearer_token", "plantedBearerToken123456".into()),
        ("password", "PlantedPass99".into()),
        ("email", "planted.person@customer-corp.example".into()),
        ("custom", "ACME-778899".into()),
    ];
    let lines = [
        format!("connecting with key {}", planted[0].1),
        format!("aws_secret_access_key={}", planted[1].1),
        format!("session_token: {}", planted[2].1),
        format!("Authorization: Bearer {}", planted[3].1),
        format!(
            "db url postgres://app:{}@db.internal:5432/blog",
            planted[4].1
        ),
        format!("mail to {}", planted[5].1),
        format!("customer reference {}", planted[6].1),
        format!("license is {license_text}"),
        "planted-visible-line: nothing secret here".into(),
    ];
    let planted_pem = "-----BEGIN PRIVATE KEY-----\nMIIPlantedPrivateKeyMaterial0123456789\n-----END PRIVATE KEY-----";
    // The functions "wrote" these logs; one has a secret in its environment; the agent's state
    // table holds a private key.
    let script = format!(
        r#"
lam, logs, ddb = (boto3.client(s, **kw) for s in ("lambda", "logs", "dynamodb"))
lines = json.loads({lines:?})
functions = [f["FunctionName"] for f in lam.list_functions()["Functions"]]
tables = set()
for name in functions:
    group = "/aws/lambda/" + name
    try:
        logs.create_log_group(logGroupName=group)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    logs.create_log_stream(logGroupName=group, logStreamName="2026/11/30/[$LATEST]planted")
    import time
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName=group, logStreamName="2026/11/30/[$LATEST]planted",
        logEvents=[{{"timestamp": now + i, "message": m}} for i, m in enumerate(lines)])
    env = lam.get_function_configuration(FunctionName=name).get("Environment", {{}}).get("Variables", {{}})
    if "CONSIGN_AGENT_STATE_TABLE" in env:
        tables.add(env["CONSIGN_AGENT_STATE_TABLE"])
env = lam.get_function_configuration(FunctionName=functions[0]).get("Environment", {{}}).get("Variables", {{}})
env["PLANTED_ENV"] = "PlantedEnvValue-4242"
lam.update_function_configuration(FunctionName=functions[0], Environment={{"Variables": env}})
for table in tables:
    keys = ddb.describe_table(TableName=table)["Table"]["KeySchema"]
    item = {{k["AttributeName"]: {{"S": "planted#" + k["KeyType"]}} for k in keys}}
    item["key"] = {{"S": {pem:?}}}
    ddb.put_item(TableName=table, Item=item)
print(json.dumps({{"functions": functions, "tables": sorted(tables)}}))
"#,
        lines = serde_json::to_string(&lines).unwrap(),
        pem = planted_pem,
    );
    let seeded = world.boto3(&script);
    assert!(
        !seeded["functions"].as_array().unwrap().is_empty(),
        "{seeded}"
    );

    let patterns = world.dir.path().join("patterns.txt");
    std::fs::write(&patterns, "# our customer references\nACME-[0-9]{6}\n").unwrap();
    let out = world.p("bundle.tar.gz");
    let summary = world.installer_json(&[
        "support-bundle",
        "--stack",
        STACK,
        "--since",
        "2h",
        "--redact",
        patterns.to_str().unwrap(),
        "-o",
        &out,
    ]);
    let files = unpack(&std::fs::read(&out).unwrap());
    let everything: String = files.values().cloned().collect::<Vec<_>>().join("\n");

    // What the vendor needs is there.
    for part in [
        "manifest.json",
        "stack.json",
        "events.json",
        "resources.json",
        "installation.json",
    ] {
        assert!(
            files.contains_key(&format!("support-bundle/{part}")),
            "{part}: {:?}",
            files.keys()
        );
    }
    assert!(
        files
            .keys()
            .any(|k| k.starts_with("support-bundle/functions/"))
    );
    assert!(
        files.keys().any(|k| k.starts_with("support-bundle/agent/")),
        "{:?}",
        files.keys()
    );
    assert!(
        everything.contains("planted-visible-line"),
        "the logs were not collected"
    );
    assert!(
        everything.contains("PLANTED_ENV"),
        "the environment's names are listed"
    );
    assert!(everything.contains("CREATE_COMPLETE"));

    // Nothing secret survives, each kind leaves its marker, and the manifest says where.
    for (kind, value) in &planted {
        assert!(
            !everything.contains(value.as_str()),
            "{kind} survived: {value}"
        );
        assert!(
            everything.contains(&format!("[REDACTED:{kind}]")),
            "no {kind} marker"
        );
    }
    for (what, value) in [
        ("the environment's secret value", "PlantedEnvValue-4242"),
        ("the agent's private key", "MIIPlantedPrivateKeyMaterial"),
        ("the license", &license_body[..60]),
    ] {
        assert!(!everything.contains(value), "{what} survived");
    }
    assert!(everything.contains("[REDACTED:private_key]"));
    assert!(everything.contains("[REDACTED:license]"));
    let manifest: Value = serde_json::from_str(&files["support-bundle/manifest.json"]).unwrap();
    assert_eq!(
        summary["manifest"]["redactions"]["counts"],
        manifest["redactions"]["counts"]
    );
    assert!(manifest["redactions"]["counts"]["custom"].as_u64().unwrap() >= 1);
    let place = manifest["redactions"]["places"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "email")
        .unwrap();
    let file = &files[&format!("support-bundle/{}", place["file"].as_str().unwrap())];
    let line = file
        .lines()
        .nth(place["line"].as_u64().unwrap() as usize - 1)
        .unwrap();
    assert!(
        line.contains("[REDACTED:email]"),
        "the place is wrong: {line}"
    );

    // Upload: sealed to the vendor's support key; the portal stores what it cannot read.
    let key = world.p("support.key");
    world.vendor(&["support", "keygen", "-o", &key]);
    world.vendor(&["support", "register", "--key", &key]);
    let sent = world.p("sent.tar.gz");
    let uploaded =
        world.installer_json(&["support-bundle", "--stack", STACK, "--upload", "-o", &sent]);
    let id = uploaded["uploaded"][0].as_str().unwrap().to_owned();
    let stored: Vec<_> = files_under(&world.setup.data.join("blobs"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(&id))
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let sealed = std::fs::read(&stored[0]).unwrap();
    assert!(sealed.starts_with(b"consign-wrap-v1\0"));
    let sealed_text = String::from_utf8_lossy(&sealed);
    assert!(
        !sealed_text.contains("planted-visible-line") && !sealed_text.contains("manifest.json")
    );
    // The vendor opens exactly the customer's file.
    let opened = world.p("opened.tar.gz");
    world.vendor(&["support", "open", &id, "--key", &key, "-o", &opened]);
    assert_eq!(
        std::fs::read(&opened).unwrap(),
        std::fs::read(&sent).unwrap()
    );
    let listed: Value =
        serde_json::from_str(&world.vendor(&["support", "list", "--output", "json"])).unwrap();
    assert_eq!(listed[0]["customer"], "globex");
    assert_eq!(listed[0]["stack"], STACK);

    // Another vendor gets nothing.
    let rival = world.setup.create_vendor("rival");
    let out = world.setup.client(
        &world.portal.url,
        &rival,
        &["support", "open", &id, "--key", &key],
    );
    assert!(!out.status.success());

    // A key swapped on the portal (a compromised portal, say) is refused at the next upload.
    let other = world.p("other.key");
    world.vendor(&["support", "keygen", "-o", &other]);
    world.vendor(&["support", "register", "--key", &other]);
    let refused = world.installer_err(&[
        "support-bundle",
        "--stack",
        STACK,
        "--upload",
        "-o",
        &world.p("again.tar.gz"),
    ]);
    assert!(refused.contains("pinned"), "{refused}");
}
