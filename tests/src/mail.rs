//! A real SMTP server for the mail tests: `aiosmtpd` (PyPI, in the venv `scripts/test` makes),
//! run by `tests/smtp/sink.py` on a free loopback port, keeping each accepted message as a file.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running SMTP server.
pub struct Smtp {
    child: Child,
    folder: PathBuf,
    /// `smtp://127.0.0.1:PORT`, for `serve --smtp-url`.
    pub url: String,
}

/// A message the server accepted.
#[derive(Clone, Debug)]
pub struct Received {
    /// The envelope's recipients.
    pub to: Vec<String>,
    /// The whole message (headers and body) as sent.
    pub data: String,
}

impl Received {
    /// A header's value (the first one named `name`, unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or(&self.data);
        let mut value: Option<String> = None;
        for line in head.lines() {
            if let Some(v) = value.as_mut() {
                if line.starts_with(' ') || line.starts_with('\t') {
                    v.push_str(line.trim_start());
                    continue;
                }
                break;
            }
            if let Some((n, v)) = line.split_once(':')
                && n.eq_ignore_ascii_case(name)
            {
                value = Some(v.trim().to_owned());
            }
        }
        value
    }

    /// The body, with quoted-printable soft breaks and escapes undone.
    pub fn body(&self) -> String {
        let body = self
            .data
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .replace("=\r\n", "");
        let bytes = body.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'='
                && i + 2 < bytes.len()
                && let Ok(b) = u8::from_str_radix(&body[i + 1..i + 3], 16)
            {
                out.push(b);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).replace("\r\n", "\n")
    }

    /// The first link in the body that starts with `prefix`.
    pub fn link(&self, prefix: &str) -> Option<String> {
        let body = self.body();
        let start = body.find(prefix)?;
        Some(
            body[start..]
                .split(|c: char| c.is_whitespace())
                .next()
                .unwrap_or_default()
                .to_owned(),
        )
    }
}

impl Smtp {
    /// Starts a server keeping messages under `dir`; with `hold`, the first message is answered
    /// that late (see `tests/smtp/sink.py`).
    pub fn start(dir: &Path, hold: Option<f64>) -> Self {
        let port = crate::browser::free_port();
        let folder = dir.join(format!("smtp-{port}"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("smtp/sink.py");
        let mut cmd = Command::new(crate::moto::venv_python());
        cmd.arg(script).arg(port.to_string()).arg(&folder);
        if let Some(hold) = hold {
            cmd.arg(hold.to_string());
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the test venv's python runs (scripts/test installs aiosmtpd there)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with("ready "),
            "the SMTP server did not start (is aiosmtpd in the venv? run scripts/test): {line:?}"
        );
        Self {
            child,
            folder,
            url: format!("smtp://127.0.0.1:{port}"),
        }
    }

    /// Every message accepted so far, in order.
    pub fn received(&self) -> Vec<Received> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.folder)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        names.retain(|p| p.extension().is_some_and(|e| e == "json"));
        names.sort();
        names
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .filter_map(|b| serde_json::from_slice::<Value>(&b).ok())
            .map(|v| Received {
                to: v["to"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
                data: v["data"].as_str().unwrap_or_default().to_owned(),
            })
            .collect()
    }

    /// Waits (up to 30 s) until a message to `to` whose subject holds `subject` arrived.
    pub fn wait_for(&self, to: &str, subject: &str) -> Received {
        let start = Instant::now();
        loop {
            if let Some(found) = self.received().into_iter().find(|m| {
                m.to.iter().any(|t| t == to)
                    && m.header("Subject").is_some_and(|s| s.contains(subject))
            }) {
                return found;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no mail to {to} about {subject:?} arrived; got {:?}",
                self.received()
                    .iter()
                    .map(|m| (m.to.clone(), m.header("Subject")))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
