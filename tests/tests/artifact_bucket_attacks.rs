//! Nothing the installer writes or reads in S3 can belong to someone else: attacks on the
//! artifact bucket on moto with two AWS accounts (the customer's and a neighbour's), each
//! against the real installer.
//!
//! - The neighbour creates the bucket name earlier installers used (it is predictable) and
//!   plants function zips in it: the installer never uses that bucket.
//! - The bucket the account recorded is owned by another account: refused before any change.
//! - An object in the customer's own bucket has the right key and the wrong bytes: it is
//!   uploaded again, not "already present".
//! - A template planted in the bucket under the key of the next release's template: the
//!   vendor's template is deployed, not the planted one.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use bundles::{BundleManifest, ObjectEntry, Role};
use serde_json::Value;
use tests::install::{ACCOUNT, ARTIFACT_BUCKET_RECORD, REGION, World};

const STACK: &str = "blog";

fn legacy_bucket() -> String {
    format!("consign-artifacts-{ACCOUNT}-{REGION}")
}

/// `version`'s signed manifest, from the vendor's bundle.
fn manifest(world: &World, version: &str) -> BundleManifest {
    let mut file = std::io::BufReader::new(
        std::fs::File::open(world.p(&format!("blog-{version}.bundle"))).unwrap(),
    );
    let head = bundles::container::read_head(&mut file, &bundles::Limits::default()).unwrap();
    serde_json::from_slice(&head.manifest_bytes).unwrap()
}

fn objects(manifest: &BundleManifest, role: Role) -> Vec<ObjectEntry> {
    manifest
        .objects
        .iter()
        .filter(|o| o.role == role)
        .cloned()
        .collect()
}

fn artifact_keys(manifest: &BundleManifest) -> Vec<String> {
    manifest
        .objects
        .iter()
        .filter(|o| matches!(o.role, Role::Function | Role::Layer))
        .map(|o| format!("functions/{}.zip", o.digest.hex()))
        .collect()
}

/// The SHA-256 (hex) of each object in `bucket` of the customer's account, by key.
fn digests(world: &World, bucket: &str) -> Value {
    world.boto3(&format!(
        r#"
import hashlib
s3 = boto3.client("s3", **kw)
out = {{}}
for o in s3.list_objects_v2(Bucket="{bucket}").get("Contents", []):
    out[o["Key"]] = hashlib.sha256(s3.get_object(Bucket="{bucket}", Key=o["Key"])["Body"].read()).hexdigest()
print(json.dumps(out))
"#
    ))
}

#[test]
fn artifact_bucket_name_taken_by_another_account_is_never_used() {
    let world = World::new();
    world.license("globex.lic", &[]);
    world.login("globex.lic");
    let legacy = legacy_bucket();
    let keys = artifact_keys(&manifest(&world, "1.0.0"));
    // The neighbour takes the predictable name first and plants every function of 1.0.0.
    let planted = world.neighbour(&format!(
        r#"
s3 = boto3.client("s3", **kw)
s3.create_bucket(Bucket="{legacy}")
for key in {keys}:
    s3.put_object(Bucket="{legacy}", Key=key, Body=b"planted by the neighbour")
print(json.dumps(sorted(o["Key"] for o in s3.list_objects_v2(Bucket="{legacy}")["Contents"])))
"#,
        keys = serde_json::to_string(&keys).unwrap()
    ));
    assert_eq!(planted.as_array().unwrap().len(), keys.len());

    let done = world.installer_json(&["install", "--stack", STACK, "--version", "1.0.0", "--yes"]);
    let bucket = done["artifact_bucket"].as_str().unwrap().to_owned();
    assert_ne!(bucket, legacy, "the neighbour's bucket was used: {done}");
    assert!(bucket.starts_with(&format!("{legacy}-")), "{done}");
    assert_eq!(world.artifact_bucket().as_deref(), Some(bucket.as_str()));
    assert_eq!(
        done["skipped"], 0,
        "a planted object was taken as present: {done}"
    );
    assert_eq!(
        done["uploaded"].as_array().unwrap().len(),
        keys.len(),
        "{done}"
    );
    // The stack reads its code from the customer's bucket, whose objects are the vendor's.
    let lambda = world.lambda();
    assert_eq!(
        lambda["stacks"][STACK]["parameters"]["ArtifactBucket"], bucket,
        "{lambda}"
    );
    let ours = digests(&world, &bucket);
    for entry in objects(&manifest(&world, "1.0.0"), Role::Function) {
        let key = format!("functions/{}.zip", entry.digest.hex());
        assert_eq!(ours[&key], entry.digest.hex(), "{key}: {ours}");
    }
    // The neighbour's bucket was neither read into the stack nor written.
    let theirs = world.neighbour(&format!(
        r#"
s3 = boto3.client("s3", **kw)
print(json.dumps(sorted(s3.get_object(Bucket="{legacy}", Key=o["Key"])["Body"].read().decode() for o in s3.list_objects_v2(Bucket="{legacy}")["Contents"])))
"#
    ));
    assert!(
        theirs
            .as_array()
            .unwrap()
            .iter()
            .all(|body| body == "planted by the neighbour"),
        "{theirs}"
    );
}

#[test]
fn recorded_artifact_bucket_owned_by_another_account_is_refused() {
    let world = World::new();
    world.license("globex.lic", &[]);
    world.login("globex.lic");
    // The account's recorded bucket was deleted, and the neighbour took its name.
    let taken = format!("{}-0badf00d", legacy_bucket());
    world.neighbour(&format!(
        "boto3.client(\"s3\", **kw).create_bucket(Bucket=\"{taken}\")\nprint(1)"
    ));
    world.boto3(&format!(
        "boto3.client(\"ssm\", **kw).put_parameter(Name=\"{ARTIFACT_BUCKET_RECORD}\", Value=\"{taken}\", Type=\"String\")\nprint(1)"
    ));
    for command in ["plan", "install"] {
        let before = world.account();
        let mut args = vec![command, "--stack", STACK, "--version", "1.0.0"];
        if command == "install" {
            args.push("--yes");
        }
        let stderr = world.installer_err(&args);
        assert!(
            stderr.contains(&format!(
                "the S3 bucket {taken} belongs to another AWS account, not to {ACCOUNT}"
            )),
            "{stderr}"
        );
        assert!(stderr.contains(ARTIFACT_BUCKET_RECORD), "{stderr}");
        assert_eq!(
            world.account(),
            before,
            "the refused {command} changed the account"
        );
    }
}

#[test]
fn planted_artifact_with_the_right_key_and_wrong_bytes_is_uploaded_again() {
    let world = World::new();
    world.license("globex.lic", &[]);
    world.login("globex.lic");
    let done = world.installer_json(&["install", "--stack", STACK, "--version", "1.0.0", "--yes"]);
    let bucket = done["artifact_bucket"].as_str().unwrap().to_owned();
    // 1.1.0 changes only the posts function: users' zip keeps its key. Someone with write
    // access to the bucket replaces it, with an honest SHA-256 checksum of the wrong bytes.
    let v11 = manifest(&world, "1.1.0");
    let users = objects(&v11, Role::Function)
        .into_iter()
        .find(|o| o.path.as_str().contains("users"))
        .unwrap();
    let key = format!("functions/{}.zip", users.digest.hex());
    world.boto3(&format!(
        r#"boto3.client("s3", **kw).put_object(Bucket="{bucket}", Key="{key}", Body=b"planted", ChecksumAlgorithm="SHA256")
print(1)"#
    ));
    let up = world.installer_json(&["upgrade", "--stack", STACK, "--version", "1.1.0", "--yes"]);
    assert!(
        up["uploaded"]
            .as_array()
            .unwrap()
            .contains(&Value::from(key.clone())),
        "the planted object was skipped as already present: {up}"
    );
    assert_eq!(digests(&world, &bucket)[&key], users.digest.hex());
}

#[test]
fn template_planted_in_the_bucket_is_not_deployed() {
    let mut world = World::new();
    // 1.2.0's template is over CloudFormation's body limit, so it goes through the bucket.
    world.publish("1.2.0", |app| {
        let path = app.join("template.json");
        let mut template: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        template["Metadata"] = serde_json::json!({"Padding": "x".repeat(60_000)});
        std::fs::write(path, serde_json::to_string_pretty(&template).unwrap()).unwrap();
    });
    world.license("globex.lic", &[]);
    world.login("globex.lic");
    let done = world.installer_json(&["install", "--stack", STACK, "--version", "1.0.0", "--yes"]);
    let bucket = done["artifact_bucket"].as_str().unwrap().to_owned();
    let template = objects(&manifest(&world, "1.2.0"), Role::Template).remove(0);
    // The template deployed is the signed one with the installation's permissions boundary on
    // each role; its key is that text's digest, which anyone can work out.
    let signed = std::fs::read(world.dir.path().join("blog-1.2.0/template.json")).unwrap();
    let boundary = installer::boundary::arn(ACCOUNT, REGION, STACK);
    let deployed_digest =
        bundles::Digest::of(&installer::boundary::bounded_text(&signed, &boundary).unwrap());
    let key = format!("templates/{}.json", deployed_digest.hex());
    // Planted before the upgrade, under the key the installer will use.
    let planted = serde_json::json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Parameters": {"ArtifactBucket": {"Type": "String"}},
        "Resources": {"Planted": {"Type": "AWS::SSM::Parameter",
            "Properties": {"Name": "/planted", "Type": "String", "Value": "owned"}}}
    });
    world.boto3(&format!(
        r#"boto3.client("s3", **kw).put_object(Bucket="{bucket}", Key="{key}", Body={body:?})
print(1)"#,
        body = planted.to_string()
    ));
    let up = world.installer_json(&["upgrade", "--stack", STACK, "--version", "1.2.0", "--yes"]);
    assert_eq!(up["version"], "1.2.0", "{up}");
    let account = world.account();
    assert!(
        account["parameters"].get("/planted").is_none(),
        "the planted template was deployed: {account}"
    );
    let deployed = world.boto3(&format!(
        r#"body = boto3.client("cloudformation", **kw).get_template(StackName="{STACK}")["TemplateBody"]
print(json.dumps(body if isinstance(body, dict) else json.loads(body)))"#
    ));
    assert!(deployed["Resources"].get("Planted").is_none(), "{deployed}");
    assert!(
        deployed["Resources"].get("PostsFunction").is_some(),
        "{deployed}"
    );
    assert_eq!(digests(&world, &bucket)[&key], deployed_digest.hex());
    assert_ne!(
        deployed_digest, template.digest,
        "the roles carry the boundary"
    );
}
