//! A record of every AWS call the installer makes, for checking `installer iam-policy` by use:
//! with `CONSIGN_AWS_CALL_LOG=FILE`, an interceptor on every SDK client appends one JSON line
//! per request as it is sent: the service, the operation, the IAM action it needs and the
//! resource ARN it acts on (the account as `*` where the request does not carry it).

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use aws_sdk_s3::config::ConfigBag;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use serde_json::{Value, json};

/// The variable naming the log file.
pub const LOG_ENV: &str = "CONSIGN_AWS_CALL_LOG";

/// Appends each call to the log.
#[derive(Clone, Debug)]
pub struct Recorder {
    file: Arc<Mutex<std::fs::File>>,
    region: String,
}

impl Recorder {
    /// A recorder when `CONSIGN_AWS_CALL_LOG` names a file (opened for appending).
    pub fn from_env(region: &str) -> anyhow::Result<Option<Self>> {
        let Some(path) = std::env::var_os(LOG_ENV) else {
            return Ok(None);
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| {
                anyhow::anyhow!("cannot open {LOG_ENV} {}: {e}", path.to_string_lossy())
            })?;
        Ok(Some(Self {
            file: Arc::new(Mutex::new(file)),
            region: region.to_owned(),
        }))
    }
}

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "ConsignCallRecorder"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(meta) = cfg.load::<Metadata>() else {
            return Ok(());
        };
        let request = context.request();
        let body = request.body().bytes().unwrap_or_default();
        let line = describe(
            meta.service(),
            meta.name(),
            request.uri(),
            body,
            &self.region,
        );
        if let Ok(mut file) = self.file.lock() {
            writeln!(file, "{line}")?;
        }
        Ok(())
    }
}

/// The IAM action an operation needs, where its name is not the action's.
fn action(prefix: &str, operation: &str) -> String {
    let name = match (prefix, operation) {
        ("s3", "HeadBucket" | "ListObjectsV2" | "ListObjects") => "ListBucket",
        ("s3", "HeadObject" | "GetObjectAttributes") => "GetObject",
        ("s3", "PutBucketEncryption") => "PutEncryptionConfiguration",
        ("s3", "PutPublicAccessBlock") => "PutBucketPublicAccessBlock",
        ("s3", "GetPublicAccessBlock") => "GetBucketPublicAccessBlock",
        ("s3", "DeleteObjects") => "DeleteObject",
        ("s3", "ListBuckets") => "ListAllMyBuckets",
        ("s3", "CreateMultipartUpload" | "UploadPart" | "CompleteMultipartUpload") => "PutObject",
        ("s3", "ListObjectVersions") => "ListBucketVersions",
        _ => operation,
    };
    format!("{prefix}:{name}")
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn param<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The resource a request acts on, as an ARN.
fn resource(prefix: &str, uri: &str, body: &[u8], region: &str) -> String {
    match prefix {
        "s3" => s3_resource(uri),
        "cloudformation" => match param(&form(body), "StackName") {
            Some(arn) if arn.starts_with("arn:") => arn.to_owned(),
            Some(name) => format!("arn:aws:cloudformation:{region}:*:stack/{name}/*"),
            None => "*".into(),
        },
        "ssm" => {
            let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let name = json
                .get("Name")
                .or_else(|| json.get("Path"))
                .or_else(|| json.pointer("/Names/0"))
                .and_then(Value::as_str);
            match name {
                Some(n) => format!(
                    "arn:aws:ssm:{region}:*:parameter{}{n}",
                    if n.starts_with('/') { "" } else { "/" }
                ),
                None => "*".into(),
            }
        }
        "iam" => {
            let form = form(body);
            if let Some(arn) = param(&form, "PolicyArn") {
                arn.to_owned()
            } else if let Some(name) = param(&form, "PolicyName") {
                format!(
                    "arn:aws:iam::*:policy{}{name}",
                    param(&form, "Path").unwrap_or("/")
                )
            } else if let Some(role) = param(&form, "RoleName") {
                format!("arn:aws:iam::*:role/{role}")
            } else {
                "*".into()
            }
        }
        _ => "*".into(),
    }
}

/// `arn:aws:s3:::bucket[/key]` from a virtual-hosted or path-style URL.
fn s3_resource(uri: &str) -> String {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = host.split(':').next().unwrap_or_default();
    let decoded = |s: &str| percent_decode(s);
    let (bucket, key) = match host.split_once(".s3.") {
        Some((bucket, _)) if !bucket.is_empty() => (bucket.to_owned(), decoded(path)),
        _ => {
            let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
            (bucket.to_owned(), decoded(key))
        }
    };
    match (bucket.is_empty(), key.is_empty()) {
        (true, _) => "*".into(),
        (false, true) => format!("arn:aws:s3:::{bucket}"),
        (false, false) => format!("arn:aws:s3:::{bucket}/{key}"),
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("k={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// One call as a JSON line.
fn describe(service: &str, operation: &str, uri: &str, body: &[u8], region: &str) -> Value {
    let prefix = match service.to_ascii_lowercase().as_str() {
        "cloudformation" => "cloudformation",
        "s3" => "s3",
        "ssm" => "ssm",
        "iam" => "iam",
        "sts" => "sts",
        other => {
            return json!({"service": other, "operation": operation, "action": format!("{other}:{operation}"), "resource": "*"});
        }
    };
    json!({
        "service": service,
        "operation": operation,
        "action": action(prefix, operation),
        "resource": resource(prefix, uri, body, region),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_name_bucket_and_key() {
        assert_eq!(
            s3_resource(
                "http://localhost:5000/consign-artifacts-1/functions/a%20b.zip?x-id=PutObject"
            ),
            "arn:aws:s3:::consign-artifacts-1/functions/a b.zip"
        );
        assert_eq!(
            s3_resource("https://b.s3.us-east-1.amazonaws.com/k"),
            "arn:aws:s3:::b/k"
        );
        assert_eq!(
            s3_resource("https://b.s3.us-east-1.amazonaws.com/"),
            "arn:aws:s3:::b"
        );
        assert_eq!(s3_resource("http://localhost:5000/"), "*");
        assert_eq!(action("s3", "HeadBucket"), "s3:ListBucket");
    }
}
