//! The installer's end-to-end world: a moto server as the customer's AWS account (account
//! `123456789012`, `us-east-1`), a running portal where a vendor published versions of the
//! reference app with the real CLI, a license for the customer, and helpers to run `installer`
//! against both and to read the account from outside (boto3 in moto's virtual environment), so
//! a test can assert that a refused run left the account exactly as it was.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::bin;
use crate::moto::{Moto, venv_python};
use crate::portal::{PortalProcess, PortalSetup, copy_tree, issue_license_for, seed_vendor};

/// moto's account.
pub const ACCOUNT: &str = "123456789012";
/// The region the tests deploy into.
pub const REGION: &str = "us-east-1";
/// Another AWS account on the same moto server: the customer's neighbour.
pub const NEIGHBOUR: &str = "111111111111";
/// The SSM parameter where the installer records the account's artifact bucket.
pub const ARTIFACT_BUCKET_RECORD: &str = "/consign/artifact-bucket";

/// An example app a [`World`] publishes: its folder under `examples/` (also its slug) and the
/// prefix of its bundles' file names (`blog-1.0.0.bundle`).
#[derive(Debug, Clone, Copy)]
pub struct Example {
    /// The folder under `examples/`, and the app's slug.
    pub folder: &'static str,
    /// The prefix of its files in the world's folder.
    pub files: &'static str,
}

/// The reference app.
pub const BLOG: Example = Example {
    folder: "serverless-blog",
    files: "blog",
};

/// The workflow of functions in three languages, one of them compiled.
pub const ORDER_WORKFLOW: Example = Example {
    folder: "order-workflow",
    files: "order-workflow",
};

/// A vendor with a portal and published releases, and a customer's AWS account.
pub struct World {
    /// The AWS account.
    pub moto: Moto,
    /// The portal's setup (its data folder).
    pub setup: PortalSetup,
    /// The running portal.
    pub portal: PortalProcess,
    /// The vendor's API token.
    pub token: String,
    /// The vendor's root key fingerprint.
    pub fingerprint: String,
    /// Keys, app folders, bundles, licenses, the installer's home.
    pub dir: tempfile::TempDir,
    /// The AWS endpoint the installer uses (moto, or a proxy in front of it).
    pub endpoint: String,
    /// The app it publishes.
    pub example: Example,
    /// Where every installer command records its AWS calls, once [`World::record_calls`] set it.
    pub call_log: Option<PathBuf>,
}

impl World {
    /// Starts moto (Lambda without Docker) and a portal; the vendor publishes 1.0.0 and 1.1.0
    /// (1.1.0 changes only the posts function) on `stable`.
    pub fn new() -> Self {
        Self::on(Moto::start())
    }

    /// The same world on a given moto server.
    pub fn on(moto: Moto) -> Self {
        let mut world = Self::bare(moto, BLOG);
        world.publish("1.0.0", |_| {});
        world.publish("1.1.0", |app| {
            let posts = app.join("functions/posts/app.py");
            let mut code = std::fs::read_to_string(&posts).unwrap();
            code.push_str("\n# 1.1.0: posts are returned newest first.\n");
            std::fs::write(posts, code).unwrap();
        });
        world
    }

    /// A world for `example` on `moto` with nothing published yet: the vendor, its keys, the
    /// app and the customer.
    pub fn bare(moto: Moto, example: Example) -> Self {
        let (status, body) = moto
            .request(
                "POST",
                "/moto-api/config",
                &[("Content-Type", "application/json")],
                r#"{"lambda":{"use_docker":false}}"#,
            )
            .unwrap();
        assert!((200..300).contains(&status), "{body}");
        let dir = tempfile::tempdir().unwrap();
        let mut setup = PortalSetup::new(dir.path(), false);
        // Account proofs go to moto's STS.
        setup
            .env
            .push(("CONSIGN_STS_ENDPOINT".into(), moto.endpoint()));
        let token = setup.create_vendor("acme");
        let portal = setup.start();
        let endpoint = moto.endpoint();
        let world = Self {
            moto,
            setup,
            portal,
            token,
            fingerprint: String::new(),
            dir,
            endpoint,
            example,
            call_log: None,
        };
        let fingerprint = seed_vendor(
            &world.setup,
            &world.portal.url,
            &world.token,
            &world.p("keys"),
            &["--aws-account", ACCOUNT],
        );
        let world = Self {
            fingerprint,
            ..world
        };
        if example.folder != BLOG.folder {
            world.vendor(&[
                "app",
                "create",
                "--slug",
                example.folder,
                "--name",
                example.folder,
            ]);
        }
        world
    }

    /// A path in the world's folder, as a string.
    pub fn p(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    /// Runs a vendor command against the portal.
    pub fn vendor(&self, args: &[&str]) -> String {
        self.setup.client_ok(&self.portal.url, &self.token, args)
    }

    /// Builds the world's app at `version` (after `edit` changes its folder) and pushes it.
    pub fn publish(&mut self, version: &str, edit: impl FnOnce(&Path)) {
        let files = self.example.files;
        let app = self.dir.path().join(format!("{files}-{version}"));
        copy_tree(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../examples")
                .join(self.example.folder),
            &app,
        );
        let manifest = app.join("consign.toml");
        let text = std::fs::read_to_string(&manifest).unwrap().replacen(
            "version = \"1.0.0\"",
            &format!("version = \"{version}\""),
            1,
        );
        std::fs::write(&manifest, text).unwrap();
        edit(&app);
        let bundle = self.p(&format!("{files}-{version}.bundle"));
        self.vendor(&[
            "release",
            "build",
            app.to_str().unwrap(),
            "--keys",
            &self.p("keys"),
            "-o",
            &bundle,
        ]);
        self.vendor(&["release", "push", &bundle, "--keys", &self.p("keys")]);
    }

    /// What the vendor sees of license `id`'s installations and usage (`usage show --output
    /// json`).
    pub fn usage_of(&self, id: &str) -> Value {
        serde_json::from_str(&self.vendor(&["usage", "show", "--license", id, "--output", "json"]))
            .unwrap()
    }

    /// Issues a license to globex (with extra `license issue` arguments) into `name`; returns
    /// its id.
    pub fn license(&self, name: &str, extra: &[&str]) -> String {
        issue_license_for(
            &self.setup,
            (&self.portal.url, &self.token),
            self.example.folder,
            &self.dir.path().join(name),
            extra,
        )
    }

    /// Exports an air-gapped kit of `version` for globex's license (`globex.lic`) into `name`,
    /// wrapped to the install key in `install-key` (made on first use); the kit's path.
    pub fn export_kit(&self, version: &str, name: &str) -> PathBuf {
        let key_dir = self.dir.path().join("install-key");
        if !key_dir.join("install.pub").exists() {
            self.installer_ok(&["keygen", "-o", key_dir.to_str().unwrap()]);
        }
        let public = std::fs::read_to_string(key_dir.join("install.pub")).unwrap();
        self.vendor(&[
            "kit",
            "export",
            "--license",
            &self.p("globex.lic"),
            "--version",
            version,
            "--recipient",
            public.trim(),
            "-o",
            &self.p(name),
        ]);
        self.dir.path().join(name)
    }

    /// An `installer` command with this world's AWS account and installer home.
    pub fn installer_command(&self, args: &[&str]) -> Command {
        self.in_account(Command::new(bin("installer")), args)
    }

    /// A `license-agent` command in this world's AWS account (it reads the license the
    /// installer stored in SSM, and asks STS for the account).
    pub fn agent_command(&self, args: &[&str]) -> Command {
        self.in_account(Command::new(bin("license-agent")), args)
    }

    fn in_account(&self, mut cmd: Command, args: &[&str]) -> Command {
        if let Some(log) = &self.call_log {
            cmd.env("CONSIGN_AWS_CALL_LOG", log);
        }
        cmd.args(args)
            .env(
                "CONSIGN_INSTALLER_HOME",
                self.dir.path().join("installer-home"),
            )
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            // Account proofs are signed for moto's STS, which the portal sends them to, even
            // when the rest goes through a proxy.
            .env("AWS_ENDPOINT_URL_STS", self.moto.endpoint())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", REGION)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", self.dir.path().join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.dir.path().join("no-aws-credentials"),
            )
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("PORTAL_URL")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `installer`.
    pub fn installer(&self, args: &[&str]) -> Output {
        self.installer_command(args).output().unwrap()
    }

    /// Runs `installer`, expecting success; its stdout.
    pub fn installer_ok(&self, args: &[&str]) -> String {
        let out = self.installer(args);
        assert!(
            out.status.success(),
            "installer {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `installer ... --output json`, expecting success.
    pub fn installer_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--output", "json"]);
        serde_json::from_str(&self.installer_ok(&all)).unwrap()
    }

    /// Runs `installer`, expecting failure; its stderr.
    pub fn installer_err(&self, args: &[&str]) -> String {
        let out = self.installer(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(1),
            "installer {args:?} should have failed: {stderr}"
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
            "{stderr}"
        );
        stderr
    }

    /// `installer login` with the license file `name`, pinning the vendor's root.
    pub fn login(&self, name: &str) {
        self.installer_ok(
            &self
                .login_args(name)
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
    }

    /// `installer login`'s arguments for the license file `name`.
    pub fn login_args(&self, name: &str) -> Vec<String> {
        [
            "login",
            "--portal",
            &self.portal.url,
            "--license",
            &self.p(name),
            "--trust-root",
            &self.fingerprint,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// From now on every installer command records its AWS calls (`CONSIGN_AWS_CALL_LOG`)
    /// into `calls.jsonl` in the world's folder; its path.
    pub fn record_calls(&mut self) -> PathBuf {
        let log = self.dir.path().join("calls.jsonl");
        self.call_log = Some(log.clone());
        log
    }

    /// `installer login` on a machine without AWS credentials (a laptop, say): the account is
    /// left unproven, for the install to prove; tests of the installer's own checks use it.
    pub fn login_without_aws(&self, name: &str) {
        let args = self.login_args(name);
        let out = self
            .installer_command(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .env_remove("AWS_REGION")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("not proven yet"),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A world whose moto checks IAM once the requests of [`World::iam_user`] are made, with a
    /// license for globex and `installer login` done without AWS (a login that proves the
    /// account would use up moto's unchecked requests).
    pub fn checking_iam(boundary: bool) -> Self {
        // The unchecked requests: the user, its policy, its key, and the boundary.
        let unchecked = if boundary { "5" } else { "4" };
        let world = Self::on(Moto::start_with_env(&[(
            "INITIAL_NO_AUTH_ACTION_COUNT",
            unchecked,
        )]));
        world.license("globex.lic", &[]);
        world.login_without_aws("globex.lic");
        world
    }

    /// Makes IAM user `name` allowed everything but `denied` and returns its access key pair,
    /// with the unchecked requests of a world from [`World::checking_iam`]. With `boundary`,
    /// also writes the blog stack's permissions boundary as an admin would (moto refuses the
    /// SDK's signature on a `CreatePolicy` carrying a document, so the installer cannot).
    pub fn iam_user(&self, name: &str, denied: &str, boundary: bool) -> (String, String) {
        let script = r#"
import boto3, json, sys
name, denied, template = sys.argv[2], sys.argv[3], sys.argv[4]
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
iam.create_user(UserName=name)
iam.put_user_policy(UserName=name, PolicyName="all-but-one", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"},
                  {"Effect": "Deny", "Action": denied, "Resource": "*"}]}))
key = iam.create_access_key(UserName=name)["AccessKey"]
if template:
    actions = set()
    for r in json.load(open(template))["Resources"].values():
        if r["Type"] == "AWS::IAM::Role":
            for p in r["Properties"].get("Policies", []):
                for st in p["PolicyDocument"]["Statement"]:
                    a = st["Action"]
                    actions.update([a] if isinstance(a, str) else a)
    iam.create_policy(PolicyName="consign-us-east-1-blog-boundary", Path="/consign/",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{"Sid": "DeclaredByTheRelease",
            "Effect": "Allow", "Action": sorted(actions), "Resource": "*"}]}))
print(key["AccessKeyId"], key["SecretAccessKey"])
"#;
        let template = if boundary {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../examples/serverless-blog/template.json")
                .display()
                .to_string()
        } else {
            String::new()
        };
        let out = Command::new(venv_python())
            .args(["-c", script, &self.moto.endpoint(), name, denied, &template])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let keys = String::from_utf8(out.stdout).unwrap();
        let (id, secret) = keys.trim().split_once(' ').unwrap();
        (id.to_owned(), secret.to_owned())
    }

    /// Everything the installer could have touched in the account, read with boto3: stacks
    /// (not deleted), buckets and their keys, SSM parameters and their values.
    pub fn account(&self) -> Value {
        self.boto3(
            r#"
cfn, s3, ssm = (boto3.client(s, **kw) for s in ("cloudformation", "s3", "ssm"))
stacks = sorted((s["StackName"], s["StackStatus"]) for s in cfn.list_stacks()["StackSummaries"]
                if s["StackStatus"] != "DELETE_COMPLETE")
buckets = {}
for b in s3.list_buckets().get("Buckets", []):
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=b["Name"]).get("Contents", [])]
    buckets[b["Name"]] = sorted(keys)
params = {}
for page in ssm.get_paginator("describe_parameters").paginate():
    for p in page["Parameters"]:
        params[p["Name"]] = ssm.get_parameter(Name=p["Name"], WithDecryption=True)["Parameter"]["Value"]
print(json.dumps({"stacks": stacks, "buckets": buckets, "parameters": params}, sort_keys=True))
"#,
        )
    }

    /// The Lambda functions in the account (each one's environment), the layers (each version's
    /// code digest), and for each stack its parameters, resources, the layer zips it was given
    /// (their files and Unix modes, read back from S3) and the `Layers` its template gives each
    /// function. (moto does not attach layers to the functions a stack creates, so what
    /// CloudFormation was asked is read from the template.)
    pub fn lambda(&self) -> Value {
        self.boto3(
            r#"
import base64, hashlib, io, zipfile
lam, s3, cfn = (boto3.client(s, **kw) for s in ("lambda", "s3", "cloudformation"))
functions = {}
for f in lam.list_functions()["Functions"]:
    c = lam.get_function_configuration(FunctionName=f["FunctionName"])
    functions[f["FunctionName"]] = {"env": c.get("Environment", {}).get("Variables", {})}
layers = {}
for l in lam.list_layers()["Layers"]:
    for v in lam.list_layer_versions(LayerName=l["LayerName"])["LayerVersions"]:
        full = lam.get_layer_version(LayerName=l["LayerName"], VersionNumber=v["Version"])
        layers[l["LayerName"]] = {"sha256": full["Content"]["CodeSha256"], "size": full["Content"]["CodeSize"]}
stacks = {}
for s in cfn.describe_stacks()["Stacks"]:
    body = cfn.get_template(StackName=s["StackName"])["TemplateBody"]
    t = body if isinstance(body, dict) else json.loads(body)
    params = {p["ParameterKey"]: p.get("ParameterValue") for p in s.get("Parameters", [])}
    # The layer zips the stack was given (parameters named *LayerKey), as uploaded.
    zips = {}
    for name, key in params.items():
        if name.endswith("LayerKey") and key:
            body = s3.get_object(Bucket=params["ArtifactBucket"], Key=key)["Body"].read()
            files = {i.filename: oct((i.external_attr >> 16) & 0o777)
                     for i in zipfile.ZipFile(io.BytesIO(body)).infolist()}
            zips[name] = {"files": files, "sha256": base64.b64encode(hashlib.sha256(body).digest()).decode()}
    stacks[s["StackName"]] = {
        "parameters": params,
        "layer_zips": zips,
        "resources": {r["LogicalResourceId"]: r["ResourceType"] for r in cfn.list_stack_resources(StackName=s["StackName"])["StackResourceSummaries"]},
        "function_layers": {k: v["Properties"].get("Layers") for k, v in t["Resources"].items() if v["Type"] == "AWS::Lambda::Function"},
    }
print(json.dumps({"functions": functions, "layers": layers, "stacks": stacks}, sort_keys=True))
"#,
        )
    }

    /// Runs a Python script with boto3 against this world's moto (`boto3`, `json` and the client
    /// arguments `kw` are defined); its stdout, parsed as JSON.
    pub fn boto3(&self, body: &str) -> Value {
        self.python(body, "")
    }

    /// [`World::boto3`] as the neighbour: another AWS account ([`NEIGHBOUR`]) on the same moto,
    /// reached by assuming a role in it.
    pub fn neighbour(&self, body: &str) -> Value {
        self.python(
            body,
            &format!(
                "c = boto3.client(\"sts\", **kw).assume_role(RoleArn=\"arn:aws:iam::{NEIGHBOUR}:role/neighbour\", RoleSessionName=\"neighbour\")[\"Credentials\"]\nkw.update(aws_access_key_id=c[\"AccessKeyId\"], aws_secret_access_key=c[\"SecretAccessKey\"], aws_session_token=c[\"SessionToken\"])\n"
            ),
        )
    }

    fn python(&self, body: &str, prelude: &str) -> Value {
        let script = format!(
            "import boto3, json, sys\nkw = dict(endpoint_url=sys.argv[1], region_name=\"{REGION}\",\n          aws_access_key_id=\"testing\", aws_secret_access_key=\"testing\")\n{prelude}{body}"
        );
        let out = Command::new(venv_python())
            .args(["-c", &script, &self.moto.endpoint()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The artifact bucket the installer recorded in the account, if any.
    pub fn artifact_bucket(&self) -> Option<String> {
        self.account()["parameters"][ARTIFACT_BUCKET_RECORD]
            .as_str()
            .map(str::to_owned)
    }

    /// The function artifacts in the artifact bucket.
    pub fn artifacts(&self) -> Vec<String> {
        let account = self.account();
        let Some(bucket) = account["parameters"][ARTIFACT_BUCKET_RECORD].as_str() else {
            return Vec::new();
        };
        account["buckets"][bucket]
            .as_array()
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| k.as_str())
                    .filter(|k| k.starts_with("functions/"))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The portal's stored blob of the object at `path` in `version`'s bundle.
    pub fn stored_object(&self, version: &str, path: &str) -> PathBuf {
        let mut file = std::io::BufReader::new(
            std::fs::File::open(self.p(&format!("{}-{version}.bundle", self.example.files)))
                .unwrap(),
        );
        let head = bundles::container::read_head(&mut file, &bundles::Limits::default()).unwrap();
        let manifest: bundles::BundleManifest =
            serde_json::from_slice(&head.manifest_bytes).unwrap();
        let object = manifest
            .objects
            .iter()
            .find(|o| o.path.as_str() == path)
            .unwrap();
        let hex = object.sealed_digest.hex();
        std::fs::read_dir(self.setup.data.join("blobs/objects"))
            .unwrap()
            .map(|vendor| vendor.unwrap().path().join(&hex))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("no stored blob for {path}"))
    }
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

/// A TCP proxy in front of the AWS endpoint that can fail like a network: once the requests it
/// forwards contain `pattern` for the `nth` time, it drops every connection and refuses new
/// ones until [`Proxy::restore`].
pub struct Proxy {
    /// The port it listens on.
    pub port: u16,
    down: Arc<AtomicBool>,
    /// How many times the pattern was seen.
    pub seen: Arc<AtomicUsize>,
    upstream: u16,
    listener: Arc<Mutex<Option<TcpListener>>>,
}

impl Proxy {
    /// A proxy to `127.0.0.1:upstream` that cuts at the `nth` request containing `pattern`.
    pub fn start(upstream: u16, pattern: &'static [u8], nth: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Self {
            port,
            down: Arc::new(AtomicBool::new(false)),
            seen: Arc::new(AtomicUsize::new(0)),
            upstream,
            listener: Arc::new(Mutex::new(None)),
        };
        proxy.serve(listener, pattern, nth);
        proxy
    }

    /// `http://localhost:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://localhost:{}", self.port)
    }

    fn serve(&self, listener: TcpListener, pattern: &'static [u8], nth: usize) {
        let (down, seen, upstream) = (self.down.clone(), self.seen.clone(), self.upstream);
        let slot = self.listener.clone();
        *slot.lock().unwrap() = Some(listener.try_clone().unwrap());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if down.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (down, seen, slot) = (down.clone(), seen.clone(), slot.clone());
                let (client2, server2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                // Server to client: plain copy.
                std::thread::spawn(move || {
                    let (mut from, mut to) = (server2, client2);
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
                // Client to server: watch for the pattern.
                std::thread::spawn(move || {
                    let (mut from, mut to) = (client, server);
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        if down.load(Ordering::SeqCst) {
                            break;
                        }
                        let n = match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let chunk = &buf[..n];
                        if chunk.windows(pattern.len()).any(|w| w == pattern)
                            && seen.fetch_add(1, Ordering::SeqCst) + 1 >= nth
                        {
                            cut(&down, &slot);
                            break;
                        }
                        if to.write_all(chunk).is_err() {
                            break;
                        }
                    }
                    let _ = from.shutdown(std::net::Shutdown::Both);
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        });
    }

    /// Whether the proxy has cut the network.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }

    /// Stops accepting: the endpoint refuses connections (the socket is closed).
    pub fn close(&self) {
        cut(&self.down, &self.listener);
    }

    /// Serves again on the same port, no longer cutting.
    pub fn restore(&self) {
        self.close();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let listener = TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        self.down.store(false, Ordering::SeqCst);
        self.serve(listener, b"\0never\0", usize::MAX);
    }
}

/// Marks the proxy down and closes its listening socket: the accept loop is woken by one last
/// connection, sees `down`, and drops its own handle, so new connections are refused.
fn cut(down: &AtomicBool, slot: &Mutex<Option<TcpListener>>) {
    down.store(true, Ordering::SeqCst);
    if let Some(listener) = slot.lock().unwrap().take() {
        let _ = TcpStream::connect(listener.local_addr().unwrap());
    }
}
