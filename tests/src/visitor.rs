//! A browser's part on the portal's pages over plain HTTP: cookies kept by name (the tests use one
//! site), forms posted with the double-submit CSRF token from the cookie, redirects not followed.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

/// A visitor of one portal.
pub struct Visitor {
    http: reqwest::Client,
    base: String,
    cookies: BTreeMap<String, String>,
}

/// A page as it came back.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// Where a redirect points.
    pub location: Option<String>,
    /// The body.
    pub body: String,
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

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Answer {
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
            if value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Answer {
            status: response.status(),
            location: response
                .headers()
                .get(LOCATION)
                .map(|l| l.to_str().unwrap().to_owned()),
            body: response.text().await.unwrap(),
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

    /// Signs up as a buyer (Initech, `account` typed as the AWS account).
    pub async fn sign_up(&mut self, email: &str, account: &str) {
        self.get("/signup").await;
        let page = self
            .post(
                "/signup",
                &[
                    ("name", "A Buyer"),
                    ("company", "Initech"),
                    ("email", email),
                    ("password", "correct horse battery"),
                    ("aws_account", account),
                    ("next", "/"),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
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
    let to = answer.location.as_deref().unwrap_or_default();
    to.rsplit('/')
        .next()
        .unwrap_or_default()
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned()
}
