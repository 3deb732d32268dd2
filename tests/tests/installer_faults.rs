//! Failures the installer meets in the field, on moto with a running portal: the AWS endpoint
//! going away mid-install (a clear error; the next run converges), a stack that fails (the error
//! names the resource and the reason), and air-gapped installs from a kit (including a tampered
//! one, refused with the account unchanged).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use tests::install::{Proxy, World};

const STACK: &str = "blog";

#[test]
fn aws_endpoint_stopping_mid_install_fails_clearly_and_the_next_run_converges() {
    let mut world = World::new();
    world.license("globex.lic", &[]);
    world.login("globex.lic");
    // The network to AWS dies while the second function artifact is being uploaded.
    // (The bucket's name has a random suffix; only uploads put objects under functions/.)
    let pattern: &'static [u8] = b"/functions/";
    let proxy = Proxy::start(world.moto.port, pattern, 2);
    world.endpoint = proxy.endpoint();
    let stderr = world.installer_err(&["install", "--stack", STACK, "--version", "1.0.0", "--yes"]);
    assert!(proxy.is_down(), "the fault was never injected: {stderr}");
    assert!(stderr.contains("cannot reach AWS"), "{stderr}");
    assert!(stderr.contains("run the command again"), "{stderr}");
    let account = world.account();
    assert_eq!(account["stacks"], serde_json::json!([]), "{account}");
    assert!(world.artifacts().len() < 3, "{account}");

    // The network comes back; the same command finishes the job.
    proxy.restore();
    let done = world.installer_json(&["install", "--stack", STACK, "--version", "1.0.0", "--yes"]);
    assert_eq!(done["changed"], true, "{done}");
    assert_eq!(done["stack_status"], "CREATE_COMPLETE", "{done}");
    let uploaded = done["uploaded"].as_array().unwrap().len();
    assert_eq!(
        uploaded + done["skipped"].as_u64().unwrap() as usize,
        3,
        "{done}"
    );
    assert_eq!(world.artifacts().len(), 3);
    let status = world.installer_json(&["status", "--stack", STACK]);
    assert_eq!(status["version"], "1.0.0", "{status}");
}

#[test]
fn failing_stack_names_the_resource_and_the_reason() {
    let mut world = World::new();
    world.license("globex.lic", &[]);
    // 1.2.0 adds a function whose code lives in a bucket that does not exist. The resource is
    // spliced in as text, last, so the template keeps its order.
    world.publish("1.2.0", |app| {
        let path = app.join("template.json");
        let mut template = std::fs::read_to_string(&path).unwrap();
        let outputs = template.find("\"Outputs\"").unwrap();
        let end_of_resources = template[..outputs].rfind('}').unwrap();
        template.insert_str(
            end_of_resources,
            r#", "ReportsFunction": {"Type": "AWS::Lambda::Function", "Properties": {
                "Runtime": "python3.12", "Handler": "app.handler",
                "Role": {"Fn::GetAtt": ["SiteRole", "Arn"]},
                "Code": {"S3Bucket": "consign-test-no-such-bucket", "S3Key": "reports.zip"}}}
            "#,
        );
        std::fs::write(path, template).unwrap();
    });
    world.login("globex.lic");
    let stderr = world.installer_err(&["install", "--stack", STACK, "--version", "1.2.0", "--yes"]);
    assert!(stderr.contains("ReportsFunction"), "{stderr}");
    assert!(stderr.contains("AWS::Lambda::Function"), "{stderr}");
    assert!(
        stderr.contains("NoSuchKey") || stderr.contains("does not exist"),
        "the reason is missing: {stderr}"
    );
    // Nothing is recorded as installed; installing a good version replaces the failed stack.
    let status = world.installer_json(&["status", "--stack", STACK]);
    assert_eq!(status["installed"], false, "{status}");
    let done = world.installer_json(&["install", "--stack", STACK, "--version", "1.1.0", "--yes"]);
    assert_eq!(done["stack_status"], "CREATE_COMPLETE", "{done}");
}

#[test]
fn air_gapped_install_and_upgrade_from_kits() {
    let world = World::new();
    world.license("globex.lic", &[]);
    for version in ["1.0.0", "1.1.0"] {
        world.export_kit(version, &format!("blog-{version}.kit"));
    }
    // No login, no portal: only the kit, the install key and the vendor's root fingerprint.
    let from_kit = |command: &str, version: &str| {
        world.installer_json(&[
            command,
            "--stack",
            STACK,
            "--kit",
            &world.p(&format!("blog-{version}.kit")),
            "--key",
            &world.p("install-key"),
            "--trust-root",
            &world.fingerprint,
            "--yes",
        ])
    };
    let done = from_kit("install", "1.0.0");
    assert_eq!(done["version"], "1.0.0", "{done}");
    assert_eq!(done["stack_status"], "CREATE_COMPLETE");
    assert_eq!(done["uploaded"].as_array().unwrap().len(), 3);
    let upgraded = from_kit("upgrade", "1.1.0");
    assert_eq!(upgraded["version"], "1.1.0", "{upgraded}");
    assert_eq!(
        upgraded["uploaded"].as_array().unwrap().len(),
        1,
        "{upgraded}"
    );
    let status = world.installer_json(&["status", "--stack", STACK]);
    assert_eq!(status["version"], "1.1.0", "{status}");
    // The same kit again: nothing to do.
    let again = from_kit("install", "1.1.0");
    assert_eq!(again["changed"], false, "{again}");

    // The vendor changes the app's metadata and exports a new kit, which this machine loads;
    // the first kit is now older than what it has seen, and the refusal says what to do.
    world.vendor(&[
        "release",
        "promote",
        "serverless-blog",
        "1.1.0",
        "--channel",
        "beta",
        "--keys",
        &world.p("keys"),
    ]);
    world.export_kit("1.1.0", "blog-newer.kit");
    let newer = from_kit("install", "newer");
    assert_eq!(newer["changed"], false, "{newer}");
    let before = world.account();
    let stale = world.installer_err(&[
        "install",
        "--stack",
        STACK,
        "--kit",
        &world.p("blog-1.0.0.kit"),
        "--key",
        &world.p("install-key"),
        "--trust-root",
        &world.fingerprint,
        "--yes",
    ]);
    assert!(
        stale.contains("older than what this machine has already seen")
            && stale.contains("export a new kit"),
        "{stale}"
    );
    assert_eq!(world.account(), before);
}

#[test]
fn tampered_kit_is_refused_before_any_change() {
    let world = World::new();
    world.license("globex.lic", &[]);
    world.export_kit("1.0.0", "blog.kit");
    // Flip one byte near the end of the kit: inside the bundle's last sealed object.
    let mut bytes = std::fs::read(world.p("blog.kit")).unwrap();
    let at = bytes.len() - 2048;
    bytes[at] ^= 0x40;
    std::fs::write(world.p("tampered.kit"), bytes).unwrap();
    let before = world.account();
    let install_kit = |kit: &str, root: &str| {
        world.installer_err(&[
            "install",
            "--stack",
            STACK,
            "--kit",
            &world.p(kit),
            "--key",
            &world.p("install-key"),
            "--trust-root",
            root,
            "--yes",
        ])
    };
    let stderr = install_kit("tampered.kit", &world.fingerprint);
    assert!(
        stderr.contains("refused")
            || stderr.contains("altered")
            || stderr.contains("authentication"),
        "{stderr}"
    );
    assert_eq!(world.account(), before, "a refused kit changed the account");
    // A kit is only trusted under the vendor's root.
    let stderr = install_kit(
        "blog.kit",
        "sha256:0000000000000000000000000000000000000000000000000000000000000000",
    );
    assert!(stderr.contains("not rooted in the vendor key"), "{stderr}");
    assert_eq!(world.account(), before);
}
