//! Handing a message over for delivery: SMTP through lettre (STARTTLS required by default, implicit TLS with
//! `smtps://`, plain only when asked with `?tls=none`), or `.eml` files in development.
//!
//! An address is personal: it reaches neither the log nor the outbox. A failure's text, which may quote the
//! address back (`550 <jo@example.com>: no such user`), is scrubbed of it and of anything else that looks like
//! an address before anyone sees it.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::templates::Rendered;
use crate::config::{EmailTransport, SmtpSecurity, SmtpSettings};
use crate::domain::Sensitive;

/// Where messages go.
#[derive(Clone)]
pub enum Mailer {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files {
        dir: PathBuf,
        transport: AsyncFileTransport<Tokio1Executor>,
    },
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Smtp(_) => f.write_str("Mailer::Smtp"),
            Self::Files { dir, .. } => write!(f, "Mailer::Files({})", dir.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("e-mail transport: {0}")]
pub struct MailerError(pub String);

/// Why a message was not handed over. `detail` is scrubbed of addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendFailure {
    /// The server refused this message or its recipient for good (550–554, 501): trying again will not help.
    pub permanent: bool,
    pub detail: String,
}

impl Mailer {
    /// The transport of the configuration. `hello` is the name shopd gives itself in `EHLO` (the shop's domain).
    pub fn new(transport: &EmailTransport, hello: &str) -> Result<Self, MailerError> {
        match transport {
            EmailTransport::Smtp(settings) => smtp(settings, hello).map(Self::Smtp),
            EmailTransport::Files(dir) => {
                create_private_dir(dir)
                    .map_err(|e| MailerError(format!("cannot create {}: {e}", dir.display())))?;
                Ok(Self::Files {
                    dir: dir.clone(),
                    transport: AsyncFileTransport::new(dir),
                })
            }
        }
    }

    /// Sends one message; `to` is only used to scrub it out of an error.
    pub async fn send(&self, message: Message, to: &str) -> Result<(), SendFailure> {
        match self {
            Self::Smtp(transport) => transport.send(message).await.map(|_| ()).map_err(|e| {
                let code = e.status().map(u16::from);
                SendFailure {
                    permanent: e.is_permanent() && matches!(code, Some(501 | 550..=554)),
                    detail: scrub(&error_chain(&e), to),
                }
            }),
            Self::Files { transport, .. } => {
                transport
                    .send(message)
                    .await
                    .map(|_| ())
                    .map_err(|e| SendFailure {
                        permanent: false,
                        detail: scrub(&error_chain(&e), to),
                    })
            }
        }
    }
}

fn smtp(
    settings: &SmtpSettings,
    hello: &str,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailerError> {
    let tls = |host: &str| {
        TlsParameters::new(host.to_owned()).map_err(|e| MailerError(format!("TLS: {e}")))
    };
    let tls = match settings.security {
        SmtpSecurity::StartTls => Tls::Required(tls(&settings.host)?),
        SmtpSecurity::ImplicitTls => Tls::Wrapper(tls(&settings.host)?),
        SmtpSecurity::None => Tls::None,
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
        .port(settings.port)
        .tls(tls)
        .timeout(Some(settings.timeout))
        .hello_name(ClientId::Domain(hello.to_owned()));
    if let Some((user, password)) = &settings.credentials {
        builder = builder.credentials(Credentials::new(user.clone(), password.expose().clone()));
    }
    Ok(builder.build())
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Why a message could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("the recipient's address is not one the mail library accepts")]
    Address,
    #[error("the message could not be built: {0}")]
    Message(String),
}

/// The message: `multipart/alternative` with the text and the HTML. Its `Message-ID` is the outbox row's id,
/// the same at every attempt, so a receiving system can tell a repeat from a new message.
pub fn build_message(
    from: &Mailbox,
    to: &Sensitive<String>,
    message_id: &str,
    shop_domain: &str,
    rendered: Rendered,
) -> Result<Message, BuildError> {
    let address = lettre::Address::from_str(to.expose()).map_err(|_| BuildError::Address)?;
    Message::builder()
        .from(from.clone())
        .to(Mailbox::new(None, address))
        .subject(rendered.subject)
        .message_id(Some(format!("<{message_id}@{shop_domain}>")))
        .multipart(MultiPart::alternative_plain_html(
            rendered.text,
            rendered.html,
        ))
        .map_err(|e| BuildError::Message(scrub(&e.to_string(), to.expose())))
}

/// An error and its causes on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `text` without `address` and without any word that holds an `@` (another address quoted back), on one
/// line, at most 300 characters.
pub fn scrub(text: &str, address: &str) -> String {
    let mut text = text.to_owned();
    if !address.trim().is_empty() {
        text = replace_ignoring_case(&text, address.trim(), "[redacted]");
    }
    let words: Vec<String> = text
        .split_whitespace()
        .map(|word| {
            if word.contains('@') {
                "[redacted]".to_owned()
            } else {
                word.to_owned()
            }
        })
        .collect();
    let mut out = words.join(" ");
    if out.chars().count() > 300 {
        out = out.chars().take(300).collect::<String>() + "…";
    }
    out
}

fn replace_ignoring_case(text: &str, needle: &str, with: &str) -> String {
    let lower_text = text.to_lowercase();
    let lower_needle = needle.to_lowercase();
    if lower_text.len() != text.len() || lower_needle.is_empty() {
        // Lower-casing changed byte lengths (rare scripts): fall back to the exact match.
        return text.replace(needle, with);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    while let Some(found) = lower_text[rest..].find(&lower_needle) {
        let at = rest + found;
        out.push_str(&text[rest..at]);
        out.push_str(with);
        rest = at + lower_needle.len();
    }
    out.push_str(&text[rest..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_takes_out_every_address() {
        let to = "Jo.Bloggs@Example.com";
        assert_eq!(
            scrub(
                "permanent error (550): 5.1.1 <jo.bloggs@example.com>: Recipient address rejected",
                to
            ),
            "permanent error (550): 5.1.1 <[redacted]>: Recipient address rejected"
        );
        assert_eq!(
            scrub("user jo.bloggs@example.com\r\nand other@x.org\tquoted", to),
            "user [redacted] and [redacted] quoted"
        );
        assert_eq!(scrub(&"x ".repeat(400), to).chars().count(), 301);
        assert_eq!(scrub("no address here", ""), "no address here");
    }

    #[test]
    fn the_message_has_a_text_and_an_html_part_and_a_stable_id() {
        let from = Mailbox::from_str("Shop <shop@shop.example.com>").unwrap();
        let to = Sensitive::new("jo@example.com".to_owned());
        let message = build_message(
            &from,
            &to,
            "0193-row",
            "shop.example.com",
            Rendered {
                subject: "Hello".into(),
                text: "plain words".into(),
                html: "<p>html words</p>".into(),
            },
        )
        .unwrap();
        let raw = String::from_utf8(message.formatted()).unwrap();
        assert!(
            raw.contains("Message-ID: <0193-row@shop.example.com>"),
            "{raw}"
        );
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains("text/plain") && raw.contains("text/html"));
        let bad = Sensitive::new("not an address".to_owned());
        assert_eq!(
            build_message(
                &from,
                &bad,
                "id",
                "shop.example.com",
                Rendered {
                    subject: String::new(),
                    text: String::new(),
                    html: String::new()
                }
            )
            .unwrap_err(),
            BuildError::Address
        );
    }
}
