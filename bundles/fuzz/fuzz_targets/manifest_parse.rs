//! Arbitrary bytes as the parsers behind a verified signature and in the vendor's app folder:
//! the bundle manifest (JSON + validation), consign.toml, and CloudFormation templates.
#![no_main]

use bundles::manifest::BundleManifest;
use bundles::template::TemplateSummary;
use bundles::{AppManifest, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = serde_json::from_slice::<BundleManifest>(data) {
        let _ = manifest.validate(&Limits::default());
        let _ = manifest.describe();
    }
    if let Ok(summary) = TemplateSummary::parse("template.json", data) {
        let _ = summary.actions();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = AppManifest::parse(text);
    }
});
