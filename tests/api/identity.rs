//! Customer identity, black-box: signup by texted code, tokens, refresh, logout, reset, profile, export,
//! erasure. Every test ends by checking that no log line holds its phone, code, password or tokens.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use diesel::prelude::*;
use reqwest::Method;
use serde_json::{Value, json};
use shopd::db::schema::verifications;

use crate::helpers::{PASSWORD, TestApp, assert_not_logged, assert_problem, series, unique_phone};
use crate::statements;

fn s(v: &Value) -> &str {
    v.as_str().expect("a string")
}

#[tokio::test]
async fn the_whole_flow_with_a_code_read_from_the_sms_provider() {
    let app = TestApp::spawn().await;
    let phone = unique_phone();
    let verification_id = app.start_signup(&phone).await;
    let texts = app.twilio.messages();
    let text = texts
        .iter()
        .rfind(|m| m.to == phone)
        .expect("a text to the phone");
    let code = app.code_for(&phone);
    assert!(
        text.body.ends_with(&format!("@shop.example.com #{code}")),
        "origin-bound line"
    );
    assert_eq!(text.from, crate::helpers::TWILIO_FROM);

    let response = app
        .post_json(
            "/v1/auth/signup/verify",
            &json!({"verification_id": verification_id, "code": code}),
        )
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let pair: Value = response.json().await.unwrap();
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 300);
    assert!(s(&pair["refresh_token"]).starts_with("rt_"));
    assert!(pair["refresh_expires_in"].as_u64().unwrap() > 6 * 86_400);
    let customer_id = s(&pair["customer_id"]).to_owned();
    // The code was this phone's second factor: its device token spares it one at the next login.
    assert!(s(&pair["device_token"]).starts_with("dv_"));
    app.remember_device(&phone, &pair);

    // The access token, checked by a standard JWT library from the published key alone, as a client of the
    // JWKS would.
    let jwks: Value = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    let token = s(&pair["access_token"]);
    let header = jsonwebtoken::decode_header(token).unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"].as_str() == header.kid.as_deref())
        .expect("the token's kid is published");
    assert_eq!((s(&jwk["kty"]), s(&jwk["crv"])), ("OKP", "Ed25519"));
    let key = jsonwebtoken::DecodingKey::from_ed_components(s(&jwk["x"])).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["customer"]);
    validation.set_issuer(&["https://shop.example.com"]);
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], customer_id.as_str());
    assert!(claims["sid"].is_string() && claims["jti"].is_string() && claims["auth_time"].is_i64());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300
    );

    let me: Value = app
        .request(Method::GET, "/v1/me", token, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], customer_id.as_str());
    assert_eq!(
        me["phone_masked"],
        format!("+44•••••••{}", &phone[phone.len() - 3..])
    );

    let refreshed: Value = app
        .post_json(
            "/v1/auth/refresh",
            &json!({"refresh_token": pair["refresh_token"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let new_token = s(&refreshed["access_token"]);
    assert_eq!(
        app.request(Method::GET, "/v1/me", new_token, None)
            .await
            .status(),
        200
    );

    let logout = app
        .request(Method::POST, "/v1/auth/logout", new_token, None)
        .await;
    assert_eq!(logout.status(), 204);
    for t in [token, new_token] {
        assert_problem(
            app.request(Method::GET, "/v1/me", t, None).await,
            401,
            "session_ended",
        )
        .await;
    }
    let stale = app
        .post_json(
            "/v1/auth/refresh",
            &json!({"refresh_token": refreshed["refresh_token"]}),
        )
        .await;
    assert_eq!(stale.status(), 401);

    // Log in again with the password chosen at signup.
    let login = app.login(&phone, PASSWORD).await;
    assert_eq!(login.status(), 200);
    let login: Value = login.json().await.unwrap();
    assert_not_logged(&[
        &phone,
        &code,
        PASSWORD,
        token,
        new_token,
        s(&login["refresh_token"]),
    ]);
}

#[tokio::test]
async fn five_wrong_codes_kill_the_verification() {
    let app = TestApp::spawn().await;
    let phone = unique_phone();
    let id = app.start_signup(&phone).await;
    let code = app.code_for(&phone);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for attempt in 1..=5 {
        let response = app
            .post_json(
                "/v1/auth/signup/verify",
                &json!({"verification_id": id, "code": wrong}),
            )
            .await;
        let expected = if attempt < 5 {
            "invalid_code"
        } else {
            "verification_locked"
        };
        assert_problem(response, 422, expected).await;
    }
    let response = app
        .post_json(
            "/v1/auth/signup/verify",
            &json!({"verification_id": id, "code": code}),
        )
        .await;
    assert_problem(response, 422, "verification_locked").await;
    assert_eq!(
        app.login(&phone, PASSWORD).await.status(),
        401,
        "no account was made"
    );
    assert_not_logged(&[&phone, &code]);
}

#[tokio::test]
async fn an_expired_code_is_refused() {
    let app = TestApp::spawn().await;
    let phone = unique_phone();
    let id = app.start_signup(&phone).await;
    let code = app.code_for(&phone);
    let past = chrono::Utc::now().naive_utc() - chrono::Duration::seconds(1);
    diesel::update(verifications::table.find(&id))
        .set(verifications::expires_at.eq(past))
        .execute(&mut app.conn())
        .unwrap();
    let response = app
        .post_json(
            "/v1/auth/signup/verify",
            &json!({"verification_id": id, "code": code}),
        )
        .await;
    assert_problem(response, 422, "code_expired").await;
}

#[tokio::test]
async fn resend_waits_60_seconds_then_sends_a_new_code_that_replaces_the_old() {
    let app = TestApp::spawn().await;
    let phone = unique_phone();
    let id = app.start_signup(&phone).await;
    let first = app.code_for(&phone);
    let response = app
        .post_json("/v1/auth/otp/resend", &json!({"verification_id": id}))
        .await;
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_problem(response, 429, "too_many_requests").await;

    let past = chrono::Utc::now().naive_utc() - chrono::Duration::seconds(61);
    diesel::update(verifications::table.find(&id))
        .set(verifications::last_sent_at.eq(Some(past)))
        .execute(&mut app.conn())
        .unwrap();
    let response = app
        .post_json("/v1/auth/otp/resend", &json!({"verification_id": id}))
        .await;
    assert_eq!(response.status(), 202);
    let second = app.code_for(&phone);
    if first != second {
        let old = app
            .post_json(
                "/v1/auth/signup/verify",
                &json!({"verification_id": id, "code": first}),
            )
            .await;
        assert_problem(old, 422, "invalid_code").await;
    }
    let new = app
        .post_json(
            "/v1/auth/signup/verify",
            &json!({"verification_id": id, "code": second}),
        )
        .await;
    assert_eq!(new.status(), 201);
}

#[tokio::test]
async fn a_phone_gets_at_most_five_texts_an_hour() {
    let app = TestApp::spawn().await;
    let phone = unique_phone();
    for _ in 0..5 {
        app.start_signup(&phone).await;
    }
    let response = app
        .post_json(
            "/v1/auth/signup",
            &json!({"phone": phone, "password": PASSWORD}),
        )
        .await;
    assert!(response.headers().contains_key("retry-after"));
    assert_problem(response, 429, "too_many_requests").await;
    assert_eq!(
        app.twilio
            .messages()
            .iter()
            .filter(|m| m.to == phone)
            .count(),
        5
    );
}

#[tokio::test]
async fn a_registered_phone_gets_the_same_answer_and_a_text_without_a_code() {
    let app = TestApp::spawn().await;
    let phone = unique_phone();
    app.register(&phone).await;
    let response = app
        .post_json(
            "/v1/auth/signup",
            &json!({"phone": phone, "password": "another long passphrase here"}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["expires_in", "resend_after", "verification_id"]);
    let last = app
        .twilio
        .messages()
        .into_iter()
        .rfind(|m| m.to == phone)
        .unwrap();
    assert!(last.body.contains("already has an account"));
    assert!(!last.body.contains('#'), "no code in it");
    let guess = app
        .post_json(
            "/v1/auth/signup/verify",
            &json!({"verification_id": body["verification_id"], "code": "123456"}),
        )
        .await;
    assert_problem(guess, 422, "invalid_code").await;
}

#[tokio::test]
async fn bad_signups_are_refused_with_their_reason() {
    let app = TestApp::spawn_with(|vars| vars.set("SMS_ALLOWED_REGIONS", "GB,IE")).await;
    let cases = [
        (
            json!({"phone": "07400 900123", "password": PASSWORD}),
            "invalid_phone",
            "phone",
        ),
        (
            json!({"phone": "+44 12", "password": PASSWORD}),
            "invalid_phone",
            "phone",
        ),
        (
            json!({"phone": "+33 6 12 34 56 78", "password": PASSWORD}),
            "region_not_allowed",
            "phone",
        ),
        (
            json!({"phone": unique_phone(), "password": "password1"}),
            "weak_password",
            "password",
        ),
        (
            json!({"phone": unique_phone(), "password": "short"}),
            "weak_password",
            "password",
        ),
        (
            json!({"phone": unique_phone(), "password": PASSWORD, "name": "x".repeat(101)}),
            "invalid_name",
            "name",
        ),
        (
            json!({"phone": unique_phone(), "password": PASSWORD, "role": "admin"}),
            "invalid_field",
            "role",
        ),
        (
            json!({"phone": unique_phone()}),
            "invalid_field",
            "password",
        ),
    ];
    for (body, code, field) in cases {
        let problem =
            assert_problem(app.post_json("/v1/auth/signup", &body).await, 422, code).await;
        assert_eq!(problem["field"], field, "{body}");
    }
    assert!(app.twilio.messages().is_empty(), "nothing texted");
    let malformed = app
        .client
        .post(app.url("/v1/auth/signup"))
        .header("content-type", "application/json")
        .body("{\"phone\": ")
        .send()
        .await
        .unwrap();
    assert_problem(malformed, 400, "malformed_json").await;
    let huge = app
        .client
        .post(app.url("/v1/auth/signup"))
        .header("content-type", "application/json")
        .body(format!("{{\"phone\": \"{}\"}}", "1".repeat(70_000)))
        .send()
        .await
        .unwrap();
    assert_problem(huge, 413, "payload_too_large").await;
}

#[tokio::test]
async fn a_failing_sms_provider_is_a_502_and_a_resend_then_works() {
    let app = TestApp::spawn().await;
    let phone = unique_phone();
    app.twilio.fail_next(3, 503);
    let response = app
        .post_json(
            "/v1/auth/signup",
            &json!({"phone": phone, "password": PASSWORD}),
        )
        .await;
    assert_problem(response, 502, "sms_unavailable").await;
    let id: String = verifications::table
        .select(verifications::id)
        .first(&mut app.conn())
        .unwrap();
    let resend = app
        .post_json("/v1/auth/otp/resend", &json!({"verification_id": id}))
        .await;
    assert_eq!(resend.status(), 202, "no cool-down after a failed text");
    let code = app.code_for(&phone);
    let verify = app
        .post_json(
            "/v1/auth/signup/verify",
            &json!({"verification_id": id, "code": code}),
        )
        .await;
    assert_eq!(verify.status(), 201);
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_phone_look_the_same() {
    let app = TestApp::spawn().await;
    let phone = unique_phone();
    app.register(&phone).await;
    let wrong = app.login(&phone, "not the right password").await;
    let unknown = app.login(&unique_phone(), PASSWORD).await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(unknown.status(), 401);
    let wrong: Value = wrong.json().await.unwrap();
    let unknown: Value = unknown.json().await.unwrap();
    assert_eq!(wrong, unknown);
    assert_eq!(wrong["code"], "invalid_credentials");
    assert_not_logged(&[&phone, "not the right password"]);
}

#[tokio::test]
async fn failed_logins_are_throttled_per_account() {
    let app = TestApp::spawn().await;
    let phone = unique_phone();
    app.register(&phone).await;
    for _ in 0..5 {
        assert_eq!(app.login(&phone, "wrong password here").await.status(), 401);
    }
    let response = app.login(&phone, PASSWORD).await;
    assert!(response.headers().contains_key("retry-after"));
    assert_problem(response, 429, "login_throttled").await;
}

async fn refresh(app: &TestApp, token: &Value) -> reqwest::Response {
    app.post_json("/v1/auth/refresh", &json!({"refresh_token": token}))
        .await
}

#[tokio::test]
async fn a_refresh_token_reused_within_the_grace_period_gets_a_fresh_pair() {
    let app = TestApp::spawn().await;
    let pair = app.register(&unique_phone()).await;
    let first = refresh(&app, &pair["refresh_token"]).await;
    let second = refresh(&app, &pair["refresh_token"]).await;
    assert_eq!(first.status(), 200);
    assert_eq!(second.status(), 200, "two requests of one phone racing");
    let first: Value = first.json().await.unwrap();
    let second: Value = second.json().await.unwrap();
    assert_ne!(first["refresh_token"], second["refresh_token"]);
    // One line goes on: using one sibling spends the other.
    assert_eq!(refresh(&app, &second["refresh_token"]).await.status(), 200);
    assert_problem(
        refresh(&app, &first["refresh_token"]).await,
        401,
        "refresh_token_reused",
    )
    .await;
}

#[tokio::test]
async fn a_refresh_token_reused_after_the_grace_period_ends_the_session() {
    let app = TestApp::spawn().await;
    let pair = app.register(&unique_phone()).await;
    let newer: Value = refresh(&app, &pair["refresh_token"])
        .await
        .json()
        .await
        .unwrap();
    app.spent_past_the_grace_period(&pair["refresh_token"]);
    assert_problem(
        refresh(&app, &pair["refresh_token"]).await,
        401,
        "refresh_token_reused",
    )
    .await;
    // The whole session is gone: its newest refresh token and its access token too.
    assert_problem(
        refresh(&app, &newer["refresh_token"]).await,
        401,
        "session_ended",
    )
    .await;
    let me = app
        .request(Method::GET, "/v1/me", s(&newer["access_token"]), None)
        .await;
    assert_problem(me, 401, "session_ended").await;
    let events: i64 = shopd::db::schema::security_events::table
        .filter(shopd::db::schema::security_events::kind.eq("refresh_token_reuse"))
        .count()
        .get_result(&mut app.conn())
        .unwrap();
    assert_eq!(events, 1);
}

#[tokio::test]
async fn concurrent_uses_of_one_refresh_token_never_fork_the_session() {
    let app = TestApp::spawn().await;
    let pair = app.register(&unique_phone()).await;
    let tries = (0..8).map(|_| refresh(&app, &pair["refresh_token"]));
    let answers = futures_util::future::join_all(tries).await;
    let mut issued = Vec::new();
    for answer in answers {
        assert_eq!(answer.status(), 200, "all within the grace period");
        let body: Value = answer.json().await.unwrap();
        issued.push(body["refresh_token"].clone());
    }
    // Only one of the siblings can go on.
    let mut alive = 0;
    for token in &issued {
        if refresh(&app, token).await.status() == 200 {
            alive += 1;
        }
    }
    assert_eq!(alive, 1);
}

async fn logins(app: &TestApp, phone: &str, n: usize) -> Vec<String> {
    let mut tokens = Vec::new();
    for _ in 0..n {
        let body: Value = app.login(phone, PASSWORD).await.json().await.unwrap();
        tokens.push(s(&body["access_token"]).to_owned());
    }
    tokens
}

async fn status_of(app: &TestApp, token: &str) -> u16 {
    app.request(Method::GET, "/v1/me", token, None)
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn each_logout_scope_ends_what_it_says() {
    let app = TestApp::spawn().await;
    let phone = unique_phone();
    app.register(&phone).await;

    let t = logins(&app, &phone, 3).await;
    assert_eq!(
        app.request(Method::POST, "/v1/auth/logout", &t[0], Some(&json!({})))
            .await
            .status(),
        204
    );
    assert_eq!(
        [
            status_of(&app, &t[0]).await,
            status_of(&app, &t[1]).await,
            status_of(&app, &t[2]).await
        ],
        [401, 200, 200]
    );

    let scope = json!({"scope": "others"});
    assert_eq!(
        app.request(Method::POST, "/v1/auth/logout", &t[1], Some(&scope))
            .await
            .status(),
        204
    );
    assert_eq!(
        [status_of(&app, &t[1]).await, status_of(&app, &t[2]).await],
        [200, 401]
    );

    let u = logins(&app, &phone, 2).await;
    let scope = json!({"scope": "global"});
    assert_eq!(
        app.request(Method::POST, "/v1/auth/logout", &u[0], Some(&scope))
            .await
            .status(),
        204
    );
    for token in [&t[1], &u[0], &u[1]] {
        assert_eq!(status_of(&app, token).await, 401);
    }

    let v = logins(&app, &phone, 1).await;
    let bad = json!({"scope": "everything"});
    let response = app
        .request(Method::POST, "/v1/auth/logout", &v[0], Some(&bad))
        .await;
    assert_problem(response, 422, "invalid_field").await;
    assert_eq!(
        status_of(&app, &v[0]).await,
        200,
        "a refused logout ends nothing"
    );
}

#[tokio::test]
async fn sessions_are_listed_and_ended_one_by_one_but_only_ones_own() {
    let app = TestApp::spawn().await;
    let phone = unique_phone();
    app.register(&phone).await;
    let t = logins(&app, &phone, 2).await;
    let list: Value = app
        .request(Method::GET, "/v1/auth/sessions", &t[1], None)
        .await
        .json()
        .await
        .unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);
    let other = list.iter().find(|s| s["current"] == false).unwrap();
    for key in ["id", "created_at", "last_used_at", "client"] {
        assert!(other.get(key).is_some());
    }

    let stranger = app.register(&unique_phone()).await;
    let path = format!("/v1/auth/sessions/{}", s(&other["id"]));
    let response = app
        .request(Method::DELETE, &path, s(&stranger["access_token"]), None)
        .await;
    assert_problem(response, 404, "not_found").await;
    assert_eq!(
        app.request(Method::DELETE, &path, &t[1], None)
            .await
            .status(),
        204
    );
    let list: Value = app
        .request(Method::GET, "/v1/auth/sessions", &t[1], None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
}

/// Re-signs the claims of `token` after `change`, with the application's own key.
fn resign(
    app: &TestApp,
    token: &str,
    change: impl FnOnce(&mut shopd::auth::claims::Claims),
) -> String {
    let mut claims: shopd::auth::claims::Claims =
        serde_json::from_value(crate::helpers::token_claims(token)).unwrap();
    change(&mut claims);
    app.state.config.keys.access_tokens.sign(&claims)
}

#[tokio::test]
async fn forged_and_unfit_access_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let pair = app.register(&unique_phone()).await;
    let token = s(&pair["access_token"]).to_owned();
    assert_eq!(status_of(&app, &token).await, 200);
    let parts: Vec<&str> = token.split('.').collect();
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();

    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        parts[1]
    );
    let hs_header = b64(&json!({"alg": "HS256", "typ": "JWT", "kid": header["kid"]}));
    let jwks: Value = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    let public = URL_SAFE_NO_PAD.decode(s(&jwks["keys"][0]["x"])).unwrap();
    let hs = {
        use hmac::{KeyInit, Mac};
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&public).unwrap();
        mac.update(format!("{hs_header}.{}", parts[1]).as_bytes());
        format!(
            "{hs_header}.{}.{}",
            parts[1],
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    };
    let unknown_kid = format!(
        "{}.{}.{}",
        b64(&json!({"alg": "EdDSA", "typ": "JWT", "kid": "nobody"})),
        parts[1],
        parts[2]
    );
    let mut tampered_payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    tampered_payload["sub"] = json!("someone-else");
    let tampered = format!("{}.{}.{}", parts[0], b64(&tampered_payload), parts[2]);
    let staff = resign(&app, &token, |c| {
        c.aud = shopd::auth::claims::Audience::Staff
    });
    let now = chrono::Utc::now().timestamp();
    let expired = resign(&app, &token, |c| {
        c.iat = now - 400;
        c.nbf = now - 400;
        c.exp = now - 31;
    });
    let other_issuer = resign(&app, &token, |c| c.iss = "https://evil.example".into());

    for (what, bad) in [
        ("alg none", none),
        ("HS256 with the public key", hs),
        ("unknown kid", unknown_kid),
        ("tampered", tampered),
        ("staff audience", staff),
        ("expired", expired),
        ("other issuer", other_issuer),
        ("garbage", "not.a.token".to_owned()),
    ] {
        let response = app.request(Method::GET, "/v1/me", &bad, None).await;
        assert_eq!(response.status(), 401, "{what}");
        assert!(response.headers().contains_key("www-authenticate"));
        assert_problem(response, 401, "invalid_token").await;
    }
    let within_leeway = resign(&app, &token, |c| c.exp = now - 10);
    assert_eq!(status_of(&app, &within_leeway).await, 200, "30 s leeway");
    let response = app.client.get(app.url("/v1/me")).send().await.unwrap();
    assert_problem(response, 401, "invalid_token").await;
    let twice = app
        .client
        .get(app.url("/v1/me"))
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_problem(twice, 401, "invalid_token").await;
}

#[tokio::test]
async fn a_password_reset_sets_the_password_and_ends_every_session() {
    let app = TestApp::spawn().await;
    let phone = unique_phone();
    let pair = app.register(&phone).await;
    let response = app
        .post_json("/v1/auth/password-reset", &json!({"phone": phone}))
        .await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    let mut code = None;
    for _ in 0..100 {
        let texts = app.twilio.messages();
        if texts.iter().filter(|m| m.to == phone).count() == 2 {
            code = app.twilio.last_code_for(&phone);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let code = code.expect("the reset code was texted");
    let new_password = "a different long passphrase";
    let response = app
        .post_json(
            "/v1/auth/password-reset/verify",
            &json!({"verification_id": body["verification_id"], "code": code, "new_password": new_password}),
        )
        .await;
    assert_eq!(response.status(), 204);
    assert_eq!(status_of(&app, s(&pair["access_token"])).await, 401);
    assert_eq!(refresh(&app, &pair["refresh_token"]).await.status(), 401);
    assert_eq!(app.login(&phone, PASSWORD).await.status(), 401);
    // The reset forgot the phone's known devices: the next login is asked for a code.
    let asked = app.login(&phone, new_password).await;
    assert_eq!(asked.status(), 202);
    let asked: Value = asked.json().await.unwrap();
    let verified = app
        .post_json(
            "/v1/auth/login/verify",
            &json!({"verification_id": asked["verification_id"], "code": app.code_for(&phone)}),
        )
        .await;
    assert_eq!(verified.status(), 200);

    // An unknown phone gets the same answer, and no text.
    let stranger = unique_phone();
    let response = app
        .post_json("/v1/auth/password-reset", &json!({"phone": stranger}))
        .await;
    assert_eq!(response.status(), 202);
    let unknown: Value = response.json().await.unwrap();
    let same_keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(same_keys(&unknown), same_keys(&body));
    assert!(app.twilio.messages().iter().all(|m| m.to != stranger));
    let guess = app
        .post_json(
            "/v1/auth/password-reset/verify",
            &json!({"verification_id": unknown["verification_id"], "code": "123456", "new_password": new_password}),
        )
        .await;
    assert_problem(guess, 422, "invalid_code").await;
    assert_not_logged(&[&phone, &code, new_password, &stranger]);
}

#[tokio::test]
async fn the_profile_shows_masked_values_and_takes_changes() {
    let app = TestApp::spawn().await;
    let pair = app.register(&unique_phone()).await;
    let token = s(&pair["access_token"]);
    let change = json!({"name": "Jo Bloggs", "email": "jo.bloggs@example.com"});
    let response = app
        .request(Method::PATCH, "/v1/me", token, Some(&change))
        .await;
    assert_eq!(response.status(), 200);
    let me: Value = response.json().await.unwrap();
    assert_eq!(me["name"], "Jo Bloggs");
    assert_eq!(me["email_masked"], "j•••@example.com");
    assert!(me.get("email").is_none() && me.get("phone").is_none());

    let bad = app
        .request(
            Method::PATCH,
            "/v1/me",
            token,
            Some(&json!({"email": "not-an-email"})),
        )
        .await;
    assert_problem(bad, 422, "invalid_email").await;
    let cleared = app
        .request(
            Method::PATCH,
            "/v1/me",
            token,
            Some(&json!({"email": null})),
        )
        .await;
    let cleared: Value = cleared.json().await.unwrap();
    assert!(cleared["email_masked"].is_null());
    assert_eq!(
        cleared["name"], "Jo Bloggs",
        "an absent field is left as it was"
    );
}

#[tokio::test]
async fn the_export_needs_a_recent_login_and_holds_every_value() {
    let app = TestApp::spawn().await;
    let phone = unique_phone();
    let pair = app.register(&phone).await;
    let token = s(&pair["access_token"]);
    app.request(
        Method::PATCH,
        "/v1/me",
        token,
        Some(&json!({"name": "Export Person", "email": "export@example.com"})),
    )
    .await;
    let response = app.request(Method::GET, "/v1/me/export", token, None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let export: Value = response.json().await.unwrap();
    assert_eq!(export["phone"], phone.as_str());
    assert_eq!(export["name"], "Export Person");
    assert_eq!(export["email"], "export@example.com");
    assert_eq!(export["sessions"].as_array().unwrap().len(), 1);

    let old_login = resign(&app, token, |c| c.auth_time -= 301);
    let response = app
        .request(Method::GET, "/v1/me/export", &old_login, None)
        .await;
    assert_problem(response, 401, "reauthentication_required").await;
}

#[tokio::test]
async fn erasure_ends_the_account_and_leaves_no_phone_behind() {
    let app = TestApp::spawn().await;
    let phone = unique_phone();
    let pair = app.register(&phone).await;
    let token = s(&pair["access_token"]);
    let wrong = app
        .request(
            Method::DELETE,
            "/v1/me",
            token,
            Some(&json!({"password": "not it at all"})),
        )
        .await;
    assert_problem(wrong, 401, "invalid_credentials").await;
    let response = app
        .request(
            Method::DELETE,
            "/v1/me",
            token,
            Some(&json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(response.status(), 204);
    assert_eq!(status_of(&app, token).await, 401);
    assert_eq!(app.login(&phone, PASSWORD).await.status(), 401);
    crate::crypto::assert_nowhere_in_the_database(&app, &[phone.trim_start_matches('+')]).await;

    // The same phone can sign up again, as a new customer.
    let again = app.register(&phone).await;
    assert_ne!(again["customer_id"], pair["customer_id"]);
}

#[tokio::test]
async fn the_production_argon2_parameters_are_used_and_old_hashes_upgraded() {
    let cheap = TestApp::spawn().await;
    let phone = unique_phone();
    cheap.register(&phone).await;
    let stored = || -> String {
        shopd::db::schema::customers::table
            .select(shopd::db::schema::customers::password_hash)
            .first::<Option<String>>(&mut cheap.conn())
            .unwrap()
            .unwrap()
    };
    assert!(stored().starts_with("$argon2id$v=19$m=256,t=1,p=1$"));

    let mut vars = cheap.vars.clone();
    vars.set("ARGON2_MEMORY_KIB", "");
    vars.set("ARGON2_ITERATIONS", "");
    let production = TestApp::spawn_on(cheap.db.clone(), Some(vars), |_| {}).await;
    assert_eq!(production.login(&phone, PASSWORD).await.status(), 200);
    assert!(
        stored().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "upgraded at login"
    );
    assert_eq!(production.login(&phone, PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn a_logout_on_one_instance_is_refused_on_another_within_a_second() {
    let a = TestApp::spawn().await;
    let b = TestApp::spawn_on(a.db.clone(), Some(a.vars.clone()), |_| {}).await;
    let pair = a.register(&unique_phone()).await;
    let token = s(&pair["access_token"]);
    assert_eq!(status_of(&b, token).await, 200);
    assert_eq!(
        a.request(Method::POST, "/v1/auth/logout", token, None)
            .await
            .status(),
        204
    );
    assert_eq!(
        status_of(&a, token).await,
        401,
        "the very next request on the same instance"
    );
    let ended = std::time::Instant::now();
    loop {
        if status_of(&b, token).await == 401 {
            break;
        }
        assert!(
            ended.elapsed() < std::time::Duration::from_secs(1),
            "refused on the other within 1 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn abandoned_signups_are_purged_with_their_data_key() {
    use shopd::db::schema::data_keys;
    let app = TestApp::spawn().await;
    let done = unique_phone();
    app.register(&done).await;
    app.start_signup(&unique_phone()).await;
    let keys_before: i64 = data_keys::table
        .count()
        .get_result(&mut app.conn())
        .unwrap();
    assert_eq!(keys_before, 2);
    let long_ago = chrono::Utc::now().naive_utc() - chrono::Duration::days(2);
    diesel::update(verifications::table)
        .set(verifications::expires_at.eq(long_ago))
        .execute(&mut app.conn())
        .unwrap();
    let purged = shopd::auth::purge::purge(&mut app.conn()).unwrap();
    assert_eq!(purged.verifications, 2);
    assert_eq!(
        purged.orphan_data_keys, 1,
        "only the abandoned signup's key"
    );
    let left: i64 = verifications::table
        .count()
        .get_result(&mut app.conn())
        .unwrap();
    assert_eq!(left, 0);
    assert_eq!(
        app.login(&done, PASSWORD).await.status(),
        200,
        "the customer is untouched"
    );
}

/// `last_used_at` of the current session, as the sessions list shows it.
async fn last_used(app: &TestApp, access_token: &str) -> chrono::DateTime<chrono::Utc> {
    let list: Value = app
        .request(Method::GET, "/v1/auth/sessions", access_token, None)
        .await
        .json()
        .await
        .unwrap();
    let current = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .expect("the current session is listed");
    s(&current["last_used_at"]).parse().unwrap()
}

#[tokio::test]
async fn a_refresh_moves_last_used_at_only_when_it_is_a_minute_old() {
    let app = TestApp::spawn().await;
    let pair = app.register(&unique_phone()).await;
    let started = last_used(&app, s(&pair["access_token"])).await;
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let next: Value = refresh(&app, &pair["refresh_token"])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        last_used(&app, s(&next["access_token"])).await,
        started,
        "a second later, the refresh leaves it as it was"
    );

    // Made two minutes old, it moves to now.
    {
        use shopd::db::schema::sessions;
        let two_minutes_ago = chrono::Utc::now().naive_utc() - chrono::Duration::minutes(2);
        diesel::update(sessions::table)
            .set(sessions::last_used_at.eq(two_minutes_ago))
            .execute(&mut app.conn())
            .unwrap();
    }
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let last: Value = refresh(&app, &next["refresh_token"])
        .await
        .json()
        .await
        .unwrap();
    let moved = last_used(&app, s(&last["access_token"])).await;
    assert!(moved >= before, "{moved} is now, not {started}");
}

/// When the view of ended sessions cannot be re-read (here the only database connection is held, so its
/// re-reads wait), a token's session is looked up in the database rather than trusted to a stale view, and
/// `shopd_session_checks_in_database_total` counts it. Once the view is re-read, tokens are checked in
/// memory again.
#[tokio::test]
async fn a_stale_view_of_ended_sessions_sends_the_check_to_the_database_and_counts_it() {
    const TOKEN: &str = "identity-tests-metrics-token-0123456789";
    let app = TestApp::spawn_with(|vars| {
        vars.set("METRICS_TOKEN", TOKEN);
        vars.set("DATABASE_POOL_SIZE", "1");
        vars.set("DATABASE_TIMEOUT", "30s");
    })
    .await;
    let phone = unique_phone();
    let pair = app.register(&phone).await;
    let access = pair["access_token"].as_str().expect("a token").to_owned();
    let checks = || async {
        series(
            &app.metrics_text(TOKEN).await,
            "shopd_session_checks_in_database_total",
        )
    };
    let before = checks().await;

    let db = app.state.db.clone();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let holder = tokio::task::spawn_blocking(move || {
        let conn = db.get().expect("the only connection");
        let _ = released.recv_timeout(Duration::from_secs(25));
        drop(conn);
    });
    // Past STALE_AFTER (900 ms) since the last re-read, which ended before the connection was taken.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let (client, url) = (app.client.clone(), app.url("/v1/me"));
    let bearer = access.clone();
    let request =
        tokio::spawn(async move { client.get(url).bearer_auth(bearer).send().await.unwrap() });
    let deadline = Instant::now() + Duration::from_secs(15);
    while checks().await == before {
        assert!(
            Instant::now() < deadline,
            "the request was not sent to the database"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    release.send(()).unwrap();
    holder.await.unwrap();
    let response = request.await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "the database says the session is live"
    );
    assert_eq!(checks().await, before + 1.0);

    // The view is re-read within a poll or two: requests are checked in memory again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let counted = checks().await;
        let me = app.request(Method::GET, "/v1/me", &access, None).await;
        assert_eq!(me.status(), 200);
        if checks().await == counted {
            break;
        }
        assert!(Instant::now() < deadline, "the view was never re-read");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_not_logged(&[&phone, &access]);
}

/// A refresh is a few statements on `refresh_tokens`: the token with its session, spending it, spending its
/// siblings (for a token that has a parent), its child.
#[tokio::test]
async fn a_refresh_is_at_most_four_statements_on_its_tokens() {
    let db = std::sync::Arc::new(crate::helpers::TestDb::new());
    let url = db.connection_url();
    statements::record_for(&url);
    let app = TestApp::spawn_on(db, None, |_| {}).await;
    let (issued, _) = app.direct_customer_session();
    let mut token = issued.refresh_token.into_inner();
    statements::take(&url);
    for _ in 0..3 {
        let refreshed = app
            .post_json("/v1/auth/refresh", &json!({"refresh_token": token}))
            .await;
        assert_eq!(refreshed.status(), 200);
        let refreshed: Value = refreshed.json().await.unwrap();
        token = s(&refreshed["refresh_token"]).to_owned();
    }
    let refreshes: Vec<String> = statements::take(&url)
        .into_iter()
        .map(|(_, sql)| sql)
        .filter(|sql| sql.contains("refresh_tokens"))
        .collect();
    // The first token has no parent, so no siblings to spend: 3, then 4 and 4.
    assert_eq!(refreshes.len(), 11, "{refreshes:#?}");
}

/// A login reads the failed logins and the account before the hash; after it, one transaction clears the
/// failures, marks the known device used and starts the session with its refresh token.
#[tokio::test]
async fn a_login_is_two_reads_and_one_transaction_of_four_writes() {
    let db = std::sync::Arc::new(crate::helpers::TestDb::new());
    let url = db.connection_url();
    statements::record_for(&url);
    let app = TestApp::spawn_on(db, None, |_| {}).await;
    let phone = unique_phone();
    app.register(&phone).await;
    assert_eq!(app.login(&phone, PASSWORD).await.status(), 200);
    statements::take(&url);
    assert_eq!(app.login(&phone, PASSWORD).await.status(), 200);
    // The ended-session view's poll (every 250 ms, a plain read of `sessions.ended_at`) may land in between.
    let login: Vec<String> = statements::take(&url)
        .into_iter()
        .map(|(_, sql)| sql)
        .filter(|sql| !(sql.starts_with("SELECT") && sql.contains("ended_at")))
        .collect();
    assert_eq!(login.len(), 8, "{login:#?}");
    assert!(login[0].contains("login_failures"), "{login:#?}");
    assert!(login[1].contains("customers"), "{login:#?}");
    assert!(login[2].starts_with("BEGIN"), "{login:#?}");
    assert!(login[3].starts_with("DELETE") && login[3].contains("login_failures"));
    assert!(login[4].starts_with("UPDATE") && login[4].contains("known_devices"));
    assert!(login[5].contains("INSERT INTO") && login[5].contains("sessions"));
    assert!(login[6].contains("INSERT INTO") && login[6].contains("refresh_tokens"));
    assert!(login[7].starts_with("COMMIT"), "{login:#?}");
}

#[tokio::test]
async fn a_login_clears_the_failed_logins_before_it() {
    let app = TestApp::spawn().await;
    let phone = unique_phone();
    app.register(&phone).await;
    for _ in 0..2 {
        // Four failures, one short of the back-off, then the right password.
        for _ in 0..4 {
            assert_eq!(app.login(&phone, "wrong password here").await.status(), 401);
        }
        assert_eq!(app.login(&phone, PASSWORD).await.status(), 200);
    }
    // Eight failures in all, but never five since the last login: none of them was throttled.
    let failures: i64 = shopd::db::schema::login_failures::table
        .count()
        .get_result(&mut app.conn())
        .unwrap();
    assert_eq!(failures, 0);
}
