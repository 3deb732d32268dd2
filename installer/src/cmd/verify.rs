//! `installer verify`: a bundle checked without its keys (the same report as
//! `vendor-portal release inspect`).

use anyhow::{Context as _, Result};
use license::{Keyset, TrustPin, UnixTime};

use super::{Output, print_json};

/// Verifies `bundle` against the keyset `trust`.
pub fn verify(
    bundle: &std::path::Path,
    trust: &std::path::Path,
    trust_root: Option<String>,
    output: Output,
) -> Result<()> {
    let keyset_bytes = std::fs::read(trust)
        .with_context(|| format!("cannot read the keyset {}", trust.display()))?;
    let pin = TrustPin {
        root_fingerprint: trust_root,
        min_seq: 0,
    };
    let keyset = Keyset::verify(&keyset_bytes, &pin)
        .with_context(|| format!("the keyset {} is not trusted", trust.display()))?;
    let file = std::fs::File::open(bundle)
        .with_context(|| format!("cannot read the bundle {}", bundle.display()))?;
    let report = bundles::open::inspect(
        std::io::BufReader::with_capacity(256 * 1024, file),
        &keyset,
        UnixTime::now(),
        &bundles::Limits::default(),
    )
    .with_context(|| format!("{} is refused", bundle.display()))?;
    match output {
        Output::Json => print_json(&report),
        Output::Text => {
            print!("{}", report.text());
            Ok(())
        }
    }
}
