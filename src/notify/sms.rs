//! Text messages: the `SmsSender` seam, a development sender that only logs, and a Twilio sender.
//!
//! A phone number and a message body (which may hold a one-time code) are personal or secret: they travel in
//! `Sensitive` and reach no log, except through `LogSender`, which exists for development and writes the body
//! on purpose (the phone masked).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::StatusCode;
use url::Url;

use crate::domain::{Sensitive, mask_e164};

/// One text message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsMessage {
    /// The recipient in E.164 form, like `+447700900123`.
    pub to: Sensitive<String>,
    /// The text; it may hold a one-time code.
    pub body: Sensitive<String>,
}

impl SmsMessage {
    pub fn new(to: impl Into<String>, body: impl Into<String>) -> Self {
        Self {
            to: Sensitive::new(to.into()),
            body: Sensitive::new(body.into()),
        }
    }
}

/// Why a message was not sent. The text names neither the phone nor the body.
#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    /// The provider could not be reached or kept failing; trying again later may work.
    #[error("SMS provider unavailable: {0}")]
    Unavailable(String),
    /// The provider answered that it will not send this message (bad credentials, bad number, …).
    #[error("SMS provider refused the message: {0}")]
    Refused(String),
}

/// Something that sends text messages. Object safe: features hold an `Arc<dyn SmsSender>`.
pub trait SmsSender: Send + Sync + 'static {
    fn send<'a>(
        &'a self,
        message: &'a SmsMessage,
    ) -> Pin<Box<dyn Future<Output = Result<(), SmsError>> + Send + 'a>>;
}

/// Development only: writes the text to the log instead of sending it. The ONLY place a code may ever appear
/// in a log; production must never be wired to it. The phone is masked (`domain::mask_e164`), the body is in full.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogSender;

impl SmsSender for LogSender {
    fn send<'a>(
        &'a self,
        message: &'a SmsMessage,
    ) -> Pin<Box<dyn Future<Output = Result<(), SmsError>> + Send + 'a>> {
        Box::pin(async move {
            tracing::info!(
                to = %mask_e164(message.to.expose()),
                body = ?message.body.expose(),
                "SMS (development: logged, not sent)"
            );
            Ok(())
        })
    }
}

pub const TWILIO_API_BASE: &str = "https://api.twilio.com";

/// How `TwilioSender` reaches a Twilio account. Debug shows neither the token nor a password in `api_base`.
#[derive(Clone)]
pub struct TwilioConfig {
    pub account_sid: String,
    pub auth_token: Sensitive<String>,
    /// The sending number (E.164) or messaging sender id.
    pub from: String,
    /// `https://api.twilio.com` (`TWILIO_API_BASE`) unless a test points it elsewhere.
    pub api_base: Url,
}

impl TwilioConfig {
    /// A configuration for the real Twilio API.
    pub fn new(
        account_sid: impl Into<String>,
        auth_token: impl Into<String>,
        from: impl Into<String>,
    ) -> Self {
        Self {
            account_sid: account_sid.into(),
            auth_token: Sensitive::new(auth_token.into()),
            from: from.into(),
            api_base: Url::parse(TWILIO_API_BASE).expect("the Twilio API base is a URL"),
        }
    }
}

impl fmt::Debug for TwilioConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioConfig")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &self.auth_token)
            .field("from", &self.from)
            .field("api_base", &without_credentials(&self.api_base))
            .finish()
    }
}

/// The time to open a connection to Twilio, and the time for a whole attempt (connect, send, answer).
pub const TWILIO_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
pub const TWILIO_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_ATTEMPTS: u32 = 3;
/// The pause before the 2nd and the 3rd attempt.
const BACKOFF: [Duration; 2] = [Duration::from_millis(200), Duration::from_millis(400)];
/// How much of an error answer is read for Twilio's error code and message.
const ERROR_BODY_LIMIT: usize = 16 * 1024;

/// Sends through Twilio's Messages API (`POST /2010-04-01/Accounts/{sid}/Messages.json`, form-encoded `To`,
/// `From`, `Body`, HTTP basic auth). Up to 3 attempts, 200 ms then 400 ms apart, repeating only after a
/// connection error, a timeout, a 429 or a 5xx; any other 4xx is `Refused` at once.
///
/// A timed-out attempt may still have been delivered, so a retry after a timeout can send the text twice.
#[derive(Clone)]
pub struct TwilioSender {
    /// Built at the first text, not at start: loading the system's root certificates costs about 5 MiB of
    /// resident memory, which an instance that sends no text never needs.
    client: Arc<OnceLock<reqwest::Client>>,
    connect_timeout: Duration,
    timeout: Duration,
    account_sid: String,
    auth_token: Sensitive<String>,
    from: String,
    api_base: Url,
    /// None when `api_base` cannot take a path (like `mailto:`): every send is then `Unavailable`.
    messages_url: Option<Url>,
}

impl fmt::Debug for TwilioSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioSender")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &self.auth_token)
            .field("from", &self.from)
            .field("api_base", &without_credentials(&self.api_base))
            .finish_non_exhaustive()
    }
}

/// The URL as text without a user name or password.
fn without_credentials(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.into()
}

impl TwilioSender {
    /// A sender with a 3 s connect timeout and a 10 s timeout for each attempt.
    ///
    /// Its HTTP client is built at the first text; when that fails, the text is `Unavailable`.
    pub fn new(config: TwilioConfig) -> Self {
        Self::with_timeouts(config, TWILIO_CONNECT_TIMEOUT, TWILIO_TIMEOUT)
    }

    /// A sender with other timeouts: `connect` to open a connection, `total` for each whole attempt.
    ///
    /// Its HTTP client is built at the first text; when that fails, the text is `Unavailable`.
    pub fn with_timeouts(config: TwilioConfig, connect: Duration, total: Duration) -> Self {
        let mut messages_url = config.api_base.clone();
        let takes_path = messages_url
            .path_segments_mut()
            .map(|mut segments| {
                segments.pop_if_empty().extend([
                    "2010-04-01",
                    "Accounts",
                    config.account_sid.as_str(),
                    "Messages.json",
                ]);
            })
            .is_ok();
        let messages_url = takes_path.then_some(messages_url);
        Self {
            client: Arc::default(),
            connect_timeout: connect,
            timeout: total,
            account_sid: config.account_sid,
            auth_token: config.auth_token,
            from: config.from,
            api_base: config.api_base,
            messages_url,
        }
    }

    fn client(&self) -> Result<&reqwest::Client, SmsError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let client = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("shopd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                tracing::error!(error = %e, "the HTTP client for Twilio cannot be built");
                SmsError::Unavailable("the HTTP client cannot be built".into())
            })?;
        Ok(self.client.get_or_init(|| client))
    }

    async fn deliver(&self, message: &SmsMessage) -> Result<(), SmsError> {
        let Some(url) = &self.messages_url else {
            tracing::error!("the Twilio API base URL cannot take a path; no SMS sent");
            return Err(SmsError::Unavailable(
                "the Twilio API base URL cannot take a path".into(),
            ));
        };
        let form = [
            ("To", message.to.expose().as_str()),
            ("From", self.from.as_str()),
            ("Body", message.body.expose().as_str()),
        ];
        let mut last_failure = String::new();
        for attempt in 1..=MAX_ATTEMPTS {
            if attempt > 1 {
                tokio::time::sleep(BACKOFF[(attempt - 2) as usize]).await;
            }
            let sent = self
                .client()?
                .post(url.clone())
                .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
                .form(&form)
                .send()
                .await;
            match sent {
                Ok(response) => {
                    let status = response.status();
                    if status.is_success() {
                        tracing::info!(attempt, status = status.as_u16(), "SMS accepted by Twilio");
                        return Ok(());
                    }
                    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                        tracing::warn!(
                            attempt,
                            status = status.as_u16(),
                            "Twilio did not take the SMS"
                        );
                        last_failure = format!("HTTP {}", status.as_u16());
                        continue;
                    }
                    tracing::warn!(attempt, status = status.as_u16(), "Twilio refused the SMS");
                    let detail = twilio_error(response, message).await;
                    return Err(if status.is_client_error() {
                        SmsError::Refused(format!("HTTP {}{detail}", status.as_u16()))
                    } else {
                        SmsError::Unavailable(format!(
                            "unexpected HTTP {}{detail}",
                            status.as_u16()
                        ))
                    });
                }
                Err(error) if error.is_timeout() || error.is_connect() => {
                    let kind = if error.is_timeout() {
                        "timed out"
                    } else {
                        "connection failed"
                    };
                    tracing::warn!(attempt, error = kind, "Twilio did not answer");
                    last_failure = kind.to_owned();
                }
                Err(error) => {
                    tracing::warn!(attempt, error = "request failed", "Twilio did not answer");
                    return Err(SmsError::Unavailable(error_chain(&error.without_url())));
                }
            }
        }
        tracing::warn!(
            attempts = MAX_ATTEMPTS,
            "SMS not sent: Twilio unavailable after every attempt"
        );
        Err(SmsError::Unavailable(format!(
            "no success after {MAX_ATTEMPTS} attempts (last: {last_failure})"
        )))
    }
}

impl SmsSender for TwilioSender {
    fn send<'a>(
        &'a self,
        message: &'a SmsMessage,
    ) -> Pin<Box<dyn Future<Output = Result<(), SmsError>> + Send + 'a>> {
        Box::pin(self.deliver(message))
    }
}

/// `, Twilio error {code}: {message}` from a Twilio error answer, with the phone, the body and any long run of
/// digits taken out of the message (Twilio quotes the number in some, like 21211); empty when there is none.
async fn twilio_error(mut response: reqwest::Response, message: &SmsMessage) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = ERROR_BODY_LIMIT - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= ERROR_BODY_LIMIT {
            break;
        }
    }
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return String::new();
    };
    let code = json.get("code").and_then(serde_json::Value::as_u64);
    let text = json
        .get("message")
        .and_then(serde_json::Value::as_str)
        .map(|text| scrub(text, message));
    match (code, text) {
        (Some(code), Some(text)) => format!(", Twilio error {code}: {text}"),
        (Some(code), None) => format!(", Twilio error {code}"),
        (None, Some(text)) => format!(", Twilio: {text}"),
        (None, None) => String::new(),
    }
}

/// `text` without the message's phone or body, with every number of 6 digits or more (phones in any layout,
/// codes) replaced by `[redacted]`, and at most 200 characters long.
fn scrub(text: &str, message: &SmsMessage) -> String {
    let mut text = text.to_owned();
    for secret in [message.body.expose(), message.to.expose()] {
        if !secret.trim().is_empty() {
            text = text.replace(secret.as_str(), "[redacted]");
        }
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let starts_number = chars[i].is_ascii_digit()
            || (matches!(chars[i], '+' | '(')
                && chars.get(i + 1).is_some_and(char::is_ascii_digit));
        if !starts_number {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let (mut j, mut end, mut digits) = (i, i, 0);
        while j < chars.len() && (chars[j].is_ascii_digit() || " +-().".contains(chars[j])) {
            if chars[j].is_ascii_digit() {
                digits += 1;
                end = j + 1;
            }
            j += 1;
        }
        if digits >= 6 {
            out.push_str("[redacted]");
        } else {
            out.extend(&chars[i..end]);
        }
        i = end;
    }
    if out.chars().count() > 200 {
        out = out.chars().take(200).collect::<String>() + "…";
    }
    out
}

/// An error and its causes on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn scrub_takes_out_the_phone_the_body_and_long_numbers() {
        let message = SmsMessage::new("+447700900123", "Your code is 123456 #123456");
        assert_eq!(
            scrub(
                "The 'To' number +447700900123 is not a valid phone number.",
                &message
            ),
            "The 'To' number [redacted] is not a valid phone number."
        );
        assert_eq!(
            scrub(
                "Number +44 (7700) 900-123 and 447700900123, error 21211.",
                &message
            ),
            "Number [redacted] and [redacted], error 21211."
        );
        assert_eq!(
            scrub("Body 'Your code is 123456 #123456' too long", &message),
            "Body '[redacted]' too long"
        );
        assert_eq!(scrub(&"x".repeat(300), &message).chars().count(), 201);
    }

    #[test]
    fn debug_never_shows_the_token_the_phone_or_the_body() {
        let mut config = TwilioConfig::new("AC123", "s3cr3t-token", "+15005550006");
        config.api_base = Url::parse("https://user:pass@api.example.com/").unwrap();
        let sender = TwilioSender::new(config.clone());
        let message = SmsMessage::new("+447700900123", "code 654321");
        for text in [
            format!("{sender:?}"),
            format!("{config:?}"),
            format!("{message:?}"),
        ] {
            for secret in ["s3cr3t-token", "pass", "447700900123", "654321"] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
        }
        assert!(format!("{sender:?}").contains("AC123"));
    }

    #[test]
    fn the_messages_url_follows_the_api_base() {
        let mut config = TwilioConfig::new("AC123", "t", "+15005550006");
        let real = TwilioSender::new(config.clone());
        assert_eq!(
            real.messages_url.unwrap().as_str(),
            "https://api.twilio.com/2010-04-01/Accounts/AC123/Messages.json"
        );
        config.api_base = Url::parse("http://127.0.0.1:9/twilio/").unwrap();
        assert_eq!(
            TwilioSender::new(config.clone())
                .messages_url
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9/twilio/2010-04-01/Accounts/AC123/Messages.json"
        );
        config.api_base = Url::parse("mailto:ops@example.com").unwrap();
        assert!(TwilioSender::new(config).messages_url.is_none());
    }

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Kept out of the integration tests' shared log capture, which must never hold a body.
    #[test]
    fn log_sender_logs_the_body_and_the_masked_phone_only() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let message = SmsMessage::new("+447700900123", "Your shop code is 482913 #482913");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let result = tracing::subscriber::with_default(subscriber, || {
            runtime.block_on(LogSender.send(&message))
        });
        assert!(result.is_ok());
        let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert!(logs.contains("Your shop code is 482913 #482913"), "{logs}");
        assert!(logs.contains("+44•••••••123"), "{logs}");
        assert!(!logs.contains("447700900123"), "{logs}");
    }
}
