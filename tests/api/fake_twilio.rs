//! A local server speaking Twilio's Messages API, for tests that send SMS over real HTTP. It checks what Twilio
//! checks (the account in the path, basic auth, `To`, `From`, `Body`), records what it accepted, and can be
//! told to fail or to answer slowly.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

/// One message the fake accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSms {
    pub to: String,
    pub from: String,
    pub body: String,
}

struct State {
    account_sid: String,
    auth_token: String,
    from: String,
    messages: Vec<ReceivedSms>,
    requests: usize,
    failures: usize,
    failure_status: u16,
    delay: Duration,
}

pub struct FakeTwilio {
    /// Like `http://127.0.0.1:PORT`: the `api_base` for a `TwilioConfig`.
    pub base_url: String,
    state: Arc<Mutex<State>>,
    handle: actix_web::dev::ServerHandle,
}

impl FakeTwilio {
    /// Starts on a free port of 127.0.0.1, for the account `account_sid` with `auth_token`, owning the number
    /// `from`.
    pub async fn start(account_sid: &str, auth_token: &str, from: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            account_sid: account_sid.to_owned(),
            auth_token: auth_token.to_owned(),
            from: from.to_owned(),
            messages: Vec::new(),
            requests: 0,
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
                .app_data(web::PayloadConfig::new(64 * 1024))
                .route(
                    "/2010-04-01/Accounts/{account_sid}/Messages.json",
                    web::post().to(create_message),
                )
                .default_service(web::to(not_found))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .listen(listener)
        .expect("the fake Twilio listens")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            base_url: format!("http://127.0.0.1:{port}"),
            state,
            handle,
        }
    }

    /// Every message accepted so far, oldest first.
    pub fn messages(&self) -> Vec<ReceivedSms> {
        self.state.lock().unwrap().messages.clone()
    }

    /// Every request to the Messages API so far, answered or not, accepted or not.
    pub fn request_count(&self) -> usize {
        self.state.lock().unwrap().requests
    }

    /// The 6 digits after the last `#` of the newest body sent to `to` (the WebOTP / SMS Retriever layout).
    pub fn last_code_for(&self, to: &str) -> Option<String> {
        let state = self.state.lock().unwrap();
        let body = &state.messages.iter().rev().find(|m| m.to == to)?.body;
        let code: String = body[body.rfind('#')? + 1..].chars().take(6).collect();
        (code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())).then_some(code)
    }

    /// The next `n` requests get `status` with a Twilio-style error body, whatever they hold.
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

impl Drop for FakeTwilio {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { handle.stop(false).await });
        }
    }
}

/// Twilio's error body: `{"code", "message", "more_info", "status"}`.
fn twilio_error(status: u16, code: u32, message: &str) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).expect("a valid status")).json(json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    }))
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    twilio_error(
        404,
        20404,
        &format!("The requested resource {} was not found", req.path()),
    )
}

async fn create_message(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<Arc<Mutex<State>>>,
) -> HttpResponse {
    let (delay, failure) = {
        let mut state = state.lock().unwrap();
        state.requests += 1;
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
            429 => twilio_error(429, 20429, "Too Many Requests"),
            503 => twilio_error(503, 20503, "Service Unavailable"),
            s if s >= 500 => twilio_error(s, 20500, "Internal Server Error"),
            s => twilio_error(s, 20001, "Unknown error"),
        };
    }

    let mut state = state.lock().unwrap();
    let authenticated = basic_auth(&req)
        .is_some_and(|(user, password)| user == state.account_sid && password == state.auth_token);
    if !authenticated {
        return twilio_error(401, 20003, "Authenticate");
    }
    if path.into_inner() != state.account_sid {
        return twilio_error(
            404,
            20404,
            &format!("The requested resource {} was not found", req.path()),
        );
    }

    let is_form = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let mut params: HashMap<String, String> = HashMap::new();
    if is_form {
        for (key, value) in url::form_urlencoded::parse(&body) {
            params.entry(key.into_owned()).or_insert(value.into_owned());
        }
    }
    let param = |name: &str| params.get(name).filter(|v| !v.is_empty()).cloned();
    let Some(to) = param("To") else {
        return twilio_error(400, 21604, "A 'To' phone number is required.");
    };
    let Some(from) = param("From") else {
        return twilio_error(400, 21603, "A 'From' phone number is required.");
    };
    let Some(body) = param("Body") else {
        return twilio_error(400, 21602, "Message body is required.");
    };
    let digits = to.strip_prefix('+').unwrap_or("");
    if !(7..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        // Twilio quotes the number in this one, so the sender must not pass it on as is.
        return twilio_error(400, 21211, &format!("Invalid 'To' Phone Number: {to}"));
    }
    if from != state.from {
        return twilio_error(
            400,
            21606,
            "The 'From' phone number provided is not a valid message-capable Twilio phone number for this destination/account",
        );
    }

    let sid = format!("SM{}", uuid::Uuid::new_v4().simple());
    state.messages.push(ReceivedSms {
        to: to.clone(),
        from: from.clone(),
        body: body.clone(),
    });
    HttpResponse::Created().json(json!({
        "sid": sid,
        "account_sid": state.account_sid,
        "status": "queued",
        "to": to,
        "from": from,
        "body": body,
        "num_segments": "1",
        "direction": "outbound-api",
        "api_version": "2010-04-01",
        "uri": format!("/2010-04-01/Accounts/{}/Messages/{sid}.json", state.account_sid),
    }))
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
