//! The order-workflow example, end to end: a Rust function compiled for Lambda's
//! `provided.al2023` runtime with cargo-lambda, in a Step Functions workflow beside Python and
//! Node.js functions. Its handler answers through cargo-lambda's Runtime API emulator; its bundle
//! carries the binary and none of its source; the same source builds the same digest from another
//! folder; and the app installs on moto with the state machine wired to its functions, upgrades
//! moving only the Rust function, and uninstalls leaving nothing. In Chromium, the app's
//! marketplace page draws the state machine and says which function ships compiled.
//!
//! `scripts/test` builds the function once in the example's folder (and runs its unit tests)
//! before these tests, so the builds there are incremental; a copy of the example builds in a
//! target folder of its own (cargo judges freshness by time stamps, and two copies of one crate
//! in one target folder could be taken for each other).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a broken fixture should fail the test loudly"
)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tests::agent::wait_for;
use tests::bin;
use tests::browser::Browser;
use tests::install::{ORDER_WORKFLOW, World};
use tests::moto::{Moto, path_with_venv};
use tests::portal::{PortalSetup, copy_tree, seed_vendor};

const STACK: &str = "orders";

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/order-workflow")
}

/// The example's own target folder (build.sh's default).
fn price_target() -> PathBuf {
    example().join("functions/price/target")
}

/// Runs `vendor-portal` with the venv's cargo-lambda on PATH; asserts success, returns stdout.
fn vendor_portal(args: &[&str], target_dir: &Path) -> String {
    let out = Command::new(bin("vendor-portal"))
        .args(args)
        .env("PATH", path_with_venv())
        .env("CARGO_TARGET_DIR", target_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vendor-portal {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Builds the app folder `app` into `dir/NAME.bundle` with keys in `dir/keys`; the build's JSON.
fn build(app: &Path, dir: &Path, name: &str, target_dir: &Path) -> Value {
    let keys = dir.join("keys");
    if !keys.exists() {
        vendor_portal(
            &["keys", "init", "--out", keys.to_str().unwrap()],
            target_dir,
        );
    }
    let bundle = dir.join(format!("{name}.bundle"));
    let out = vendor_portal(
        &[
            "--output",
            "json",
            "release",
            "build",
            app.to_str().unwrap(),
            "--keys",
            keys.to_str().unwrap(),
            "-o",
            bundle.to_str().unwrap(),
        ],
        target_dir,
    );
    serde_json::from_str(&out).unwrap()
}

fn function<'a>(built: &'a Value, name: &str) -> &'a Value {
    built["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no function {name} in {built}"))
}

#[test]
fn no_source_of_a_compiled_function_is_in_the_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let built = build(&example(), tmp.path(), "orders", &price_target());
    assert_eq!(function(&built, "price")["kind"], "compiled", "{built}");
    assert_eq!(function(&built, "validate")["kind"], "source", "{built}");
    assert_eq!(function(&built, "intake")["kind"], "source", "{built}");
    let opened = tmp.path().join("opened");
    vendor_portal(
        &[
            "release",
            "open",
            tmp.path().join("orders.bundle").to_str().unwrap(),
            "--keys",
            tmp.path().join("orders.bundle.keys").to_str().unwrap(),
            "-o",
            opened.to_str().unwrap(),
        ],
        &price_target(),
    );
    // The compiled function's zip holds one file: the executable.
    let zip = std::fs::read(opened.join("functions/price.zip")).unwrap();
    let files = bundles::zip::read_zip("price.zip", &zip).unwrap();
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["bootstrap"]);
    assert!(files[0].executable && files[0].data.starts_with(b"\x7fELF"));
    // No object of the bundle, zipped or not, holds any source file of the function, nor a
    // recognisable line of it.
    let sources = ["src/main.rs", "Cargo.toml", "Cargo.lock", "build.sh"]
        .map(|f| std::fs::read(example().join("functions/price").join(f)).unwrap());
    let mut contents = Vec::new();
    for entry in walk(&opened) {
        let data = std::fs::read(&entry).unwrap();
        if entry.extension().is_some_and(|e| e == "zip") {
            contents.extend(
                bundles::zip::read_zip("zip", &data)
                    .unwrap()
                    .into_iter()
                    .map(|f| f.data),
            );
        }
        contents.push(data);
    }
    let needle = b"pub fn discount_basis_points";
    for data in &contents {
        assert!(!sources.iter().any(|s| s == data), "a source file shipped");
        assert!(
            !data.windows(needle.len()).any(|w| w == needle),
            "the pricing source shipped"
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn the_same_source_builds_the_same_compiled_digest_from_another_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let here = build(&example(), tmp.path(), "here", &price_target());
    // A copy in another folder, built from scratch in another target folder.
    let copy = tmp.path().join("elsewhere/order-workflow");
    copy_tree(&example(), &copy);
    let there = build(
        &copy,
        tmp.path(),
        "there",
        &tmp.path().join("another-target"),
    );
    for name in ["price", "validate", "intake"] {
        assert_eq!(
            function(&here, name)["digest"],
            function(&there, name)["digest"],
            "{name}"
        );
    }
}

#[test]
fn a_build_that_would_ship_its_source_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    copy_tree(&example(), &app);
    let manifest = app.join("consign.toml");
    let text = std::fs::read_to_string(&manifest).unwrap().replace(
        r#"code = "functions/price/dist""#,
        r#"code = "functions/price/src""#,
    );
    // The build itself is not what is tested: a command that succeeds at once.
    let text = text.replace(
        r#"command = ["sh", "functions/price/build.sh"]"#,
        r#"command = ["true"]"#,
    );
    std::fs::write(&manifest, text).unwrap();
    let keys = tmp.path().join("keys");
    vendor_portal(
        &["keys", "init", "--out", keys.to_str().unwrap()],
        &price_target(),
    );
    let stderr = failed_build(&app, &keys, &tmp.path().join("x.bundle"));
    assert!(
        stderr.contains("would ship main.rs") && stderr.contains("functions/price/src/main.rs"),
        "{stderr}"
    );
    assert!(!tmp.path().join("x.bundle").exists());
    // A build command that fails stops the build with its status.
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace(r#"command = ["true"]"#, r#"command = ["false"]"#);
    std::fs::write(&manifest, text).unwrap();
    let stderr = failed_build(&app, &keys, &tmp.path().join("x.bundle"));
    assert!(
        stderr.contains("the build command `false` failed"),
        "{stderr}"
    );
}

/// Runs `release build` of `app` into `out`, expecting a failure with one `error:` line and no
/// bundle written; its stderr.
fn failed_build(app: &Path, keys: &Path, out: &Path) -> String {
    let run = Command::new(bin("vendor-portal"))
        .args(["release", "build", app.to_str().unwrap(), "--keys"])
        .arg(keys)
        .arg("-o")
        .arg(out)
        .env("PATH", path_with_venv())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.matches("error:").count(), 1, "{stderr}");
    assert!(!out.exists());
    stderr
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed on drop.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_rust_handler_answers_through_the_runtime_api_emulator() {
    let tmp = tempfile::tempdir().unwrap();
    // The binary that ships: built as `release build` builds it.
    build(&example(), tmp.path(), "orders", &price_target());
    let bootstrap = example().join("functions/price/dist/bootstrap");
    let port = free_port();
    let _emulator = Running(
        Command::new("cargo")
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "-A",
                "127.0.0.1",
                "-P",
            ])
            .arg(port.to_string())
            .current_dir(example().join("functions/price"))
            .env("PATH", path_with_venv())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the Runtime API emulator", Duration::from_secs(60), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    let _function = Running(
        Command::new(&bootstrap)
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt"),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("TAX_BASIS_POINTS", "2000")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let invoke = |payload: &str| {
        Command::new("cargo")
            .args(["lambda", "invoke", "-A", "127.0.0.1", "-P"])
            .arg(port.to_string())
            .args(["--output-format", "json", "--data-ascii", payload])
            .current_dir(tmp.path())
            .env("PATH", path_with_venv())
            .output()
            .unwrap()
    };
    let out = invoke(
        r#"{"order_id":"o-1","customer":"globex","currency":"EUR",
            "lines":[{"sku":"A-1","quantity":12,"unit_price_cents":1000}]}"#,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let priced: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(priced["subtotal_cents"], 12_000, "{priced}");
    assert_eq!(
        priced["discount_cents"], 600,
        "5 % from ten items: {priced}"
    );
    assert_eq!(priced["tax_cents"], 2280, "{priced}");
    assert_eq!(priced["total_cents"], 13_680, "{priced}");
    // An order it cannot price is an error a state machine's Catch can name.
    let out = invoke(r#"{"order_id":"o-2","customer":"globex","currency":"EUR","lines":[]}"#);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("the order has no lines to price"), "{said}");
}

#[test]
fn the_order_workflow_installs_upgrades_and_uninstalls_on_moto() {
    let mut world = World::bare(Moto::start(), ORDER_WORKFLOW);
    world.publish("1.0.0", |_| {});
    // 1.1.0 changes the pricing rules, in the Rust function only.
    world.publish("1.1.0", |app| {
        let main = app.join("functions/price/src/main.rs");
        let code = std::fs::read_to_string(&main)
            .unwrap()
            .replace("10..=49 => 500", "10..=39 => 500");
        std::fs::write(main, code).unwrap();
    });
    world.license("globex.lic", &[]);
    world.login("globex.lic");
    // Every AWS call of the run below is checked against the printed policy at the end.
    let log = world.record_calls();
    tests::iam::lint_printed_policies(&world, STACK);

    let policy = world.installer_json(&["iam-policy", "--version", "1.0.0", "--stack", STACK]);
    let statements = policy["Statement"].as_array().unwrap();
    let machine_statement = statements
        .iter()
        .find(|s| s["Resource"] == "arn:aws:states:*:*:stateMachine:orders-*")
        .unwrap_or_else(|| panic!("no statement for the state machine: {policy}"));
    assert!(
        machine_statement["Action"]
            .as_array()
            .unwrap()
            .contains(&Value::from("states:CreateStateMachine"))
    );
    let warned = world.installer(&["iam-policy", "--version", "1.0.0", "--stack", STACK]);
    assert!(
        !String::from_utf8_lossy(&warned.stderr).contains("does not know"),
        "{}",
        String::from_utf8_lossy(&warned.stderr)
    );

    let plan = world.installer_json(&["plan", "--stack", STACK, "--version", "1.0.0"]);
    let added: Vec<(&str, &str)> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["logical_id"].as_str().unwrap(),
                c["resource_type"].as_str().unwrap(),
            )
        })
        .collect();
    for wanted in [
        ("Workflow", "AWS::StepFunctions::StateMachine"),
        ("WorkflowRole", "AWS::IAM::Role"),
        ("PriceFunction", "AWS::Lambda::Function"),
    ] {
        assert!(added.contains(&wanted), "{wanted:?} not in {plan}");
    }
    assert_eq!(plan["workflows"][0]["logical_id"], "Workflow", "{plan}");
    assert_eq!(
        plan["function_notes"]["PriceFunction"], "price, compiled",
        "{plan}"
    );
    let text = world.installer_ok(&["plan", "--stack", STACK, "--version", "1.0.0"]);
    assert!(
        text.contains("Price: invokes PriceFunction (price, compiled) → StoreAndAnnounce"),
        "{text}"
    );

    let installed =
        world.installer_json(&["install", "--stack", STACK, "--version", "1.0.0", "--yes"]);
    assert_eq!(
        installed["uploaded"].as_array().unwrap().len(),
        3,
        "{installed}"
    );
    let account = state_machines(&world);
    let machine = &account["machines"]["orders-orders"];
    let definition = machine["definition"].as_str().unwrap();
    for function in ["orders-validate", "orders-price"] {
        assert!(
            definition.contains(&format!(
                "arn:aws:lambda:us-east-1:123456789012:function:{function}"
            )),
            "{function} is not wired in: {definition}"
        );
    }
    assert!(
        definition.contains("arn:aws:states:::dynamodb:putItem"),
        "{definition}"
    );
    assert!(
        machine["role"]
            .as_str()
            .unwrap()
            .contains(":role/orders-WorkflowRole"),
        "{machine}"
    );
    let functions = &account["functions"];
    assert_eq!(functions["orders-price"]["runtime"], "provided.al2023");
    assert_eq!(functions["orders-price"]["handler"], "bootstrap");
    let before = world.artifacts();

    let upgraded =
        world.installer_json(&["upgrade", "--stack", STACK, "--version", "1.1.0", "--yes"]);
    let uploaded = upgraded["uploaded"].as_array().unwrap();
    assert_eq!(uploaded.len(), 1, "exactly one object moves: {upgraded}");
    assert_eq!(upgraded["skipped"], 2, "{upgraded}");
    let after = world.artifacts();
    let new: Vec<&String> = after.iter().filter(|k| !before.contains(k)).collect();
    assert_eq!(new.len(), 1, "{before:?} → {after:?}");
    assert_eq!(
        state_machines(&world)["machines"]["orders-orders"]["definition"],
        account["machines"]["orders-orders"]["definition"],
        "the state machine is unchanged"
    );
    assert_ne!(
        state_machines(&world)["functions"]["orders-price"]["sha256"],
        functions["orders-price"]["sha256"],
        "the price function runs the new code"
    );

    world.installer_ok(&["uninstall", "--stack", STACK, "--yes", "--purge-artifacts"]);
    tests::iam::check_run(
        &world,
        &log,
        STACK,
        &["1.0.0", "1.1.0"],
        tests::iam::UNREACHED,
    );
    let left = state_machines(&world);
    for kind in [
        "machines",
        "functions",
        "queues",
        "tables",
        "topics",
        "roles",
        "mappings",
    ] {
        assert_eq!(left[kind], serde_json::json!({}), "{kind} left: {left}");
    }
    assert!(world.artifacts().is_empty(), "{:?}", world.artifacts());
    assert!(world.account()["stacks"].as_array().unwrap().is_empty());
}

/// What the order workflow creates, read with boto3: state machines (definition, role),
/// functions (runtime, handler, code digest), and the queues, tables, topics, roles and event
/// source mappings left in the account.
fn state_machines(world: &World) -> Value {
    world.boto3(
        r#"
sfn, lam, sqs, ddb, sns, iam = (boto3.client(s, **kw) for s in ("stepfunctions", "lambda", "sqs", "dynamodb", "sns", "iam"))
machines = {}
for m in sfn.list_state_machines()["stateMachines"]:
    d = sfn.describe_state_machine(stateMachineArn=m["stateMachineArn"])
    machines[m["name"]] = {"definition": d["definition"], "role": d["roleArn"]}
functions = {f["FunctionName"]: {"runtime": f.get("Runtime"), "handler": f.get("Handler"), "sha256": f.get("CodeSha256")}
             for f in lam.list_functions()["Functions"]}
queues = {u: 1 for u in sqs.list_queues().get("QueueUrls", [])}
tables = {t: 1 for t in ddb.list_tables()["TableNames"]}
topics = {t["TopicArn"]: 1 for t in sns.list_topics()["Topics"]}
roles = {r["RoleName"]: 1 for r in iam.list_roles()["Roles"] if r["RoleName"].startswith("orders-")}
mappings = {m["UUID"]: 1 for m in lam.list_event_source_mappings()["EventSourceMappings"]}
print(json.dumps({"machines": machines, "functions": functions, "queues": queues, "tables": tables,
                  "topics": topics, "roles": roles, "mappings": mappings}))
"#,
    )
}

#[test]
fn the_app_page_draws_the_state_machine_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let setup = PortalSetup::new(dir.path(), false);
    let token = setup.create_vendor("acme");
    let portal = setup.start();
    let keys = dir.path().join("keys");
    seed_vendor(&setup, &portal.url, &token, keys.to_str().unwrap(), &[]);
    let vendor = |args: &[&str]| setup.client_ok(&portal.url, &token, args);
    vendor(&[
        "app",
        "create",
        "--slug",
        "order-workflow",
        "--name",
        "Order Workflow",
    ]);
    vendor(&["app", "publish", "order-workflow"]);
    build(&example(), dir.path(), "orders", &price_target());
    vendor(&[
        "release",
        "push",
        dir.path().join("orders.bundle").to_str().unwrap(),
        "--keys",
        keys.to_str().unwrap(),
    ]);

    let shots = std::env::var_os("CONSIGN_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts")
        })
        .join("compiled_functions");
    let _ = std::fs::remove_dir_all(&shots);
    let mut buyer = Browser::start(&shots, &dir.path().join("downloads"));
    buyer.goto(&format!("{}/apps/acme/order-workflow", portal.url));
    assert_eq!(buyer.count("figure svg.architecture"), 1);
    assert_eq!(
        buyer.count("figure.workflow svg.state-machine"),
        1,
        "{}",
        buyer.source()
    );
    // Every state, the branches of the Parallel state among them, in the order a run meets them.
    let states = buyer.evaluate(
        "return [...document.querySelectorAll('svg.state-machine g.state')].map(g => g.dataset.state);",
    );
    assert_eq!(
        states,
        serde_json::json!([
            "Validate",
            "IsValid",
            "Price",
            "StoreAndAnnounce",
            "Store",
            "Announce",
            "Done",
            "AnnounceRejection",
            "Rejected"
        ])
    );
    let texts = |css: &str| -> Vec<String> {
        let script =
            format!("return [...document.querySelectorAll('{css}')].map(t => t.textContent);");
        serde_json::from_value(buyer.evaluate(&script)).unwrap()
    };
    let has_all = |found: Vec<String>, expected: &[&str]| {
        for e in expected {
            assert!(found.iter().any(|t| t == e), "{e} not in {found:?}");
        }
    };
    has_all(
        texts("svg.state-machine g.state > title"),
        &[
            "Task Price: invokes PriceFunction (price, compiled)",
            "Task Validate: invokes ValidateFunction (validate, source)",
            "Task Store: dynamodb:putItem on Orders",
            "Parallel StoreAndAnnounce: Parallel: 2 branches at once",
        ],
    );
    has_all(
        texts("svg.state-machine path > title"),
        &[
            "IsValid → Price",
            "IsValid → AnnounceRejection",
            "Price → AnnounceRejection",
        ],
    );
    // The graph is really drawn: its boxes have a size on the page.
    let drawn = buyer.evaluate(
        "const r = document.querySelector('svg.state-machine g.state[data-state=Price] rect').getBoundingClientRect(); return r.width > 100 && r.height > 20;",
    );
    assert_eq!(drawn, serde_json::json!(true));
    assert_eq!(buyer.text("tr.function-compiled td:first-child"), "price");
    buyer.screenshot("order-workflow-page");
    // On a phone the page does not scroll sideways: the graph scrolls in its own box.
    buyer.resize(390, 844);
    let overflow = buyer.evaluate(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
    );
    assert_eq!(overflow.as_i64(), Some(0), "the page is wider than a phone");
}

#[test]
fn a_prebuilt_zip_that_is_not_a_safe_zip_is_refused_at_build() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    vendor_portal(
        &["keys", "init", "--out", keys.to_str().unwrap()],
        &price_target(),
    );
    let app = tmp.path().join("app");
    copy_tree(&example(), &app);
    let manifest = app.join("consign.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let text = text.replace(r#"code = "functions/validate""#, r#"code = "validate.zip""#);
    std::fs::write(&manifest, text).unwrap();
    let build = || failed_build(&app, &keys, &tmp.path().join("x.bundle"));
    // Not a zip at all: before prebuilt zips were read, this shipped as the function's code.
    std::fs::write(app.join("validate.zip"), b"def handler(e, c): pass\n").unwrap();
    let said = build();
    assert!(
        said.contains("not a usable zip") && said.contains("function validate"),
        "{said}"
    );
    // A zip whose entry climbs out of the folder Lambda unpacks it into.
    let made = Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w') as z:\n    z.writestr('../escape.py', 'x = 1')",
        )
        .arg(app.join("validate.zip"))
        .status()
        .unwrap();
    assert!(made.success());
    let said = build();
    assert!(
        said.contains("escape.py") && said.contains("'..'"),
        "{said}"
    );
    assert_eq!(said.matches("error:").count(), 1, "{said}");
    assert!(!tmp.path().join("x.bundle").exists());
}
