//! shopd's API as the harness uses it: signup through the fake Twilio, login, refresh; and the closed-loop
//! login generator of scenario (f).
//!
//! shopd limits texts (30 an hour) and logins (60 a minute) per client address, as it should. Every client
//! here therefore connects from an address of its own in 127.0.0.0/8 (all of it is loopback on Linux), and
//! moves to a fresh one well before the limit: the load is still sent only to 127.0.0.1.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::measure::Measured;
use crate::twilio::FakeTwilio;

/// A strong password (zxcvbn ≥ 3) shared by every seeded customer.
pub const PASSWORD: &str = "correct horse battery staple";

/// Requests one source address may carry before the next: under both per-address limits.
pub const PER_ADDRESS: usize = 25;

/// Hands out loopback source addresses 127.1.0.1, 127.1.0.2, … never the same twice in a run.
#[derive(Clone, Default)]
pub struct SourceAddresses(Arc<AtomicU32>);

impl SourceAddresses {
    pub fn next(&self) -> IpAddr {
        loop {
            let n = self.0.fetch_add(1, Ordering::Relaxed);
            let [_, b, c, d] = n.to_be_bytes();
            if d != 0 && d != 255 {
                return IpAddr::V4(Ipv4Addr::new(127, 1u8.wrapping_add(b), c, d));
            }
        }
    }

    /// A client with one keep-alive connection to shopd at `port`, from a fresh source address.
    pub fn client(&self, port: u16) -> Client {
        Client {
            from: self.next(),
            to: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            stream: None,
            buf: Vec::with_capacity(4096),
        }
    }
}

/// A minimal HTTP/1.1 client over one keep-alive connection (reconnecting when it drops): cheap to make,
/// with a chosen source address, and light on the cores the server needs. It relies on what shopd always
/// sends: a Content-Length on every answer.
pub struct Client {
    from: IpAddr,
    to: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Client {
    /// `POST path` with a JSON body; the status and the body of the answer.
    pub async fn post_json(&mut self, path: &str, body: &str) -> anyhow::Result<(u16, &[u8])> {
        self.send(&crate::wrk::request("POST", path, &[], Some(body)))
            .await
    }

    /// A raw request (as `wrk::request` makes them); the status and the body of the answer.
    pub async fn send(&mut self, request: &str) -> anyhow::Result<(u16, &[u8])> {
        let result = self.round_trip(request.as_bytes()).await;
        if result.is_err() {
            self.stream = None;
        }
        let (status, start, end) = result?;
        Ok((status, &self.buf[start..end]))
    }

    async fn round_trip(&mut self, request: &[u8]) -> anyhow::Result<(u16, usize, usize)> {
        if self.stream.is_none() {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(self.from, 0))?;
            let stream = socket.connect(self.to).await?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut().expect("connected");
        stream.write_all(request).await?;
        self.buf.clear();
        let head_end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            read_more(stream, &mut self.buf).await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end])?;
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no status line")?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .context("an answer without Content-Length")?;
        let close = head.to_ascii_lowercase().contains("connection: close");
        while self.buf.len() < head_end + length {
            read_more(stream, &mut self.buf).await?;
        }
        if close {
            self.stream = None;
        }
        Ok((status, head_end, head_end + length))
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<()> {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk).await?;
    if n == 0 {
        bail!("the connection closed");
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// shopd, seen from outside.
#[derive(Clone)]
pub struct Shop {
    pub port: u16,
    pub addresses: SourceAddresses,
}

/// A token pair.
pub struct Pair {
    pub access: String,
    pub refresh: String,
    /// The device token of a sign-in with a second factor (signup's code): later logins send it.
    pub device: Option<String>,
}

/// A signed-up customer as the harness's phones know them.
#[derive(Debug, Clone)]
pub struct Customer {
    pub phone: String,
    pub device: String,
}

fn pair(body: &Value) -> anyhow::Result<Pair> {
    let get = |k: &str| {
        body[k]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no {k} in {body}"))
    };
    Ok(Pair {
        access: get("access_token")?,
        refresh: get("refresh_token")?,
        device: body["device_token"].as_str().map(str::to_owned),
    })
}

async fn post(client: &mut Client, path: &str, body: Value, want: u16) -> anyhow::Result<Value> {
    let (status, answer) = client.post_json(path, &body.to_string()).await?;
    if status != want {
        bail!("POST {path}: {status} {}", String::from_utf8_lossy(answer));
    }
    Ok(serde_json::from_slice(answer)?)
}

impl Shop {
    pub fn client(&self) -> Client {
        self.addresses.client(self.port)
    }

    /// Signs a customer up (code read from the fake Twilio) and returns its first session's pair.
    pub async fn sign_up(
        &self,
        client: &mut Client,
        twilio: &FakeTwilio,
        phone: &str,
    ) -> anyhow::Result<Pair> {
        let started = post(
            client,
            "/v1/auth/signup",
            json!({"phone": phone, "password": PASSWORD}),
            202,
        )
        .await?;
        let verification_id = started["verification_id"]
            .as_str()
            .context("no verification_id")?;
        let code = twilio
            .code_for(phone)
            .with_context(|| format!("no code was texted to {phone}"))?;
        let verified = post(
            client,
            "/v1/auth/signup/verify",
            json!({"verification_id": verification_id, "code": code}),
            201,
        )
        .await?;
        pair(&verified)
    }

    /// Registers a passkey for the customer signed in with `access` (just signed up: a fresh sign-in).
    pub async fn add_passkey(
        &self,
        client: &mut Client,
        access: &str,
    ) -> anyhow::Result<crate::sign_ins::soft_passkey::SoftCredential> {
        use crate::sign_ins::soft_passkey;
        let auth = format!("Bearer {access}");
        let begin = crate::wrk::request(
            "POST",
            "/v1/me/passkeys/begin",
            &[("Authorization", &auth)],
            Some("{}"),
        );
        let (status, body) = client.send(&begin).await?;
        if status != 201 {
            bail!("passkey begin: {status} {}", String::from_utf8_lossy(body));
        }
        let begun: Value = serde_json::from_slice(body)?;
        let how = soft_passkey::Behaviour::browser("https://shop.example.com");
        let (credential, kept) = soft_passkey::create(&begun["options"], &how);
        let finish = crate::wrk::request(
            "POST",
            "/v1/me/passkeys/finish",
            &[("Authorization", &auth)],
            Some(
                &json!({"ceremony_id": begun["ceremony_id"], "credential": credential}).to_string(),
            ),
        );
        let (status, body) = client.send(&finish).await?;
        if status != 201 {
            bail!("passkey finish: {status} {}", String::from_utf8_lossy(body));
        }
        Ok(kept)
    }

    pub async fn log_in(&self, client: &mut Client, customer: &Customer) -> anyhow::Result<Pair> {
        let body = post(
            client,
            "/v1/auth/login",
            json!({"phone": customer.phone, "password": PASSWORD, "device_token": customer.device}),
            200,
        )
        .await?;
        pair(&body)
    }

    pub async fn refresh(&self, client: &mut Client, token: &str) -> anyhow::Result<Pair> {
        let body = post(
            client,
            "/v1/auth/refresh",
            json!({"refresh_token": token}),
            200,
        )
        .await?;
        pair(&body)
    }

    /// Scenario (f): `connections` closed loops of `POST /v1/auth/login` for `duration`, each from its own
    /// source address (renewed every `PER_ADDRESS` logins), cycling over `phones`.
    pub async fn login_load(
        &self,
        phones: Arc<Vec<Customer>>,
        connections: usize,
        duration: Duration,
    ) -> Measured {
        let deadline = Instant::now() + duration;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..connections {
            let shop = self.clone();
            let phones = phones.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failures = 0u64;
                let mut first_failure = None;
                let mut i = c;
                'outer: loop {
                    let mut client = shop.client();
                    for _ in 0..PER_ADDRESS {
                        let customer = &phones[i % phones.len()];
                        i += connections;
                        let body = json!({"phone": customer.phone, "password": PASSWORD,
                                          "device_token": customer.device})
                        .to_string();
                        if Instant::now() >= deadline {
                            break 'outer;
                        }
                        let sent = Instant::now();
                        // A login still running at the deadline is waited for but not counted (wrk does not
                        // count those either): cut off, its hash could still be queued in shopd and weigh on
                        // the next scenario (seen as the hashing memory held into the memory scenario).
                        let result = client.post_json("/v1/auth/login", &body).await;
                        let took = sent.elapsed();
                        if Instant::now() > deadline {
                            break 'outer;
                        }
                        match result {
                            Ok((200, _)) => latencies.push(took),
                            other => {
                                failures += 1;
                                first_failure.get_or_insert_with(|| match other {
                                    Ok((status, body)) => {
                                        format!("{status} {}", String::from_utf8_lossy(body))
                                    }
                                    Err(e) => e.to_string(),
                                });
                            }
                        }
                    }
                }
                (latencies, failures, first_failure)
            }));
        }
        let mut latencies = Vec::new();
        let mut failures = 0;
        let mut first_failure = None;
        for task in tasks {
            if let Ok((l, f, first)) = task.await {
                latencies.extend(l);
                failures += f;
                first_failure = first_failure.or(first);
            }
        }
        let mut measured = Measured::from_latencies(latencies, failures, started.elapsed());
        if let Some(first) = first_failure {
            measured
                .notes
                .push(format!("{failures} logins failed (first: status {first})"));
        }
        measured
    }
}
