//! E-mail settings: `SMTP_URL` (or `.eml` files in development), `EMAIL_FROM`, `STAFF_ALERT_EMAIL`, and the
//! outbox sender's timing. See `docs/notifications.md`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use super::{ConfigError, Vars, duration};
use crate::domain::Sensitive;

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtp://`: plain connection upgraded with STARTTLS; a server that does not offer it is refused.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    ImplicitTls,
    /// `smtp://…?tls=none`: no encryption at all. Development and tests only; refused in production and
    /// with credentials.
    None,
}

/// Where and how mail is handed over for delivery.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// User name and password for SMTP AUTH, from the URL.
    pub credentials: Option<(String, Sensitive<String>)>,
    /// For each step of a conversation with the server (`SMTP_TIMEOUT`).
    pub timeout: Duration,
}

/// Printable without the password.
impl fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.security {
            SmtpSecurity::ImplicitTls => "smtps",
            _ => "smtp",
        };
        let user = match &self.credentials {
            Some((user, _)) => format!("{user}:[redacted]@"),
            None => String::new(),
        };
        let tls = if self.security == SmtpSecurity::None {
            "?tls=none"
        } else {
            ""
        };
        write!(
            f,
            "{scheme}://{user}{}:{}{tls} (timeout {:?})",
            self.host, self.port, self.timeout
        )
    }
}

pub const SUBMISSION_PORT: u16 = 587;
pub const SUBMISSIONS_PORT: u16 = 465;

impl SmtpSettings {
    /// Parses `smtp://[user:password@]host[:port][?tls=required|none]` or `smtps://[user:password@]host[:port]`.
    /// The error never quotes the URL, which may hold a password.
    pub fn parse(text: &str, timeout: Duration) -> Result<Self, String> {
        let url = url::Url::parse(text.trim()).map_err(|e| format!("is not a URL ({e})"))?;
        let implicit = match url.scheme() {
            "smtp" => false,
            "smtps" => true,
            _ => {
                return Err("must start with smtp:// (STARTTLS) or smtps:// (implicit TLS)".into());
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("names no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if !matches!(url.path(), "" | "/") {
            return Err("has a path; write smtp://host:port".into());
        }
        if url.fragment().is_some() {
            return Err("has a fragment".into());
        }
        let mut tls = None;
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "tls" if tls.is_none() => tls = Some(value.into_owned()),
                "tls" => return Err("names `tls` twice".into()),
                other => {
                    return Err(format!(
                        "has an unknown parameter `{other}` (only tls=required or tls=none)"
                    ));
                }
            }
        }
        let security = match (implicit, tls.as_deref()) {
            (true, None) => SmtpSecurity::ImplicitTls,
            (true, Some(_)) => {
                return Err("smtps:// is always TLS; `tls=` belongs to smtp:// only".into());
            }
            (false, None | Some("required")) => SmtpSecurity::StartTls,
            (false, Some("none")) => SmtpSecurity::None,
            (false, Some(other)) => {
                return Err(format!(
                    "has tls={other}; use tls=required (the default) or tls=none"
                ));
            }
        };
        let decode = |s: &str| {
            percent_decode(s).ok_or_else(|| "has credentials that are not valid UTF-8".to_owned())
        };
        let credentials = match (url.username(), url.password()) {
            ("", None) => None,
            ("", Some(_)) => return Err("has a password but no user name".into()),
            (_, None) => return Err("has a user name but no password".into()),
            (user, Some(password)) => Some((decode(user)?, Sensitive::new(decode(password)?))),
        };
        if credentials.is_some() && security == SmtpSecurity::None {
            return Err(
                "has credentials with tls=none, which would send the password in clear".into(),
            );
        }
        let port = url.port().unwrap_or(if implicit {
            SUBMISSIONS_PORT
        } else {
            SUBMISSION_PORT
        });
        Ok(Self {
            host,
            port,
            security,
            credentials,
            timeout,
        })
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Where e-mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailTransport {
    Smtp(SmtpSettings),
    /// Development: each message is written as an `.eml` file into this folder (`SHOPD_DATA_DIR/outbox`).
    Files(PathBuf),
}

#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub transport: EmailTransport,
    /// The `From` of every message: an address, or `Name <address>`.
    pub from: String,
    /// Where new paid orders are announced; none, and those alerts are dropped.
    pub staff_alert: Option<Sensitive<String>>,
    /// The pause after the first failed attempt; it doubles with each failure up to `retry_cap`.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// How often the sender looks for due messages when it found none.
    pub poll_interval: Duration,
}

pub(super) fn email_config(
    vars: &Vars,
    production: bool,
    shop_domain: &str,
    data_dir: &Path,
) -> Result<EmailConfig, ConfigError> {
    let timeout = duration(vars, "SMTP_TIMEOUT", "30s")?;
    if !(Duration::from_secs(1)..=Duration::from_secs(300)).contains(&timeout) {
        return Err(ConfigError::new("SMTP_TIMEOUT", "must be from 1s to 5m"));
    }
    let transport = match vars.get("SMTP_URL") {
        None if production => {
            return Err(ConfigError::new(
                "SMTP_URL",
                "is required when SHOPD_ENV=production (smtp://user:password@host:587 or smtps://…)",
            ));
        }
        None => EmailTransport::Files(data_dir.join("outbox")),
        Some(text) => {
            let smtp =
                SmtpSettings::parse(text, timeout).map_err(|e| ConfigError::new("SMTP_URL", e))?;
            if production && smtp.security == SmtpSecurity::None {
                return Err(ConfigError::new(
                    "SMTP_URL",
                    "tls=none sends mail unencrypted and is refused in production",
                ));
            }
            EmailTransport::Smtp(smtp)
        }
    };
    let from = vars
        .get("EMAIL_FROM")
        .map(str::to_owned)
        .unwrap_or_else(|| format!("shop@{shop_domain}"));
    if lettre::message::Mailbox::from_str(&from).is_err() {
        return Err(ConfigError::new(
            "EMAIL_FROM",
            "is not an address like shop@example.com or `Shop <shop@example.com>`",
        ));
    }
    let staff_alert = match vars.get("STAFF_ALERT_EMAIL") {
        None => None,
        Some(text) => {
            if lettre::Address::from_str(text).is_err()
                || crate::domain::Email::parse(text).is_err()
            {
                return Err(ConfigError::new(
                    "STAFF_ALERT_EMAIL",
                    "is not an e-mail address like orders@example.com",
                ));
            }
            Some(Sensitive::new(text.to_owned()))
        }
    };
    let retry_base = duration(vars, "EMAIL_RETRY_BASE", "30s")?;
    let retry_cap = duration(vars, "EMAIL_RETRY_CAP", "1h")?;
    if retry_base.is_zero() {
        return Err(ConfigError::new("EMAIL_RETRY_BASE", "must be more than 0"));
    }
    if retry_cap < retry_base {
        return Err(ConfigError::new(
            "EMAIL_RETRY_CAP",
            "must be at least EMAIL_RETRY_BASE",
        ));
    }
    let poll_interval = duration(vars, "EMAIL_POLL_INTERVAL", "1s")?;
    if poll_interval.is_zero() {
        return Err(ConfigError::new(
            "EMAIL_POLL_INTERVAL",
            "must be more than 0",
        ));
    }
    Ok(EmailConfig {
        transport,
        from,
        staff_alert,
        retry_base,
        retry_cap,
        poll_interval,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(30);

    #[test]
    fn smtp_urls() {
        let s = SmtpSettings::parse("smtp://mailer:p%40ss%3Aword@mail.example.com", T).unwrap();
        assert_eq!(s.host, "mail.example.com");
        assert_eq!(s.port, 587);
        assert_eq!(s.security, SmtpSecurity::StartTls);
        let (user, password) = s.credentials.clone().unwrap();
        assert_eq!(
            (user.as_str(), password.expose().as_str()),
            ("mailer", "p@ss:word")
        );
        assert!(!format!("{s:?}").contains("p@ss"));
        assert!(!format!("{s:?}").contains("ss%3A"));

        let s = SmtpSettings::parse("smtps://u:p@mail.example.com", T).unwrap();
        assert_eq!((s.port, s.security), (465, SmtpSecurity::ImplicitTls));
        let s = SmtpSettings::parse("smtp://127.0.0.1:2525?tls=none", T).unwrap();
        assert_eq!((s.port, s.security), (2525, SmtpSecurity::None));
        let s = SmtpSettings::parse("smtp://mail.example.com:25?tls=required", T).unwrap();
        assert_eq!((s.port, s.security), (25, SmtpSecurity::StartTls));
        let s = SmtpSettings::parse("smtp://[::1]:2525?tls=none", T).unwrap();
        assert_eq!(s.host, "::1");

        for bad in [
            "",
            "mail.example.com",
            "http://mail.example.com",
            "smtp://",
            "smtp://mail.example.com?tls=opportunistic",
            "smtp://mail.example.com?tls=none&tls=none",
            "smtp://mail.example.com?timeout=5s",
            "smtps://mail.example.com?tls=none",
            "smtp://u:secret@mail.example.com?tls=none",
            "smtp://:secret@mail.example.com",
            "smtp://u@mail.example.com",
            "smtp://mail.example.com/helo",
        ] {
            let error = SmtpSettings::parse(bad, T).expect_err(bad);
            assert!(!error.contains("secret"), "{error}");
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%2"), Some("a b%2".into()));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%C3%A9"), Some("é".into()));
        assert_eq!(percent_decode("%ff"), None);
    }
}
