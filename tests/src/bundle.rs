//! Bundle fixtures: a small app built in memory with a vendor's release key, helpers to open and
//! check bundles from bytes, and the byte layout of a bundle so attacks can aim at its parts.

use std::collections::BTreeMap;
use std::ops::Range;

use bundles::open::{ObjectSink, check_all, open_all};
use bundles::{
    AppManifest, Builder, Built, BundlePath, BundleReader, KeysFile, Limits, ObjectEntry,
};

use crate::{Vendor, now};

/// An app's parts, in memory.
#[derive(Clone)]
pub struct AppFixture {
    pub toml: String,
    pub template: Vec<u8>,
    pub function: Vec<u8>,
    pub assets: Vec<(String, Vec<u8>)>,
}

/// Deterministic pseudo-random bytes (xorshift), so fixtures are reproducible.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub const TEMPLATE: &str = r#"{"AWSTemplateFormatVersion":"2010-09-09",
 "Parameters":{"ArtifactBucket":{"Type":"String"},"WorkerCodeKey":{"Type":"String"}},
 "Resources":{
  "Role":{"Type":"AWS::IAM::Role","Properties":{"Policies":[{"PolicyName":"p","PolicyDocument":{"Statement":[
    {"Effect":"Allow","Action":"sqs:ReceiveMessage","Resource":{"Fn::GetAtt":["Jobs","Arn"]}}]}}]}},
  "Jobs":{"Type":"AWS::SQS::Queue"},
  "Site":{"Type":"AWS::S3::Bucket"},
  "Worker":{"Type":"AWS::Lambda::Function","Properties":{"Code":{"S3Bucket":{"Ref":"ArtifactBucket"},"S3Key":{"Ref":"WorkerCodeKey"}}}}},
 "Outputs":{"SiteBucket":{"Value":{"Ref":"Site"}}}}"#;

pub const TOML: &str = r#"
[app]
slug = "tiny-app"
name = "Tiny App"
version = "1.0.0"
release_notes = "A test app."
template = "template.json"
min_installer_version = "0.1.0"
capabilities = ["CAPABILITY_IAM"]
artifact_bucket_parameter = "ArtifactBucket"

[[functions]]
name = "worker"
runtime = "python3.12"
handler = "worker.handler"
code = "functions/worker"
feature = "jobs"
code_parameter = "WorkerCodeKey"

[[assets]]
name = "site"
path = "static"
bucket_output = "SiteBucket"
"#;

impl AppFixture {
    /// One function and two assets, one of them three and a bit chunks long.
    pub fn small() -> Self {
        Self {
            toml: TOML.to_owned(),
            template: TEMPLATE.as_bytes().to_vec(),
            function: bundles::zip::write_zip(vec![bundles::zip::ZipEntry {
                name: BundlePath::new("worker.py").unwrap(),
                executable: false,
                data: b"def handler(event, context):\n    return 'ok'\n".to_vec(),
            }])
            .unwrap(),
            assets: vec![
                (
                    "index.html".into(),
                    b"<!doctype html><title>tiny</title>".to_vec(),
                ),
                ("big.bin".into(), noise(3 * 65_536 + 1_000, 7)),
            ],
        }
    }

    /// Builds the bundle with `vendor`'s release key, reusing `previous` keys when given.
    pub fn build(&self, vendor: &Vendor, previous: Option<KeysFile>) -> (Vec<u8>, Built) {
        let mut builder = Builder::new(
            AppManifest::parse(&self.toml).unwrap(),
            self.template.clone(),
        )
        .unwrap();
        builder
            .add_function(
                "worker",
                bundles::build::in_memory(self.function.clone()),
                bundles::manifest::FunctionKind::Source,
            )
            .unwrap();
        for (path, data) in &self.assets {
            builder
                .add_asset_file(
                    "site",
                    &BundlePath::new(path.clone()).unwrap(),
                    bundles::build::in_memory(data.clone()),
                )
                .unwrap();
        }
        if let Some(previous) = previous {
            builder.reuse_keys(previous);
        }
        let mut out = Vec::new();
        let kid = vendor.release.public_key().derive_kid("rel");
        let built = builder
            .build(&kid, &vendor.release, now(), &mut out)
            .unwrap();
        (out, built)
    }

    /// The plaintext every object should open to, by path.
    pub fn expected(&self) -> BTreeMap<String, Vec<u8>> {
        let mut map = BTreeMap::from([
            ("template.json".to_owned(), self.template.clone()),
            ("functions/worker.zip".to_owned(), self.function.clone()),
        ]);
        for (path, data) in &self.assets {
            map.insert(format!("assets/site/{path}"), data.clone());
        }
        map
    }
}

/// Keeps opened objects in memory, committed ones only.
#[derive(Default)]
pub struct MemorySink {
    pending: Vec<u8>,
    pub committed: BTreeMap<String, Vec<u8>>,
}

impl ObjectSink for MemorySink {
    fn begin(&mut self, _entry: &ObjectEntry) -> bundles::Result<Box<dyn std::io::Write + '_>> {
        self.pending.clear();
        Ok(Box::new(&mut self.pending))
    }
    fn commit(&mut self, entry: &ObjectEntry) -> bundles::Result<()> {
        self.committed
            .insert(entry.path.to_string(), std::mem::take(&mut self.pending));
        Ok(())
    }
    fn abort(&mut self, _entry: &ObjectEntry) {
        self.pending.clear();
    }
}

/// Verifies `bundle` against `vendor`'s keyset and opens it with `keys`.
pub fn open_bytes(
    vendor: &Vendor,
    bundle: &[u8],
    keys: &KeysFile,
) -> bundles::Result<BTreeMap<String, Vec<u8>>> {
    let reader = BundleReader::open(bundle, &vendor.trusted(), now(), &Limits::default())?;
    let mut sink = MemorySink::default();
    open_all(reader, keys, &mut sink)?;
    Ok(sink.committed)
}

/// Verifies `bundle`'s signature and structure without keys.
pub fn check_bytes(vendor: &Vendor, bundle: &[u8]) -> bundles::Result<usize> {
    check_all(BundleReader::open(
        bundle,
        &vendor.trusted(),
        now(),
        &Limits::default(),
    )?)
}

/// Where each part of a bundle lies.
#[derive(Debug, Clone)]
pub struct Layout {
    pub manifest: Range<usize>,
    pub kid: Range<usize>,
    pub signature: Range<usize>,
    pub count: Range<usize>,
    /// Per object: its 8-byte length prefix and its sealed bytes.
    pub objects: Vec<(Range<usize>, Range<usize>)>,
}

/// Parses the layout of a well-formed bundle.
pub fn layout(bundle: &[u8]) -> Layout {
    let be32 = |at: usize| u32::from_be_bytes(bundle[at..at + 4].try_into().unwrap()) as usize;
    let manifest_len = be32(16);
    let manifest = 20..20 + manifest_len;
    let kid_len = bundle[manifest.end] as usize;
    let kid = manifest.end + 1..manifest.end + 1 + kid_len;
    let signature = kid.end..kid.end + 64;
    let count = signature.end..signature.end + 4;
    let mut at = count.end;
    let mut objects = Vec::new();
    for _ in 0..be32(count.start) {
        let len = u64::from_be_bytes(bundle[at..at + 8].try_into().unwrap()) as usize;
        objects.push((at..at + 8, at + 8..at + 8 + len));
        at += 8 + len;
    }
    assert_eq!(at, bundle.len());
    Layout {
        manifest,
        kid,
        signature,
        count,
        objects,
    }
}
