//! Arbitrary bytes as a `.bundle`: the container reader, signature check, manifest validation and
//! object opening, against a keyset made at start-up. Nothing may panic.
#![no_main]

use std::sync::OnceLock;

use bundles::open::{ObjectSink, check_all, open_all};
use bundles::{BundleReader, KeysFile, Limits, ObjectEntry};
use libfuzzer_sys::fuzz_target;
use license::{KeyEntry, Keyset, SigningKey, TrustPin, TrustedKeyset, UnixTime};

fn keyset() -> &'static Option<TrustedKeyset> {
    static KEYSET: OnceLock<Option<TrustedKeyset>> = OnceLock::new();
    KEYSET.get_or_init(|| {
        let root = SigningKey::generate().ok()?;
        let key = |k: &SigningKey, kid: &str| KeyEntry {
            kid: kid.into(),
            public_key: k.public_key(),
            not_before: UnixTime::from_secs(0).unwrap_or(UnixTime::MAX),
            not_after: UnixTime::MAX,
        };
        let keyset = Keyset {
            kind: license::KEYSET_TYPE.into(),
            issuer: None,
            seq: 1,
            issued_at: UnixTime::from_secs(0)?,
            root: root.public_key(),
            license_keys: vec![key(&SigningKey::generate().ok()?, "lic")],
            release_keys: vec![key(&SigningKey::generate().ok()?, "rel")],
        };
        Keyset::verify(keyset.sign(&root).ok()?.as_bytes(), &TrustPin::default()).ok()
    })
}

struct Discard;

impl ObjectSink for Discard {
    fn begin(&mut self, _: &ObjectEntry) -> bundles::Result<Box<dyn std::io::Write + '_>> {
        Ok(Box::new(std::io::sink()))
    }
    fn commit(&mut self, _: &ObjectEntry) -> bundles::Result<()> {
        Ok(())
    }
    fn abort(&mut self, _: &ObjectEntry) {}
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let _ = bundles::container::read_head(&mut &data[..], &limits);
    if let Some(keyset) = keyset() {
        let now = UnixTime::from_secs(1_800_000_000).unwrap_or(UnixTime::MAX);
        if let Ok(reader) = BundleReader::open(data, keyset, now, &limits) {
            let _ = check_all(reader);
        }
    }
    // A keys file and a pinned open, for the path vendors take without a keyset.
    if let Ok(keys) = KeysFile::parse(data) {
        if let Ok(reader) = BundleReader::open_pinned(data, &keys.manifest, &limits) {
            let _ = open_all(reader, &keys, &mut Discard);
        }
    }
});
