//! Writes the frozen license test vectors into `tests/vectors/license` (or the folder given):
//! a keyset, licenses that must verify and licenses that must fail, and `vectors.json` saying
//! which is which and why. The keys are generated here and dropped: only public material is
//! written, so committing the output commits no secret.
//!
//! Regenerate only when the format changes on purpose: `cargo run -p tests --bin make-license-vectors`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a generator that cannot write should stop loudly"
)]

use std::path::PathBuf;

use serde_json::json;
use tests::{Vendor, b64, compact, now};

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors/license"));
    std::fs::create_dir_all(&dir).unwrap();
    let vendor = Vendor::new();
    let other = Vendor::new();
    let at = now().to_string();
    let mut listed = Vec::new();
    let mut write = |file: &str, contents: String, expect: &str, why: &str| {
        std::fs::write(dir.join(file), contents).unwrap();
        listed.push(json!({ "file": file, "at": at, "expect": expect, "why": why }));
    };

    let claims = vendor.claims();
    let genuine = vendor.sign(&claims);
    write(
        "valid-typical.lic",
        genuine.clone(),
        "valid",
        "features, a limit, a quota, bindings and a version range",
    );
    write(
        "valid-crlf.lic",
        genuine.replace('\n', "\r\n"),
        "valid",
        "CRLF on every line is the same license",
    );
    let mut minimal = claims.clone();
    minimal.entitlements = Default::default();
    minimal.bindings = Default::default();
    write(
        "valid-minimal.lic",
        vendor.sign(&minimal),
        "valid",
        "no entitlements, no bindings",
    );

    let token = compact(&genuine);
    let (_, payload, sig) = {
        let mut it = token.split('.');
        (
            it.next().unwrap().to_owned(),
            it.next().unwrap().to_owned(),
            it.next().unwrap().to_owned(),
        )
    };
    let armor = license::armor::armor;
    let header = |alg: &str| {
        b64(format!(
            r#"{{"alg":"{alg}","typ":"consign-license+jwt","kid":"{}"}}"#,
            vendor.kid
        ))
    };
    write(
        "must-fail-alg-none.lic",
        armor(&format!("{}.{payload}.{}", header("none"), b64([0u8; 64]))),
        "wrong_algorithm",
        "alg none",
    );
    write(
        "must-fail-hs256.lic",
        armor(&format!("{}.{payload}.{}", header("HS256"), b64([0u8; 32]))),
        "wrong_algorithm",
        "HMAC confusion",
    );
    let payload_json = serde_json::to_vec(&claims).unwrap();
    let jku = format!(
        r#"{{"alg":"EdDSA","typ":"consign-license+jwt","kid":"{}","jku":"https://attacker.invalid/k"}}"#,
        vendor.kid
    );
    write(
        "must-fail-jku.lic",
        armor(&vendor.sign_raw(&jku, &payload_json)),
        "forbidden_header",
        "jku injected",
    );
    let mut forged = claims.clone();
    forged
        .entitlements
        .features
        .push("enterprise-sso".parse().unwrap());
    let forged_payload = b64(serde_json::to_vec(&forged).unwrap());
    write(
        "must-fail-spliced-payload.lic",
        armor(&format!("{}.{forged_payload}.{sig}", header("EdDSA"))),
        "bad_signature",
        "a feature added to a genuine license",
    );
    let text = String::from_utf8(payload_json.clone()).unwrap();
    let dup = text.replacen("\"exp\":", "\"exp\":4000000000,\"exp\":", 1);
    write(
        "must-fail-duplicate-exp.lic",
        armor(&vendor.sign_raw(&vendor.header(), dup.as_bytes())),
        "invalid_contents",
        "a second exp",
    );
    let string_exp = text.replacen(
        &format!("\"exp\":{}", claims.exp.as_secs()),
        "\"exp\":\"4000000000\"",
        1,
    );
    write(
        "must-fail-exp-string.lic",
        armor(&vendor.sign_raw(&vendor.header(), string_exp.as_bytes())),
        "invalid_contents",
        "exp as a string",
    );
    write(
        "must-fail-unknown-key.lic",
        other.sign(&other.claims()),
        "unknown_key",
        "signed by another vendor",
    );
    let last = sig.chars().last().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let twin = alphabet
        .chars()
        .nth(alphabet.find(last).unwrap() | 1)
        .unwrap();
    write(
        "must-fail-trailing-bits.lic",
        armor(&format!(
            "{}.{payload}.{}{twin}",
            header("EdDSA"),
            &sig[..sig.len() - 1]
        )),
        "malformed",
        "non-canonical base64 in the signature",
    );
    write(
        "must-fail-mixed-line-endings.lic",
        genuine.replacen('\n', "\r\n", 1),
        "bad_armor",
        "one CRLF among LFs",
    );
    write(
        "must-fail-missing-end.lic",
        genuine[..genuine.find("-----END").unwrap()].to_owned(),
        "bad_armor",
        "truncated file",
    );
    let mut expired = claims.clone();
    expired.exp = now().minus(3600);
    expired.term.end = expired.exp;
    expired.nbf = now().minus(7200);
    expired.iat = expired.nbf;
    expired.term.start = expired.nbf;
    write(
        "must-fail-expired.lic",
        vendor.sign(&expired),
        "expired",
        "exp an hour before the vectors' time",
    );

    std::fs::write(dir.join("keyset.json"), &vendor.keyset_json).unwrap();
    let manifest = json!({
        "about": "Frozen license vectors: verify each file against keyset.json, pinned to root_fingerprint, at the given time. Generated by tests/src/bin/make-license-vectors.rs; private keys were discarded.",
        "root_fingerprint": vendor.root.public_key().fingerprint(),
        "vectors": listed,
    });
    std::fs::write(
        dir.join("vectors.json"),
        serde_json::to_string_pretty(&manifest).unwrap() + "\n",
    )
    .unwrap();
    println!(
        "wrote {} vectors to {}",
        manifest["vectors"].as_array().map_or(0, Vec::len),
        dir.display()
    );
}
