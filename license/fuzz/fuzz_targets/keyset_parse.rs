//! Feeds arbitrary bytes to the keyset verifier and the claims-file parser. None may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use license::{Keyset, LicenseRequest, TrustPin};

fuzz_target!(|data: &[u8]| {
    let _ = Keyset::verify(data, &TrustPin::default());
    let _ = LicenseRequest::from_json(data);
});
