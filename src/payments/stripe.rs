//! Stripe: `POST {STRIPE_API_BASE}/v1/payment_intents`, form-encoded `amount`, `currency` (lower case),
//! `metadata[order_id]` and `automatic_payment_methods[enabled]=true`, with the order id as the
//! `Idempotency-Key` and the secret key as the basic-auth user.
//!
//! A 3 s connect timeout and a 10 s timeout for each attempt; at most 2 attempts, 250 ms apart, the second only
//! after a connection error, a timeout, a 409 (the same key still running at Stripe), a 429 or a 5xx. Repeating
//! is safe: the idempotency key makes Stripe answer with the same PaymentIntent.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use url::Url;

use super::{Payment, PaymentError, PaymentProvider, PaymentRequest};
use crate::domain::Sensitive;

pub const STRIPE_API_BASE: &str = "https://api.stripe.com";
pub const STRIPE_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
pub const STRIPE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_ATTEMPTS: u32 = 2;
const BACKOFF: Duration = Duration::from_millis(250);
/// How much of an answer is read.
const BODY_LIMIT: usize = 64 * 1024;

#[derive(Clone)]
pub struct StripeConfig {
    pub secret_key: Sensitive<String>,
    pub api_base: Url,
}

impl fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeConfig")
            .field("secret_key", &self.secret_key)
            .field("api_base", &self.api_base.as_str())
            .finish()
    }
}

#[derive(Clone)]
pub struct StripeProvider {
    client: reqwest::Client,
    secret_key: Sensitive<String>,
    /// None when the base URL cannot take a path: every payment is then `Unavailable`.
    intents_url: Option<Url>,
    refunds_url: Option<Url>,
}

impl fmt::Debug for StripeProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeProvider")
            .field("intents_url", &self.intents_url.as_ref().map(Url::as_str))
            .finish_non_exhaustive()
    }
}

/// The part of a PaymentIntent shopd reads.
#[derive(Deserialize)]
struct Intent {
    id: String,
    client_secret: Option<String>,
    amount: i64,
    currency: String,
    status: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: StripeError,
}

#[derive(Deserialize)]
struct StripeError {
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<String>,
}

impl StripeProvider {
    /// # Panics
    /// When the TLS backend cannot be initialised, as `reqwest::Client::new` does.
    pub fn new(config: StripeConfig) -> Self {
        Self::with_timeouts(config, STRIPE_CONNECT_TIMEOUT, STRIPE_TIMEOUT)
    }

    /// A provider with other timeouts: `connect` to open a connection, `total` for each whole attempt.
    ///
    /// # Panics
    /// When the TLS backend cannot be initialised, as `reqwest::Client::new` does.
    pub fn with_timeouts(config: StripeConfig, connect: Duration, total: Duration) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(connect)
            .timeout(total)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("shopd/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client's TLS backend initialises");
        let endpoint = |last: &str| {
            let mut url = config.api_base.clone();
            let takes_path = url
                .path_segments_mut()
                .map(|mut segments| {
                    segments.pop_if_empty().extend(["v1", last]);
                })
                .is_ok();
            takes_path.then_some(url)
        };
        Self {
            client,
            intents_url: endpoint("payment_intents"),
            refunds_url: endpoint("refunds"),
            secret_key: config.secret_key,
        }
    }

    async fn create(&self, request: &PaymentRequest) -> Result<Payment, PaymentError> {
        let Some(url) = &self.intents_url else {
            return Err(PaymentError::Unavailable(
                "the Stripe API base URL cannot take a path".into(),
            ));
        };
        let currency = request.currency.to_ascii_lowercase();
        let amount = request.amount.to_string();
        let form = [
            ("amount", amount.as_str()),
            ("currency", currency.as_str()),
            ("metadata[order_id]", request.order_id.as_str()),
            ("automatic_payment_methods[enabled]", "true"),
        ];
        let mut last_failure = String::new();
        for attempt in 1..=MAX_ATTEMPTS {
            if attempt > 1 {
                tokio::time::sleep(BACKOFF).await;
            }
            let sent = self
                .client
                .post(url.clone())
                .basic_auth(self.secret_key.expose(), Some(""))
                .header("Idempotency-Key", &request.order_id)
                .form(&form)
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(error) if error.is_timeout() || error.is_connect() => {
                    let kind = if error.is_timeout() {
                        "timed out"
                    } else {
                        "connection failed"
                    };
                    tracing::warn!(attempt, error = kind, "Stripe did not answer");
                    last_failure = kind.to_owned();
                    continue;
                }
                Err(_) => {
                    tracing::warn!(attempt, "the request to Stripe failed");
                    return Err(PaymentError::Unavailable("the request failed".into()));
                }
            };
            let status = response.status();
            let body = read_limited(response).await;
            if status.is_success() {
                return parse_intent(&body, request, &currency);
            }
            let detail = stripe_error(&body);
            if status == StatusCode::CONFLICT
                || status == StatusCode::TOO_MANY_REQUESTS
                || status.is_server_error()
            {
                tracing::warn!(attempt, status = status.as_u16(), %detail, "Stripe did not create the payment");
                last_failure = format!("HTTP {}{detail}", status.as_u16());
                continue;
            }
            tracing::error!(status = status.as_u16(), %detail, "Stripe refused to create the payment");
            return Err(PaymentError::Refused(format!(
                "HTTP {}{detail}",
                status.as_u16()
            )));
        }
        Err(PaymentError::Unavailable(format!(
            "no success after {MAX_ATTEMPTS} attempts (last: {last_failure})"
        )))
    }
}

impl StripeProvider {
    /// `POST /v1/refunds` with `payment_intent`, the idempotency key `refund-<order id>`; a 2xx is Stripe's
    /// confirmation. Retried once after a connection error, a timeout, a 409, a 429 or a 5xx.
    async fn refund_intent(&self, payment_id: &str, order_id: &str) -> Result<(), PaymentError> {
        let Some(url) = &self.refunds_url else {
            return Err(PaymentError::Unavailable(
                "the Stripe API base URL cannot take a path".into(),
            ));
        };
        let key = format!("refund-{order_id}");
        let mut last_failure = String::new();
        for attempt in 1..=MAX_ATTEMPTS {
            if attempt > 1 {
                tokio::time::sleep(BACKOFF).await;
            }
            let sent = self
                .client
                .post(url.clone())
                .basic_auth(self.secret_key.expose(), Some(""))
                .header("Idempotency-Key", &key)
                .form(&[("payment_intent", payment_id)])
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(error) if error.is_timeout() || error.is_connect() => {
                    last_failure = "no answer".into();
                    continue;
                }
                Err(_) => return Err(PaymentError::Unavailable("the request failed".into())),
            };
            let status = response.status();
            let body = read_limited(response).await;
            if status.is_success() {
                tracing::info!(payment_id, "Stripe refund created");
                return Ok(());
            }
            let detail = stripe_error(&body);
            if status == StatusCode::CONFLICT
                || status == StatusCode::TOO_MANY_REQUESTS
                || status.is_server_error()
            {
                last_failure = format!("HTTP {}{detail}", status.as_u16());
                continue;
            }
            return Err(PaymentError::Refused(format!(
                "HTTP {}{detail}",
                status.as_u16()
            )));
        }
        Err(PaymentError::Unavailable(format!(
            "no refund after {MAX_ATTEMPTS} attempts (last: {last_failure})"
        )))
    }
}

async fn read_limited(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = BODY_LIMIT - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= BODY_LIMIT {
            break;
        }
    }
    body
}

fn parse_intent(
    body: &[u8],
    request: &PaymentRequest,
    currency: &str,
) -> Result<Payment, PaymentError> {
    let unexpected = |what: &str| {
        tracing::error!(what, "Stripe answered with an unexpected PaymentIntent");
        PaymentError::Unavailable(format!("unexpected answer: {what}"))
    };
    let intent: Intent =
        serde_json::from_slice(body).map_err(|_| unexpected("not a PaymentIntent"))?;
    if !intent.id.starts_with("pi_") {
        return Err(unexpected("the id is not pi_…"));
    }
    if intent.amount != request.amount || intent.currency != currency {
        return Err(unexpected("another amount or currency"));
    }
    let secret = intent
        .client_secret
        .filter(|s| !s.is_empty())
        .ok_or_else(|| unexpected("no client_secret"))?;
    tracing::info!(payment_id = %intent.id, status = %intent.status, "Stripe PaymentIntent ready");
    Ok(Payment {
        payment_id: intent.id,
        client_secret: Sensitive::new(secret),
    })
}

/// `, stripe error {type}/{code}` from an error answer; empty when there is none. Stripe's message is not
/// kept: it may echo request values.
fn stripe_error(body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => format!(
            ", stripe error {}/{}",
            error.kind.as_deref().unwrap_or("-"),
            error.code.as_deref().unwrap_or("-")
        ),
        Err(_) => String::new(),
    }
}

impl PaymentProvider for StripeProvider {
    fn name(&self) -> &'static str {
        "stripe"
    }

    fn create_payment<'a>(
        &'a self,
        request: &'a PaymentRequest,
    ) -> Pin<Box<dyn Future<Output = Result<Payment, PaymentError>> + Send + 'a>> {
        Box::pin(self.create(request))
    }

    fn refund<'a>(
        &'a self,
        payment_id: &'a str,
        order_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), PaymentError>> + Send + 'a>> {
        Box::pin(self.refund_intent(payment_id, order_id))
    }
}
