//! The edge, black-box: app attestation in each mode, token binding, rate limits, trusted proxies, security
//! headers, `/metrics`, TLS with the pins `shopd pins` prints, and the threat model's list of tests.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::Method;
use serde_json::{Value, json};
use shopd::config::Vars;
use shopd::crypto::attestation::{AttestationKey, pay_claim};

use crate::helpers::{PASSWORD, TestApp, assert_not_logged, assert_problem, series, unique_phone};

const SECRET: &str = "c2hvcGQtZWRnZS10ZXN0cy1hdHRlc3RhdGlvbi1zZWNyZXQtMzItYnl0ZXMrKys=";
const METRICS_TOKEN: &str = "edge-tests-metrics-token-0123456789";
const APPROOV: &str = "Approov-Token";

fn key() -> AttestationKey {
    AttestationKey::parse(SECRET).unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A genuine token, not bound to any Authorization header.
fn genuine() -> String {
    key().sign(&json!({"exp": now() + 300, "did": "device-1"}))
}

/// A genuine token bound to this Authorization header value.
fn bound_to(authorization: &str) -> String {
    key().sign(&json!({"exp": now() + 300, "pay": pay_claim(authorization.as_bytes())}))
}

fn secret_bytes() -> Vec<u8> {
    STANDARD.decode(SECRET).unwrap()
}

/// A token whose header names `alg`, signed (where it can be) with the right secret.
fn with_alg(alg: &str) -> String {
    let claims = json!({"exp": now() + 300});
    match alg {
        "HS512" => jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&secret_bytes()),
        )
        .unwrap(),
        "none" => format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        ),
        other => format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{other}","typ":"JWT"}}"#)),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            URL_SAFE_NO_PAD.encode([7u8; 256])
        ),
    }
}

/// An HS256 token signed with another secret.
fn badly_signed() -> String {
    AttestationKey::parse(&STANDARD.encode([9u8; 32]))
        .unwrap()
        .sign(&json!({"exp": now() + 300}))
}

fn expired() -> String {
    key().sign(&json!({"exp": now() - 5}))
}

fn attested(mode: &str, binding: &str) -> impl FnOnce(&mut Vars) {
    let (mode, binding) = (mode.to_owned(), binding.to_owned());
    move |vars: &mut Vars| {
        vars.set("ATTESTATION_MODE", mode);
        vars.set("ATTESTATION_BINDING", binding);
        vars.set("ATTESTATION_SECRET", SECRET);
        vars.set("METRICS_TOKEN", METRICS_TOKEN);
    }
}

/// The text of `/metrics` on the public address.
async fn metrics_text(app: &TestApp) -> String {
    app.metrics_text(METRICS_TOKEN).await
}

fn failures(reason: &str) -> String {
    format!(r#"shopd_attestation_failures_total{{reason="{reason}"}}"#)
}

/// POST /v1/auth/login with an invalid phone: a 422 from the handler once past the edge.
async fn login_with(app: &TestApp, token: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/v1/auth/login"))
        .json(&json!({"phone": "not a phone", "password": "x"}));
    if let Some(token) = token {
        request = request.header(APPROOV, token);
    }
    request.send().await.unwrap()
}

/// Signs a customer up through attested requests; returns the token pair.
async fn register_attested(app: &TestApp, phone: &str) -> Value {
    let response = app
        .client
        .post(app.url("/v1/auth/signup"))
        .header(APPROOV, genuine())
        .json(&json!({"phone": phone, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let started: Value = response.json().await.unwrap();
    let response = app
        .client
        .post(app.url("/v1/auth/signup/verify"))
        .header(APPROOV, genuine())
        .json(&json!({"verification_id": started["verification_id"], "code": app.code_for(phone)}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

/// GET /v1/me with this Authorization header value and attestation token.
async fn me_with(app: &TestApp, authorization: &str, token: &str) -> reqwest::Response {
    app.client
        .get(app.url("/v1/me"))
        .header("Authorization", authorization)
        .header(APPROOV, token)
        .send()
        .await
        .unwrap()
}

/// The requests that fail attestation on a route without an Authorization header, by reason.
fn unauthenticated_failures() -> Vec<(&'static str, Option<String>)> {
    vec![
        ("missing", None),
        ("bad_alg", Some(with_alg("none"))),
        ("bad_alg", Some(with_alg("RS256"))),
        ("bad_alg", Some(with_alg("HS512"))),
        ("bad_signature", Some(badly_signed())),
        ("expired", Some(expired())),
        ("malformed", Some("not.a.jwt".to_owned())),
    ]
}

#[tokio::test]
async fn enforce_mode_refuses_each_attestation_failure_and_counts_it_by_reason() {
    let app = TestApp::spawn_with(attested("enforce", "required")).await;
    let mut expected = std::collections::HashMap::<&str, f64>::new();
    for (reason, token) in unauthenticated_failures() {
        let response = login_with(&app, token.as_deref()).await;
        assert_problem(response, 401, "attestation_failed").await;
        *expected.entry(reason).or_default() += 1.0;
    }
    // Bound routes: a `pay` for another header, and two Authorization headers.
    let response = me_with(&app, "Bearer abc", &bound_to("Bearer xyz")).await;
    assert_problem(response, 401, "attestation_failed").await;
    let response = me_with(&app, "Bearer abc", &genuine()).await;
    assert_problem(response, 401, "attestation_failed").await;
    let response = app
        .client
        .get(app.url("/v1/me"))
        .header("Authorization", "Bearer abc")
        .header("Authorization", "Bearer def")
        .header(APPROOV, bound_to("Bearer abc"))
        .send()
        .await
        .unwrap();
    assert_problem(response, 401, "attestation_failed").await;
    expected.insert("bad_pay", 1.0);
    expected.insert("missing_pay", 1.0);
    expected.insert("two_authorization", 1.0);

    // A genuine token gets through to the handler.
    let response = login_with(&app, Some(&genuine())).await;
    assert_problem(response, 422, "invalid_phone").await;

    let text = metrics_text(&app).await;
    for (reason, count) in &expected {
        assert_eq!(series(&text, &failures(reason)), *count, "{reason}");
    }
    assert_eq!(
        series(&text, r#"shopd_attestation_checks_total{result="failed"}"#),
        expected.values().sum::<f64>()
    );
    assert_eq!(
        series(&text, r#"shopd_attestation_checks_total{result="passed"}"#),
        1.0
    );
    let tokens: Vec<String> = unauthenticated_failures()
        .into_iter()
        .filter_map(|(_, t)| t)
        .chain([genuine()])
        .collect();
    assert_not_logged(&tokens.iter().map(String::as_str).collect::<Vec<_>>());
}

#[tokio::test]
async fn report_mode_lets_each_failure_through_and_counts_it() {
    let app = TestApp::spawn_with(attested("report", "required")).await;
    for (_, token) in unauthenticated_failures() {
        let response = login_with(&app, token.as_deref()).await;
        assert_problem(response, 422, "invalid_phone").await;
    }
    // Past the edge, the handler's own authentication answers.
    let response = me_with(&app, "Bearer abc", &bound_to("Bearer xyz")).await;
    assert_problem(response, 401, "invalid_token").await;
    let response = me_with(&app, "Bearer abc", &genuine()).await;
    assert_problem(response, 401, "invalid_token").await;
    let response = app
        .client
        .get(app.url("/v1/me"))
        .header("Authorization", "Bearer abc")
        .header("Authorization", "Bearer def")
        .send()
        .await
        .unwrap();
    assert_problem(response, 401, "invalid_token").await;

    let text = metrics_text(&app).await;
    assert_eq!(series(&text, &failures("missing")), 1.0);
    assert_eq!(series(&text, &failures("bad_alg")), 3.0);
    assert_eq!(series(&text, &failures("bad_signature")), 1.0);
    assert_eq!(series(&text, &failures("expired")), 1.0);
    assert_eq!(series(&text, &failures("malformed")), 1.0);
    assert_eq!(series(&text, &failures("bad_pay")), 1.0);
    assert_eq!(series(&text, &failures("missing_pay")), 1.0);
    assert_eq!(series(&text, &failures("two_authorization")), 1.0);
    assert_eq!(
        series(&text, r#"shopd_attestation_checks_total{result="failed"}"#),
        10.0
    );
}

#[tokio::test]
async fn off_mode_ignores_attestation_entirely() {
    let app = TestApp::spawn_with(|vars| {
        vars.set("METRICS_TOKEN", METRICS_TOKEN);
    })
    .await;
    for (_, token) in unauthenticated_failures() {
        let response = login_with(&app, token.as_deref()).await;
        assert_problem(response, 422, "invalid_phone").await;
    }
    let pair = app.register(&unique_phone()).await;
    let token = pair["access_token"].as_str().unwrap();
    let response = me_with(&app, &format!("Bearer {token}"), &expired()).await;
    assert_eq!(response.status(), 200);
    let text = metrics_text(&app).await;
    assert_eq!(
        series(&text, r#"shopd_attestation_checks_total{result="failed"}"#),
        0.0
    );
    assert_eq!(
        series(&text, r#"shopd_attestation_checks_total{result="passed"}"#),
        0.0
    );
}

#[tokio::test]
async fn binding_passes_with_the_right_authorization_header_and_fails_with_a_wrong_one() {
    let app = TestApp::spawn_with(attested("enforce", "required")).await;
    let phone = unique_phone();
    let pair = register_attested(&app, &phone).await;
    let access = pair["access_token"].as_str().unwrap();
    let authorization = format!("Bearer {access}");
    let other = app.login(&phone, PASSWORD).await;
    assert_problem(other, 401, "attestation_failed").await;

    let response = me_with(&app, &authorization, &bound_to(&authorization)).await;
    assert_eq!(response.status(), 200, "bound to this very header");
    assert_eq!(response.headers()["cache-control"], "no-store");

    // The token of another session (or a stolen one) does not match the attested `pay`.
    let stolen = format!("Bearer {access}x");
    let response = me_with(&app, &authorization, &bound_to(&stolen)).await;
    assert_problem(response, 401, "attestation_failed").await;
    let response = me_with(&app, &stolen, &bound_to(&authorization)).await;
    assert_problem(response, 401, "attestation_failed").await;
    // Required binding: a token without `pay` is refused on a route that carries an access token.
    let response = me_with(&app, &authorization, &genuine()).await;
    assert_problem(response, 401, "attestation_failed").await;
    let text = metrics_text(&app).await;
    assert_eq!(series(&text, &failures("bad_pay")), 2.0);
    assert_eq!(series(&text, &failures("missing_pay")), 1.0);
    assert_not_logged(&[access, &phone]);

    // Optional binding (the attestation service's fail-over tokens carry no `pay`).
    let app = TestApp::spawn_with(attested("enforce", "optional")).await;
    let pair = register_attested(&app, &unique_phone()).await;
    let authorization = format!("Bearer {}", pair["access_token"].as_str().unwrap());
    let response = me_with(&app, &authorization, &genuine()).await;
    assert_eq!(response.status(), 200, "no pay: let through");
    let response = me_with(&app, &authorization, &bound_to("Bearer someone-else")).await;
    assert_problem(response, 401, "attestation_failed").await;
    let response = me_with(&app, &authorization, &bound_to(&authorization)).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn webhooks_staff_and_operations_routes_are_never_attested_and_escapes_do_not_dodge_it() {
    let app = TestApp::spawn_with(attested("enforce", "required")).await;
    for path in [
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/.well-known/jwks.json",
    ] {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
    }
    assert_eq!(
        app.client
            .get(app.url("/metrics"))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Staff routes answer for themselves, without an attestation token.
    let response = app
        .post_json(
            "/v1/staff/auth/login",
            &json!({"email": "nobody@shop.example.com", "password": "wrong password here"}),
        )
        .await;
    assert_problem(response, 401, "invalid_credentials").await;
    let response = app.get("/v1/staff/audit-log").await;
    assert_problem(response, 401, "invalid_token").await;
    // Webhooks answer for their own signature, never for an attestation.
    let response = app.post_json("/v1/webhooks/standard", &json!({})).await;
    assert_problem(response, 401, "signature_missing").await;
    // Customer routes that land later are covered by their prefix already.
    for path in ["/v1/products", "/v1/orders", "/v1/orders/1/cancel"] {
        let response = app.get(path).await;
        assert_problem(response, 401, "attestation_failed").await;
    }
    // A percent-escaped path reaches the same handler and gets the same check.
    let response = app.get("/v1/%6De").await;
    assert_problem(response, 401, "attestation_failed").await;
    let response = app
        .client
        .get(app.url("/v1/%6De"))
        .header(APPROOV, genuine())
        .send()
        .await
        .unwrap();
    assert_problem(response, 401, "invalid_token").await;
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after_per_route_class_and_per_account() {
    let app = TestApp::spawn_with(|vars| {
        vars.set("RATE_LIMIT_AUTH", "3/1m");
        vars.set("RATE_LIMIT_API", "2/1m");
        vars.set("RATE_LIMIT_ACCOUNT", "2/1m");
        vars.set("METRICS_TOKEN", METRICS_TOKEN);
    })
    .await;
    for _ in 0..3 {
        assert_problem(login_with(&app, None).await, 422, "invalid_phone").await;
    }
    let response = login_with(&app, None).await;
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert_problem(response, 429, "too_many_requests").await;
    // Another route of the class shares the budget; another class does not.
    let response = app
        .post_json("/v1/auth/refresh", &json!({"refresh_token": "rt_x"}))
        .await;
    assert_problem(response, 429, "too_many_requests").await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    // Without a valid access token, every other route is counted per address.
    for _ in 0..2 {
        let response = app.request(Method::GET, "/v1/orders", "nope", None).await;
        assert_problem(response, 401, "invalid_token").await;
    }
    let response = app.request(Method::GET, "/v1/me", "nope", None).await;
    assert!(response.headers().contains_key("retry-after"));
    assert_problem(response, 429, "too_many_requests").await;
    // With one, per account: this address is over its budget, the accounts are not, each has its own.
    let (one, _) = app.direct_customer();
    let (other, _) = app.direct_customer();
    for _ in 0..2 {
        assert_eq!(
            app.request(Method::GET, "/v1/orders", &one, None)
                .await
                .status(),
            200
        );
    }
    let response = app.request(Method::GET, "/v1/me", &one, None).await;
    assert!(response.headers().contains_key("retry-after"));
    assert_problem(response, 429, "too_many_requests").await;
    assert_eq!(
        app.request(Method::GET, "/v1/orders", &other, None)
            .await
            .status(),
        200
    );
    let text = metrics_text(&app).await;
    assert_eq!(
        series(&text, r#"shopd_rate_limited_total{class="auth"}"#),
        2.0
    );
    assert_eq!(
        series(&text, r#"shopd_rate_limited_total{class="api"}"#),
        1.0
    );
    assert_eq!(
        series(&text, r#"shopd_rate_limited_total{class="account"}"#),
        1.0
    );
}

async fn login_from(app: &TestApp, forwarded_for: &str) -> u16 {
    app.client
        .post(app.url("/v1/auth/login"))
        .header("X-Forwarded-For", forwarded_for)
        .json(&json!({"phone": "x", "password": "x"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn x_forwarded_for_picks_the_client_only_behind_a_trusted_proxy() {
    // Without TRUSTED_PROXIES the header is the client's own word and changes nothing.
    let app = TestApp::spawn_with(|vars| vars.set("RATE_LIMIT_AUTH", "2/1m")).await;
    assert_eq!(login_from(&app, "203.0.113.1").await, 422);
    assert_eq!(login_from(&app, "203.0.113.2").await, 422);
    assert_eq!(login_from(&app, "203.0.113.3").await, 429);

    // Behind a trusted proxy (the test client's 127.0.0.1), each forwarded client has its own budget, and
    // what a client writes to the left of the proxy's entry is ignored.
    let app = TestApp::spawn_with(|vars| {
        vars.set("RATE_LIMIT_AUTH", "2/1m");
        vars.set("TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8");
    })
    .await;
    assert_eq!(login_from(&app, "203.0.113.1").await, 422);
    assert_eq!(login_from(&app, "198.51.100.7, 203.0.113.1").await, 422);
    assert_eq!(login_from(&app, "203.0.113.1, 10.1.2.3").await, 429);
    assert_eq!(login_from(&app, "203.0.113.2").await, 422);
}

#[tokio::test]
async fn security_headers_are_on_every_response_and_cors_is_off() {
    let app = TestApp::spawn().await;
    let health = app.get("/healthz").await;
    let missing = app.get("/nowhere").await;
    let login = login_with(&app, None).await;
    let me = app.request(Method::GET, "/v1/me", "nope", None).await;
    let jwks = app.get("/.well-known/jwks.json").await;
    for response in [&health, &missing, &login, &me, &jwks] {
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(!headers.contains_key("server"), "no Server header");
        assert!(!headers.contains_key("strict-transport-security"), "no TLS");
        assert!(!headers.contains_key("access-control-allow-origin"));
    }
    assert_eq!(login.headers()["cache-control"], "no-store", "auth route");
    assert_eq!(me.headers()["cache-control"], "no-store", "Authorization");
    assert_eq!(jwks.headers()["cache-control"], "public, max-age=300");
    assert!(!health.headers().contains_key("cache-control"));

    // A browser's preflight gets nothing that would allow a cross-origin call.
    let preflight = app
        .client
        .request(Method::OPTIONS, app.url("/v1/auth/login"))
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_client_error());
    assert!(
        !preflight
            .headers()
            .keys()
            .any(|k| k.as_str().starts_with("access-control-"))
    );
}

#[tokio::test]
async fn metrics_need_the_token_and_show_requests_latency_pool_and_security_counters() {
    let app = TestApp::spawn_with(|vars| vars.set("METRICS_TOKEN", METRICS_TOKEN)).await;
    assert_problem(app.get("/metrics").await, 401, "invalid_token").await;
    let wrong = app
        .request(
            Method::GET,
            "/metrics",
            "edge-tests-metrics-token-0123456780",
            None,
        )
        .await;
    assert_problem(wrong, 401, "invalid_token").await;
    let two = app
        .client
        .get(app.url("/metrics"))
        .header("Authorization", format!("Bearer {METRICS_TOKEN}"))
        .header("Authorization", format!("Bearer {METRICS_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_problem(two, 401, "invalid_token").await;

    // Security events: a wrong code, a reused refresh token, a throttled login.
    let phone = unique_phone();
    let verification_id = app.start_signup(&phone).await;
    let code = app.code_for(&phone);
    let wrong_code = if code == "000000" { "111111" } else { "000000" };
    let response = app
        .post_json(
            "/v1/auth/signup/verify",
            &json!({"verification_id": verification_id, "code": wrong_code}),
        )
        .await;
    assert_problem(response, 422, "invalid_code").await;
    let pair: Value = app
        .post_json(
            "/v1/auth/signup/verify",
            &json!({"verification_id": verification_id, "code": code}),
        )
        .await
        .json()
        .await
        .unwrap();
    let refresh = |token: Value| {
        let app = &app;
        async move {
            app.post_json("/v1/auth/refresh", &json!({"refresh_token": token}))
                .await
        }
    };
    let first: Value = refresh(pair["refresh_token"].clone())
        .await
        .json()
        .await
        .unwrap();
    let second: Value = refresh(first["refresh_token"].clone())
        .await
        .json()
        .await
        .unwrap();
    assert!(second["refresh_token"].is_string());
    let reused = refresh(pair["refresh_token"].clone()).await;
    assert_problem(reused, 401, "refresh_token_reused").await;
    for _ in 0..5 {
        assert_eq!(app.login(&phone, "wrong password here").await.status(), 401);
    }
    assert_problem(app.login(&phone, PASSWORD).await, 429, "login_throttled").await;

    let response = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    assert_eq!(
        series(
            &text,
            r#"shopd_http_requests_total{method="POST",route="/v1/auth/refresh",status="401"}"#
        ),
        1.0
    );
    assert_eq!(
        series(
            &text,
            r#"shopd_http_request_duration_seconds_count{method="POST",route="/v1/auth/signup/verify",status="201"}"#
        ),
        1.0
    );
    assert!(text.contains(r#"shopd_http_request_duration_seconds_bucket{method="POST",route="/v1/auth/login",status="401",le="0.1"}"#));
    assert!(series(&text, r#"shopd_db_pool_connections{state="idle"}"#) >= 1.0);
    assert_eq!(series(&text, "shopd_db_pool_max_connections"), 4.0);
    // Exposed from the start; how many depends on whether a request came before the view's first re-read.
    assert!(series(&text, "shopd_session_checks_in_database_total") >= 0.0);
    assert_eq!(
        series(&text, r#"shopd_otp_wrong_codes_total{purpose="signup"}"#),
        1.0
    );
    assert_eq!(
        series(
            &text,
            r#"shopd_refresh_token_reuse_total{audience="customer"}"#
        ),
        1.0
    );
    assert_eq!(
        series(&text, r#"shopd_login_throttled_total{by="account"}"#),
        1.0
    );
    assert_eq!(
        series(
            &text,
            r#"shopd_webhook_signature_failures_total{provider="stripe"}"#
        ),
        0.0
    );
    assert!(
        !text.contains(&phone) && !text.contains(&code),
        "no personal value in a label"
    );
}

#[tokio::test]
async fn metrics_on_their_own_address_are_absent_from_the_public_one() {
    // Neither variable: no /metrics anywhere.
    let app = TestApp::spawn().await;
    assert_problem(app.get("/metrics").await, 404, "not_found").await;
    assert_eq!(app.metrics_port, None);

    // METRICS_BIND: only there; the token, when set, is needed there too.
    let app = TestApp::spawn_with(|vars| {
        vars.set("METRICS_BIND", "127.0.0.1:0");
        vars.set("METRICS_TOKEN", METRICS_TOKEN);
    })
    .await;
    let public = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_problem(public, 404, "not_found").await;
    let port = app.metrics_port.expect("a metrics port");
    let url = format!("http://127.0.0.1:{port}/metrics");
    let refused = app.client.get(&url).send().await.unwrap();
    assert_problem(refused, 401, "invalid_token").await;
    let response = app
        .client
        .get(&url)
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("shopd_http_requests_total")
    );
    // Nothing else is served on the metrics address.
    let other = app
        .client
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_problem(other, 404, "not_found").await;

    // METRICS_BIND without a token: open on its own (private) address.
    let app = TestApp::spawn_with(|vars| vars.set("METRICS_BIND", "127.0.0.1:0")).await;
    let port = app.metrics_port.unwrap();
    let response = app
        .client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_problem(app.get("/metrics").await, 404, "not_found").await;
}

#[test]
fn each_bad_edge_value_is_refused_naming_its_variable() {
    let cases: &[(&str, &str, &str)] = &[
        ("ATTESTATION_MODE", "strict", ""),
        ("ATTESTATION_BINDING", "sometimes", ""),
        ("ATTESTATION_SECRET", "c2hvcnQ=", ""),
        ("ATTESTATION_SECRET", "not base64!", ""),
        ("TLS_CERT_FILE", "cert.pem", ""),
        ("TLS_KEY_FILE", "key.pem", ""),
        ("TRUSTED_PROXIES", "proxy.internal", ""),
        ("TRUSTED_PROXIES", "0.0.0.0/0", ""),
        ("RATE_LIMIT_AUTH", "lots", ""),
        ("RATE_LIMIT_ACCOUNT", "0/1m", ""),
        ("RATE_LIMIT_ORDERS", "30/1m", ""),
        ("RATE_LIMIT_WEBHOOKS", "5/0s", ""),
        ("RATE_LIMIT_API", "10", ""),
        ("METRICS_BIND", "9090", ""),
        ("METRICS_TOKEN", "short", ""),
        ("REQUEST_TIMEOUT", "5", ""),
        ("KEEP_ALIVE", "2d", ""),
        ("MAX_CONNECTIONS", "0", ""),
    ];
    for (var, value, _) in cases {
        let mut vars = Vars::new(shopd::config::secrets::generate_all());
        vars.set(var, *value);
        let error = shopd::config::Config::from_vars(&vars).expect_err("refused");
        let expected = match *var {
            "TLS_CERT_FILE" => "TLS_KEY_FILE",
            "TLS_KEY_FILE" => "TLS_CERT_FILE",
            other => other,
        };
        assert_eq!(error.var, expected, "{var}={value} gave {error}");
    }
    // The defaults, when nothing is set.
    let defaults =
        shopd::config::Config::from_vars(&Vars::new(shopd::config::secrets::generate_all()))
            .unwrap();
    let rate = |text| shopd::limits::Rate::parse(text).unwrap();
    let limits = &defaults.edge.rate_limits;
    assert_eq!(limits.account, rate("600/1m"));
    assert_eq!(limits.auth, rate("600/1m"));
    assert_eq!(limits.webhooks, rate("600/1m"));
    assert_eq!(limits.api, rate("1200/1m"));
    assert_eq!(
        defaults.edge.attestation.mode,
        shopd::config::AttestationMode::Off
    );
    assert!(defaults.edge.tls.is_none() && defaults.edge.trusted_proxies.is_empty());
    assert!(!defaults.edge.metrics.on_public_address());
    // A mode that checks tokens needs the secret.
    let mut vars = Vars::new(shopd::config::secrets::generate_all());
    vars.set("ATTESTATION_MODE", "report");
    let error = shopd::config::Config::from_vars(&vars).unwrap_err();
    assert_eq!(error.var, "ATTESTATION_SECRET");
    // The secret never appears in an error or in the configuration's Debug.
    vars.set("ATTESTATION_SECRET", SECRET);
    vars.set("METRICS_TOKEN", METRICS_TOKEN);
    let config = shopd::config::Config::from_vars(&vars).unwrap();
    let printed = format!("{config:?}");
    assert!(!printed.contains(SECRET) && !printed.contains(METRICS_TOKEN));
}

mod tls {
    //! A client that trusts nothing but a pin: the SHA-256 of the server certificate's SPKI.

    use std::sync::Arc;

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};
    use sha2::{Digest, Sha256};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[derive(Debug)]
    pub struct PinnedVerifier {
        pin: String,
        algorithms: WebPkiSupportedAlgorithms,
    }

    impl ServerCertVerifier for PinnedVerifier {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
            let pin = STANDARD.encode(Sha256::digest(parsed.subject_public_key_info().as_ref()));
            if pin == self.pin {
                Ok(ServerCertVerified::assertion())
            } else {
                Err(rustls::Error::General(
                    "the certificate is not pinned".into(),
                ))
            }
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    }

    /// `GET path` over TLS to `port`, trusting only `pin`, with TLS 1.2 alone when `tls12_only`, offering
    /// `h2` and `http/1.1` by ALPN as a phone's HTTP stack does. The protocol version, the ALPN protocol the
    /// server chose (`-` for none) and the head of the response, or the error of the handshake.
    pub async fn get(port: u16, pin: &str, tls12_only: bool, path: &str) -> Result<String, String> {
        // The provider shopd serves with (see `tls::provider`).
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = PinnedVerifier {
            pin: pin.to_owned(),
            algorithms: provider.signature_verification_algorithms,
        };
        let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let mut config =
            rustls::ClientConfig::builder_with_provider(provider.clone() as Arc<CryptoProvider>)
                .with_protocol_versions(versions)
                .unwrap()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        let mut stream = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .map_err(|e| e.to_string())?;
        let version = stream
            .get_ref()
            .1
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default();
        let alpn = stream
            .get_ref()
            .1
            .alpn_protocol()
            .map_or("-".to_owned(), |p| String::from_utf8_lossy(p).into_owned());
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        let text = String::from_utf8_lossy(&response).into_owned();
        Ok(format!("{version} {alpn}\n{text}"))
    }
}

/// A fresh self-signed certificate for `localhost`, written to `dir`; returns its pin computed from the
/// key pair alone (independently of any certificate parser).
fn write_certificate(
    dir: &std::path::Path,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf, String) {
    use rcgen::PublicKeyData;
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let pin = STANDARD.encode(<sha2::Sha256 as sha2::Digest>::digest(
        generated.signing_key.subject_public_key_info(),
    ));
    (cert, key, pin)
}

/// Runs `shopd pins` on the files and returns the pins of its Android snippet.
fn shopd_pins(files: &[&std::path::Path]) -> (Vec<String>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shopd"))
        .arg("pins")
        .args(files)
        .args(["--domain", "shop.example.com"])
        .env_clear()
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let pins = text
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix(r#"<pin digest="SHA-256">"#)?
                .strip_suffix("</pin>")
                .map(str::to_owned)
        })
        .collect();
    (pins, text)
}

#[tokio::test]
async fn tls_a_client_pinned_to_the_printed_pin_connects_and_one_pinned_elsewhere_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, pin) = write_certificate(dir.path(), "current");
    let (next_cert, next_key, next_pin) = write_certificate(dir.path(), "next");
    let (printed, text) = shopd_pins(&[&cert, &next_cert]);
    assert_eq!(
        printed,
        vec![pin.clone(), next_pin.clone()],
        "current first, then the backup"
    );
    assert!(text.contains("<key>SPKI-SHA256-BASE64</key>") && text.contains("NSPinnedDomains"));
    assert!(text.contains(&format!("<string>{next_pin}</string>")));
    assert!(text.contains(r#"<domain includeSubdomains="false">shop.example.com</domain>"#));

    let (cert_path, key_path) = (cert.clone(), key.clone());
    let app = TestApp::spawn_with(move |vars| {
        vars.set("TLS_CERT_FILE", cert_path.to_string_lossy());
        vars.set("TLS_KEY_FILE", key_path.to_string_lossy());
        vars.set("TLS_RELOAD_INTERVAL", "100ms");
    })
    .await;
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();

    let head = tls::get(port, &printed[0], false, "/healthz")
        .await
        .unwrap();
    assert!(head.starts_with("TLSv1_3"), "{head}");
    assert!(head.contains("HTTP/1.1 200"), "{head}");
    // No HTTP/2 in shopd (docs/supply-chain.md): a client offering `h2` is answered in HTTP/1.1.
    assert!(!head.lines().next().unwrap().ends_with(" h2"), "{head}");
    assert!(
        head.to_lowercase()
            .contains("strict-transport-security: max-age=31536000")
    );
    let head = tls::get(port, &printed[0], true, "/healthz").await.unwrap();
    assert!(
        head.starts_with("TLSv1_2") && head.contains("HTTP/1.1 200"),
        "{head}"
    );

    let refused = tls::get(port, &next_pin, false, "/healthz").await;
    assert!(refused.is_err(), "pinned to another key: {refused:?}");
    let forged = STANDARD.encode([0u8; 32]);
    assert!(tls::get(port, &forged, false, "/healthz").await.is_err());
    // Plain HTTP on the TLS port gets no answer in clear.
    let plain = app.client.get(app.url("/healthz")).send().await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));

    // Renewal: the backup pair goes into the same files and is taken up without a restart.
    std::fs::copy(&next_key, &key).unwrap();
    std::fs::copy(&next_cert, &cert).unwrap();
    let mut switched = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if tls::get(port, &next_pin, false, "/healthz").await.is_ok() {
            switched = true;
            break;
        }
    }
    assert!(switched, "the new certificate was taken up");
    assert!(tls::get(port, &pin, false, "/healthz").await.is_err());

    // A broken pair (a key that does not fit) is refused; the certificate in use stays.
    let (_, other_key, _) = write_certificate(dir.path(), "other");
    std::fs::copy(&other_key, &key).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(tls::get(port, &next_pin, false, "/healthz").await.is_ok());
    // One renewal taken up; at least the broken pair refused (the renewal's two copies may also have been
    // seen half-way, a key without its certificate, which is refused the same way).
    let text = app.state.metrics.render();
    assert_eq!(
        series(
            &text,
            r#"shopd_tls_certificate_reloads_total{result="loaded"}"#
        ),
        1.0
    );
    assert!(
        series(
            &text,
            r#"shopd_tls_certificate_reloads_total{result="failed"}"#
        ) >= 1.0
    );
}

#[test]
fn shopd_pins_takes_a_backup_public_key_and_refuses_what_is_not_pem() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _, pin) = write_certificate(dir.path(), "current");
    let backup = rcgen::KeyPair::generate().unwrap();
    let public = dir.path().join("backup.pub.pem");
    std::fs::write(&public, backup.public_key_pem()).unwrap();
    let backup_pin = {
        use rcgen::PublicKeyData;
        STANDARD.encode(<sha2::Sha256 as sha2::Digest>::digest(
            backup.subject_public_key_info(),
        ))
    };
    let (pins, _) = shopd_pins(&[&cert, &public]);
    assert_eq!(pins, vec![pin, backup_pin]);

    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "hello").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shopd"))
        .args(["pins"])
        .arg(&junk)
        .env_clear()
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("junk.pem") && stderr.trim().lines().count() == 1,
        "{stderr}"
    );
}

#[tokio::test]
async fn a_missing_or_mismatched_certificate_stops_the_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _, _) = write_certificate(dir.path(), "a");
    let (_, other_key, _) = write_certificate(dir.path(), "b");
    let db = Arc::new(crate::helpers::TestDb::new());
    let mut vars = crate::helpers::test_vars(&db);
    vars.set("TLS_CERT_FILE", cert.to_string_lossy());
    vars.set("TLS_KEY_FILE", other_key.to_string_lossy());
    let error = crate::helpers::start_refused(&vars).await;
    assert!(
        error.contains("b.key") && error.contains("does not fit"),
        "{error}"
    );
    vars.set(
        "TLS_KEY_FILE",
        dir.path().join("absent.key").to_string_lossy(),
    );
    let error = crate::helpers::start_refused(&vars).await;
    assert!(error.contains("absent.key"), "{error}");
}

/// The `file::function` names in backticks on a line of the threat model.
fn cited_tests(line: &str) -> Vec<(String, String)> {
    line.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|code| {
            let (file, name) = code.split_once(".rs::")?;
            Some((format!("{file}.rs"), name.to_owned()))
        })
        .collect()
}

/// Whether `file` defines `name` as a test: `fn name(` under a test attribute.
fn is_test(file: &str, name: &str) -> bool {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let Ok(source) = std::fs::read_to_string(root.join(file)) else {
        return false;
    };
    let lines: Vec<&str> = source.lines().collect();
    let signature = format!("fn {name}(");
    lines.iter().enumerate().any(|(i, line)| {
        line.contains(&signature)
            && lines[..i]
                .iter()
                .rev()
                .map(|l| l.trim())
                .take_while(|l| l.starts_with("#[") || l.starts_with("///"))
                .any(|l| matches!(l, "#[test]" | "#[tokio::test]" | "#[actix_web::test]"))
    })
}

#[test]
fn the_threat_model_names_tests_that_exist() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = std::fs::read_to_string(root.join("docs/threat-model.md")).unwrap();
    let mut threats = 0;
    for line in model.lines().filter(|l| l.starts_with("| T")) {
        threats += 1;
        let id = line.split('|').nth(1).unwrap_or_default().trim();
        let cited = cited_tests(line);
        assert!(!cited.is_empty(), "threat {id} names no test");
        for (file, name) in cited {
            assert!(
                is_test(&file, &name),
                "threat {id} names {file}::{name}, which is not a test there"
            );
        }
    }
    assert!(threats >= 15, "{threats} threats");
    for topic in [
        "Interception",
        "Bots",
        "Tampered or cloned app",
        "Compromised device",
        "Payment fraud",
        "Data leak",
    ] {
        assert!(model.contains(topic), "the threat model covers {topic}");
    }
    // The checker itself: a name that is not a test is caught.
    assert!(!is_test("tests/api/edge.rs", "cited_tests"));
    assert!(!is_test("tests/api/nowhere.rs", "anything"));
}

#[test]
fn the_supply_chain_policy_is_committed_and_run_by_ci() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let deny = std::fs::read_to_string(root.join("deny.toml")).unwrap();
    for needle in [
        "[licenses]",
        "[bans]",
        "multiple-versions = \"deny\"",
        "[sources]",
        "unknown-registry = \"deny\"",
        "unknown-git = \"deny\"",
    ] {
        assert!(deny.contains(needle), "deny.toml: {needle}");
    }
    let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
    assert!(ci.contains("command -v cargo-deny >/dev/null || cargo install --locked cargo-deny"));
    assert!(ci.contains("cargo deny --locked check licenses bans sources"));
    let doc = std::fs::read_to_string(root.join("docs/supply-chain.md")).unwrap();
    assert!(doc.contains("cargo deny --offline --locked check advisories"));
}

#[tokio::test]
async fn refused_webhook_signatures_are_counted_by_provider() {
    let app = TestApp::spawn_with(|vars| vars.set("METRICS_TOKEN", METRICS_TOKEN)).await;
    let body = br#"{"type":"payment.succeeded","data":{}}"#.to_vec();
    let now = chrono::Utc::now().timestamp().to_string();
    for signature in [
        Some("v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        None,
    ] {
        let mut request = app
            .client
            .post(app.url("/v1/webhooks/standard"))
            .header("content-type", "application/json")
            .header("webhook-id", "msg_edge_test")
            .header("webhook-timestamp", &now)
            .body(body.clone());
        if let Some(signature) = signature {
            request = request.header("webhook-signature", signature);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
    }
    let text = metrics_text(&app).await;
    assert_eq!(
        series(
            &text,
            r#"shopd_webhook_signature_failures_total{provider="standard"}"#
        ),
        2.0
    );
    assert_eq!(
        series(
            &text,
            r#"shopd_webhook_signature_failures_total{provider="stripe"}"#
        ),
        0.0
    );
}
