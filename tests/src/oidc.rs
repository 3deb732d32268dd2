//! A real OpenID provider for the single sign-on tests: panva's `oidc-provider` (npm, installed
//! into `tests/oidc/node_modules` by `scripts/test`), run with the machine's Node.js on a free
//! port, and a driver that walks the authorization code flow without a browser, with each
//! step exposed so a test can tamper with it.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

/// The client the portal is registered as.
pub const CLIENT_ID: &str = "consign-portal";
/// Its secret.
pub const CLIENT_SECRET: &str = "test-client-secret-not-a-real-one";
/// Every test user's password.
pub const PASSWORD: &str = "correct horse battery staple";

/// A running provider.
pub struct Provider {
    child: Option<Child>,
    config_file: PathBuf,
    config: Value,
    /// `http://127.0.0.1:PORT`, its issuer.
    pub issuer: String,
}

fn script() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc");
    assert!(
        dir.join("node_modules/oidc-provider").is_dir(),
        "the test OpenID provider is not installed: run scripts/test (it runs `npm ci` in tests/oidc)"
    );
    dir.join("provider.mjs")
}

/// A user of the provider: their e-mail, whether it is verified, and their groups.
pub fn user(email: &str, verified: bool, groups: &[&str]) -> Value {
    json!({"password": PASSWORD, "email": email, "email_verified": verified, "groups": groups})
}

impl Provider {
    /// Starts a provider in `dir` that knows the portal's `redirect_uri` and `users` (login to
    /// [`user`]).
    pub fn start(dir: &Path, redirect_uri: &str, users: Value) -> Self {
        let port = crate::browser::free_port();
        let issuer = format!("http://127.0.0.1:{port}");
        let config = json!({
            "issuer": issuer,
            "port": port,
            "keys_file": dir.join("oidc-keys-1.json"),
            "clients": [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                "redirect_uris": [redirect_uri]}],
            "users": users,
        });
        let mut provider = Self {
            child: None,
            config_file: dir.join("oidc-provider.json"),
            config,
            issuer,
        };
        provider.spawn();
        provider
    }

    fn spawn(&mut self) {
        std::fs::write(&self.config_file, self.config.to_string()).unwrap();
        let mut child = Command::new("node")
            .arg(script())
            .arg(&self.config_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs (scripts/test installs Node.js)");
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(
            line.starts_with("ready "),
            "the provider did not start: {line:?}"
        );
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts the provider on the same issuer with a new signing key (a key rotation); the
    /// old key's file stays readable.
    pub fn rotate_keys(&mut self) {
        self.stop();
        let next = self.keys_file().with_file_name(format!(
            "oidc-keys-{}.json",
            self.config["keys_rotated"].as_u64().unwrap_or(1) + 1
        ));
        self.config["keys_rotated"] = json!(self.config["keys_rotated"].as_u64().unwrap_or(1) + 1);
        self.config["keys_file"] = json!(next);
        self.spawn();
    }

    fn keys_file(&self) -> PathBuf {
        PathBuf::from(self.config["keys_file"].as_str().unwrap())
    }

    /// The signing key in use: its `kid`, its private key (PKCS#8 PEM) and its public JWK.
    pub fn signing_key(&self) -> (String, String, Value) {
        let keys: Value =
            serde_json::from_slice(&std::fs::read(self.keys_file()).unwrap()).unwrap();
        let jwk = keys["keys"][0].clone();
        let public = json!({"kty": jwk["kty"], "n": jwk["n"], "e": jwk["e"], "kid": jwk["kid"],
            "alg": "RS256", "use": "sig"});
        (
            jwk["kid"].as_str().unwrap().to_owned(),
            keys["pem"][0].as_str().unwrap().to_owned(),
            public,
        )
    }

    /// Signs `claims` with the provider's own key (what only the provider can do).
    pub fn sign(&self, claims: &Value) -> String {
        let (kid, pem, _) = self.signing_key();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(kid);
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    /// The next token response carries `id_token` instead of the one the provider made.
    pub async fn replace_next_id_token(&self, id_token: &str) {
        let answer = reqwest::Client::new()
            .post(format!("{}/__test/id-token", self.issuer))
            .body(id_token.to_owned())
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success());
    }

    /// The last ID token the provider itself made, and how many times its JWKS was read.
    pub async fn last(&self) -> (Option<String>, u64) {
        let v: Value = reqwest::get(format!("{}/__test/last", self.issuer))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            v["id_token"].as_str().map(str::to_owned),
            v["jwks_reads"].as_u64().unwrap_or(0),
        )
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A sign-in started at the portal: where it sends the browser, the attempt cookie and the
/// parameters it chose.
#[derive(Clone, Debug)]
pub struct Started {
    /// The provider's authorization URL with the portal's parameters.
    pub authorize_url: String,
    /// The `__Host-consign_sso` cookie's value.
    pub attempt_cookie: String,
    /// The `state` the portal chose.
    pub state: String,
    /// The `nonce` the portal chose.
    pub nonce: String,
    /// Every query parameter.
    pub params: BTreeMap<String, String>,
}

/// What the portal answered a callback with.
#[derive(Debug)]
pub struct Finished {
    /// The status.
    pub status: StatusCode,
    /// The page.
    pub text: String,
    /// The console session cookie it set, if any.
    pub session: Option<String>,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn set_cookies(answer: &reqwest::Response) -> Vec<(String, String)> {
    answer
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|pair| pair.split_once('='))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn location(answer: &reqwest::Response) -> String {
    answer
        .headers()
        .get(LOCATION)
        .unwrap_or_else(|| panic!("no redirect: {}", answer.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// Starts a sign-in to `vendor` at the portal.
pub async fn start(portal: &str, vendor: &str) -> Started {
    let answer = client()
        .get(format!("{portal}/console/sso/start?vendor={vendor}"))
        .send()
        .await
        .unwrap();
    let attempt_cookie = set_cookies(&answer)
        .into_iter()
        .find(|(n, _)| n == "__Host-consign_sso")
        .map(|(_, v)| v);
    let status = answer.status();
    let page = answer.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{page}");
    let attempt_cookie = attempt_cookie.expect("the start sets the attempt cookie");
    // The page moves on to the provider by itself; its link is the same URL.
    let authorize_url = page
        .split("id=\"continue\"")
        .next()
        .and_then(|before| before.rsplit("href=\"").next())
        .and_then(|rest| rest.split('"').next())
        .map(unescape)
        .expect("the start page links to the provider");
    let params: BTreeMap<String, String> = url::Url::parse(&authorize_url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    Started {
        state: params["state"].clone(),
        nonce: params["nonce"].clone(),
        authorize_url,
        attempt_cookie,
        params,
    }
}

/// Signs `login` in at the provider for `started`; the portal callback URL the provider sends
/// the browser back to (with the code and state).
pub async fn authenticate(started: &Started, login: &str) -> String {
    let http = client();
    let mut jar: BTreeMap<String, String> = BTreeMap::new();
    let cookie_header = |jar: &BTreeMap<String, String>| {
        jar.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let base = url::Url::parse(&started.authorize_url).unwrap();
    let mut next = started.authorize_url.clone();
    let mut posted = false;
    for _ in 0..10 {
        if next.contains("/console/sso/callback") {
            return next;
        }
        let url = base.join(&next).unwrap();
        let answer = if url.path().starts_with("/interaction/") && !posted {
            posted = true;
            http.post(format!("{}/login", url.as_str().trim_end_matches('/')))
                .header(COOKIE, cookie_header(&jar))
                .form(&[("login", login), ("password", PASSWORD)])
                .send()
                .await
                .unwrap()
        } else {
            http.get(url.clone())
                .header(COOKIE, cookie_header(&jar))
                .send()
                .await
                .unwrap()
        };
        jar.extend(set_cookies(&answer));
        if !answer.status().is_redirection() {
            panic!(
                "the provider stopped at {url}: {} {}",
                answer.status(),
                answer.text().await.unwrap()
            );
        }
        next = location(&answer);
    }
    panic!("the provider never sent the browser back");
}

/// Sends the browser's callback to the portal with `attempt_cookie` (or none).
pub async fn callback(callback_url: &str, attempt_cookie: Option<&str>) -> Finished {
    let mut request = client().get(callback_url);
    if let Some(cookie) = attempt_cookie {
        request = request.header(COOKIE, format!("__Host-consign_sso={cookie}"));
    }
    let answer = request.send().await.unwrap();
    let status = answer.status();
    let session = set_cookies(&answer)
        .into_iter()
        .find(|(n, v)| n == "__Host-consign_session" && !v.is_empty())
        .map(|(_, v)| v);
    Finished {
        status,
        text: answer.text().await.unwrap(),
        session,
    }
}

/// A whole sign-in of `login` to `vendor`: start, provider, callback.
pub async fn sign_in(portal: &str, vendor: &str, login: &str) -> Finished {
    let started = start(portal, vendor).await;
    let back = authenticate(&started, login).await;
    callback(&back, Some(&started.attempt_cookie)).await
}

/// A page's text with HTML's escapes undone (for finding a sentence in it).
pub fn unescape(html: &str) -> String {
    html.replace("&#39;", "'")
        .replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

/// The console page at `path` with a session cookie; (status, body).
pub async fn console(portal: &str, session: &str, path: &str) -> (StatusCode, String) {
    let answer = client()
        .get(format!("{portal}{path}"))
        .header(COOKIE, format!("__Host-consign_session={session}"))
        .send()
        .await
        .unwrap();
    (answer.status(), answer.text().await.unwrap())
}

/// ID token claims as the provider would make them for `started`, for a test to bend.
pub fn claims(issuer: &str, started: &Started, email: &str) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    json!({"iss": issuer, "aud": CLIENT_ID, "sub": email, "iat": now, "exp": now + 300,
        "nonce": started.nonce, "email": email, "email_verified": true})
}
