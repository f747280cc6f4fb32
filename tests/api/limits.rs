//! The default rate limits against what phones behind a carrier's NAT and a store's staff do: many people
//! behind one address. A request with an access token is counted per account; per-address budgets apply
//! only before there is an account. Every request of these tests comes from the one address of the test
//! client.

use std::sync::Arc;

use reqwest::Method;
use serde_json::{Value, json};
use shopd::domain::Sensitive;
use shopd::staff::Role;

use crate::helpers::{TestApp, new_key, order_body};

/// An app with the limits as they ship (the other tests turn them off).
async fn with_default_limits() -> Arc<TestApp> {
    Arc::new(
        TestApp::spawn_with(|vars| {
            for name in [
                "RATE_LIMIT_ACCOUNT",
                "RATE_LIMIT_AUTH",
                "RATE_LIMIT_WEBHOOKS",
                "RATE_LIMIT_API",
            ] {
                vars.set(name, "");
            }
        })
        .await,
    )
}

/// `count` customers, each with an order placed: (access token, order id).
async fn customers_with_an_order(app: &TestApp, count: usize) -> Vec<(String, String)> {
    let product = app.add_product("Tea", 450, 1_000);
    let mut placed = Vec::new();
    for _ in 0..count {
        let (token, _) = app.direct_customer();
        let order = app
            .place_order(&token, Some(&new_key()), &order_body(&[(&product, 1)]))
            .await;
        assert_eq!(order.status(), 201);
        let order: Value = order.json().await.unwrap();
        placed.push((token, order["id"].as_str().unwrap().to_owned()));
    }
    placed
}

/// Polls `order` `times` times as its owner; the statuses answered.
async fn poll(app: Arc<TestApp>, token: String, order: String, times: usize) -> Vec<u16> {
    let mut statuses = Vec::with_capacity(times);
    for _ in 0..times {
        let response = app
            .request(Method::GET, &format!("/v1/orders/{order}"), &token, None)
            .await;
        statuses.push(response.status().as_u16());
    }
    statuses
}

/// 50 customers behind one address each poll their order once a second for a minute: 60 reads each, here
/// sent as fast as they go, which asks more of a rate than the same reads spread over the minute.
#[tokio::test]
async fn fifty_customers_behind_one_address_polling_their_orders_for_a_minute_get_no_429() {
    let app = with_default_limits().await;
    let customers = customers_with_an_order(&app, 50).await;
    let polls: Vec<_> = customers
        .into_iter()
        .map(|(token, order)| tokio::spawn(poll(app.clone(), token, order, 60)))
        .collect();
    for polled in polls {
        let statuses = polled.await.unwrap();
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    }
}

/// One account hammering its order is refused with `Retry-After`; the other 49 behind the same address go on.
#[tokio::test]
async fn one_account_hammering_gets_429_while_the_others_behind_its_address_go_on() {
    let app = with_default_limits().await;
    let mut customers = customers_with_an_order(&app, 50).await;
    let (token, order) = customers.remove(0);
    let mut refused = None;
    for _ in 0..700 {
        let response = app
            .request(Method::GET, &format!("/v1/orders/{order}"), &token, None)
            .await;
        if response.status() == 429 {
            refused = Some(response);
            break;
        }
        assert_eq!(response.status(), 200);
    }
    let refused = refused.expect("the hammering account was limited");
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1, "{retry_after}");
    crate::helpers::assert_problem(refused, 429, "too_many_requests").await;
    let polls: Vec<_> = customers
        .into_iter()
        .map(|(token, order)| tokio::spawn(poll(app.clone(), token, order, 10)))
        .collect();
    for polled in polls {
        let statuses = polled.await.unwrap();
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    }
}

/// 30 staff members sign in from the store's one address at the start of a shift (with their authenticator
/// codes, set up before), and each then works with their token.
#[tokio::test]
async fn thirty_staff_members_signing_in_from_one_address_all_get_in() {
    const PASSWORD: &str = "staff passphrase long enough";
    let app = with_default_limits().await;
    let mut emails = Vec::new();
    for n in 0..30 {
        let email = format!(
            "clerk{n}.{}@shop.example.com",
            uuid::Uuid::new_v4().simple()
        );
        app.state
            .staff
            .add(&email, Role::Clerk, Sensitive::new(PASSWORD.to_owned()))
            .await
            .unwrap();
        crate::console::enrol(&mut crate::console::Console::new(&app), &email).await;
        emails.push(email);
    }
    let mut logins = Vec::new();
    for email in emails {
        let app = app.clone();
        let code = crate::console::fresh_code(&email).await;
        logins.push(tokio::spawn(async move {
            app.post_json(
                "/v1/staff/auth/login",
                &json!({"email": email, "password": PASSWORD, "code": code}),
            )
            .await
        }));
    }
    for login in logins {
        let response = login.await.unwrap();
        assert_eq!(response.status(), 200);
        let pair: Value = response.json().await.unwrap();
        let token = pair["access_token"].as_str().unwrap();
        let orders = app
            .request(Method::GET, "/v1/staff/orders", token, None)
            .await;
        assert_eq!(orders.status(), 200);
    }
}
