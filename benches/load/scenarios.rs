//! The scenarios of issue 10, in the order they run, with their targets.
//!
//! Adding one takes two steps: an entry in `SCENARIOS`, and an arm in `load_for` that prepares what it
//! sends (tokens, signed bodies, … through `Ctx`) and returns the load. Most scenarios are a `wrk` job with
//! `Script::Replay` of pre-formatted requests, which covers any method, header and body.

use std::sync::Arc;

use anyhow::bail;
use futures_util::future::join_all;

use crate::client::{PER_ADDRESS, Shop};
use crate::twilio::FakeTwilio;
use crate::wrk::{Script, WrkJob, request};

/// What a scenario is held to. Ratios are of scenario (a) measured in the same run.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    None,
    /// At least this share of (a), per database, and a p99 bound (ms) on SQLite.
    ShareOfBaseline {
        sqlite: f64,
        postgres: f64,
        sqlite_p99_ms: Option<f64>,
    },
    /// At least this many successful requests per second, per database.
    PerSecond {
        sqlite: f64,
        postgres: f64,
    },
    /// At least this share of the argon2 bound (cores ÷ one hash time).
    ShareOfArgon2Bound(f64),
    /// A p99 at most `factor` × the p99 of scenario `of` alone.
    P99Within {
        of: &'static str,
        factor: f64,
    },
    /// Peak resident memory of shopd at most this many MiB.
    PeakRssMib(f64),
}

/// Whether a scenario can run yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ready,
    /// Waiting for an endpoint; the text says which issue brings it and what the slot needs.
    Pending(&'static str),
}

pub struct Scenario {
    /// Like `a`, `b-me` (a stand-in for `b` until the real one exists) or `b-me@1000`.
    pub id: &'static str,
    pub title: &'static str,
    /// For the chart.
    pub short: &'static str,
    pub target: Target,
    pub status: Status,
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        id: "a",
        title: "baseline: GET / of examples/baseline.rs (framework ceiling)",
        short: "baseline GET /",
        target: Target::None,
        status: Status::Ready,
    },
    Scenario {
        id: "b",
        title: "GET /v1/orders/{id} with a valid access token",
        short: "GET /v1/orders/{id}",
        target: Target::ShareOfBaseline {
            sqlite: 0.30,
            postgres: 0.15,
            sqlite_p99_ms: Some(5.0),
        },
        status: Status::Pending(
            "orders issue: seed products (`shopd products import`) and one order per customer through \
             POST /v1/orders, then replay GET /v1/orders/{id} with each order's owner's access token",
        ),
    },
    Scenario {
        id: "b-me",
        title: "GET /v1/me with a valid access token (stand-in for b)",
        short: "GET /v1/me (stand-in for b)",
        target: Target::ShareOfBaseline {
            sqlite: 0.30,
            postgres: 0.15,
            sqlite_p99_ms: Some(5.0),
        },
        status: Status::Ready,
    },
    Scenario {
        id: "c",
        title: "POST /v1/orders, distinct Idempotency-Keys, enough stock",
        short: "POST /v1/orders",
        target: Target::PerSecond {
            sqlite: 2000.0,
            postgres: 1500.0,
        },
        status: Status::Pending(
            "orders issue: import a product with stock for every request (rate × duration), then replay \
             single-use POST /v1/orders requests, each with its own Idempotency-Key and a customer's token",
        ),
    },
    Scenario {
        id: "d",
        title: "POST /v1/webhooks/standard, properly signed",
        short: "POST /v1/webhooks/standard",
        target: Target::PerSecond {
            sqlite: 5000.0,
            postgres: 0.0,
        },
        status: Status::Pending(
            "webhooks issue: set STANDARD_WEBHOOK_SECRETS for shopd, then replay single-use events, each \
             with its own id and a Standard Webhooks signature made in Rust (wrk's Lua has no HMAC)",
        ),
    },
    Scenario {
        id: "e",
        title: "POST /v1/auth/refresh (one single-use chain per connection)",
        short: "POST /v1/auth/refresh",
        target: Target::PerSecond {
            sqlite: 3000.0,
            postgres: 3000.0,
        },
        status: Status::Ready,
    },
    Scenario {
        id: "f",
        title: "POST /v1/auth/login (argon2id m=19456 KiB, t=2, p=1)",
        short: "POST /v1/auth/login",
        target: Target::ShareOfArgon2Bound(0.90),
        status: Status::Ready,
    },
    Scenario {
        id: "g",
        title: "p99 of (b) while (f) runs flat out",
        short: "(b) during (f)",
        target: Target::P99Within {
            of: "b",
            factor: 2.0,
        },
        status: Status::Pending("orders issue: as g-me, with the load of (b)"),
    },
    Scenario {
        id: "g-me",
        title: "p99 of (b-me) while (f) runs flat out (stand-in for g)",
        short: "GET /v1/me during logins (for g)",
        target: Target::P99Within {
            of: "b-me",
            factor: 2.0,
        },
        status: Status::Ready,
    },
    Scenario {
        id: "b-me@1000",
        title: "GET /v1/me at 1,000 connections (memory)",
        short: "GET /v1/me, 1k connections",
        target: Target::PeakRssMib(100.0),
        status: Status::Ready,
    },
];

/// The load of one run of a scenario.
pub enum Load {
    /// wrk against the baseline or shopd.
    Wrk(WrkJob),
    /// The harness's own login loops (per-address limits rule out wrk, which has one source address).
    Logins { connections: usize },
    /// A wrk job measured while the login loops run flat out beside it.
    WrkDuringLogins { job: WrkJob, connections: usize },
}

/// What the scenarios draw on: shopd with its seeded customers, and the sessions the harness holds.
pub struct Ctx {
    pub shop: Shop,
    pub shopd_port: u16,
    pub baseline_port: u16,
    pub twilio: Arc<FakeTwilio>,
    /// The seeded customers' phone numbers (all with the password `client::PASSWORD`).
    pub phones: Arc<Vec<String>>,
    pub connections: usize,
    pub many_connections: usize,
    /// Refresh tokens of sessions nobody else holds.
    spare: Vec<String>,
    /// Refresh tokens of sessions whose access tokens are in use (re-spent for fresh access tokens).
    readers: Vec<String>,
    next_phone: usize,
}

impl Ctx {
    pub fn new(
        shop: Shop,
        shopd_port: u16,
        baseline_port: u16,
        twilio: Arc<FakeTwilio>,
        connections: usize,
        many_connections: usize,
    ) -> Self {
        Self {
            shop,
            shopd_port,
            baseline_port,
            twilio,
            phones: Arc::default(),
            connections,
            many_connections,
            spare: Vec::new(),
            readers: Vec::new(),
            next_phone: 0,
        }
    }

    /// Signs up `n` customers (phones +44 7400 000001, …), keeping each first session.
    pub async fn seed_customers(&mut self, n: usize) -> anyhow::Result<()> {
        let phones: Vec<String> = (1..=n).map(|i| format!("+447400{i:06}")).collect();
        // A few at a time: signup hashes the password, and shopd hashes at most one per core at once.
        for batch in phones.chunks(PER_ADDRESS.min(8)) {
            let results = join_all(batch.iter().map(|p| async {
                let mut client = self.shop.client();
                self.shop.sign_up(&mut client, &self.twilio, p).await
            }))
            .await;
            for pair in results {
                self.spare.push(pair?.refresh);
            }
        }
        self.phones = Arc::new(phones);
        Ok(())
    }

    /// `n` refresh tokens of sessions nobody else holds, logging customers in for more when needed.
    pub async fn chains(&mut self, n: usize) -> anyhow::Result<Vec<String>> {
        while self.spare.len() < n {
            let want = (n - self.spare.len()).min(8);
            let mut phones = Vec::new();
            for _ in 0..want {
                phones.push(self.phones[self.next_phone % self.phones.len()].clone());
                self.next_phone += 1;
            }
            let results = join_all(phones.iter().map(|p| async {
                let mut client = self.shop.client();
                self.shop.log_in(&mut client, p).await
            }))
            .await;
            for pair in results {
                self.spare.push(pair?.refresh);
            }
        }
        Ok(self.spare.split_off(self.spare.len() - n))
    }

    /// `n` access tokens issued just now (they live 5 minutes), from sessions kept for reading.
    pub async fn access_tokens(&mut self, n: usize) -> anyhow::Result<Vec<String>> {
        if self.readers.len() < n {
            let more = self.chains(n - self.readers.len()).await?;
            self.readers.extend(more);
        }
        let mut client = self.shop.client();
        let mut access = Vec::with_capacity(n);
        for token in self.readers.iter_mut().take(n) {
            let pair = self.shop.refresh(&mut client, token).await?;
            *token = pair.refresh;
            access.push(pair.access);
        }
        Ok(access)
    }

    /// `GET path` with a bearer token, one request per token, replayed in turn.
    fn bearer_gets(&self, path: &str, tokens: &[String]) -> Script {
        Script::Replay {
            requests: tokens
                .iter()
                .map(|t| {
                    request(
                        "GET",
                        path,
                        &[("Authorization", &format!("Bearer {t}"))],
                        None,
                    )
                })
                .collect(),
            single_use: false,
        }
    }
}

/// Prepares one run of scenario `id` (called again for its warm-up: single-use inputs are fresh each time).
pub async fn load_for(id: &str, ctx: &mut Ctx) -> anyhow::Result<Load> {
    let connections = ctx.connections;
    Ok(match id {
        "a" => Load::Wrk(WrkJob {
            port: ctx.baseline_port,
            path: "/".into(),
            connections,
            script: Script::Plain,
        }),
        "b-me" | "g-me" | "b-me@1000" => {
            let tokens = ctx.access_tokens(connections).await?;
            let job = WrkJob {
                port: ctx.shopd_port,
                path: "/v1/me".into(),
                connections: if id == "b-me@1000" {
                    ctx.many_connections
                } else {
                    connections
                },
                script: ctx.bearer_gets("/v1/me", &tokens),
            };
            if id == "g-me" {
                Load::WrkDuringLogins { job, connections }
            } else {
                Load::Wrk(job)
            }
        }
        "e" => Load::Wrk(WrkJob {
            port: ctx.shopd_port,
            path: "/v1/auth/refresh".into(),
            connections,
            script: Script::RefreshChains {
                tokens: ctx.chains(2 * connections).await?,
            },
        }),
        "f" => Load::Logins { connections },
        other => bail!("scenario {other} has no load yet"),
    })
}
