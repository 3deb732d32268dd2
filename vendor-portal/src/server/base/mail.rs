//! Sending one mail: over SMTP with lettre (`serve --smtp-url`), or, without a server, into the
//! log, so a developer sees the links a buyer would get.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};

/// A mail ready to send.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// The outbox row's id: the `Message-ID`'s left half, so a mail sent again after a crash
    /// carries the same id and mail systems can drop the copy.
    pub id: String,
    /// The address.
    pub to: String,
    /// The subject.
    pub subject: String,
    /// The plain-text body.
    pub body: String,
}

/// The way mail leaves the portal.
pub struct Mailer {
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    /// Where the server is, for messages (no password).
    pub server: Option<String>,
    /// How long one mail may take to send.
    pub timeout: Duration,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("server", &self.server)
            .field("from", &self.from.to_string())
            .finish()
    }
}

impl Mailer {
    /// A mailer for `smtp_url` (`smtp://host:port`, `smtps://user:password@host`, or
    /// `smtp://host?tls=required` for STARTTLS), sending as `from`; without a URL, mail goes to
    /// the log.
    pub fn new(smtp_url: Option<&str>, from: &str, timeout: Duration) -> anyhow::Result<Self> {
        let from: Mailbox = from.parse().map_err(|e| {
            anyhow::anyhow!("--mail-from {from:?} is not an address ({e}): give Name <user@host>")
        })?;
        let (transport, server) = match smtp_url {
            Some(url) => {
                let parsed = url::Url::parse(url).map_err(|e| {
                    anyhow::anyhow!("--smtp-url is not a URL ({e}): give smtp://host:port or smtps://user:password@host")
                })?;
                let server = format!(
                    "{}://{}:{}",
                    parsed.scheme(),
                    parsed.host_str().unwrap_or("?"),
                    parsed
                        .port()
                        .map_or_else(|| "default".to_owned(), |p| p.to_string())
                );
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| anyhow::anyhow!("--smtp-url {server} cannot be used: {e}"))?
                    .timeout(Some(timeout))
                    .build();
                (Some(transport), Some(server))
            }
            None => (None, None),
        };
        Ok(Self {
            transport,
            from,
            server,
            timeout,
        })
    }

    /// Whether mail really leaves (an SMTP server is configured).
    pub fn sends(&self) -> bool {
        self.transport.is_some()
    }

    /// Sends `mail`, or logs it when no server is configured.
    pub async fn send(&self, mail: &Outgoing) -> Result<(), String> {
        let Some(transport) = &self.transport else {
            tracing::info!(
                to = %mail.to,
                subject = %mail.subject,
                "no --smtp-url: this mail is not sent; its text follows\n{}",
                mail.body
            );
            return Ok(());
        };
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|e| format!("{:?} is not an address: {e}", mail.to))?;
        let domain = self.from.email.domain().to_owned();
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .message_id(Some(format!("<{}@{domain}>", mail.id)))
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body.clone())
            .map_err(|e| format!("the mail cannot be built: {e}"))?;
        match tokio::time::timeout(self.timeout, transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("the SMTP server refused or failed: {e}")),
            Err(_) => Err(format!(
                "the SMTP server did not answer within {} s",
                self.timeout.as_secs()
            )),
        }
    }
}
