//! A browser's part on the portal's pages over plain HTTP: cookies kept by name (the tests use one
//! site), each checked for its HttpOnly, Secure and SameSite=Strict flags; forms posted with the
//! double-submit CSRF token from the cookie; redirects not followed.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, HeaderMap, LOCATION, SET_COOKIE};

/// A visitor of one portal.
pub struct Visitor {
    /// The client (no redirects followed), for requests a test builds itself.
    pub http: reqwest::Client,
    /// The portal.
    pub base: String,
    /// The cookies it holds, by name.
    pub cookies: BTreeMap<String, String>,
}

/// A page as it came back.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub text: String,
}

impl Answer {
    /// Where a redirect points (empty when it is none).
    pub fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

impl Visitor {
    /// A visitor of the portal at `base` (`http://127.0.0.1:PORT`).
    pub fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.to_owned(),
            cookies: BTreeMap::new(),
        }
    }

    /// Sends `request` with the cookies, keeping those the answer sets.
    pub async fn send(&mut self, request: reqwest::RequestBuilder) -> Answer {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let response = request.header(COOKIE, cookie).send().await.unwrap();
        for value in response.headers().get_all(SET_COOKIE) {
            let text = value.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            assert!(
                text.contains("HttpOnly")
                    && text.contains("Secure")
                    && text.contains("SameSite=Strict"),
                "cookie {name} lacks a flag: {text}"
            );
            if value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Answer {
            status: response.status(),
            headers: response.headers().clone(),
            text: response.text().await.unwrap(),
        }
    }

    /// `GET path` (a path on the portal, or a whole URL).
    pub async fn get(&mut self, path: &str) -> Answer {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        let request = self.http.get(url);
        self.send(request).await
    }

    /// Posts a form with the CSRF token (a page must have been fetched first).
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let csrf = self
            .cookies
            .get("__Host-consign_csrf")
            .cloned()
            .unwrap_or_default();
        let mut form: Vec<(&str, &str)> = vec![("csrf", csrf.as_str())];
        form.extend_from_slice(fields);
        let request = self.http.post(format!("{}{path}", self.base)).form(&form);
        self.send(request).await
    }

    /// Signs up as a buyer of `company`, typing `account` as the AWS account.
    pub async fn sign_up(&mut self, email: &str, company: &str, account: &str) {
        self.get("/signup").await;
        let page = self
            .post(
                "/signup",
                &[
                    ("name", "Pat Buyer"),
                    ("company", company),
                    ("email", email),
                    ("password", "correct horse battery"),
                    ("aws_account", account),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    }

    /// Starts the trial of `vendor`'s `app` with plan `trial`; the answer.
    pub async fn start_trial(&mut self, vendor: &str, app: &str) -> Answer {
        self.get(&format!("/apps/{vendor}/{app}")).await;
        self.post(&format!("/apps/{vendor}/{app}/trial"), &[("plan", "trial")])
            .await
    }
}

/// The license id a trial's redirect names (`/account/licenses/ID?done=trial`).
pub fn license_of(answer: &Answer) -> String {
    answer
        .location()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned()
}
