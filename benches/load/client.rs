//! shopd's API as the harness uses it: signup through the fake Twilio, login, refresh; and the closed-loop
//! login generator of scenario (f).
//!
//! shopd limits texts (30 an hour) and logins (60 a minute) per client address, as it should. Every client
//! here therefore connects from an address of its own in 127.0.0.0/8 (all of it is loopback on Linux), and
//! moves to a fresh one well before the limit: the load is still sent only to 127.0.0.1.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

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

    /// A client with one keep-alive connection from a fresh source address.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .local_address(self.next())
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("a reqwest client")
    }
}

/// shopd, seen from outside.
#[derive(Clone)]
pub struct Shop {
    pub base: String,
    pub addresses: SourceAddresses,
}

/// A token pair.
pub struct Pair {
    pub access: String,
    pub refresh: String,
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
    })
}

async fn post(
    client: &reqwest::Client,
    url: String,
    body: Value,
    want: u16,
) -> anyhow::Result<Value> {
    let response = client.post(&url).json(&body).send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    if status != want {
        bail!("POST {url}: {status} {text}");
    }
    Ok(serde_json::from_str(&text)?)
}

impl Shop {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Signs a customer up (code read from the fake Twilio) and returns its first session's pair.
    pub async fn sign_up(
        &self,
        client: &reqwest::Client,
        twilio: &FakeTwilio,
        phone: &str,
    ) -> anyhow::Result<Pair> {
        let started = post(
            client,
            self.url("/v1/auth/signup"),
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
            self.url("/v1/auth/signup/verify"),
            json!({"verification_id": verification_id, "code": code}),
            201,
        )
        .await?;
        pair(&verified)
    }

    pub async fn log_in(&self, client: &reqwest::Client, phone: &str) -> anyhow::Result<Pair> {
        let body = post(
            client,
            self.url("/v1/auth/login"),
            json!({"phone": phone, "password": PASSWORD}),
            200,
        )
        .await?;
        pair(&body)
    }

    pub async fn refresh(&self, client: &reqwest::Client, token: &str) -> anyhow::Result<Pair> {
        let body = post(
            client,
            self.url("/v1/auth/refresh"),
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
        phones: Arc<Vec<String>>,
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
                    let client = shop.addresses.client();
                    for _ in 0..PER_ADDRESS {
                        let phone = &phones[i % phones.len()];
                        i += connections;
                        let sent = Instant::now();
                        let result = tokio::time::timeout_at(
                            deadline.into(),
                            client
                                .post(shop.url("/v1/auth/login"))
                                .json(&json!({"phone": phone, "password": PASSWORD}))
                                .send(),
                        )
                        .await;
                        let Ok(result) = result else { break 'outer };
                        // The body is read to the end (the connection is reused), then timed.
                        let status = match result {
                            Ok(r) => {
                                let s = r.status().as_u16();
                                let _ = r.bytes().await;
                                Some(s)
                            }
                            Err(_) => None,
                        };
                        let took = sent.elapsed();
                        if Instant::now() > deadline {
                            break 'outer;
                        }
                        match status {
                            Some(200) => latencies.push(took),
                            other => {
                                failures += 1;
                                first_failure.get_or_insert(format!("{other:?}"));
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
