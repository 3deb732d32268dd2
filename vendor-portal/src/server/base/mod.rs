//! Plumbing under everything else: the clock, the database, secrets and ids, the blob store.
//! Nothing here imports the domain, a route or a page.

pub mod blobs;
pub mod db;
pub mod mail;
pub mod outbound;
pub mod secrets;
pub mod sts;

static PUBLIC_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The portal's public URL, without a trailing slash: what links in mail and the single sign-on
/// redirect URI are built from, never a request's Host header. Set once at start
/// (`serve --public-url`, else the address it listens on).
pub fn public_url() -> &'static str {
    PUBLIC_URL
        .get()
        .map_or("http://127.0.0.1:8080", String::as_str)
}

/// Sets [`public_url`] (the first call wins).
pub fn set_public_url(url: String) {
    let _ = PUBLIC_URL.set(url);
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Unix seconds as a UTC date, `YYYY-MM-DD` (`-` if out of range).
pub fn utc_date(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_else(|_| "-".to_owned())
}

/// Decodes base64 in any of the usual alphabets (standard or URL-safe, padded or not).
pub fn decode_b64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let trimmed = text.trim().trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(trimmed)
        .ok()
        .or_else(|| STANDARD.decode(text.trim()).ok())
}
