//! A real SMTP server on 127.0.0.1 for the e-mail tests: a TCP socket speaking RFC 5321 (EHLO/HELO, MAIL,
//! RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT; no TLS, no AUTH). It keeps what it receives, can be taken
//! down and brought back on the same port, and can refuse recipients as a real server does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One message as the server received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The envelope: `MAIL FROM` and every accepted `RCPT TO`.
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent after `DATA`, dot-unstuffed, lines ending in CRLF.
    pub data: String,
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    reject_recipients: AtomicBool,
}

pub struct FakeSmtp {
    pub port: u16,
    shared: Arc<Shared>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl FakeSmtp {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Self {
            port,
            shared,
            accept: Mutex::new(Some(accept)),
        }
    }

    /// The `SMTP_URL` of this server (plain: `tls=none`).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}?tls=none", self.port)
    }

    /// Takes the server down: the port refuses connections, and open conversations are cut.
    pub async fn stop(&self) {
        let task = self.accept.lock().unwrap().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Brings the server back on the same port.
    pub async fn resume(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("the port is free again");
        let task = tokio::spawn(accept_loop(listener, self.shared.clone()));
        *self.accept.lock().unwrap() = Some(task);
    }

    /// From now on every `RCPT TO` gets `550 5.1.1 <address>: Recipient address rejected`.
    pub fn reject_recipients(&self, reject: bool) {
        self.shared
            .reject_recipients
            .store(reject, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Waits up to 10 s until at least `n` messages arrived, and returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let received = self.received();
            if received.len() >= n {
                return received;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{n} message(s) expected, {} arrived",
                received.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut conversations = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        conversations.spawn(converse(stream, shared.clone()));
        while conversations.try_join_next().is_some() {}
    }
}

async fn converse(stream: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 fake-smtp ESMTP ready\r\n").await?;
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end_matches(['\r', '\n']);
        let upper = command.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO ") {
            "250-fake-smtp greets you\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 10485760\r\n"
                .into()
        } else if upper.starts_with("HELO ") {
            "250 fake-smtp\r\n".into()
        } else if upper.starts_with("MAIL FROM:") {
            from = Some(angle_address(&command[10..]));
            to.clear();
            "250 2.1.0 OK\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            let address = angle_address(&command[8..]);
            if from.is_none() {
                "503 5.5.1 MAIL first\r\n".into()
            } else if shared.reject_recipients.load(Ordering::SeqCst) {
                format!("550 5.1.1 <{address}>: Recipient address rejected: no such user\r\n")
            } else {
                to.push(address);
                "250 2.1.5 OK\r\n".into()
            }
        } else if upper == "DATA" {
            if from.is_none() || to.is_empty() {
                "503 5.5.1 no valid recipients\r\n".into()
            } else {
                write
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    let text = line.trim_end_matches(['\r', '\n']);
                    if text == "." {
                        break;
                    }
                    data.push_str(text.strip_prefix('.').unwrap_or(text));
                    data.push_str("\r\n");
                }
                shared.received.lock().unwrap().push(Received {
                    from: from.take().unwrap_or_default(),
                    to: std::mem::take(&mut to),
                    data,
                });
                "250 2.0.0 queued\r\n".into()
            }
        } else if upper == "RSET" {
            from = None;
            to.clear();
            "250 2.0.0 OK\r\n".into()
        } else if upper == "NOOP" {
            "250 2.0.0 OK\r\n".into()
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(());
        } else {
            "502 5.5.2 command not recognized\r\n".into()
        };
        write.write_all(reply.as_bytes()).await?;
    }
}

/// `<a@b> SIZE=1` → `a@b`.
fn angle_address(text: &str) -> String {
    let text = text.trim();
    match (text.find('<'), text.find('>')) {
        (Some(open), Some(close)) if open < close => text[open + 1..close].to_owned(),
        _ => text.split_whitespace().next().unwrap_or("").to_owned(),
    }
}

/// A received message taken apart: its headers and its text and HTML parts, decoded.
#[derive(Debug)]
pub struct Mail {
    pub headers: Vec<(String, String)>,
    pub text: String,
    pub html: String,
    pub content_type: String,
}

impl Mail {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Received {
    /// Parses a `multipart/alternative` message with a text and an HTML part.
    pub fn parse(&self) -> Mail {
        let (headers, body) = split_headers(&self.data);
        let content_type = find(&headers, "content-type").unwrap_or_default();
        let boundary = content_type
            .split(';')
            .find_map(|p| p.trim().strip_prefix("boundary="))
            .map(|b| b.trim_matches('"').to_owned())
            .expect("a multipart message with a boundary");
        let mut text = None;
        let mut html = None;
        for part in body.split(&format!("--{boundary}")).skip(1) {
            if part.starts_with("--") {
                break;
            }
            let (part_headers, part_body) = split_headers(part.trim_start_matches("\r\n"));
            let kind = find(&part_headers, "content-type").unwrap_or_default();
            let encoding = find(&part_headers, "content-transfer-encoding")
                .unwrap_or_else(|| "7bit".into())
                .to_ascii_lowercase();
            let decoded =
                decode(part_body.trim_end_matches("\r\n"), &encoding).replace("\r\n", "\n");
            if kind.starts_with("text/plain") {
                text = Some(decoded);
            } else if kind.starts_with("text/html") {
                html = Some(decoded);
            }
        }
        Mail {
            headers,
            text: text.expect("a text/plain part"),
            html: html.expect("a text/html part"),
            content_type,
        }
    }
}

fn find(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

/// Headers (unfolded) and the body after the first empty line.
fn split_headers(text: &str) -> (Vec<(String, String)>, &str) {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    (headers, body)
}

fn decode(body: &str, encoding: &str) -> String {
    match encoding {
        "quoted-printable" => {
            let bytes = body.as_bytes();
            let mut out = Vec::with_capacity(bytes.len());
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'=' {
                    if bytes[i + 1..].starts_with(b"\r\n") {
                        i += 3;
                        continue;
                    }
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).expect("quoted-printable hex"));
                    i += 3;
                } else {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
            String::from_utf8(out).expect("UTF-8")
        }
        "base64" => {
            let compact: String = body.split_whitespace().collect();
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .expect("base64"),
            )
            .expect("UTF-8")
        }
        _ => body.to_owned(),
    }
}
