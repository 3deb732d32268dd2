//! Compact JWS (RFC 7515) restricted to what Consign needs: EdDSA over Ed25519, a header of exactly
//! `alg`, `typ` and `kid`, canonical unpadded base64url.
//!
//! Why `ring` directly rather than `jsonwebtoken`: the checks the trust model asks for are about
//! the header and the encoding — refuse `jku`/`jwk`/`x5u`/`x5c`/`crit` by name, refuse unknown
//! header parameters, refuse duplicate JSON keys and non-canonical base64, require an explicit
//! `typ` — and `jsonwebtoken` parses headers into a permissive struct that ignores unknown
//! parameters and accepts those key-carrying ones as data, and its claim validation works on an
//! untyped map. Doing the header ourselves would leave `jsonwebtoken` with nothing but the one
//! signature call, which `ring` makes directly. The code here is short enough to read whole, every
//! rule is one `if` with its own error, and the same strict parser serves licenses and every later
//! signed token (check-in statuses) through `typ`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{Error, Result};
use crate::json::check_strict;
use crate::keys::{SIGNATURE_LEN, SigningKey};

/// The only signature algorithm accepted.
pub const ALG: &str = "EdDSA";
/// The largest compact token accepted, in bytes (the armoured form's limit bounds it too).
const MAX_TOKEN_LEN: usize = crate::armor::MAX_ARMORED_LEN;
/// The largest header accepted, in bytes after base64 decoding.
const MAX_HEADER_LEN: usize = 1024;
/// Header parameters that would let a token choose its own verification key or change how it is
/// processed. They are refused by name, whatever their value.
const FORBIDDEN_HEADERS: &[&str] = &[
    "jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256", "crit", "b64", "zip",
];

/// The checked header of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The key id naming the signing key in the keyset.
    pub kid: String,
}

/// A compact JWS split into its parts, header checked, signature not yet verified.
#[derive(Debug)]
pub(crate) struct UnverifiedJws<'a> {
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`: the bytes the signature covers.
    pub signing_input: &'a str,
    pub header: Header,
    pub payload: Vec<u8>,
    pub signature: [u8; SIGNATURE_LEN],
}

/// Signs `payload` as a compact JWS of type `typ` with `key`, named `kid`.
pub(crate) fn sign_compact(typ: &str, kid: &str, payload: &[u8], key: &SigningKey) -> String {
    // Built by hand so the header has exactly these three members in a fixed order.
    let header = format!(
        r#"{{"alg":"{ALG}","typ":{},"kid":{}}}"#,
        serde_json::Value::from(typ),
        serde_json::Value::from(kid)
    );
    let mut out = URL_SAFE_NO_PAD.encode(header.as_bytes());
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut out);
    let sig = key.sign(out.as_bytes());
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(sig, &mut out);
    out
}

fn malformed(part: &'static str, reason: impl Into<String>) -> Error {
    Error::Malformed {
        part,
        reason: reason.into(),
    }
}

fn decode_part(part: &'static str, text: &str) -> Result<Vec<u8>> {
    if text.is_empty() {
        return Err(malformed(part, "is empty"));
    }
    URL_SAFE_NO_PAD
        .decode(text.as_bytes())
        .map_err(|e| malformed(part, format!("is not canonical unpadded base64url ({e})")))
}

/// Whether a key id is a short token of safe characters; key ids are only ever looked up in the
/// keyset, but they are also printed and logged.
pub(crate) fn valid_kid(kid: &str) -> bool {
    (1..=64).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Splits a compact JWS and checks its header against `expected_typ`. The signature is decoded
/// but not verified: the caller looks the key up by `kid` and verifies.
pub(crate) fn parse_compact<'a>(
    compact: &'a str,
    expected_typ: &'static str,
) -> Result<UnverifiedJws<'a>> {
    if compact.len() > MAX_TOKEN_LEN {
        return Err(Error::TooLarge {
            what: "license",
            size: compact.len(),
            limit: MAX_TOKEN_LEN,
        });
    }
    let mut parts = compact.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed(
            "token",
            format!(
                "has {} dot-separated parts instead of 3",
                compact.split('.').count()
            ),
        ));
    };
    let header_bytes = decode_part("header", h)?;
    if header_bytes.len() > MAX_HEADER_LEN {
        return Err(malformed(
            "header",
            format!("is over {MAX_HEADER_LEN} bytes"),
        ));
    }
    let header = check_header(&header_bytes, expected_typ)?;
    let payload = decode_part("payload", p)?;
    let sig_bytes = decode_part("signature", s)?;
    let signature: [u8; SIGNATURE_LEN] = sig_bytes.as_slice().try_into().map_err(|_| {
        malformed(
            "signature",
            format!(
                "is {} bytes; Ed25519 signatures are {SIGNATURE_LEN}",
                sig_bytes.len()
            ),
        )
    })?;
    Ok(UnverifiedJws {
        signing_input: &compact[..h.len() + 1 + p.len()],
        header,
        payload,
        signature,
    })
}

fn check_header(bytes: &[u8], expected_typ: &'static str) -> Result<Header> {
    check_strict(bytes).map_err(|e| malformed("header", format!("is not valid JSON ({e})")))?;
    let members: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(bytes).map_err(|_| malformed("header", "is not a JSON object"))?;
    // 4.1: refuse key-carrying and processing-changing parameters first, by name.
    if let Some(name) = members
        .keys()
        .find(|k| FORBIDDEN_HEADERS.contains(&k.as_str()))
    {
        return Err(Error::ForbiddenHeader { name: name.clone() });
    }
    if let Some(name) = members
        .keys()
        .find(|k| !matches!(k.as_str(), "alg" | "typ" | "kid"))
    {
        return Err(Error::UnknownHeader { name: name.clone() });
    }
    match members.get("alg") {
        Some(serde_json::Value::String(alg)) if alg == ALG => {}
        Some(serde_json::Value::String(alg)) => return Err(Error::Algorithm { alg: alg.clone() }),
        Some(_) => return Err(malformed("header", "has an alg that is not a string")),
        None => return Err(malformed("header", "has no alg")),
    }
    match members.get("typ") {
        Some(serde_json::Value::String(typ)) if typ == expected_typ => {}
        other => {
            return Err(Error::WrongType {
                found: other.map(|v| v.to_string()).unwrap_or_default(),
                expected: expected_typ,
            });
        }
    }
    match members.get("kid") {
        Some(serde_json::Value::String(kid)) if valid_kid(kid) => Ok(Header { kid: kid.clone() }),
        Some(_) => Err(malformed(
            "header",
            "has a kid that is not 1–64 letters, digits, '-', '_' or '.'",
        )),
        None => Err(malformed("header", "has no kid")),
    }
}
