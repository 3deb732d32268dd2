//! A real Chromium driven over WebDriver (W3C) from Rust: Debian's `chromium` and
//! `chromium-driver`, which `scripts/test` installs. The client is the handful of WebDriver
//! commands the browser tests use, over the same HTTP client as the other tests.
//!
//! Chromium runs headless with a fresh profile and without the background networking that a
//! closed network refuses (FIELD-NOTES: Chromium's own connections fail here many at a time).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Where Debian puts the browser and its driver.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// ChromeDriver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A running ChromeDriver with one browser session.
pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    /// Screenshots go here.
    pub artifacts: PathBuf,
    /// Downloads land here.
    pub downloads: PathBuf,
    shots: usize,
}

/// A port free on loopback right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(9515)
}

impl Browser {
    /// Starts ChromeDriver and a headless Chromium that saves downloads in `downloads` and
    /// screenshots in `artifacts`. Panics with what to install when either is missing.
    pub fn start(artifacts: &Path, downloads: &Path) -> Self {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: the browser tests need Debian's {package} (apt-get install chromium chromium-driver; scripts/test installs them)"
            );
        }
        std::fs::create_dir_all(artifacts).unwrap();
        std::fs::create_dir_all(downloads).unwrap();
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // The client's timers need the runtime it will run on.
        let http = {
            let _inside = runtime.enter();
            reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap()
        };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while runtime
            .block_on(async { http.get(format!("{url}/status")).send().await })
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
        {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        // A fresh profile beside the downloads, by an absolute path without `..` (ChromeDriver
        // finds Chromium's DevTools port in a file there).
        let downloads = downloads.canonicalize().unwrap();
        let artifacts = artifacts.canonicalize().unwrap();
        let profile = downloads.with_file_name(format!("chromium-profile-{port}"));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-extensions",
                    "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.display()),
                ],
                "prefs": {
                    "download.default_directory": downloads.display().to_string(),
                    "download.prompt_for_download": false,
                    "safebrowsing.enabled": false,
                },
            },
        }}});
        let created: Value = runtime.block_on(async {
            http.post(format!("{url}/session"))
                .json(&capabilities)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        });
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {created}"))
            .to_owned();
        let browser = Self {
            driver,
            base: format!("{url}/session/{session}"),
            http,
            runtime,
            artifacts,
            downloads: downloads.clone(),
            shots: 0,
        };
        // Headless Chromium keeps downloads unless told where to put them.
        browser.command(
            "POST",
            "/goog/cdp/execute",
            json!({"cmd": "Browser.setDownloadBehavior", "params": {
                "behavior": "allow", "downloadPath": downloads.display().to_string()}}),
        );
        browser
    }

    fn try_command(&self, method: &str, path: &str, body: &Value) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(body),
        };
        let reply: Value = self
            .runtime
            .block_on(async { request.send().await.unwrap().json().await.unwrap() });
        match reply["value"].get("error") {
            Some(error) => Err(format!(
                "WebDriver {method} {path}: {error}: {}",
                reply["value"]["message"]
            )),
            None => Ok(reply["value"].clone()),
        }
    }

    fn command(&self, method: &str, path: &str, body: Value) -> Value {
        self.try_command(method, path, &body)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `step` on the element matching `css`, again while the page is still changing (a
    /// click that navigates returns before the new page is there), for up to 10 seconds.
    fn on_element(&self, css: &str, step: impl Fn(&str) -> Result<Value, String>) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let attempt = self
                .try_command(
                    "POST",
                    "/element",
                    &json!({"using": "css selector", "value": css}),
                )
                .and_then(|found| step(found[ELEMENT].as_str().unwrap_or_default()));
            match attempt {
                Ok(value) => return value,
                Err(e)
                    if Instant::now() < deadline
                        && (e.contains("stale element") || e.contains("no such element")) =>
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("{e} (looking for {css})"),
            }
        }
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) {
        self.command("POST", "/url", json!({ "url": url }));
    }

    /// The current URL.
    pub fn url(&self) -> String {
        self.command("GET", "/url", Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until the URL satisfies `ok` (a click that submits a form returns before the
    /// browser has followed the redirect), for up to 10 seconds; the URL. `what` names it.
    pub fn wait_for_url(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let url = self.url();
            if ok(&url) {
                return url;
            }
            assert!(
                Instant::now() < deadline,
                "the browser stayed at {url}, never reaching {what}: {}",
                self.source()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the path (without the query) ends with `end`; the URL.
    pub fn wait_for_path(&self, end: &str) -> String {
        self.wait_for_url(end, |url| {
            url.split('?').next().unwrap_or_default().ends_with(end)
        })
    }

    /// The page's HTML as the browser holds it.
    pub fn source(&self) -> String {
        self.command("GET", "/source", Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// How many elements match a CSS selector.
    pub fn count(&self, css: &str) -> usize {
        self.command(
            "POST",
            "/elements",
            json!({"using": "css selector", "value": css}),
        )
        .as_array()
        .map_or(0, Vec::len)
    }

    /// Types `text` into the element matching `css`.
    pub fn type_into(&self, css: &str, text: &str) {
        self.on_element(css, |id| {
            self.try_command("POST", &format!("/element/{id}/clear"), &json!({}))?;
            self.try_command(
                "POST",
                &format!("/element/{id}/value"),
                &json!({ "text": text }),
            )
        });
    }

    /// Clicks the element matching `css`.
    pub fn click(&self, css: &str) {
        self.on_element(css, |id| {
            self.try_command("POST", &format!("/element/{id}/click"), &json!({}))
        });
    }

    /// The visible text of the element matching `css`.
    pub fn text(&self, css: &str) -> String {
        self.on_element(css, |id| {
            self.try_command("GET", &format!("/element/{id}/text"), &Value::Null)
        })
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Resizes the window (CSS pixels).
    pub fn resize(&self, width: u32, height: u32) {
        self.command(
            "POST",
            "/window/rect",
            json!({"width": width, "height": height}),
        );
    }

    /// Runs `script` in the page through WebDriver (which the page's content security policy
    /// does not govern) and returns its value; for measuring layout, never for driving the UI.
    pub fn evaluate(&self, script: &str) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
    }

    /// Saves a screenshot as `NN-name.png` in the artifacts folder; returns its path.
    pub fn screenshot(&mut self, name: &str) -> PathBuf {
        use base64::Engine as _;
        let shot = self.command("GET", "/screenshot", Value::Null);
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot.as_str().unwrap_or_default())
            .unwrap();
        self.shots += 1;
        let path = self.artifacts.join(format!("{:02}-{name}.png", self.shots));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Waits for a file named `name` to finish downloading; returns its path.
    pub fn downloaded(&self, name: &str) -> PathBuf {
        let path = self.downloads.join(name);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let partial = std::fs::read_dir(&self.downloads)
                .map(|d| {
                    d.filter_map(Result::ok)
                        .any(|e| e.file_name().to_string_lossy().ends_with(".crdownload"))
                })
                .unwrap_or(false);
            if path.exists() && !partial {
                return path;
            }
            assert!(
                Instant::now() < deadline,
                "{name} was not downloaded into {}",
                self.downloads.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .runtime
            .block_on(async { self.http.delete(&self.base).send().await });
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
