//! Arbitrary bytes as a sealed object: structure checking without a key and opening with one,
//! for a size taken from the input. Nothing may panic, and nothing may allocate by that size.
#![no_main]

use bundles::Digest;
use bundles::seal::{DataKey, check_structure, open};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (size, body) = match data {
        [a, b, c, rest @ ..] => (u64::from(u32::from_be_bytes([0, *a, *b, *c])), rest),
        _ => return,
    };
    let _ = check_structure("fuzz", size, body);
    let key = DataKey::from_bytes([7; 32]);
    let _ = open(&key, "fuzz", &Digest::of(b""), size, body, std::io::sink());
});
