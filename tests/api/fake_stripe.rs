//! A local server speaking Stripe's PaymentIntents API (`POST /v1/payment_intents`), for tests that create
//! payments over real HTTP. It checks what shopd must send (basic auth with the secret key, a form body with
//! `amount`, a lower-case `currency`, `metadata[order_id]`, `automatic_payment_methods[enabled]=true`, and the
//! order id as `Idempotency-Key`), answers a repeated key with the same PaymentIntent as Stripe does, records
//! every request, and can be told to fail or to answer slowly.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// A request the fake received (accepted or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedIntent {
    pub idempotency_key: Option<String>,
    pub form: BTreeMap<String, String>,
}

struct State {
    secret_key: String,
    /// The PaymentIntent made under each idempotency key, with the form that made it.
    intents: HashMap<String, (BTreeMap<String, String>, Value)>,
    received: Vec<ReceivedIntent>,
    /// Refunds made: (idempotency key, payment_intent).
    refunds: Vec<(String, String)>,
    failures: usize,
    failure_status: u16,
    delay: Duration,
}

pub struct FakeStripe {
    /// Like `http://127.0.0.1:PORT`: the `STRIPE_API_BASE`.
    pub base_url: String,
    state: Arc<Mutex<State>>,
    handle: actix_web::dev::ServerHandle,
}

pub const STRIPE_KEY: &str = "sk_test_fake_0123456789abcdef";

impl FakeStripe {
    /// Starts on a free port of 127.0.0.1, accepting `secret_key`.
    pub async fn start(secret_key: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            secret_key: secret_key.to_owned(),
            intents: HashMap::new(),
            received: Vec::new(),
            refunds: Vec::new(),
            failures: 0,
            failure_status: 503,
            delay: Duration::ZERO,
        }));
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().unwrap().port();
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/v1/payment_intents", web::post().to(create_intent))
                .route("/v1/refunds", web::post().to(create_refund))
                .default_service(web::to(not_found))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .listen(listener)
        .expect("the fake Stripe listens")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            base_url: format!("http://127.0.0.1:{port}"),
            state,
            handle,
        }
    }

    /// The refunds made: (idempotency key, payment intent).
    pub fn refunds(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().refunds.clone()
    }

    /// Every request so far, oldest first.
    pub fn received(&self) -> Vec<ReceivedIntent> {
        self.state.lock().unwrap().received.clone()
    }

    /// How many PaymentIntents exist (one per idempotency key).
    pub fn intent_count(&self) -> usize {
        self.state.lock().unwrap().intents.len()
    }

    /// The next `n` requests get `status` with a Stripe-style error body, whatever they hold.
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut state = self.state.lock().unwrap();
        state.failures = n;
        state.failure_status = status;
    }

    /// Every answer from now on waits `d` first.
    pub fn set_delay(&self, d: Duration) {
        self.state.lock().unwrap().delay = d;
    }
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { handle.stop(false).await });
        }
    }
}

/// Stripe's error body: `{"error": {"type", "code"?, "param"?, "message"}}`.
fn stripe_error(status: u16, kind: &str, code: Option<&str>, message: &str) -> HttpResponse {
    let mut error = json!({"type": kind, "message": message});
    if let Some(code) = code {
        error["code"] = json!(code);
    }
    HttpResponse::build(StatusCode::from_u16(status).unwrap()).json(json!({ "error": error }))
}

/// `POST /v1/refunds`: basic auth, a form with `payment_intent` naming an intent this server made, and an
/// Idempotency-Key; the same key again refunds nothing twice.
async fn create_refund(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<Mutex<State>>>,
) -> HttpResponse {
    let mut state = state.lock().unwrap();
    let authenticated = basic_auth(&req)
        .is_some_and(|(user, password)| user == state.secret_key && password.is_empty());
    if !authenticated {
        return stripe_error(
            401,
            "invalid_request_error",
            None,
            "Invalid API Key provided.",
        );
    }
    if state.failures > 0 {
        state.failures -= 1;
        let status = state.failure_status;
        return stripe_error(status, "api_error", None, "Refused.");
    }
    let Some(key) = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return stripe_error(
            400,
            "invalid_request_error",
            None,
            "An Idempotency-Key is expected.",
        );
    };
    let intent = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "payment_intent")
        .map(|(_, v)| v.into_owned());
    let Some(intent) = intent.filter(|i| {
        state
            .intents
            .values()
            .any(|(_, made)| made["id"] == i.as_str())
    }) else {
        return stripe_error(
            404,
            "invalid_request_error",
            Some("resource_missing"),
            "No such payment_intent.",
        );
    };
    if !state.refunds.iter().any(|(k, _)| *k == key) {
        state.refunds.push((key, intent.clone()));
    }
    HttpResponse::Ok().json(
        json!({"id": format!("re_{}", uuid::Uuid::new_v4().simple()), "object": "refund",
        "payment_intent": intent, "status": "succeeded"}),
    )
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    stripe_error(
        404,
        "invalid_request_error",
        None,
        &format!("Unrecognized request URL (POST: {})", req.path()),
    )
}

fn random_alnum(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .chain(uuid::Uuid::new_v4().as_bytes())
        .take(n)
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

async fn create_intent(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<Mutex<State>>>,
) -> HttpResponse {
    let idempotency_key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let is_form = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let mut form = BTreeMap::new();
    if is_form {
        for (k, v) in url::form_urlencoded::parse(&body) {
            form.insert(k.into_owned(), v.into_owned());
        }
    }
    let (delay, failure) = {
        let mut state = state.lock().unwrap();
        state.received.push(ReceivedIntent {
            idempotency_key: idempotency_key.clone(),
            form: form.clone(),
        });
        let failure = (state.failures > 0).then(|| {
            state.failures -= 1;
            state.failure_status
        });
        (state.delay, failure)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(status) = failure {
        return match status {
            429 => stripe_error(
                429,
                "invalid_request_error",
                Some("rate_limit"),
                "Too many requests",
            ),
            s if s >= 500 => stripe_error(
                s,
                "api_error",
                None,
                "Something went wrong on Stripe's end.",
            ),
            s => stripe_error(s, "invalid_request_error", None, "Refused."),
        };
    }

    let mut state = state.lock().unwrap();
    let authenticated = basic_auth(&req)
        .is_some_and(|(user, password)| user == state.secret_key && password.is_empty());
    if !authenticated {
        return stripe_error(
            401,
            "invalid_request_error",
            None,
            "Invalid API Key provided.",
        );
    }
    if !is_form {
        return stripe_error(
            400,
            "invalid_request_error",
            None,
            "Send a form-encoded body.",
        );
    }
    const KNOWN: [&str; 4] = [
        "amount",
        "currency",
        "metadata[order_id]",
        "automatic_payment_methods[enabled]",
    ];
    if let Some(unknown) = form.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return stripe_error(
            400,
            "invalid_request_error",
            Some("parameter_unknown"),
            &format!("Received unknown parameter: {unknown}"),
        );
    }
    let Some(amount) = form
        .get("amount")
        .and_then(|a| a.parse::<i64>().ok())
        .filter(|a| *a > 0)
    else {
        return stripe_error(
            400,
            "invalid_request_error",
            Some("parameter_invalid_integer"),
            "Invalid amount.",
        );
    };
    let Some(currency) = form
        .get("currency")
        .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_lowercase()))
        .cloned()
    else {
        return stripe_error(
            400,
            "invalid_request_error",
            Some("parameter_invalid"),
            "Invalid currency.",
        );
    };
    let Some(order_id) = form
        .get("metadata[order_id]")
        .filter(|o| !o.is_empty())
        .cloned()
    else {
        return stripe_error(
            400,
            "invalid_request_error",
            Some("parameter_missing"),
            "metadata[order_id] is required here.",
        );
    };
    if form
        .get("automatic_payment_methods[enabled]")
        .map(String::as_str)
        != Some("true")
    {
        return stripe_error(
            400,
            "invalid_request_error",
            Some("parameter_missing"),
            "automatic_payment_methods[enabled] must be true here.",
        );
    }
    let Some(key) = idempotency_key.filter(|k| *k == order_id) else {
        return stripe_error(
            400,
            "invalid_request_error",
            None,
            "The Idempotency-Key must be the order id here.",
        );
    };
    if let Some((first_form, intent)) = state.intents.get(&key) {
        if *first_form != form {
            return stripe_error(
                400,
                "idempotency_error",
                None,
                "Keys for idempotent requests can only be used with the same parameters they were first used with.",
            );
        }
        return HttpResponse::Ok()
            .insert_header(("Idempotent-Replayed", "true"))
            .json(intent.clone());
    }
    let id = format!("pi_{}", random_alnum(24));
    let intent = json!({
        "id": id,
        "object": "payment_intent",
        "amount": amount,
        "currency": currency,
        "client_secret": format!("{id}_secret_{}", random_alnum(25)),
        "status": "requires_payment_method",
        "metadata": {"order_id": order_id},
        "automatic_payment_methods": {"enabled": true},
        "livemode": false,
    });
    state.intents.insert(key, (form, intent.clone()));
    HttpResponse::Ok().json(intent)
}

/// The user name and password of a `Basic` Authorization header.
fn basic_auth(req: &HttpRequest) -> Option<(String, String)> {
    let header = req.headers().get("authorization")?.to_str().ok()?;
    let (scheme, encoded) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}
