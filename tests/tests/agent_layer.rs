//! The license agent ships inside the vendor's signed bundle as a Lambda layer, and the installer
//! adds it to the reference app: `vendor-portal release agent-layer` lays the agent out in the
//! app folder, `release build` seals it like any object (so the customer's installer verifies the
//! agent binary under the vendor's release key), and `installer install` uploads the layer's zip,
//! creates the layer and attaches it to every function with the agent's settings.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use serde_json::{Value, json};
use tests::install::World;

#[test]
fn the_installer_adds_the_agent_layer_from_the_signed_bundle_to_the_reference_app() {
    let mut world = World::new();
    world.license("globex.lic", &["--features", "posts"]);
    world.login("globex.lic");

    // A stripped copy of the agent (the debug build is mostly symbols); the layer holds it as
    // it is.
    let agent = world.p("license-agent");
    let stripped = std::process::Command::new("strip")
        .args(["-o", &agent])
        .arg(tests::bin("license-agent"))
        .status()
        .unwrap();
    assert!(stripped.success());
    let keyset = world.p("keys/keyset.json");
    world.publish("1.2.0", |app| {
        let out = std::process::Command::new(tests::bin("vendor-portal"))
            .args([
                "release",
                "agent-layer",
                "--agent",
                &agent,
                "--trust",
                &keyset,
                "-o",
            ])
            .arg(app.join("layers/license-agent"))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("Wrote the license agent layer"), "{said}");
    });
    // The signed manifest lists the layer.
    let inspect: Value = serde_json::from_str(&world.vendor(&[
        "release",
        "inspect",
        &world.p("blog-1.2.0.bundle"),
        "--trust",
        &keyset,
        "--output",
        "json",
    ]))
    .unwrap();
    assert_eq!(
        inspect["manifest"]["layers"][0]["name"], "license-agent",
        "{inspect}"
    );
    assert_eq!(inspect["manifest"]["version_parameter"], "AppVersion");

    let portal = world.portal.url.clone();
    let installed = world.installer_json(&[
        "install",
        "--stack",
        "blog",
        "--version",
        "1.2.0",
        "--yes",
        "--param",
        &format!("LicensePortalUrl={portal}"),
    ]);
    assert_eq!(installed["version"], "1.2.0", "{installed}");

    let lambda = world.lambda();
    // The stack created the layer from the zip the installer uploaded, with the agent inside,
    // executable, and the vendor's keyset beside it.
    let stack = &lambda["stacks"]["blog"];
    assert_eq!(
        stack["resources"]["LicenseAgentLayer"], "AWS::Lambda::LayerVersion",
        "{stack}"
    );
    let key = stack["parameters"]["LicenseAgentLayerKey"]
        .as_str()
        .unwrap();
    assert!(
        key.starts_with("functions/") && key.ends_with(".zip"),
        "{stack}"
    );
    let zip = &stack["layer_zips"]["LicenseAgentLayerKey"];
    assert_eq!(zip["files"]["extensions/license-agent"], "0o755", "{zip}");
    assert!(zip["files"]["consign/keyset.json"].is_string(), "{zip}");
    // The layer the stack made holds exactly that zip.
    let made: Vec<&Value> = lambda["layers"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| name.starts_with("blog-LicenseAgentLayer"))
        .map(|(_, layer)| layer)
        .collect();
    assert_eq!(made.len(), 1, "{lambda}");
    assert_eq!(made[0]["sha256"], zip["sha256"], "{lambda}");
    // Every function is given the layer (while the layer key is set) and the agent's settings.
    for (logical, name) in [
        ("PostsFunction", "blog-posts"),
        ("UsersFunction", "blog-users"),
        ("SiteFunction", "blog-site"),
    ] {
        assert_eq!(
            stack["function_layers"][logical],
            json!({"Fn::If": ["HasLicenseAgentLayer", [{"Ref": "LicenseAgentLayer"}], []]}),
            "{logical}"
        );
        let env = &lambda["functions"][name]["env"];
        assert_eq!(
            env["CONSIGN_LICENSE_PARAMETER"], "/consign/blog/license",
            "{name}"
        );
        assert_eq!(env["CONSIGN_TRUST"], "/opt/consign/keyset.json");
        assert_eq!(env["CONSIGN_APP_VERSION"], "1.2.0");
        assert_eq!(env["CONSIGN_STACK"], "blog");
        assert_eq!(env["CONSIGN_PORTAL_URL"], portal.as_str());
    }

    // A release built without the layer (its folder is optional) installs with the layer key
    // empty, so no layer.
    world.installer_json(&[
        "install",
        "--stack",
        "blog-two",
        "--version",
        "1.1.0",
        "--yes",
    ]);
    let lambda = world.lambda();
    let stack = &lambda["stacks"]["blog-two"];
    assert_eq!(stack["parameters"]["LicenseAgentLayerKey"], "", "{stack}");
    assert!(stack["resources"]["LicenseAgentLayer"].is_null(), "{stack}");
    // The upgrade gives the stack the layer's zip. (moto does not create a resource whose
    // condition turns true on an update, so the layer itself is asserted on the install above.)
    world.installer_json(&[
        "upgrade",
        "--stack",
        "blog-two",
        "--version",
        "1.2.0",
        "--yes",
    ]);
    let lambda = world.lambda();
    let stack = &lambda["stacks"]["blog-two"];
    assert_eq!(
        stack["layer_zips"]["LicenseAgentLayerKey"]["files"]["extensions/license-agent"], "0o755",
        "{stack}"
    );
    // (moto does not update a function's environment on an update either: the version the
    // agent reads comes from the parameter.)
    assert_eq!(stack["parameters"]["AppVersion"], "1.2.0", "{stack}");
}
