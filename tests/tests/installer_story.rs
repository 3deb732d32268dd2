//! The enterprise admin's whole story on moto with a running portal: the vendor pushes 1.0.0 and
//! 1.1.0 of the reference app; a license bound to moto's account; login, versions, plan (which
//! changes nothing), install 1.0.0, status, upgrade to 1.1.0 (only the changed function is
//! uploaded), rollback to 1.0.0, uninstall (no stack left), and `install` run twice.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::Duration;

use serde_json::Value;
use tests::agent::{AgentProcess, wait_for};
use tests::install::{ACCOUNT, REGION, World};

const STACK: &str = "blog";

fn function_count(world: &World) -> usize {
    world.artifacts().len()
}

#[test]
fn login_versions_plan_install_status_upgrade_rollback_uninstall() {
    let world = World::new();
    let license_id = world.license("globex.lic", &["--features", "posts"]);
    world.login("globex.lic");

    // versions: both releases, both installable.
    let versions = world.installer_json(&["versions"]);
    let list = versions["versions"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{versions}");
    assert_eq!(list[0]["version"], "1.1.0");
    assert_eq!(list[1]["version"], "1.0.0");
    assert!(list.iter().all(|v| v["installable"] == true), "{versions}");

    // plan: shows the resources, IAM actions and parameters; changes nothing.
    let before = world.account();
    let plan = world.installer_json(&["plan", "--stack", STACK, "--version", "1.0.0"]);
    assert_eq!(plan["change_set_type"], "CREATE", "{plan}");
    let changes = plan["changes"].as_array().unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c["logical_id"] == "PostsFunction" && c["action"] == "Add"),
        "{plan}"
    );
    // The release has no license agent layer, so the plan does not list the layer the
    // template declares under a condition that is false without one.
    assert!(
        !changes
            .iter()
            .any(|c| c["logical_id"] == "LicenseAgentLayer"),
        "{plan}"
    );
    assert!(
        plan["iam_actions"]
            .as_array()
            .unwrap()
            .contains(&Value::from("dynamodb:Query")),
        "{plan}"
    );
    // A fresh account gets a bucket name with a random suffix (plan proposes one).
    assert!(
        plan["parameters"]["ArtifactBucket"]
            .as_str()
            .unwrap()
            .starts_with(&format!("consign-artifacts-{ACCOUNT}-{REGION}-")),
        "{plan}"
    );
    assert_eq!(world.account(), before, "plan changed the account");
    let text = world.installer_ok(&["plan", "--stack", STACK, "--version", "1.0.0"]);
    assert!(text.contains("+ Add"), "{text}");
    assert!(text.contains("Nothing was changed"), "{text}");

    // A non-interactive install without --yes stops before doing anything.
    let refused = world.installer_err(&["install", "--stack", STACK, "--version", "1.0.0"]);
    assert!(refused.contains("--yes"), "{refused}");
    assert_eq!(world.account(), before);

    // install 1.0.0
    let installed =
        world.installer_json(&["install", "--stack", STACK, "--version", "1.0.0", "--yes"]);
    assert_eq!(installed["changed"], true, "{installed}");
    assert_eq!(installed["version"], "1.0.0");
    assert_eq!(installed["uploaded"].as_array().unwrap().len(), 3);
    assert_eq!(installed["stack_status"], "CREATE_COMPLETE");
    let site_bucket = installed["outputs"]["SiteBucketName"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(installed["assets_uploaded"], 1, "{installed}");
    // The app's URL, rebuilt from the stack's resources where moto lists no outputs.
    let url = installed["outputs"]["ApiUrl"].as_str().unwrap_or_default();
    assert!(
        url.starts_with("https://")
            && url.contains(&format!(".execute-api.{REGION}.amazonaws.com/")),
        "{installed}"
    );
    let account = world.account();
    assert_eq!(
        account["buckets"][&site_bucket],
        serde_json::json!(["index.html"])
    );
    assert!(
        account["parameters"]["/consign/blog/license"]
            .as_str()
            .unwrap()
            .contains("BEGIN CONSIGN LICENSE"),
        "{account}"
    );
    assert_eq!(function_count(&world), 3);
    // The install registered the installation with the portal: the vendor counts it before any
    // agent runs.
    let usage_of = || world.usage_of(&license_id);
    let usage = usage_of();
    assert_eq!(usage["seats_in_use"], 1, "{usage}");
    assert_eq!(usage["installations"][0]["stack"], STACK, "{usage}");

    // status, from the account
    let status = world.installer_json(&["status", "--stack", STACK]);
    assert_eq!(status["installed"], true, "{status}");
    assert_eq!(status["app"], "serverless-blog");
    assert_eq!(status["version"], "1.0.0");
    assert_eq!(status["license"], license_id.as_str());
    assert!(status["manifest"].as_str().unwrap().starts_with("sha256:"));
    assert!(status["license_expires"].as_str().is_some(), "{status}");
    let text = world.installer_ok(&["status", "--stack", STACK]);
    assert!(text.contains("serverless-blog 1.0.0"), "{text}");
    // It says what is newer without being told: 1.1.0, and the command that upgrades to it.
    assert_eq!(
        status["updates"]["newer"],
        serde_json::json!(["1.1.0"]),
        "{status}"
    );
    assert_eq!(status["updates"]["newest"], "1.1.0");
    assert!(
        text.contains(&format!(
            "newest 1.1.0: installer upgrade --stack {STACK} --version 1.1.0"
        )),
        "{text}"
    );
    assert_eq!(
        world.installer_json(&["versions"])["newest_installable"],
        "1.1.0"
    );
    // The vendor's console shows how far behind the installation is.
    let page =
        tests::portal::console_page(&world.portal.url, &world.token, "/console/installations");
    assert!(page.contains("1 behind (newest 1.1.0)"), "{page}");

    // Running install again is a no-op: it does not even ask the portal for keys.
    let grants = || {
        world
            .vendor(&["audit", "list", "--last", "200"])
            .matches("grant.issue")
            .count()
    };
    let granted = grants();
    let again = world.installer_json(&["install", "--stack", STACK, "--version", "1.0.0", "--yes"]);
    assert_eq!(again["changed"], false, "{again}");
    assert_eq!(again["uploaded"].as_array().unwrap().len(), 0);
    assert_eq!(grants(), granted, "a no-op install asked for a grant");
    let history = world.installer_json(&["status", "--stack", STACK])["history"].clone();
    assert_eq!(history.as_array().unwrap().len(), 1, "{history}");

    // upgrade to 1.1.0: only the changed function is uploaded.
    let upgraded =
        world.installer_json(&["upgrade", "--stack", STACK, "--version", "1.1.0", "--yes"]);
    assert_eq!(upgraded["version"], "1.1.0", "{upgraded}");
    assert_eq!(upgraded["previous"], "1.0.0");
    assert_eq!(
        upgraded["uploaded"].as_array().unwrap().len(),
        1,
        "{upgraded}"
    );
    assert_eq!(upgraded["skipped"], 2);
    assert_eq!(function_count(&world), 4, "one new artifact in the bucket");
    let status = world.installer_json(&["status", "--stack", STACK]);
    assert_eq!(status["version"], "1.1.0");
    assert_eq!(status["updates"]["newest"], Value::Null, "{status}");

    // rollback to 1.0.0: everything is already in the bucket.
    let rolled = world.installer_json(&["rollback", "--stack", STACK, "--yes"]);
    assert_eq!(rolled["version"], "1.0.0", "{rolled}");
    assert_eq!(rolled["action"], "rollback");
    assert_eq!(rolled["uploaded"].as_array().unwrap().len(), 0);
    let status = world.installer_json(&["status", "--stack", STACK]);
    assert_eq!(status["version"], "1.0.0");
    let actions: Vec<&str> = status["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["install", "upgrade", "rollback"]);

    // A license agent in the installation reads the license the installer stored in SSM,
    // learns the account from STS, activates with the portal and takes a seat.
    let mut agent = AgentProcess::start(&mut world.agent_command(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--license-parameter",
        &format!("/consign/{STACK}/license"),
        "--trust",
        &world.p("keys/keyset.json"),
        "--portal",
        &world.portal.url,
        "--state-dir",
        &world.p("agent-state"),
        "--stack",
        STACK,
        "--app-version",
        "1.0.0",
    ]));
    let installation = wait_for("the agent's activation", Duration::from_secs(30), || {
        agent.get("/v1/license").1["installation"]
            .as_str()
            .map(str::to_owned)
    });
    let (status, answer) = agent.get("/v1/entitlements/posts");
    assert_eq!(status, 200, "{answer}");
    let usage = usage_of();
    assert_eq!(usage["seats_in_use"], 1, "{usage}");
    assert_eq!(usage["installations"][0]["aws_account"], ACCOUNT);
    agent.kill9();

    // uninstall: no stack left; it says what it left; the seat is free again.
    let gone = world.installer_json(&["uninstall", "--stack", STACK, "--yes"]);
    assert_eq!(gone["deleted"], true, "{gone}");
    assert_eq!(gone["seat_freed"], installation.as_str(), "{gone}");
    let usage = usage_of();
    assert_eq!(usage["seats_in_use"], 0, "{usage}");
    assert!(usage["installations"][0]["removed_at"].is_i64(), "{usage}");
    assert!(
        gone["left"][0]
            .as_str()
            .unwrap()
            .contains("consign-artifacts-"),
        "{gone}"
    );
    let account = world.account();
    assert_eq!(account["stacks"], serde_json::json!([]), "{account}");
    // Only the record of the artifact bucket, which stays, is left.
    assert_eq!(
        account["parameters"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["/consign/artifact-bucket"],
        "{account}"
    );
    let status = world.installer_json(&["status", "--stack", STACK]);
    assert_eq!(status["installed"], false, "{status}");

    // An agent started after the uninstall finds no license parameter, and says what that
    // likely means in one line instead of an SDK dump.
    let late = world
        .agent_command(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--license-parameter",
            &format!("/consign/{STACK}/license"),
            "--trust",
            &world.p("keys/keyset.json"),
            "--state-dir",
            &world.p("late-agent-state"),
        ])
        .output()
        .unwrap();
    assert_eq!(late.status.code(), Some(1));
    let said = String::from_utf8_lossy(&late.stderr);
    assert!(
        said.contains("does not exist") && said.contains("uninstalled"),
        "{said}"
    );
    assert!(!said.contains("ParameterNotFound {"), "an SDK dump: {said}");
    let errors: Vec<&str> = said.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{said}");
}

#[test]
fn iam_policy_covers_the_release_and_nothing_more() {
    let world = World::new();
    world.license("globex.lic", &[]);
    world.login("globex.lic");
    let policy = world.installer_json(&["iam-policy", "--version", "1.0.0", "--stack", STACK]);
    let statements = policy["Statement"].as_array().unwrap();
    let actions: Vec<&str> = statements
        .iter()
        .flat_map(|s| s["Action"].as_array().unwrap())
        .map(|a| a.as_str().unwrap())
        .collect();
    for needed in [
        "cloudformation:CreateChangeSet",
        "s3:PutObject",
        "ssm:PutParameter",
        "lambda:CreateFunction",
        "dynamodb:CreateTable",
        "iam:PassRole",
        "apigateway:POST",
    ] {
        assert!(actions.contains(&needed), "{needed} missing from {policy}");
    }
    assert!(!actions.iter().any(|a| a.ends_with(":*")), "{policy}");
    assert!(
        !actions.iter().any(|a| a.starts_with("sqs:")),
        "the reference app has no queues: {policy}"
    );
    let stack_statement = statements.iter().find(|s| s["Sid"] == "Stack").unwrap();
    assert_eq!(
        stack_statement["Resource"],
        "arn:aws:cloudformation:*:*:stack/blog/*"
    );
}

#[test]
fn purging_artifacts_keeps_what_another_installation_uses() {
    let world = World::new();
    world.license("globex.lic", &[]);
    world.login("globex.lic");
    world.installer_ok(&["install", "--stack", "blog", "--version", "1.0.0", "--yes"]);
    world.installer_ok(&["install", "--stack", "blog2", "--version", "1.1.0", "--yes"]);
    assert_eq!(function_count(&world), 4);
    // blog's posts function is the only artifact blog2 does not use.
    let gone =
        world.installer_json(&["uninstall", "--stack", "blog", "--yes", "--purge-artifacts"]);
    assert_eq!(gone["artifacts_removed"], 1, "{gone}");
    assert_eq!(function_count(&world), 3);
    assert!(
        gone["left"][0]
            .as_str()
            .unwrap()
            .contains("other installations"),
        "{gone}"
    );
    let gone = world.installer_json(&[
        "uninstall",
        "--stack",
        "blog2",
        "--yes",
        "--purge-artifacts",
    ]);
    assert_eq!(gone["artifacts_removed"], 3, "{gone}");
    let account = world.account();
    assert!(
        account["buckets"].as_object().unwrap().is_empty(),
        "the artifact bucket and the site buckets are gone: {account}"
    );
    let refused = world.installer_err(&["uninstall", "--stack", "blog", "--yes"]);
    assert!(refused.contains("nothing to uninstall"), "{refused}");
}

/// At a terminal, the question before a first install says what is already in the account and
/// why; answering no deletes the change set and its empty stack and gives back the seat the
/// registration took, so the vendor counts no installation.
#[test]
fn declining_a_first_install_at_the_terminal_leaves_no_stack_and_no_seat() {
    let world = World::new();
    let license_id = world.license("globex.lic", &["--features", "posts"]);
    world.login("globex.lic");
    // `script` gives the installer a terminal; "n" answers its question.
    let installer = world.installer_command(&[]);
    let line = format!(
        "{} install --stack {STACK} --version 1.0.0",
        installer.get_program().to_string_lossy()
    );
    let mut command = std::process::Command::new("script");
    command.args(["-qec", &line, "/dev/null"]);
    for (key, value) in installer.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        // The question comes after the grant, the downloads and the uploads: answer once asked.
        std::thread::sleep(Duration::from_secs(1));
        let _ = stdin.write_all(b"n\n");
    }
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("Written to your account so far") && said.contains("empty stack blog"),
        "{said}"
    );
    assert!(said.contains("nothing was deployed"), "{said}");
    let account = world.account();
    assert_eq!(account["stacks"], serde_json::json!([]), "{account}");
    let usage = world.usage_of(&license_id);
    assert_eq!(usage["seats_in_use"], 0, "{usage}");
}
