//! The license attack suite: every test is named after the attack it mounts, and each one must be
//! refused with a clear reason (checked by error code and wording) without a panic.
//!
//! Forged tokens are built byte by byte; where a signature is needed to get past the signature
//! check, it is a genuine one from the vendor's own key, so the test proves the *parser* refuses.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a broken fixture should fail the test loudly"
)]

use license::{Error, Keyset, TrustPin, TrustState};
use tests::{Vendor, at_now, b64, compact, now, unb64};

/// Verifies a compact JWS against the vendor's keyset and returns the refusal.
fn refuse_compact(vendor: &Vendor, token: &str) -> Error {
    match vendor.trusted().verify_compact(token, &at_now()) {
        Ok(v) => panic!("accepted a forged license: {:?}", v.claims()),
        Err(e) => e,
    }
}

fn refuse_armored(vendor: &Vendor, text: &str) -> Error {
    match vendor.trusted().verify_license(text, &at_now()) {
        Ok(v) => panic!("accepted a forged license: {:?}", v.claims()),
        Err(e) => e,
    }
}

fn assert_refused(err: &Error, code: &str, says: &str) {
    assert_eq!(err.code(), code, "{err}");
    let message = err.to_string();
    assert!(
        message.contains(says),
        "message {message:?} does not say {says:?}"
    );
    assert!(
        !message.contains('\n'),
        "message is not one line: {message:?}"
    );
}

fn parts(token: &str) -> (String, String, String) {
    let mut it = token.split('.').map(str::to_owned);
    (it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
}

fn payload_json(vendor: &Vendor) -> serde_json::Value {
    serde_json::to_value(vendor.claims()).unwrap()
}

#[test]
fn a_genuine_license_verifies() {
    let vendor = Vendor::new();
    let license = vendor
        .trusted()
        .verify_license(&vendor.sign(&vendor.claims()), &at_now())
        .unwrap();
    assert_eq!(license.claims().sub.as_str(), "globex");
}

// --- Algorithm confusion ---------------------------------------------------------------------

#[test]
fn alg_none() {
    let vendor = Vendor::new();
    let (_, payload, _) = parts(&compact(&vendor.sign(&vendor.claims())));
    let header = b64(format!(
        r#"{{"alg":"none","typ":"consign-license+jwt","kid":"{}"}}"#,
        vendor.kid
    ));
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
    ] {
        let err = refuse_compact(&vendor, &token);
        assert!(
            matches!(err.code(), "wrong_algorithm" | "malformed"),
            "{err}"
        );
    }
    // With a dummy signature present the algorithm itself is named as the reason.
    let err = refuse_compact(&vendor, &format!("{header}.{payload}.{}", b64([0u8; 64])));
    assert_refused(&err, "wrong_algorithm", "\"none\"");
}

#[test]
fn alg_none_in_other_spellings() {
    let vendor = Vendor::new();
    let (_, payload, sig) = parts(&compact(&vendor.sign(&vendor.claims())));
    for alg in ["None", "NONE", "nOnE", "eddsa", "ED25519", "EdDSA "] {
        let header = b64(format!(
            r#"{{"alg":"{alg}","typ":"consign-license+jwt","kid":"{}"}}"#,
            vendor.kid
        ));
        let err = refuse_compact(&vendor, &format!("{header}.{payload}.{sig}"));
        assert_refused(&err, "wrong_algorithm", "EdDSA (Ed25519)");
    }
}

#[test]
fn hs256_keyed_with_the_public_key() {
    let vendor = Vendor::new();
    let (_, payload, _) = parts(&compact(&vendor.sign(&vendor.claims())));
    let header = b64(format!(
        r#"{{"alg":"HS256","typ":"consign-license+jwt","kid":"{}"}}"#,
        vendor.kid
    ));
    let input = format!("{header}.{payload}");
    // The classic confusion: an HMAC keyed with the verifier's public key, raw and base64url.
    for secret in [
        vendor.signer.public_key().as_bytes().to_vec(),
        b64(vendor.signer.public_key().as_bytes()).into_bytes(),
    ] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
        let tag = ring::hmac::sign(&key, input.as_bytes());
        let err = refuse_compact(&vendor, &format!("{input}.{}", b64(tag.as_ref())));
        assert_refused(&err, "wrong_algorithm", "\"HS256\"");
    }
}

#[test]
fn rs256() {
    let vendor = Vendor::new();
    let (_, payload, _) = parts(&compact(&vendor.sign(&vendor.claims())));
    let header = b64(format!(
        r#"{{"alg":"RS256","typ":"consign-license+jwt","kid":"{}"}}"#,
        vendor.kid
    ));
    let err = refuse_compact(&vendor, &format!("{header}.{payload}.{}", b64([7u8; 256])));
    assert_refused(&err, "wrong_algorithm", "\"RS256\"");
}

#[test]
fn alg_not_a_string_or_missing() {
    let vendor = Vendor::new();
    let payload = serde_json::to_vec(&payload_json(&vendor)).unwrap();
    for header in [
        format!(
            r#"{{"alg":["EdDSA"],"typ":"consign-license+jwt","kid":"{}"}}"#,
            vendor.kid
        ),
        format!(r#"{{"typ":"consign-license+jwt","kid":"{}"}}"#, vendor.kid),
    ] {
        let err = refuse_compact(&vendor, &vendor.sign_raw(&header, &payload));
        assert_refused(&err, "malformed", "alg");
    }
}

// --- Key injection -----------------------------------------------------------------------------

#[test]
fn injected_jku() {
    let vendor = Vendor::new();
    let payload = serde_json::to_vec(&payload_json(&vendor)).unwrap();
    let header = format!(
        r#"{{"alg":"EdDSA","typ":"consign-license+jwt","kid":"{}","jku":"https://attacker.invalid/jwks.json"}}"#,
        vendor.kid
    );
    let err = refuse_compact(&vendor, &vendor.sign_raw(&header, &payload));
    assert_refused(&err, "forbidden_header", "\"jku\"");
}

#[test]
fn injected_jwk_with_the_attackers_own_key() {
    let vendor = Vendor::new();
    let attacker = license::SigningKey::generate().unwrap();
    let payload = serde_json::to_vec(&payload_json(&vendor)).unwrap();
    let header = format!(
        r#"{{"alg":"EdDSA","typ":"consign-license+jwt","kid":"{}","jwk":{{"kty":"OKP","crv":"Ed25519","x":"{}"}}}}"#,
        vendor.kid,
        b64(attacker.public_key().as_bytes())
    );
    let input = format!("{}.{}", b64(&header), b64(&payload));
    let token = format!("{input}.{}", b64(attacker.sign(input.as_bytes())));
    assert_refused(
        &refuse_compact(&vendor, &token),
        "forbidden_header",
        "\"jwk\"",
    );
}

#[test]
fn injected_x5u_x5c_and_crit() {
    let vendor = Vendor::new();
    let payload = serde_json::to_vec(&payload_json(&vendor)).unwrap();
    for (name, value) in [
        ("x5u", r#""https://attacker.invalid/cert.pem""#),
        ("x5c", r#"["MIIB"]"#),
        ("crit", r#"["exp"]"#),
        ("x5t#S256", r#""abc""#),
        ("b64", "false"),
        ("zip", r#""DEF""#),
    ] {
        let header = format!(
            r#"{{"alg":"EdDSA","typ":"consign-license+jwt","kid":"{}","{name}":{value}}}"#,
            vendor.kid
        );
        let err = refuse_compact(&vendor, &vendor.sign_raw(&header, &payload));
        assert_refused(&err, "forbidden_header", &format!("{name:?}"));
    }
}

#[test]
fn unknown_header_parameter() {
    let vendor = Vendor::new();
    let payload = serde_json::to_vec(&payload_json(&vendor)).unwrap();
    let header = format!(
        r#"{{"alg":"EdDSA","typ":"consign-license+jwt","kid":"{}","cty":"JWT"}}"#,
        vendor.kid
    );
    let err = refuse_compact(&vendor, &vendor.sign_raw(&header, &payload));
    assert_refused(&err, "unknown_header", "\"cty\"");
}

#[test]
fn injected_kid_path_traversal_and_sql() {
    let vendor = Vendor::new();
    let payload = serde_json::to_vec(&payload_json(&vendor)).unwrap();
    for kid in [
        "../../../../dev/null",
        "' OR '1'='1",
        "lic-x\u{0000}",
        "",
        &"a".repeat(65),
    ] {
        let header = format!(
            r#"{{"alg":"EdDSA","typ":"consign-license+jwt","kid":{}}}"#,
            serde_json::Value::from(kid)
        );
        let err = refuse_compact(&vendor, &vendor.sign_raw(&header, &payload));
        assert_refused(&err, "malformed", "kid");
    }
}

#[test]
fn kid_of_a_key_not_in_the_keyset() {
    let vendor = Vendor::new();
    let payload = serde_json::to_vec(&payload_json(&vendor)).unwrap();
    let header = r#"{"alg":"EdDSA","typ":"consign-license+jwt","kid":"lic-0000000000000000"}"#;
    let err = refuse_compact(&vendor, &vendor.sign_raw(header, &payload));
    assert_refused(&err, "unknown_key", "not in the trusted keyset");
}

#[test]
fn signed_by_a_key_missing_from_the_keyset() {
    let vendor = Vendor::new();
    let other = Vendor::new();
    // Another vendor's perfectly valid license, presented to this vendor's keyset.
    let err = refuse_armored(&vendor, &other.sign(&other.claims()));
    assert_refused(&err, "unknown_key", &other.kid);
}

#[test]
fn signed_by_the_release_key_under_the_license_keys_kid() {
    let vendor = Vendor::new();
    let payload = serde_json::to_vec(&payload_json(&vendor)).unwrap();
    let input = format!("{}.{}", b64(vendor.header()), b64(&payload));
    let token = format!("{input}.{}", b64(vendor.release.sign(input.as_bytes())));
    assert_refused(
        &refuse_compact(&vendor, &token),
        "bad_signature",
        "does not verify",
    );
}

#[test]
fn signed_by_the_release_key_under_its_own_kid() {
    let vendor = Vendor::new();
    let payload = serde_json::to_vec(&payload_json(&vendor)).unwrap();
    let kid = vendor.release.public_key().derive_kid("rel");
    let header = format!(r#"{{"alg":"EdDSA","typ":"consign-license+jwt","kid":"{kid}"}}"#);
    let input = format!("{}.{}", b64(&header), b64(&payload));
    let token = format!("{input}.{}", b64(vendor.release.sign(input.as_bytes())));
    // Release keys sign bundles, never licenses: their kids are not license keys.
    assert_refused(&refuse_compact(&vendor, &token), "unknown_key", &kid);
}

#[test]
fn wrong_typ_or_missing_typ() {
    let vendor = Vendor::new();
    let payload = serde_json::to_vec(&payload_json(&vendor)).unwrap();
    for header in [
        format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{}"}}"#, vendor.kid),
        format!(r#"{{"alg":"EdDSA","kid":"{}"}}"#, vendor.kid),
        format!(
            r#"{{"alg":"EdDSA","typ":"consign-status+jwt","kid":"{}"}}"#,
            vendor.kid
        ),
    ] {
        let err = refuse_compact(&vendor, &vendor.sign_raw(&header, &payload));
        assert_refused(&err, "wrong_type", "not a Consign license");
    }
}

// --- Splicing ------------------------------------------------------------------------------------

#[test]
fn payload_spliced_onto_another_tokens_signature() {
    let vendor = Vendor::new();
    let basic = vendor.claims();
    let mut rich = vendor.claims();
    rich.entitlements
        .features
        .push("enterprise-sso".parse().unwrap());
    let (h, _, sig) = parts(&compact(&vendor.sign(&basic)));
    let (_, rich_payload, _) = parts(&compact(&vendor.sign(&rich)));
    let err = refuse_compact(&vendor, &format!("{h}.{rich_payload}.{sig}"));
    assert_refused(&err, "bad_signature", "does not verify");
}

#[test]
fn header_spliced_onto_another_tokens_signature() {
    let vendor = Vendor::new();
    let token = compact(&vendor.sign(&vendor.claims()));
    let (_, p, sig) = parts(&token);
    // The same header re-serialized with other whitespace: same meaning, other bytes.
    let header = b64(format!(
        r#"{{ "alg": "EdDSA", "typ": "consign-license+jwt", "kid": "{}" }}"#,
        vendor.kid
    ));
    let err = refuse_compact(&vendor, &format!("{header}.{p}.{sig}"));
    assert_refused(&err, "bad_signature", "does not verify");
}

#[test]
fn signature_from_another_license_of_the_same_vendor() {
    let vendor = Vendor::new();
    let (h, p, _) = parts(&compact(&vendor.sign(&vendor.claims())));
    let (_, _, other_sig) = parts(&compact(&vendor.sign(&vendor.claims())));
    let err = refuse_compact(&vendor, &format!("{h}.{p}.{other_sig}"));
    assert_refused(&err, "bad_signature", "does not verify");
}

// --- Time claims ---------------------------------------------------------------------------

fn refuse_with_claim(vendor: &Vendor, field: &str, value: serde_json::Value) -> Error {
    let mut payload = payload_json(vendor);
    payload[field] = value;
    refuse_compact(
        vendor,
        &vendor.sign_raw(&vendor.header(), &serde_json::to_vec(&payload).unwrap()),
    )
}

#[test]
fn exp_nbf_iat_as_strings() {
    let vendor = Vendor::new();
    for field in ["exp", "nbf", "iat"] {
        let err = refuse_with_claim(&vendor, field, serde_json::json!("1830000000"));
        assert_refused(&err, "invalid_contents", "is a string");
    }
}

#[test]
fn exp_nbf_iat_as_floats() {
    let vendor = Vendor::new();
    for field in ["exp", "nbf", "iat"] {
        let err = refuse_with_claim(&vendor, field, serde_json::json!(1_830_000_000.5));
        assert_refused(&err, "invalid_contents", "not an integer");
        let err = refuse_with_claim(&vendor, field, serde_json::json!(1.83e9));
        assert_refused(&err, "invalid_contents", "not an integer");
    }
}

#[test]
fn exp_nbf_iat_negative() {
    let vendor = Vendor::new();
    for field in ["exp", "nbf", "iat"] {
        let err = refuse_with_claim(&vendor, field, serde_json::json!(-1));
        assert_refused(&err, "invalid_contents", "negative");
    }
}

#[test]
fn exp_huge() {
    let vendor = Vendor::new();
    let err = refuse_with_claim(&vendor, "exp", serde_json::json!(u64::MAX));
    assert_refused(&err, "invalid_contents", "after the year 9999");
    let err = refuse_with_claim(&vendor, "exp", serde_json::json!(253_402_300_800u64));
    assert_refused(&err, "invalid_contents", "after the year 9999");
    // Beyond u64 serde_json falls back to a float, which is refused too.
    let mut payload = serde_json::to_string(&payload_json(&vendor)).unwrap();
    payload = payload.replace("\"exp\":1830000000", "\"exp\":100000000000000000000000000");
    let err = refuse_compact(
        &vendor,
        &vendor.sign_raw(&vendor.header(), payload.as_bytes()),
    );
    assert_refused(&err, "invalid_contents", "not an integer");
}

#[test]
fn exp_missing_or_null() {
    let vendor = Vendor::new();
    let err = refuse_with_claim(&vendor, "exp", serde_json::Value::Null);
    assert_refused(&err, "invalid_contents", "exp");
    let mut payload = payload_json(&vendor);
    payload.as_object_mut().unwrap().remove("exp");
    let err = refuse_compact(
        &vendor,
        &vendor.sign_raw(&vendor.header(), &serde_json::to_vec(&payload).unwrap()),
    );
    assert_refused(&err, "invalid_contents", "missing field `exp`");
}

#[test]
fn expired_license() {
    let vendor = Vendor::new();
    let mut claims = vendor.claims();
    claims.nbf = now().minus(10 * 86_400);
    claims.iat = claims.nbf;
    claims.term.start = claims.nbf;
    claims.exp = now().minus(120);
    claims.term.end = claims.exp;
    let err = refuse_armored(&vendor, &vendor.sign(&claims));
    assert_refused(&err, "expired", "expired at");
    // Within the 60-second leeway it is still accepted.
    claims.exp = now().minus(30);
    claims.term.end = claims.exp;
    vendor
        .trusted()
        .verify_license(&vendor.sign(&claims), &at_now())
        .unwrap();
}

#[test]
fn not_yet_valid_license() {
    let vendor = Vendor::new();
    let mut claims = vendor.claims();
    claims.nbf = now().plus(3600);
    claims.term.start = claims.nbf;
    let err = refuse_armored(&vendor, &vendor.sign(&claims));
    assert_refused(&err, "not_yet_valid", "not valid until");
}

#[test]
fn issued_in_the_future() {
    let vendor = Vendor::new();
    let mut claims = vendor.claims();
    claims.iat = now().plus(3600);
    let err = refuse_armored(&vendor, &vendor.sign(&claims));
    assert_refused(&err, "issued_in_future", "issued at");
}

#[test]
fn nbf_after_exp() {
    let vendor = Vendor::new();
    let err = refuse_with_claim(&vendor, "nbf", serde_json::json!(1_830_000_001u64));
    assert_refused(&err, "invalid_contents", "must be before exp");
}

// --- JSON tricks ---------------------------------------------------------------------------------

#[test]
fn duplicate_keys_in_the_payload() {
    let vendor = Vendor::new();
    let payload = serde_json::to_string(&payload_json(&vendor)).unwrap();
    // A second "exp" far in the future after the genuine one: last-wins parsers would extend it.
    let forged = payload.replacen(
        "\"exp\":1830000000",
        "\"exp\":1830000000,\"exp\":4000000000",
        1,
    );
    let err = refuse_compact(
        &vendor,
        &vendor.sign_raw(&vendor.header(), forged.as_bytes()),
    );
    assert_refused(&err, "invalid_contents", "duplicate field `exp`");
    // Also inside a map, where typed parsing alone would not notice.
    let forged = payload.replacen("\"seats\":{", "\"seats\":{\"max\":1},\"seats\":{", 1);
    let err = refuse_compact(
        &vendor,
        &vendor.sign_raw(&vendor.header(), forged.as_bytes()),
    );
    assert_refused(&err, "invalid_contents", "duplicate key \"seats\"");
}

#[test]
fn duplicate_keys_in_the_header() {
    let vendor = Vendor::new();
    let payload = serde_json::to_vec(&payload_json(&vendor)).unwrap();
    let header = format!(
        r#"{{"alg":"EdDSA","alg":"none","typ":"consign-license+jwt","kid":"{}"}}"#,
        vendor.kid
    );
    let err = refuse_compact(&vendor, &vendor.sign_raw(&header, &payload));
    assert_refused(&err, "malformed", "duplicate key \"alg\"");
}

#[test]
fn unknown_claim_field() {
    let vendor = Vendor::new();
    let err = refuse_with_claim(&vendor, "admin", serde_json::json!(true));
    assert_refused(&err, "invalid_contents", "unknown field `admin`");
    let mut payload = payload_json(&vendor);
    payload["entitlements"]["unlimited"] = serde_json::json!(true);
    let err = refuse_compact(
        &vendor,
        &vendor.sign_raw(&vendor.header(), &serde_json::to_vec(&payload).unwrap()),
    );
    assert_refused(&err, "invalid_contents", "unknown field `unlimited`");
}

#[test]
fn deep_nesting() {
    let vendor = Vendor::new();
    let mut payload = payload_json(&vendor);
    let mut deep = serde_json::json!(1);
    for _ in 0..64 {
        deep = serde_json::json!([deep]);
    }
    payload["entitlements"]["features"] = deep;
    let err = refuse_compact(
        &vendor,
        &vendor.sign_raw(&vendor.header(), &serde_json::to_vec(&payload).unwrap()),
    );
    assert_refused(&err, "invalid_contents", "invalid type: sequence");
    // Where the shape allows nesting (nowhere in claims, but in any JSON the strict pass reads),
    // depth is cut off: here inside a keyset, before its signature is even checked.
    let mut doc: serde_json::Value = serde_json::from_str(&vendor.keyset_json).unwrap();
    let mut deep = serde_json::json!(1);
    for _ in 0..64 {
        deep = serde_json::json!({ "a": deep });
    }
    doc["signed"]["extra"] = deep;
    let err = Keyset::verify(&serde_json::to_vec(&doc).unwrap(), &vendor.pin()).unwrap_err();
    assert_refused(&err, "invalid_contents", "deeper than");
    // And in the header, before any signature is checked.
    let header = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let err = refuse_compact(&vendor, &format!("{}.e30.{}", b64(header), b64([0u8; 64])));
    assert_refused(&err, "malformed", "header");
}

#[test]
fn header_not_an_object() {
    let vendor = Vendor::new();
    for header in ["[]", "\"EdDSA\"", "null", "1"] {
        let err = refuse_compact(&vendor, &format!("{}.e30.{}", b64(header), b64([0u8; 64])));
        assert_refused(&err, "malformed", "not a JSON object");
    }
}

// --- Encoding tricks -----------------------------------------------------------------------------

#[test]
fn non_canonical_base64_trailing_bits() {
    let vendor = Vendor::new();
    let (h, p, sig) = parts(&compact(&vendor.sign(&vendor.claims())));
    // 64 signature bytes encode to 86 characters whose last carries 2 unused bits; setting them
    // gives another spelling of the same bytes.
    let last = sig.chars().last().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let index = alphabet.find(last).unwrap();
    let twin = alphabet.chars().nth(index | 1).unwrap();
    assert_ne!(twin, last);
    let forged = format!("{h}.{p}.{}{twin}", &sig[..sig.len() - 1]);
    assert_refused(&refuse_compact(&vendor, &forged), "malformed", "canonical");
}

#[test]
fn padded_or_standard_alphabet_base64() {
    let vendor = Vendor::new();
    let (h, p, sig) = parts(&compact(&vendor.sign(&vendor.claims())));
    let padded = format!("{h}.{p}.{sig}==");
    assert_refused(&refuse_compact(&vendor, &padded), "malformed", "base64url");
    let std_alphabet = format!("{h}.{p}.{}", sig.replace('-', "+").replace('_', "/"));
    if std_alphabet != format!("{h}.{p}.{sig}") {
        assert_refused(
            &refuse_compact(&vendor, &std_alphabet),
            "malformed",
            "base64url",
        );
    }
    let with_space = format!("{h}.{p}. {sig}");
    assert_refused(
        &refuse_compact(&vendor, &with_space),
        "malformed",
        "base64url",
    );
}

#[test]
fn wrong_number_of_parts() {
    let vendor = Vendor::new();
    let token = compact(&vendor.sign(&vendor.claims()));
    for forged in [
        token.replacen('.', "", 1),
        format!("{token}.x"),
        format!("{token}."),
        String::new(),
        "..".into(),
    ] {
        let err = refuse_compact(&vendor, &forged);
        assert_eq!(err.code(), "malformed", "{err}");
    }
}

#[test]
fn signature_of_the_wrong_length() {
    let vendor = Vendor::new();
    let (h, p, sig) = parts(&compact(&vendor.sign(&vendor.claims())));
    let bytes = unb64(&sig);
    for len in [0usize, 1, 32, 63, 65, 128] {
        let mut forged_sig = bytes.clone();
        forged_sig.resize(len, 0);
        let err = refuse_compact(&vendor, &format!("{h}.{p}.{}", b64(&forged_sig)));
        assert_eq!(err.code(), "malformed", "{len}: {err}");
        if len > 0 {
            assert!(
                err.to_string().contains("Ed25519 signatures are 64"),
                "{err}"
            );
        }
    }
}

#[test]
fn public_key_of_the_wrong_length_in_the_keyset() {
    let vendor = Vendor::new();
    for len in [0usize, 31, 33, 64] {
        let mut doc: serde_json::Value = serde_json::from_str(&vendor.keyset_json).unwrap();
        doc["signed"]["license_keys"][0]["public_key"] = b64(vec![1u8; len]).into();
        let bytes = serde_json::to_vec(&doc).unwrap();
        let err = Keyset::verify(&bytes, &vendor.pin()).unwrap_err();
        // The signature no longer covers the document, and that is what is reported first.
        assert_refused(&err, "bad_signature", "keyset signature does not verify");
    }
    // A root key of the wrong length is refused as such, before any signature check.
    let mut doc: serde_json::Value = serde_json::from_str(&vendor.keyset_json).unwrap();
    doc["signed"]["root"] = b64([1u8; 31]).into();
    let err = Keyset::verify(&serde_json::to_vec(&doc).unwrap(), &TrustPin::default()).unwrap_err();
    assert_refused(&err, "invalid_contents", "32 bytes");
}

// --- Armour ---------------------------------------------------------------------------------

#[test]
fn armor_with_crlf_line_endings_is_the_same_license() {
    // Deliberately accepted: the signature covers the JWS, not the line endings, and a license
    // that passed through a Windows editor is still the vendor's license.
    let vendor = Vendor::new();
    let text = vendor.sign(&vendor.claims()).replace('\n', "\r\n");
    vendor.trusted().verify_license(&text, &at_now()).unwrap();
}

#[test]
fn armor_with_mixed_line_endings() {
    let vendor = Vendor::new();
    let text = vendor.sign(&vendor.claims()).replacen('\n', "\r\n", 2);
    assert_refused(
        &refuse_armored(&vendor, &text),
        "bad_armor",
        "mixes CRLF and LF",
    );
}

#[test]
fn armor_missing_end() {
    let vendor = Vendor::new();
    let text = vendor.sign(&vendor.claims());
    let truncated = &text[..text.find("-----END").unwrap()];
    assert_refused(
        &refuse_armored(&vendor, truncated),
        "bad_armor",
        "END CONSIGN LICENSE----- line is missing",
    );
}

#[test]
fn armor_variants() {
    let vendor = Vendor::new();
    let text = vendor.sign(&vendor.claims());
    for (forged, says) in [
        (
            text.replace("BEGIN CONSIGN LICENSE", "BEGIN CONSIGN LICENCE"),
            "first line",
        ),
        (text.replace("-----BEGIN", "----BEGIN"), "first line"),
        (format!("Dear customer,\n{text}"), "first line"),
        (
            format!("{text}-----BEGIN CONSIGN LICENSE-----\n"),
            "after the",
        ),
        (text.replacen("\neyJ", "\ney ", 1), "contains ' '"),
        (text.replacen('\n', "\n\n", 2), "blank"),
        (text.replace('\n', ""), "line break"),
    ] {
        assert_refused(&refuse_armored(&vendor, &forged), "bad_armor", says);
    }
}

#[test]
fn oversized_license() {
    let vendor = Vendor::new();
    let text = vendor.sign(&vendor.claims());
    let huge = text.replace("-----END", &format!("{}\n-----END", "A".repeat(64 * 1024)));
    assert_refused(&refuse_armored(&vendor, &huge), "too_large", "over the");
    let token = format!(
        "{}.{}.{}",
        vendor.header(),
        "A".repeat(20_000),
        "A".repeat(86)
    );
    assert_refused(&refuse_compact(&vendor, &token), "too_large", "over the");
    // A signed payload that is merely large but under the limit still parses and is refused on
    // content, not by exhausting anything.
    let mut payload = payload_json(&vendor);
    payload["plan"] = "x".repeat(8000).into();
    let err = refuse_compact(
        &vendor,
        &vendor.sign_raw(&vendor.header(), &serde_json::to_vec(&payload).unwrap()),
    );
    assert_refused(&err, "invalid_contents", "not a slug");
}

// --- Revisions, issuers and keysets -----------------------------------------------------------

#[test]
fn license_seq_rollback() {
    let vendor = Vendor::new();
    let keyset = vendor.trusted();
    let mut state = TrustState::default();
    let mut claims = vendor.claims();
    claims.seq = 3;
    state
        .accept_license(&keyset, &vendor.sign(&claims), now())
        .unwrap();
    claims.seq = 2;
    let err = state
        .accept_license(&keyset, &vendor.sign(&claims), now())
        .unwrap_err();
    assert_refused(&err, "rollback", "seq 2, older than seq 3");
    claims.seq = 4;
    state
        .accept_license(&keyset, &vendor.sign(&claims), now())
        .unwrap();
}

#[test]
fn license_from_another_issuer_under_the_same_keys() {
    let vendor = Vendor::new();
    let mut claims = vendor.claims();
    claims.iss = "initech".parse().unwrap();
    let err = refuse_armored(&vendor, &vendor.sign(&claims));
    assert_refused(&err, "wrong_issuer", "\"initech\"");
}

#[test]
fn keyset_with_a_lower_seq() {
    let vendor = Vendor::with_seq(5);
    let mut older = vendor.keyset.clone();
    older.seq = 4;
    let older_json = older.sign(&vendor.root).unwrap();
    let mut state = TrustState::default();
    state.accept_keyset(vendor.keyset_json.as_bytes()).unwrap();
    let err = state.accept_keyset(older_json.as_bytes()).unwrap_err();
    assert_refused(&err, "rollback", "keyset has seq 4, older than seq 5");
}

#[test]
fn keyset_not_signed_by_the_pinned_root() {
    let vendor = Vendor::new();
    let impostor = Vendor::new();
    let err = Keyset::verify(impostor.keyset_json.as_bytes(), &vendor.pin()).unwrap_err();
    assert_refused(&err, "untrusted_root", "not the pinned");
}

#[test]
fn keyset_with_the_root_swapped_but_the_old_signature() {
    let vendor = Vendor::new();
    let impostor = license::SigningKey::generate().unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&vendor.keyset_json).unwrap();
    doc["signed"]["root"] = b64(impostor.public_key().as_bytes()).into();
    doc["signatures"][0]["keyid"] = impostor.public_key().fingerprint().into();
    let err = Keyset::verify(&serde_json::to_vec(&doc).unwrap(), &TrustPin::default()).unwrap_err();
    assert_refused(&err, "bad_signature", "keyset signature does not verify");
}

#[test]
fn keyset_with_an_added_license_key() {
    let vendor = Vendor::new();
    let attacker = license::SigningKey::generate().unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&vendor.keyset_json).unwrap();
    let mut entry = doc["signed"]["license_keys"][0].clone();
    entry["kid"] = "lic-attacker".into();
    entry["public_key"] = b64(attacker.public_key().as_bytes()).into();
    doc["signed"]["license_keys"]
        .as_array_mut()
        .unwrap()
        .push(entry);
    let err = Keyset::verify(&serde_json::to_vec(&doc).unwrap(), &vendor.pin()).unwrap_err();
    assert_refused(&err, "bad_signature", "does not verify");
}

#[test]
fn keyset_signed_by_a_license_key() {
    let vendor = Vendor::new();
    let mut doc: serde_json::Value = serde_json::from_str(&vendor.keyset_json).unwrap();
    doc["signatures"][0]["sig"] = b64(vendor.signer.sign(b"consign-keyset-v1:whatever")).into();
    let err = Keyset::verify(&serde_json::to_vec(&doc).unwrap(), &vendor.pin()).unwrap_err();
    assert_refused(&err, "bad_signature", "does not verify");
}

#[test]
fn keyset_with_no_or_extra_signatures() {
    let vendor = Vendor::new();
    for edit in [0usize, 2] {
        let mut doc: serde_json::Value = serde_json::from_str(&vendor.keyset_json).unwrap();
        let sig = doc["signatures"][0].clone();
        doc["signatures"] = serde_json::Value::Array(vec![sig; edit]);
        let err = Keyset::verify(&serde_json::to_vec(&doc).unwrap(), &vendor.pin()).unwrap_err();
        assert_refused(&err, "invalid_contents", "exactly one");
    }
}

#[test]
fn keyset_with_duplicate_keys_and_trailing_data() {
    let vendor = Vendor::new();
    let forged = vendor
        .keyset_json
        .replacen("\"seq\": 1", "\"seq\": 1, \"seq\": 9", 1);
    assert_ne!(forged, vendor.keyset_json);
    let err = Keyset::verify(forged.as_bytes(), &vendor.pin()).unwrap_err();
    assert_refused(&err, "invalid_contents", "duplicate key \"seq\"");
    let err = Keyset::verify(
        format!("{}{{}}", vendor.keyset_json).as_bytes(),
        &vendor.pin(),
    )
    .unwrap_err();
    assert_refused(&err, "invalid_contents", "trailing");
}

#[test]
fn oversized_keyset() {
    let vendor = Vendor::new();
    let huge = format!(
        "{}{}",
        vendor.keyset_json,
        " ".repeat(license::keyset::MAX_KEYSET_LEN)
    );
    let err = Keyset::verify(huge.as_bytes(), &vendor.pin()).unwrap_err();
    assert_refused(&err, "too_large", "keyset");
}

#[test]
fn license_signed_with_an_expired_key() {
    let vendor = Vendor::new();
    let mut keyset = vendor.keyset.clone();
    keyset.license_keys[0].not_after = now().minus(3600);
    let json = keyset.sign(&vendor.root).unwrap();
    let trusted = Keyset::verify(json.as_bytes(), &vendor.pin()).unwrap();
    let err = trusted
        .verify_license(&vendor.sign(&vendor.claims()), &at_now())
        .unwrap_err();
    assert_refused(&err, "key_not_valid", "expired at");
}
