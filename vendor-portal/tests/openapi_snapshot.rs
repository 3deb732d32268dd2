//! The OpenAPI document is generated from the handlers; this snapshot makes every API change
//! show up in review. After an intended change, refresh it with
//! `UPDATE_SNAPSHOTS=1 cargo test -p vendor-portal --test openapi_snapshot`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::Path;

#[test]
fn openapi_document_matches_snapshot() {
    let current = vendor_portal::server::routes::openapi_json() + "\n";
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/openapi.json");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &current).unwrap();
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        stored == current,
        "the OpenAPI document changed; review the difference and refresh {} with UPDATE_SNAPSHOTS=1",
        path.display()
    );
}

#[test]
fn openapi_document_describes_every_route() {
    let doc: serde_json::Value =
        serde_json::from_str(&vendor_portal::server::routes::openapi_json()).unwrap();
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/v1/licenses",
        "/api/v1/licenses/{id}/revoke",
        "/api/v1/vendors/{vendor}/keyset",
        "/api/v1/vendors/{vendor}/licenses/{id}/status",
        "/api/v1/audit",
        "/readyz",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} is not in the OpenAPI document"
        );
    }
    assert!(doc["components"]["securitySchemes"]["token"].is_object());
}
