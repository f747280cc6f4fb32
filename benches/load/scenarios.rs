//! The scenarios of issue 10, in the order they run, with their targets. (d) runs last: the texts and
//! e-mails its paid orders queue are still being sent for a while after it, and would weigh on any scenario
//! measured after it.
//!
//! Adding one takes two steps: an entry in `SCENARIOS`, and an arm in `load_for` that prepares what it
//! sends (tokens, signed bodies, … through `Ctx`) and returns the load. Most scenarios are a `wrk` job with
//! `Script::Replay` of pre-formatted requests, which covers any method, header and body.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::future::join_all;
use serde_json::{Value, json};
use shopd::crypto::webhook::WebhookSecrets;
use shopd::orders::catalogue::MAX_STOCK;

use crate::client::{Customer, PER_ADDRESS, Shop};
use crate::servers::{Server, WEBHOOK_SECRET};
use crate::sign_ins::soft_passkey::SoftCredential;
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
    /// At least this share of what the cores do hashing at once, one bare argon2 hash a core.
    ShareOfHashesAtOnce(f64),
}

pub struct Scenario {
    /// Like `a`.
    pub id: &'static str,
    pub title: &'static str,
    /// For the table of shopd's own figures.
    pub short: &'static str,
    /// The route it loads, as shopd's metrics name it (`METHOD /pattern`); none for the baseline's.
    pub route: Option<&'static str>,
    pub target: Target,
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        id: "a",
        title: "baseline: GET / of examples/baseline.rs (framework ceiling)",
        short: "baseline GET /",
        route: None,
        target: Target::None,
    },
    Scenario {
        id: "b",
        title: "GET /v1/orders/{id} with a valid access token",
        short: "GET /v1/orders/{id}",
        route: Some("GET /v1/orders/{id}"),
        target: Target::ShareOfBaseline {
            sqlite: 0.25,
            postgres: 0.12,
            sqlite_p99_ms: Some(10.0),
        },
    },
    Scenario {
        id: "c",
        title: "POST /v1/orders, distinct Idempotency-Keys, enough stock",
        short: "POST /v1/orders",
        route: Some("POST /v1/orders"),
        target: Target::PerSecond {
            sqlite: 2000.0,
            postgres: 1000.0,
        },
    },
    Scenario {
        id: "e",
        title: "POST /v1/auth/refresh (one single-use chain per connection)",
        short: "POST /v1/auth/refresh",
        route: Some("POST /v1/auth/refresh"),
        target: Target::PerSecond {
            sqlite: 3000.0,
            postgres: 0.0,
        },
    },
    Scenario {
        id: "f",
        title: "POST /v1/auth/login (argon2id m=19456 KiB, t=2, p=1)",
        short: "POST /v1/auth/login",
        route: Some("POST /v1/auth/login"),
        target: Target::ShareOfHashesAtOnce(0.85),
    },
    Scenario {
        id: "g",
        title: "POST /v1/auth/apple (Sign in with Apple: an RS256 identity token and its nonce)",
        short: "POST /v1/auth/apple",
        route: Some("POST /v1/auth/apple"),
        target: Target::None,
    },
    Scenario {
        id: "h",
        title: "POST /v1/auth/passkey/finish (a passkey's ES256 assertion, usernameless)",
        short: "POST /v1/auth/passkey/finish",
        route: Some("POST /v1/auth/passkey/finish"),
        target: Target::None,
    },
    Scenario {
        id: "d",
        title: "POST /v1/webhooks/standard, properly signed",
        short: "POST /v1/webhooks/standard",
        route: Some("POST /v1/webhooks/standard"),
        target: Target::PerSecond {
            sqlite: 2000.0,
            postgres: 1000.0,
        },
    },
];

/// The load of one run of a scenario.
pub enum Load {
    /// wrk against the baseline or shopd.
    Wrk(WrkJob),
    /// The harness's own login loops (per-address limits rule out wrk, which has one source address).
    Logins { connections: usize },
}

/// What the scenarios draw on: shopd with its seeded customers and catalogue, and the sessions the harness
/// holds.
pub struct Ctx {
    pub shop: Shop,
    pub shopd_port: u16,
    pub baseline_port: u16,
    pub twilio: Arc<FakeTwilio>,
    /// The seeded customers' phone numbers (all with the password `client::PASSWORD`).
    pub phones: Arc<Vec<Customer>>,
    pub connections: usize,
    /// The seeded catalogue: product ids, each with stock for any run.
    products: Vec<String>,
    /// Refresh tokens of sessions nobody else holds.
    spare: Vec<String>,
    /// Refresh tokens of sessions whose access tokens are in use (re-spent for fresh access tokens).
    readers: Vec<String>,
    next_phone: usize,
    next_product: usize,
    /// The passkeys registered at seeding, as the phones' authenticators hold them.
    passkeys: Vec<SoftCredential>,
}

/// Customers who register a passkey at seeding (scenario h signs in with them in turn).
const PASSKEY_CUSTOMERS: usize = 16;
/// The Apple accounts of scenario g: the first sign-in of each makes its customer, the rest sign in.
const APPLE_SUBJECTS: usize = 64;
const APPLE_SIGN_INS_PER_SECOND_BUDGET: u64 = 8_000;
const PASSKEY_SIGN_INS_PER_SECOND_BUDGET: u64 = 3_000;

/// Products in the seeded catalogue: orders are spread over them, as over a shop's catalogue, rather than all
/// queueing on one row.
pub const PRODUCTS: usize = 64;

/// The most requests per second a single-use scenario is given inputs for (beyond it, requests are sent
/// twice and the run says so).
const ORDERS_PER_SECOND_BUDGET: u64 = 12_000;
const EVENTS_PER_SECOND_BUDGET: u64 = 9_000;

/// The events a payment provider sends per order in scenario (d), in this order: one of a type shopd does
/// not act on (kept for audit, counted, answered 2xx: providers send many such), a failed attempt (the
/// order stays payable) and the success that pays it (order event, confirmation text and e-mail queued).
const EVENTS_PER_ORDER: [&str; 3] = ["payment.created", "payment.failed", "payment.succeeded"];

/// An order placed by the harness, as the answer describes it.
struct Placed {
    id: String,
    payment_id: String,
    amount: i64,
    currency: String,
}

impl Ctx {
    pub fn new(
        shop: Shop,
        shopd_port: u16,
        baseline_port: u16,
        twilio: Arc<FakeTwilio>,
        connections: usize,
    ) -> Self {
        Self {
            shop,
            shopd_port,
            baseline_port,
            twilio,
            phones: Arc::default(),
            connections,
            products: Vec::new(),
            spare: Vec::new(),
            readers: Vec::new(),
            next_phone: 0,
            next_product: 0,
            passkeys: Vec::new(),
        }
    }

    /// Signs up `n` customers (phones +44 7400 000001, …), keeping each first session.
    pub async fn seed_customers(&mut self, n: usize) -> anyhow::Result<()> {
        let phones: Vec<String> = (1..=n).map(|i| format!("+447400{i:06}")).collect();
        let mut customers = Vec::with_capacity(n);
        // A few at a time: signup hashes the password, and shopd hashes at most one per core at once.
        for batch in phones.chunks(PER_ADDRESS.min(8)) {
            let results = join_all(batch.iter().map(|p| async {
                let mut client = self.shop.client();
                self.shop.sign_up(&mut client, &self.twilio, p).await
            }))
            .await;
            for (phone, pair) in batch.iter().zip(results) {
                let pair = pair?;
                if self.passkeys.len() < PASSKEY_CUSTOMERS {
                    let mut client = self.shop.client();
                    let credential = self.shop.add_passkey(&mut client, &pair.access).await?;
                    self.passkeys.push(credential);
                }
                customers.push(Customer {
                    phone: phone.clone(),
                    device: pair.device.context("signup gave no device token")?,
                });
                self.spare.push(pair.refresh);
            }
        }
        self.phones = Arc::new(customers);
        Ok(())
    }

    /// Imports the catalogue with `shopd products import` (as an operator would) and reads its ids back
    /// from `GET /v1/products`.
    pub async fn seed_products(&mut self, shopd: &Server) -> anyhow::Result<()> {
        let mut csv = String::from("name,price,stock,active\n");
        for i in 0..PRODUCTS {
            csv.push_str(&format!(
                "Load product {i:02},{},{MAX_STOCK},true\n",
                1000 + i
            ));
        }
        let file = tempfile::Builder::new().suffix(".csv").tempfile()?;
        std::fs::write(file.path(), csv)?;
        shopd
            .run_cli(&["products", "import", &file.path().display().to_string()])
            .await?;
        let mut client = self.shop.client();
        let (status, body) = client
            .send(&request("GET", "/v1/products?limit=100", &[], None))
            .await?;
        if status != 200 {
            bail!(
                "GET /v1/products: {status} {}",
                String::from_utf8_lossy(body)
            );
        }
        let page: Value = serde_json::from_slice(body)?;
        self.products = page["items"]
            .as_array()
            .context("no items in the product page")?
            .iter()
            .filter_map(|p| p["id"].as_str().map(str::to_owned))
            .collect();
        if self.products.len() != PRODUCTS {
            bail!(
                "{} products listed after importing {PRODUCTS}",
                self.products.len()
            );
        }
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

    /// The body of a one-line order of the next product of the catalogue.
    fn order_body(&mut self) -> String {
        let product = &self.products[self.next_product % self.products.len()];
        self.next_product += 1;
        json!({
            "items": [{"product_id": product, "quantity": 1}],
            "shipping_address": {
                "name": "Ada Lovelace",
                "line1": "12 St James's Square",
                "city": "London",
                "postal_code": "SW1Y 4JH",
                "country": "GB"
            }
        })
        .to_string()
    }

    /// A `POST /v1/orders` request with its own Idempotency-Key.
    fn order_request(&mut self, token: &str) -> String {
        let body = self.order_body();
        request(
            "POST",
            "/v1/orders",
            &[
                ("Authorization", &format!("Bearer {token}")),
                ("Idempotency-Key", &uuid::Uuid::new_v4().to_string()),
            ],
            Some(&body),
        )
    }

    /// Places `per_token` orders with each token (the tokens' customers' own orders), `tokens.len()` at
    /// once.
    async fn place_orders(
        &mut self,
        tokens: &[String],
        per_token: usize,
    ) -> anyhow::Result<Vec<Vec<Placed>>> {
        let mut work = Vec::new();
        for token in tokens {
            let requests: Vec<String> = (0..per_token).map(|_| self.order_request(token)).collect();
            work.push(requests);
        }
        let shop = &self.shop;
        let placed = join_all(work.into_iter().map(|requests| async move {
            let mut client = shop.client();
            let mut placed = Vec::with_capacity(requests.len());
            for r in &requests {
                let (status, body) = client.send(r).await?;
                if status != 201 {
                    bail!(
                        "POST /v1/orders: {status} {}",
                        String::from_utf8_lossy(body)
                    );
                }
                let v: Value = serde_json::from_slice(body)?;
                let text = |x: &Value| x.as_str().map(str::to_owned).context("a placed order");
                placed.push(Placed {
                    id: text(&v["id"])?,
                    payment_id: text(&v["payment"]["payment_id"])?,
                    amount: v["total"]["amount"].as_i64().context("no total")?,
                    currency: text(&v["total"]["currency"])?,
                });
            }
            Ok(placed)
        }))
        .await;
        placed.into_iter().collect()
    }

    /// (b): an order of each of `connections` customers, placed now; each wrk thread reads one of them with
    /// its owner's access token (a request wrk builds once: see `Script::BearerGetPerThread`).
    async fn order_reads(&mut self) -> anyhow::Result<Script> {
        let tokens = self.access_tokens(self.connections).await?;
        let placed = self.place_orders(&tokens, 1).await?;
        let requests = tokens
            .iter()
            .zip(&placed)
            .map(|(token, orders)| (format!("/v1/orders/{}", orders[0].id), token.clone()))
            .collect();
        Ok(Script::BearerGetPerThread { requests })
    }

    /// (c): single-use order placements for `duration`, spread over the customers and the catalogue.
    async fn order_placements(&mut self, duration: Duration) -> anyhow::Result<Script> {
        let tokens = self.access_tokens(self.connections).await?;
        let n = budget(ORDERS_PER_SECOND_BUDGET, duration);
        let requests = (0..n)
            .map(|i| self.order_request(&tokens[i % tokens.len()]))
            .collect();
        Ok(Script::Replay {
            requests,
            single_use: true,
        })
    }

    /// (d): orders placed now, and for each the provider's events, signed as the provider signs them.
    async fn webhook_events(&mut self, duration: Duration) -> anyhow::Result<Script> {
        let orders_needed =
            budget(EVENTS_PER_SECOND_BUDGET, duration).div_ceil(EVENTS_PER_ORDER.len());
        let tokens = self.access_tokens(self.connections).await?;
        let placed = self
            .place_orders(&tokens, orders_needed.div_ceil(tokens.len()))
            .await?;
        let secrets = WebhookSecrets::standard(&[WEBHOOK_SECRET.to_owned()])
            .map_err(|e| anyhow::anyhow!(e))?;
        let now = chrono::Utc::now().timestamp();
        let mut requests = Vec::new();
        for order in placed.iter().flatten() {
            for kind in EVENTS_PER_ORDER {
                let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
                let body = json!({
                    "type": kind,
                    "timestamp": chrono::Utc::now().to_rfc3339(),
                    "data": {
                        "payment_id": order.payment_id,
                        "order_id": order.id,
                        "amount": order.amount,
                        "currency": order.currency,
                    }
                })
                .to_string();
                let signature = secrets.sign_standard(&id, now, body.as_bytes());
                requests.push(request(
                    "POST",
                    "/v1/webhooks/standard",
                    &[
                        ("webhook-id", &id),
                        ("webhook-timestamp", &now.to_string()),
                        ("webhook-signature", &signature),
                    ],
                    Some(&body),
                ));
            }
        }
        Ok(Script::Replay {
            requests,
            single_use: true,
        })
    }
}

impl Ctx {
    /// `n` answers of `POST path {}` (201 each), eight clients at once.
    async fn begin_many(&self, path: &str, n: usize) -> anyhow::Result<Vec<Value>> {
        let per_client = n.div_ceil(8);
        let shop = &self.shop;
        let batches = join_all((0..8).map(|_| async move {
            let mut client = shop.client();
            let mut answers = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let (status, body) = client.post_json(path, "{}").await?;
                if status != 201 {
                    bail!("POST {path}: {status} {}", String::from_utf8_lossy(body));
                }
                answers.push(serde_json::from_slice::<Value>(body)?);
            }
            Ok::<_, anyhow::Error>(answers)
        }))
        .await;
        let mut all = Vec::with_capacity(n);
        for batch in batches {
            all.extend(batch?);
        }
        all.truncate(n);
        Ok(all)
    }

    /// (g): a nonce from shopd and an identity token bound to it, each, signed before the measured time.
    async fn apple_sign_ins(&mut self, duration: Duration) -> anyhow::Result<Script> {
        let n = budget(APPLE_SIGN_INS_PER_SECOND_BUDGET, duration);
        let nonces: Vec<String> = self
            .begin_many("/v1/auth/nonce", n)
            .await?
            .iter()
            .map(|v| v["nonce"].as_str().map(str::to_owned).context("no nonce"))
            .collect::<anyhow::Result<_>>()?;
        let signed = nonces.clone();
        let tokens = tokio::task::spawn_blocking(move || {
            crate::sign_ins::identity_tokens(&signed, APPLE_SUBJECTS)
        })
        .await?;
        let requests = tokens
            .iter()
            .zip(&nonces)
            .map(|(token, nonce)| {
                let body = json!({"id_token": token, "nonce": nonce}).to_string();
                request("POST", "/v1/auth/apple", &[], Some(&body))
            })
            .collect();
        Ok(Script::Replay {
            requests,
            single_use: true,
        })
    }

    /// (h): a begun ceremony and the assertion answering it, each, by the seeded passkeys in turn.
    async fn passkey_sign_ins(&mut self, duration: Duration) -> anyhow::Result<Script> {
        if self.passkeys.is_empty() {
            bail!("no passkey was registered at seeding");
        }
        let n = budget(PASSKEY_SIGN_INS_PER_SECOND_BUDGET, duration);
        let begun = self.begin_many("/v1/auth/passkey/begin", n).await?;
        let requests = begun
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let body =
                    crate::sign_ins::passkey_assertion(b, &self.passkeys[i % self.passkeys.len()]);
                request("POST", "/v1/auth/passkey/finish", &[], Some(&body))
            })
            .collect();
        Ok(Script::Replay {
            requests,
            single_use: true,
        })
    }
}

/// Inputs for `per_second` requests a second for `duration` (and one more second).
fn budget(per_second: u64, duration: Duration) -> usize {
    (per_second * (duration.as_secs() + 1)) as usize
}

/// Prepares one run of scenario `id` for `duration` (called again for its warm-up: single-use inputs are
/// fresh each time).
pub async fn load_for(id: &str, ctx: &mut Ctx, duration: Duration) -> anyhow::Result<Load> {
    let connections = ctx.connections;
    let port = ctx.shopd_port;
    let shopd = |path: &str, connections: usize, script: Script| WrkJob {
        port,
        path: path.into(),
        connections,
        script,
    };
    Ok(match id {
        "a" => Load::Wrk(WrkJob {
            port: ctx.baseline_port,
            path: "/".into(),
            connections,
            script: Script::Plain,
        }),
        "b" => Load::Wrk(shopd("/v1/orders", connections, ctx.order_reads().await?)),
        "c" => Load::Wrk(shopd(
            "/v1/orders",
            connections,
            ctx.order_placements(duration).await?,
        )),
        "d" => Load::Wrk(shopd(
            "/v1/webhooks/standard",
            connections,
            ctx.webhook_events(duration).await?,
        )),
        "e" => Load::Wrk(shopd(
            "/v1/auth/refresh",
            connections,
            Script::RefreshChains {
                tokens: ctx.chains(2 * connections).await?,
            },
        )),
        "f" => Load::Logins { connections },
        "g" => Load::Wrk(shopd(
            "/v1/auth/apple",
            connections,
            ctx.apple_sign_ins(duration).await?,
        )),
        "h" => Load::Wrk(shopd(
            "/v1/auth/passkey/finish",
            connections,
            ctx.passkey_sign_ins(duration).await?,
        )),
        other => bail!("scenario {other} has no load yet"),
    })
}
