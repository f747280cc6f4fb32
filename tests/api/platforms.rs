//! Sign in with Apple and Google (issue 30), over HTTP against a local provider serving its JWKS: the sign-in
//! and every check of the ID token, the phone a new account must verify before ordering, linked identities,
//! and Apple's notifications.

use diesel::prelude::*;
use reqwest::Method;
use serde_json::{Value, json};

use crate::fake_provider::{
    APPLE_CLIENT, FakeProvider, GOOGLE_CLIENT, KEY_A, KEY_B, TestKey, apple_claims,
    apple_notification, google_claims, now,
};
use crate::helpers::{
    TestApp, assert_not_logged, assert_problem, new_key, order_body, unique_phone,
};

struct World {
    app: TestApp,
    apple: FakeProvider,
    google: FakeProvider,
    key: TestKey,
}

async fn world() -> World {
    let key = TestKey::new("key-a", KEY_A);
    let apple = FakeProvider::start(&[&key]).await;
    let google = FakeProvider::start(&[&key]).await;
    let (apple_url, google_url) = (apple.jwks_url.clone(), google.jwks_url.clone());
    let app = TestApp::spawn_with(|vars| {
        vars.set(
            "APPLE_CLIENT_IDS",
            format!("{APPLE_CLIENT}, com.example.shop.web"),
        );
        vars.set("APPLE_JWKS_URL", &apple_url);
        vars.set("GOOGLE_CLIENT_IDS", GOOGLE_CLIENT);
        vars.set("GOOGLE_JWKS_URL", &google_url);
    })
    .await;
    World {
        app,
        apple,
        google,
        key,
    }
}

fn subject() -> String {
    format!("000{}.{}", rand_digits(), uuid::Uuid::new_v4().simple())
}

fn rand_digits() -> u32 {
    u32::from_be_bytes(shopd::config::secrets::random_bytes::<4>()) % 1_000_000
}

impl World {
    async fn nonce(&self) -> String {
        let response = self.app.post_json("/v1/auth/nonce", &json!({})).await;
        assert_eq!(response.status(), 201);
        assert_eq!(response.headers()["cache-control"], "no-store");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["expires_in"], 300);
        body["nonce"].as_str().unwrap().to_owned()
    }

    async fn sign_in(&self, provider: &str, token: &str, nonce: &str) -> reqwest::Response {
        self.app
            .post_json(
                &format!("/v1/auth/{provider}"),
                &json!({"id_token": token, "nonce": nonce}),
            )
            .await
    }

    /// Signs in with Apple as `sub` through a fresh nonce: the response's body.
    async fn apple_sign_in(&self, sub: &str) -> Value {
        let nonce = self.nonce().await;
        let response = self
            .sign_in("apple", &self.key.sign(&apple_claims(sub, &nonce)), &nonce)
            .await;
        assert!(response.status().is_success(), "{}", response.status());
        let mut body: Value = response.json().await.unwrap();
        // For the test's own later sign-ins as the same subject.
        body["test_subject"] = json!(sub);
        body
    }

    fn customers(&self) -> i64 {
        shopd::db::schema::customers::table
            .count()
            .get_result(&mut self.app.conn())
            .unwrap()
    }

    /// Verifies `phone` for the signed-in `token`'s account.
    async fn verify_phone(&self, token: &str, phone: &str) -> reqwest::Response {
        let started = self
            .app
            .request(
                Method::POST,
                "/v1/me/phone",
                token,
                Some(&json!({ "phone": phone })),
            )
            .await;
        assert_eq!(started.status(), 202);
        let started: Value = started.json().await.unwrap();
        let code = self.app.code_for(phone);
        self.app
            .request(
                Method::POST,
                "/v1/me/phone/verify",
                token,
                Some(&json!({"verification_id": started["verification_id"], "code": code})),
            )
            .await
    }
}

#[tokio::test]
async fn an_account_made_through_apple_cannot_order_before_a_phone_is_verified() {
    let w = world().await;
    let sub = subject();
    let first = w.apple_sign_in(&sub).await;
    assert_eq!(first["created"], true);
    assert_eq!(first["phone_verified"], false);
    assert_eq!(first["token_type"], "Bearer");
    let claims = crate::helpers::token_claims(first["access_token"].as_str().unwrap());
    assert_eq!(claims["amr"], json!(["fed"]));
    let token = first["access_token"].as_str().unwrap();
    let customer = first["customer_id"].as_str().unwrap();

    // The relay address Apple gave is the account's e-mail, masked in the profile and sealed in the database.
    let profile: Value = w
        .app
        .request(Method::GET, "/v1/me", token, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(profile["phone_masked"], Value::Null);
    assert!(
        profile["email_masked"]
            .as_str()
            .unwrap()
            .ends_with("@privaterelay.appleid.com")
    );
    let stored: Option<Vec<u8>> = shopd::db::schema::customers::table
        .find(customer)
        .select(shopd::db::schema::customers::email)
        .first(&mut w.app.conn())
        .unwrap();
    let relay = format!("{sub}@privaterelay.appleid.com");
    assert!(
        !String::from_utf8_lossy(&stored.unwrap()).contains(&relay),
        "sealed, not in clear"
    );

    let product = w.app.add_product("Mug", 1200, 5);
    let refused = w
        .app
        .place_order(token, Some(&new_key()), &order_body(&[(&product, 1)]))
        .await;
    assert_problem(refused, 403, "phone_verification_required").await;
    assert_eq!(w.app.stock_of(&product), 5, "nothing was reserved");

    let phone = unique_phone();
    let verified = w.verify_phone(token, &phone).await;
    assert_eq!(verified.status(), 200);
    let profile: Value = verified.json().await.unwrap();
    assert!(profile["phone_masked"].as_str().unwrap().starts_with("+44"));
    let placed = w
        .app
        .place_order(token, Some(&new_key()), &order_body(&[(&product, 1)]))
        .await;
    assert_eq!(placed.status(), 201);

    // Signing in again finds the same account, now with its phone.
    let again = w.apple_sign_in(&sub).await;
    assert_eq!(again["created"], false);
    assert_eq!(again["phone_verified"], true);
    assert_eq!(again["customer_id"], customer);
    assert_not_logged(&[&sub, &relay, &phone]);
}

#[tokio::test]
async fn google_sign_in_never_joins_an_account_by_its_email() {
    let w = world().await;
    let phone = unique_phone();
    let existing = w.app.register(&phone).await;
    let token = existing["access_token"].as_str().unwrap();
    let patched = w
        .app
        .request(
            Method::PATCH,
            "/v1/me",
            token,
            Some(&json!({"email": "ada@example.com"})),
        )
        .await;
    assert_eq!(patched.status(), 200);

    // A Google account with the same, verified e-mail is another customer.
    let nonce = w.nonce().await;
    let response = w
        .sign_in(
            "google",
            &w.key.sign(&google_claims(&subject(), &nonce)),
            &nonce,
        )
        .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["created"], true);
    assert_ne!(body["customer_id"], existing["customer_id"]);
}

#[tokio::test]
async fn every_check_of_the_id_token_refuses_its_own_flaw_and_spends_nothing() {
    let w = world().await;
    let sub = subject();
    let nonce = w.nonce().await;
    let with = |name: &str, value: Value| {
        let mut claims = apple_claims(&sub, &nonce);
        claims[name] = value;
        claims
    };
    let other = TestKey::new("key-a", KEY_B);
    let cases: Vec<(String, &str)> = vec![
        (
            w.key.sign(&with("aud", json!("com.other.app"))),
            "it is for another app",
        ),
        (
            w.key
                .sign(&with("iss", json!("https://accounts.google.com"))),
            "its issuer is not the provider",
        ),
        (
            w.key.sign(&with("exp", json!(now() - 120))),
            "it has expired",
        ),
        (
            w.key.sign(&with("iat", json!(now() + 600))),
            "it was issued in the future",
        ),
        (
            w.key.sign(&with("nonce", json!(nonce.clone()))),
            "its nonce is not this sign-in's",
        ),
        (
            other.sign(&apple_claims(&sub, &nonce)),
            "its signature is wrong",
        ),
        ("not.a.jwt".to_owned(), "it is not a JWT"),
    ];
    for (token, reason) in cases {
        let response = w.sign_in("apple", &token, &nonce).await;
        let body = assert_problem(response, 401, "invalid_id_token").await;
        assert!(
            body["detail"].as_str().unwrap().contains(reason),
            "{reason}: {body}"
        );
    }
    // A Google token is not an Apple one, and a nonce shopd did not give opens nothing.
    let google = w.key.sign(&google_claims(&sub, &nonce));
    assert_problem(
        w.sign_in("apple", &google, &nonce).await,
        401,
        "invalid_id_token",
    )
    .await;
    let made_up = "a-nonce-shopd-never-gave";
    let token = w.key.sign(&apple_claims(&sub, made_up));
    assert_problem(
        w.sign_in("apple", &token, made_up).await,
        422,
        "invalid_nonce",
    )
    .await;
    assert_eq!(w.customers(), 0, "no refusal made an account");

    // The nonce survived every refusal; the good token spends it, and replaying that token is refused.
    let good = w.key.sign(&apple_claims(&sub, &nonce));
    assert_eq!(w.sign_in("apple", &good, &nonce).await.status(), 201);
    assert_problem(
        w.sign_in("apple", &good, &nonce).await,
        422,
        "invalid_nonce",
    )
    .await;
    assert_eq!(w.customers(), 1);
    assert_eq!(w.apple.fetches(), 1, "the JWKS is fetched once and kept");
}

#[tokio::test]
async fn an_unknown_kid_costs_one_fetch_a_minute_and_a_provider_that_is_down_is_a_503() {
    let w = world().await;
    w.apple_sign_in(&subject()).await;
    assert_eq!(w.apple.fetches(), 1);
    // The provider rotates to a key shopd has not seen. Within the minute of the last fetch, no fetch: a
    // stream of forged key ids cannot make shopd hammer the provider (the unit tests of `auth::id_tokens`
    // show the fetch after the minute, with the clock moved).
    let rotated = TestKey::new("key-b", KEY_B);
    w.apple.publish(&[&rotated]);
    for _ in 0..3 {
        let nonce = w.nonce().await;
        let token = rotated.sign(&apple_claims(&subject(), &nonce));
        let body = assert_problem(
            w.sign_in("apple", &token, &nonce).await,
            401,
            "invalid_id_token",
        )
        .await;
        assert!(body["detail"].as_str().unwrap().contains("key id"));
    }
    assert_eq!(w.apple.fetches(), 1);

    // Google is down and shopd has none of its keys: 503 with Retry-After, no account.
    w.google.go_down();
    let nonce = w.nonce().await;
    let token = w.key.sign(&google_claims(&subject(), &nonce));
    let response = w.sign_in("google", &token, &nonce).await;
    assert!(response.headers().contains_key("retry-after"));
    assert_problem(response, 503, "provider_unavailable").await;
    assert_eq!(w.customers(), 1);
    // Up again: the same nonce and token sign in.
    w.google.publish(&[&w.key]);
    assert_eq!(w.sign_in("google", &token, &nonce).await.status(), 201);
}

#[tokio::test]
async fn a_provider_the_shop_has_not_configured_is_not_there() {
    let app = TestApp::spawn().await;
    let response = app
        .post_json(
            "/v1/auth/google",
            &json!({"id_token": "x.y.z", "nonce": "n"}),
        )
        .await;
    assert_problem(response, 404, "provider_not_enabled").await;
}

#[tokio::test]
async fn identities_link_and_unlink_and_an_account_keeps_one_way_in() {
    let w = world().await;
    let phone = unique_phone();
    let pair = w.app.register(&phone).await;
    let token = pair["access_token"].as_str().unwrap();
    let google_sub = subject();
    let link = |token: String, sub: String| {
        let w = &w;
        async move {
            let nonce = w.nonce().await;
            let id_token = w.key.sign(&google_claims(&sub, &nonce));
            w.app
                .request(
                    Method::POST,
                    "/v1/me/identities",
                    &token,
                    Some(&json!({"provider": "google", "id_token": id_token, "nonce": nonce})),
                )
                .await
        }
    };
    assert_eq!(
        link(token.to_owned(), google_sub.clone()).await.status(),
        204
    );
    let list: Value = w
        .app
        .request(Method::GET, "/v1/me/identities", token, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["provider"], "google");
    assert_eq!(list[0]["email_masked"], "a•••@example.com");
    // The export holds it in clear, as every personal value.
    let export: Value = w
        .app
        .request(Method::GET, "/v1/me/export", token, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(export["identities"][0]["provider"], "google");
    assert_eq!(export["identities"][0]["email"], "ada@example.com");

    // Google now signs in to this account.
    let nonce = w.nonce().await;
    let signed_in = w
        .sign_in(
            "google",
            &w.key.sign(&google_claims(&google_sub, &nonce)),
            &nonce,
        )
        .await;
    assert_eq!(signed_in.status(), 200);
    let signed_in: Value = signed_in.json().await.unwrap();
    assert_eq!(signed_in["customer_id"], pair["customer_id"]);
    assert_eq!(signed_in["phone_verified"], true);

    // Another customer cannot take that Google account, nor link a second one to the first.
    let other = w.app.register(&unique_phone()).await;
    let other_token = other["access_token"].as_str().unwrap().to_owned();
    assert_problem(
        link(other_token, google_sub.clone()).await,
        409,
        "identity_taken",
    )
    .await;
    assert_problem(
        link(token.to_owned(), subject()).await,
        409,
        "provider_already_linked",
    )
    .await;

    // The password stays a way in, so Google can go.
    let unlinked = w
        .app
        .request(Method::DELETE, "/v1/me/identities/google", token, None)
        .await;
    assert_eq!(unlinked.status(), 204);
    assert_problem(
        w.app
            .request(Method::DELETE, "/v1/me/identities/google", token, None)
            .await,
        404,
        "not_found",
    )
    .await;

    // An Apple-only account cannot drop its only way in.
    let apple = w.apple_sign_in(&subject()).await;
    let apple_token = apple["access_token"].as_str().unwrap();
    assert_problem(
        w.app
            .request(Method::DELETE, "/v1/me/identities/apple", apple_token, None)
            .await,
        409,
        "last_way_in",
    )
    .await;
    w.apple_sign_in_again(&apple).await;
}

#[tokio::test]
async fn a_phone_is_verified_only_by_a_recent_sign_in_and_another_accounts_phone_gets_no_code() {
    let w = world().await;
    let taken = unique_phone();
    w.app.register(&taken).await;
    let apple = w.apple_sign_in(&subject()).await;
    let token = apple["access_token"].as_str().unwrap();

    // Another account's phone: the same 202, a text saying so to that phone, and no code to enter.
    let started = w
        .app
        .request(
            Method::POST,
            "/v1/me/phone",
            token,
            Some(&json!({"phone": taken})),
        )
        .await;
    assert_eq!(started.status(), 202);
    let started: Value = started.json().await.unwrap();
    let text = w.app.twilio.messages().last().unwrap().clone();
    assert_eq!(text.to, taken);
    assert!(text.body.contains("belongs to another one already"));
    let guessed = w
        .app
        .request(
            Method::POST,
            "/v1/me/phone/verify",
            token,
            Some(&json!({"verification_id": started["verification_id"], "code": "000000"})),
        )
        .await;
    assert_problem(guessed, 422, "invalid_code").await;

    // A verification is its customer's: another account's token does not find it.
    let other = w.apple_sign_in(&subject()).await;
    let mine = unique_phone();
    let started = w
        .app
        .request(
            Method::POST,
            "/v1/me/phone",
            token,
            Some(&json!({"phone": mine})),
        )
        .await;
    let started: Value = started.json().await.unwrap();
    let code = w.app.code_for(&mine);
    let stolen = w
        .app
        .request(
            Method::POST,
            "/v1/me/phone/verify",
            other["access_token"].as_str().unwrap(),
            Some(&json!({"verification_id": started["verification_id"], "code": code})),
        )
        .await;
    assert_problem(stolen, 404, "verification_not_found").await;

    // A session whose sign-in is older than 5 minutes must sign in again first.
    let old = w.app.aged_session(&apple).await;
    assert_problem(
        w.app
            .request(
                Method::POST,
                "/v1/me/phone",
                &old,
                Some(&json!({"phone": unique_phone()})),
            )
            .await,
        401,
        "reauthentication_required",
    )
    .await;
}

#[tokio::test]
async fn apples_notifications_end_sessions_and_account_delete_erases() {
    let w = world().await;
    let notify = |payload: String| {
        let w = &w;
        async move {
            w.app
                .post_json("/v1/webhooks/apple", &json!({ "payload": payload }))
                .await
        }
    };
    let revoked_sub = subject();
    let revoked = w.apple_sign_in(&revoked_sub).await;
    let token = revoked["access_token"].as_str().unwrap();

    // Forged (another key, another app) changes nothing.
    let forged =
        TestKey::new("key-a", KEY_B).sign(&apple_notification("consent-revoked", &revoked_sub));
    assert_problem(notify(forged).await, 401, "invalid_id_token").await;
    let mut other_app = apple_notification("consent-revoked", &revoked_sub);
    other_app["aud"] = json!("com.other.app");
    assert_problem(
        notify(w.key.sign(&other_app)).await,
        401,
        "invalid_id_token",
    )
    .await;
    assert_eq!(
        w.app
            .request(Method::GET, "/v1/me", token, None)
            .await
            .status(),
        200
    );

    let response = notify(
        w.key
            .sign(&apple_notification("consent-revoked", &revoked_sub)),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["outcome"], "unlinked");
    assert_problem(
        w.app.request(Method::GET, "/v1/me", token, None).await,
        401,
        "session_ended",
    )
    .await;
    // The same notification again has nothing left to do.
    let again = notify(
        w.key
            .sign(&apple_notification("consent-revoked", &revoked_sub)),
    )
    .await;
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["outcome"], "unknown_identity");
    // An Apple sign-in with that subject now makes a new account: the link is gone.
    let fresh = w.apple_sign_in(&revoked_sub).await;
    assert_eq!(fresh["created"], true);

    let deleted_sub = subject();
    let deleted = w.apple_sign_in(&deleted_sub).await;
    let product = w.app.add_product("Mug", 1200, 5);
    let deleted_token = deleted["access_token"].as_str().unwrap();
    assert_eq!(
        w.verify_phone(deleted_token, &unique_phone())
            .await
            .status(),
        200
    );
    assert_eq!(
        w.app
            .place_order(
                deleted_token,
                Some(&new_key()),
                &order_body(&[(&product, 1)])
            )
            .await
            .status(),
        201
    );
    let response = notify(
        w.key
            .sign(&apple_notification("account-delete", &deleted_sub)),
    )
    .await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["outcome"], "erased");
    let erased_at: Option<chrono::NaiveDateTime> = shopd::db::schema::customers::table
        .find(deleted["customer_id"].as_str().unwrap())
        .select(shopd::db::schema::customers::erased_at)
        .first(&mut w.app.conn())
        .unwrap();
    assert!(erased_at.is_some());
    assert_eq!(
        w.app.stock_of(&product),
        5,
        "its unpaid order was cancelled"
    );

    // Other kinds are acknowledged and change nothing.
    let disabled = notify(
        w.key
            .sign(&apple_notification("email-disabled", &revoked_sub)),
    )
    .await;
    let disabled: Value = disabled.json().await.unwrap();
    assert_eq!(disabled["outcome"], "no_effect");
}

#[tokio::test]
async fn an_account_without_a_password_is_erased_after_a_recent_sign_in() {
    let w = world().await;
    let apple = w.apple_sign_in(&subject()).await;
    let old = w.app.aged_session(&apple).await;
    assert_problem(
        w.app
            .request(Method::DELETE, "/v1/me", &old, Some(&json!({})))
            .await,
        401,
        "reauthentication_required",
    )
    .await;
    let fresh = w.apple_sign_in_again(&apple).await;
    let erased = w
        .app
        .request(Method::DELETE, "/v1/me", &fresh, Some(&json!({})))
        .await;
    assert_eq!(erased.status(), 204);
    let left: i64 = shopd::db::schema::identities::table
        .count()
        .get_result(&mut w.app.conn())
        .unwrap();
    assert_eq!(left, 0, "erasure removes the identity");

    // An account with a password still needs it.
    let pair = w.app.register(&unique_phone()).await;
    assert_problem(
        w.app
            .request(
                Method::DELETE,
                "/v1/me",
                pair["access_token"].as_str().unwrap(),
                Some(&json!({})),
            )
            .await,
        401,
        "invalid_credentials",
    )
    .await;
}

impl World {
    /// A fresh sign-in to the Apple account `signed` signed in to: it reaches the same customer.
    async fn apple_sign_in_again(&self, signed: &Value) -> String {
        let body = self
            .apple_sign_in(signed["test_subject"].as_str().unwrap())
            .await;
        assert_eq!(body["customer_id"], signed["customer_id"]);
        body["access_token"].as_str().unwrap().to_owned()
    }
}
