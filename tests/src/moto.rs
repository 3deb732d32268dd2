//! The moto server as the tests' AWS account: started on a free loopback port, stopped on drop.
//!
//! `scripts/test` installs the pinned moto into `.venv` and exports `CONSIGN_MOTO_SERVER`.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running moto server.
pub struct Moto {
    child: Child,
    /// The port it listens on.
    pub port: u16,
}

/// Where the moto server executable is: `CONSIGN_MOTO_SERVER`, else the workspace's `.venv`.
pub fn moto_server_path() -> PathBuf {
    if let Some(path) = std::env::var_os("CONSIGN_MOTO_SERVER") {
        return PathBuf::from(path);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server")
}

/// `PATH` with the virtual environment's programs first (cargo-lambda, which compiled example
/// functions build with, is installed there beside moto).
pub fn path_with_venv() -> std::ffi::OsString {
    let venv_bin = moto_server_path()
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let mut paths = vec![venv_bin];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap_or_default()
}

/// The Python of the virtual environment that holds moto (and boto3).
pub fn venv_python() -> PathBuf {
    moto_server_path().with_file_name("python")
}

impl Moto {
    /// Starts moto on a free port and waits until it answers.
    pub fn start() -> Moto {
        Self::start_with_env(&[])
    }

    /// Starts moto with extra environment (`INITIAL_NO_AUTH_ACTION_COUNT` turns on its IAM
    /// checks after that many requests).
    pub fn start_with_env(env: &[(&str, &str)]) -> Moto {
        let path = moto_server_path();
        assert!(
            path.is_file(),
            "{} is missing: run scripts/test once to install the pinned moto server",
            path.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&path)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let moto = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while moto.get("/moto-api/").is_none() {
            assert!(
                Instant::now() < deadline,
                "moto did not answer on port {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// The endpoint URL for SDK clients (`localhost`, so S3 URLs are parsed path-style).
    pub fn endpoint(&self) -> String {
        format!("http://localhost:{}", self.port)
    }

    /// An AWS query-protocol call (`Action=...&Version=...`) to `service`. moto routes requests by
    /// the service in the SigV4 credential scope and does not check the signature itself.
    pub fn aws_query(&self, service: &str, body: &str) -> Option<(u16, String)> {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/aws4_request, \
             SignedHeaders=host, Signature=0"
        );
        self.request(
            "POST",
            "/",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Authorization", &auth),
            ],
            body,
        )
    }

    /// A DynamoDB call (`target` such as `CreateTable`, JSON protocol): the status and the
    /// answer.
    pub fn dynamodb(&self, target: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let auth = "AWS4-HMAC-SHA256 Credential=testing/20260101/eu-west-1/dynamodb/aws4_request, \
             SignedHeaders=host, Signature=0";
        let target = format!("DynamoDB_20120810.{target}");
        let (status, text) = self
            .request(
                "POST",
                "/",
                &[
                    ("Content-Type", "application/x-amz-json-1.0"),
                    ("X-Amz-Target", &target),
                    ("Authorization", auth),
                ],
                &body.to_string(),
            )
            .unwrap_or_else(|| panic!("moto did not answer {target}"));
        (status, serde_json::from_str(&text).unwrap_or_default())
    }

    /// Creates the license agent's state table `name` (what a stack declares for the agent
    /// layer: `pk` and `sk`, both strings, on demand).
    pub fn create_agent_state_table(&self, name: &str) {
        let (status, answer) = self.dynamodb(
            "CreateTable",
            &serde_json::json!({
                "TableName": name,
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"}
                ],
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"}
                ]
            }),
        );
        assert_eq!(status, 200, "CreateTable {name}: {answer}");
    }

    /// The items of table `name` (a scan, every page).
    pub fn scan(&self, name: &str) -> Vec<serde_json::Value> {
        let mut items = Vec::new();
        let mut start = serde_json::Value::Null;
        loop {
            let mut body = serde_json::json!({"TableName": name});
            if !start.is_null() {
                body["ExclusiveStartKey"] = start;
            }
            let (status, answer) = self.dynamodb("Scan", &body);
            assert_eq!(status, 200, "Scan {name}: {answer}");
            items.extend(answer["Items"].as_array().cloned().unwrap_or_default());
            start = answer["LastEvaluatedKey"].clone();
            if start.is_null() {
                return items;
            }
        }
    }

    /// A raw HTTP/1.1 request; returns the status and body, or `None` if nothing answered.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost:{}\r\n",
            self.port
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ));
        stream.write_all(head.as_bytes()).ok()?;
        stream.write_all(body.as_bytes()).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let status = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Some((status, body))
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        self.request("GET", path, &[], "")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
