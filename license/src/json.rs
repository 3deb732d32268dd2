//! A strict pre-pass over untrusted JSON: refuses duplicate object keys (which typed parsing into
//! maps would otherwise resolve silently, last one winning), nesting deeper than a small bound,
//! and trailing data, before any typed parsing sees the bytes.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// How deep any Consign document nests; the deepest real one (claims → entitlements → limits →
/// a limit → overage) is five levels.
pub(crate) const MAX_DEPTH: usize = 8;

/// Checks that `bytes` is a single JSON value with unique keys in every object and at most
/// [`MAX_DEPTH`] levels of nesting. The error names the problem for a human.
pub(crate) fn check_strict(bytes: &[u8]) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    Strict { depth: 0 }
        .deserialize(&mut de)
        .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())
}

#[derive(Clone, Copy)]
struct Strict {
    depth: usize,
}

impl Strict {
    fn deeper<E: de::Error>(self) -> Result<Self, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format_args!(
                "JSON nests deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(Strict {
            depth: self.depth + 1,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.deeper()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.deeper()?;
        // Objects here are small (tens of keys), so a sorted Vec beats hashing; keys without
        // escapes are borrowed from the input, so this allocates only the Vec.
        let mut seen: Vec<Cow<'de, str>> = Vec::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match seen.binary_search(&key) {
                Ok(_) => {
                    return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
                }
                Err(at) => seen.insert(at, key),
            }
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

/// Deserializes a map, refusing a key that appears twice (serde's own map impls keep the last).
/// Used on the typed hot path, where the whole-document [`check_strict`] pass is not run.
pub(crate) fn unique_map<'de, D, K, V>(deserializer: D) -> Result<BTreeMap<K, V>, D::Error>
where
    D: Deserializer<'de>,
    K: de::Deserialize<'de> + Ord + fmt::Display,
    V: de::Deserialize<'de>,
{
    struct UniqueMap<K, V>(PhantomData<(K, V)>);
    impl<'de, K, V> Visitor<'de> for UniqueMap<K, V>
    where
        K: de::Deserialize<'de> + Ord + fmt::Display,
        V: de::Deserialize<'de>,
    {
        type Value = BTreeMap<K, V>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<K, V>()? {
                if out.contains_key(&key) {
                    return Err(de::Error::custom(format_args!("duplicate key \"{key}\"")));
                }
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_map(UniqueMap(PhantomData))
}

/// An object key, borrowed from the input when it has no escapes. (serde's own `Cow` impl always
/// copies.)
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_documents() {
        check_strict(br#"{"a":1,"b":[1,2,{"c":null}],"d":"x"}"#).unwrap();
    }

    #[test]
    fn refuses_duplicate_keys_at_any_depth() {
        let err = check_strict(br#"{"a":{"b":1,"b":2}}"#).unwrap_err();
        assert!(err.contains("duplicate key \"b\""), "{err}");
        // An escaped spelling of the same key is the same key.
        assert!(check_strict(br#"{"exp":1,"\u0065xp":2}"#).is_err());
    }

    #[test]
    fn refuses_deep_nesting_and_trailing_data() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(
            check_strict(deep.as_bytes())
                .unwrap_err()
                .contains("deeper")
        );
        let very_deep = "[".repeat(100_000);
        assert!(check_strict(very_deep.as_bytes()).is_err());
        assert!(check_strict(b"{} {}").unwrap_err().contains("trailing"));
    }
}
