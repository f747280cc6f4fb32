//! Store staff, black-box: accounts from the CLI, login, the security matrix over every staff route, audited
//! reveals, disabling.

use reqwest::Method;
use serde_json::{Value, json};
use shopd::staff::Role;
use shopd::staff::matrix::MATRIX;

use diesel::prelude::*;
use shopd::db::schema::security_events;

use crate::console::staff_login;
use crate::email::mailing_app;
use crate::fake_smtp::FakeSmtp;
use crate::helpers::{
    PASSWORD, TestApp, assert_not_logged, assert_problem, token_claims, unique_phone,
};
use crate::webhooks::{event, msg_id, outcome, paid_after_cancelling, placed, send};

pub(crate) const STAFF_PASSWORD: &str = "staff passphrase long enough";

pub(crate) fn add_staff(app: &TestApp, email: &str, role: &str) {
    let out = app.cli(
        &[
            "staff",
            "add",
            "--email",
            email,
            "--role",
            role,
            "--password-stdin",
        ],
        &format!("{STAFF_PASSWORD}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) fn email_for(role: &str) -> String {
    format!("{role}.{}@shop.example.com", uuid::Uuid::new_v4().simple())
}

/// A new staff member of `role`, logged in: their access token.
async fn staff_token(app: &TestApp, role: &str) -> String {
    let email = email_for(role);
    add_staff(app, &email, role);
    staff_login(app, &email).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn staff_accounts_from_the_cli_and_their_login() {
    let app = TestApp::spawn().await;
    let email = email_for("clerk");
    add_staff(&app, &email, "clerk");
    let weak = app.cli(
        &[
            "staff",
            "add",
            "--email",
            &email_for("x"),
            "--role",
            "clerk",
            "--password-stdin",
        ],
        "password\n",
    );
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("password"));
    let again = app.cli(
        &[
            "staff",
            "add",
            "--email",
            &email,
            "--role",
            "admin",
            "--password-stdin",
        ],
        &format!("{STAFF_PASSWORD}\n"),
    );
    assert!(!again.status.success(), "one account per e-mail");

    let pair = staff_login(&app, &email).await;
    let claims = token_claims(pair["access_token"].as_str().unwrap());
    assert_eq!(
        (claims["aud"].as_str(), claims["role"].as_str()),
        (Some("staff"), Some("clerk"))
    );
    let wrong = app
        .post_json(
            "/v1/staff/auth/login",
            &json!({"email": email, "password": "not the password at all"}),
        )
        .await;
    assert_problem(wrong, 401, "invalid_credentials").await;

    let list = app.cli(&["staff", "list"], "");
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed.contains("clerk") && !listed.contains(&email),
        "masked: {listed}"
    );
    let refreshed = app
        .post_json(
            "/v1/staff/auth/refresh",
            &json!({"refresh_token": pair["refresh_token"]}),
        )
        .await;
    assert_eq!(refreshed.status(), 200);
    assert_not_logged(&[&email, STAFF_PASSWORD]);
}

#[tokio::test]
async fn a_reused_staff_refresh_token_ends_the_session_and_alerts_the_shop() {
    let smtp = FakeSmtp::start().await;
    let desk = "security-desk@shop.example.com";
    let app = mailing_app(&smtp, |vars| vars.set("STAFF_ALERT_EMAIL", desk)).await;
    let email = email_for("manager");
    add_staff(&app, &email, "manager");
    let first = staff_login(&app, &email).await;
    let refresh = |token: &Value| {
        let body = json!({"refresh_token": token.as_str().unwrap()});
        let app = &app;
        async move { app.post_json("/v1/staff/auth/refresh", &body).await }
    };
    let second: Value = refresh(&first["refresh_token"]).await.json().await.unwrap();
    let access = second["access_token"].as_str().unwrap();
    assert_eq!(
        app.request(Method::GET, "/v1/staff/orders", access, None)
            .await
            .status(),
        200
    );
    app.spent_past_the_grace_period(&first["refresh_token"]);

    assert_problem(
        refresh(&first["refresh_token"]).await,
        401,
        "refresh_token_reused",
    )
    .await;
    assert_problem(
        app.request(Method::GET, "/v1/staff/orders", access, None)
            .await,
        401,
        "session_ended",
    )
    .await;
    assert_problem(
        refresh(&second["refresh_token"]).await,
        401,
        "session_ended",
    )
    .await;

    let staff_id = token_claims(access)["sub"].as_str().unwrap().to_owned();
    let events: Vec<(String, String)> = security_events::table
        .filter(security_events::subject_id.eq(&staff_id))
        .select((security_events::kind, security_events::subject_id))
        .load(&mut app.conn())
        .unwrap();
    assert_eq!(
        events,
        vec![("refresh_token_reuse".to_owned(), staff_id.clone())]
    );
    let received = smtp.wait_for(1).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].to, vec![desk.to_owned()]);
    let mail = received[0].parse();
    assert_eq!(
        mail.header("Subject"),
        Some("A staff session at shop.example.com was ended: reused login token")
    );
    assert!(
        mail.text
            .contains(&format!("the staff account {staff_id} at"))
    );
    assert!(mail.html.contains("disable the account"));
    assert!(
        !received[0].data.contains(&email),
        "the staff e-mail stays out"
    );
    assert_not_logged(&[&email, STAFF_PASSWORD]);
}

#[tokio::test]
async fn tokens_of_one_audience_are_refused_on_the_other() {
    let app = TestApp::spawn().await;
    let email = email_for("admin");
    add_staff(&app, &email, "admin");
    let staff = staff_login(&app, &email).await;
    let customer = app.register(&unique_phone()).await;
    let on_customer_route = app
        .request(
            Method::GET,
            "/v1/me",
            staff["access_token"].as_str().unwrap(),
            None,
        )
        .await;
    assert_problem(on_customer_route, 401, "invalid_token").await;
    let on_staff_route = app
        .request(
            Method::GET,
            "/v1/staff/audit-log",
            customer["access_token"].as_str().unwrap(),
            None,
        )
        .await;
    assert_problem(on_staff_route, 401, "invalid_token").await;
    let staff_refresh = app
        .post_json(
            "/v1/auth/refresh",
            &json!({"refresh_token": staff["refresh_token"]}),
        )
        .await;
    assert_eq!(
        staff_refresh.status(),
        401,
        "a staff refresh token is no customer's"
    );
}

/// Walks every route of the matrix with no token, a customer token and each role.
#[tokio::test]
async fn the_security_matrix_holds_for_every_staff_route_and_role() {
    let app = TestApp::spawn().await;
    let roles = ["clerk", "manager", "admin"];
    let emails: Vec<String> = roles.iter().map(|r| email_for(r)).collect();
    for (role, email) in roles.iter().zip(&emails) {
        add_staff(&app, email, role);
    }
    let customer = app.register(&unique_phone()).await;
    let customer_token = customer["access_token"].as_str().unwrap().to_owned();
    let customer_id = customer["customer_id"].as_str().unwrap().to_owned();
    let mut tokens = Vec::new();
    for email in &emails {
        tokens.push(
            staff_login(&app, email).await["access_token"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }

    // The console's routes (cookie, not token) are walked in `console.rs`; logging out last.
    let mut rules: Vec<_> = MATRIX
        .iter()
        .filter(|r| r.path.starts_with("/v1/"))
        .collect();
    rules.sort_by_key(|r| r.path == "/v1/staff/auth/logout");
    for rule in rules {
        let path = rule.path.replace("{id}", &customer_id);
        let method = Method::from_bytes(rule.method.as_bytes()).unwrap();
        let Some(least) = rule.least else {
            let response = app
                .client
                .request(method, app.url(&path))
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            assert_ne!(
                response.status(),
                403,
                "{} {} needs no role",
                rule.method,
                rule.path
            );
            continue;
        };
        let none = app
            .client
            .request(method.clone(), app.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(
            none.status(),
            401,
            "no token: {} {}",
            rule.method,
            rule.path
        );
        let as_customer = app
            .request(method.clone(), &path, &customer_token, None)
            .await;
        assert_eq!(
            as_customer.status(),
            401,
            "customer token: {} {}",
            rule.method,
            rule.path
        );
        for (role, token) in roles.iter().zip(&tokens) {
            let status = app
                .request(method.clone(), &path, token, None)
                .await
                .status()
                .as_u16();
            if Role::parse(role).unwrap() >= least {
                assert!(
                    status != 401 && status != 403,
                    "{role} on {} {}: {status}",
                    rule.method,
                    rule.path
                );
            } else {
                assert_eq!(status, 403, "{role} on {} {}", rule.method, rule.path);
            }
        }
    }
}

#[test]
fn the_security_matrix_document_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/security-matrix.md");
    if std::env::var_os("SHOPD_UPDATE_DOCS").is_some() {
        std::fs::write(path, shopd::staff::matrix::markdown()).unwrap();
    }
    let doc = std::fs::read_to_string(path).expect("docs/security-matrix.md");
    assert_eq!(
        doc,
        shopd::staff::matrix::markdown(),
        "regenerate docs/security-matrix.md from the matrix: SHOPD_UPDATE_DOCS=1 cargo test security_matrix_document"
    );
}

#[tokio::test]
async fn a_disabled_staff_members_live_token_is_refused_on_the_next_request() {
    let app = TestApp::spawn().await;
    let email = email_for("admin");
    add_staff(&app, &email, "admin");
    let pair = staff_login(&app, &email).await;
    let token = pair["access_token"].as_str().unwrap();
    assert_eq!(
        app.request(Method::GET, "/v1/staff/audit-log", token, None)
            .await
            .status(),
        200
    );
    let out = app.cli(&["staff", "disable", &email], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_problem(
        app.request(Method::GET, "/v1/staff/audit-log", token, None)
            .await,
        401,
        "session_ended",
    )
    .await;
    let relogin = app
        .post_json(
            "/v1/staff/auth/login",
            &json!({"email": email, "password": STAFF_PASSWORD}),
        )
        .await;
    assert_problem(relogin, 401, "invalid_credentials").await;
    let refresh = app
        .post_json(
            "/v1/staff/auth/refresh",
            &json!({"refresh_token": pair["refresh_token"]}),
        )
        .await;
    assert_eq!(refresh.status(), 401);
}

#[tokio::test]
async fn each_reveal_is_audited_and_no_audit_entry_holds_a_personal_value() {
    let app = TestApp::spawn().await;
    let email = email_for("admin");
    add_staff(&app, &email, "admin");
    let admin = staff_login(&app, &email).await;
    let token = admin["access_token"].as_str().unwrap();
    let phone = unique_phone();
    let customer = app.register(&phone).await;
    let customer_id = customer["customer_id"].as_str().unwrap();
    app.request(
        Method::PATCH,
        "/v1/me",
        customer["access_token"].as_str().unwrap(),
        Some(&json!({"name": "Audited Person", "email": "audited@example.com"})),
    )
    .await;

    let response = app
        .client
        .get(app.url(&format!("/v1/staff/customers/{customer_id}/contact")))
        .bearer_auth(token)
        .header("X-Request-Id", "reveal-req-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let contact: Value = response.json().await.unwrap();
    assert_eq!(contact["phone"], phone.as_str());
    assert_eq!(contact["email"], "audited@example.com");

    let log: Value = app
        .request(Method::GET, "/v1/staff/audit-log", token, None)
        .await
        .json()
        .await
        .unwrap();
    let entry = &log.as_array().unwrap()[0];
    assert_eq!(entry["action"], "reveal_customer_contact");
    assert_eq!(entry["target_id"], customer_id);
    assert_eq!(entry["request_id"], "reveal-req-1");
    assert!(entry["staff_id"].is_string() && entry["created_at"].is_string());
    let text = log.to_string();
    for value in [phone.as_str(), "Audited Person", "audited@example.com"] {
        assert!(!text.contains(value));
    }

    let erase = app
        .request(
            Method::POST,
            &format!("/v1/staff/customers/{customer_id}/erase"),
            token,
            None,
        )
        .await;
    assert_eq!(erase.status(), 204);
    assert_eq!(
        app.login(&phone, PASSWORD).await.status(),
        401,
        "the same effect as DELETE /v1/me"
    );
    let log: Value = app
        .request(Method::GET, "/v1/staff/audit-log", token, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(log[0]["action"], "erase_customer");
    let again = app
        .request(
            Method::POST,
            &format!("/v1/staff/customers/{customer_id}/erase"),
            token,
            None,
        )
        .await;
    assert_problem(again, 404, "not_found").await;
    assert_not_logged(&[&phone, "audited@example.com", &email]);
}

/// An order placed by a fresh customer and paid (as the provider's webhook would): its id.
pub(crate) async fn paid_order(app: &TestApp) -> String {
    let (token, _) = app.direct_customer();
    crate::console::paid_order_for(app, &token).await
}

async fn move_to(app: &TestApp, token: &str, order: &str, to: &str) -> reqwest::Response {
    app.request(
        Method::POST,
        &format!("/v1/staff/orders/{order}/transitions"),
        token,
        Some(&json!({"to": to})),
    )
    .await
}

#[tokio::test]
async fn a_clerk_fulfils_an_order_but_may_not_refund_it_and_a_manager_refunds_it() {
    let app = TestApp::spawn().await;
    let clerk = staff_token(&app, "clerk").await;
    let manager = staff_token(&app, "manager").await;

    let order = paid_order(&app).await;
    for to in ["fulfilling", "shipped", "delivered"] {
        let response = move_to(&app, &clerk, &order, to).await;
        assert_eq!(response.status(), 200, "{to}");
        assert_eq!(response.json::<Value>().await.unwrap()["status"], to);
    }
    let detail: Value = app
        .request(
            Method::GET,
            &format!("/v1/staff/orders/{order}"),
            &clerk,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let history: Vec<&str> = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to"].as_str().unwrap())
        .collect();
    assert_eq!(
        history,
        [
            "pending_payment",
            "paid",
            "fulfilling",
            "shipped",
            "delivered"
        ]
    );
    assert_eq!(detail["history"][2]["actor_kind"], "staff");
    assert_problem(
        move_to(&app, &clerk, &order, "fulfilling").await,
        409,
        "invalid_transition",
    )
    .await;

    let second = paid_order(&app).await;
    assert_problem(
        move_to(&app, &clerk, &second, "refunded").await,
        403,
        "forbidden",
    )
    .await;
    let refunded = move_to(&app, &manager, &second, "refunded").await;
    assert_eq!(refunded.status(), 200);
    assert_eq!(
        refunded.json::<Value>().await.unwrap()["status"],
        "refunded"
    );

    let list: Value = app
        .request(
            Method::GET,
            "/v1/staff/orders?status=refunded",
            &clerk,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    let keys: Vec<&String> = items[0].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "created_at",
            "customer_id",
            "id",
            "item_count",
            "needs_refund",
            "payment_review",
            "status",
            "total"
        ]
    );
    let bad = app
        .request(Method::GET, "/v1/staff/orders?status=lost", &clerk, None)
        .await;
    assert_problem(bad, 422, "invalid_status").await;
}

#[tokio::test]
async fn a_managers_refund_reaches_stripes_refunds_api_before_the_order_moves() {
    use crate::fake_stripe::{FakeStripe, STRIPE_KEY};
    let fake = FakeStripe::start(STRIPE_KEY).await;
    let base = fake.base_url.clone();
    let app = TestApp::spawn_with(move |vars| {
        vars.set("PAYMENT_PROVIDER", "stripe");
        vars.set("STRIPE_SECRET_KEY", STRIPE_KEY);
        vars.set("STRIPE_API_BASE", base);
    })
    .await;
    let manager = staff_token(&app, "manager").await;
    let order = paid_order(&app).await;

    fake.fail_next(2, 503);
    let failed = move_to(&app, &manager, &order, "refunded").await;
    assert_problem(failed, 502, "payment_provider_unavailable").await;
    let detail: Value = app
        .request(
            Method::GET,
            &format!("/v1/staff/orders/{order}"),
            &manager,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        detail["status"], "paid",
        "unchanged without the provider's confirmation"
    );

    let response = move_to(&app, &manager, &order, "refunded").await;
    assert_eq!(response.status(), 200);
    let refunds = fake.refunds();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].0, format!("refund-{order}"));
    assert_eq!(refunds[0].1, detail["payment_id"].as_str().unwrap());
}

#[tokio::test]
async fn shipping_addresses_are_revealed_only_by_their_own_audited_call() {
    let app = TestApp::spawn().await;
    let clerk = staff_token(&app, "clerk").await;
    let admin = staff_token(&app, "admin").await;
    let order = paid_order(&app).await;

    let detail = app
        .request(
            Method::GET,
            &format!("/v1/staff/orders/{order}"),
            &clerk,
            None,
        )
        .await
        .text()
        .await
        .unwrap();
    let list = app
        .request(Method::GET, "/v1/staff/orders", &clerk, None)
        .await
        .text()
        .await
        .unwrap();
    let address = crate::helpers::address();
    let street = address["line1"].as_str().unwrap();
    assert!(
        !detail.contains(street) && !list.contains(street),
        "no address in the detail or the list"
    );

    let revealed = app
        .request(
            Method::GET,
            &format!("/v1/staff/orders/{order}/shipping-address"),
            &clerk,
            None,
        )
        .await;
    assert_eq!(revealed.status(), 200);
    assert_eq!(revealed.json::<Value>().await.unwrap()["line1"], street);
    let log: Value = app
        .request(Method::GET, "/v1/staff/audit-log", &admin, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(log[0]["action"], "reveal_shipping_address");
    assert_eq!(log[0]["target_id"], order.as_str());
    assert!(!log.to_string().contains(street));
}

#[tokio::test]
async fn managers_manage_the_catalogue_and_every_stock_change_is_recorded() {
    let app = TestApp::spawn().await;
    let manager = staff_token(&app, "manager").await;
    let admin = staff_token(&app, "admin").await;
    let created = app
        .request(
            Method::POST,
            "/v1/staff/products",
            &manager,
            Some(&json!({"name": "Mug", "price": 900, "stock": 3})),
        )
        .await;
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let patched = app
        .request(
            Method::PATCH,
            &format!("/v1/staff/products/{id}"),
            &manager,
            Some(&json!({"stock": 40, "price": 950})),
        )
        .await;
    assert_eq!(patched.status(), 200);
    let product: Value = patched.json().await.unwrap();
    assert_eq!(
        (
            product["stock"].as_i64(),
            product["price"]["amount"].as_i64()
        ),
        (Some(40), Some(950))
    );
    let bad = app
        .request(
            Method::PATCH,
            &format!("/v1/staff/products/{id}"),
            &manager,
            Some(&json!({"price": -1})),
        )
        .await;
    assert_problem(bad, 422, "invalid_product").await;
    let unknown = app
        .request(
            Method::PATCH,
            &format!("/v1/staff/products/{id}"),
            &manager,
            Some(&json!({"cost": 1})),
        )
        .await;
    assert_problem(unknown, 422, "invalid_field").await;
    let log: Value = app
        .request(Method::GET, "/v1/staff/audit-log", &admin, None)
        .await
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"product_stock_set") && actions.contains(&"product_created"),
        "{actions:?}"
    );
}

#[tokio::test]
async fn orders_are_found_by_customer_phone_by_managers_only() {
    let app = TestApp::spawn().await;
    let clerk = staff_token(&app, "clerk").await;
    let manager = staff_token(&app, "manager").await;
    let phone = unique_phone();
    let pair = app.register(&phone).await;
    let product = app.add_product("Cup", 300, 5);
    let placed = app
        .place_order(
            pair["access_token"].as_str().unwrap(),
            Some(&crate::helpers::new_key()),
            &crate::helpers::order_body(&[(&product, 1)]),
        )
        .await;
    let order_id = placed.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    paid_order(&app).await;
    let path = format!(
        "/v1/staff/orders?customer_phone={}",
        phone.replace('+', "%2B")
    );
    assert_problem(
        app.request(Method::GET, &path, &clerk, None).await,
        403,
        "forbidden",
    )
    .await;
    let found: Value = app
        .request(Method::GET, &path, &manager, None)
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [order_id.as_str()]);
    assert_not_logged(&[&phone]);
}

#[tokio::test]
async fn flagged_orders_are_listed_by_flag_and_a_manager_clears_a_flag_once_handled() {
    let app = TestApp::spawn().await;
    let (customer, _) = app.direct_customer();
    let product = app.add_product("Tea", 450, 10);
    let short = placed(&app, &customer, &product).await;
    let underpaid = (short.0.clone(), short.1.clone(), short.2 - 1);
    assert_eq!(
        outcome(send(&app, &msg_id(), &event("payment.succeeded", &underpaid)).await).await,
        "payment_review"
    );
    let cancelled = paid_after_cancelling(&app, &customer, &product).await;
    let unflagged = placed(&app, &customer, &product).await;

    let clerk = staff_token(&app, "clerk").await;
    let manager = staff_token(&app, "manager").await;
    let listed = |flag: &'static str| {
        let (app, clerk) = (&app, &clerk);
        async move {
            let response = app
                .request(
                    Method::GET,
                    &format!("/v1/staff/orders?flag={flag}"),
                    clerk,
                    None,
                )
                .await;
            assert_eq!(response.status(), 200);
            let page: Value = response.json().await.unwrap();
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed("payment_review").await, vec![short.0.clone()]);
    assert_eq!(listed("needs_refund").await, vec![cancelled.0.clone()]);
    assert_problem(
        app.request(Method::GET, "/v1/staff/orders?flag=shipped", &clerk, None)
            .await,
        422,
        "invalid_flag",
    )
    .await;

    let clear = |token: &str, order: &str, flag: &str| {
        let path = format!("/v1/staff/orders/{order}/clear-flag");
        let (app, token, body) = (&app, token.to_owned(), json!({"flag": flag}));
        async move { app.request(Method::POST, &path, &token, Some(&body)).await }
    };
    assert_problem(
        clear(&clerk, &short.0, "payment_review").await,
        403,
        "forbidden",
    )
    .await;
    assert_problem(clear(&manager, &short.0, "paid").await, 422, "invalid_flag").await;
    assert_problem(
        clear(
            &manager,
            &uuid::Uuid::now_v7().to_string(),
            "payment_review",
        )
        .await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(
        listed("payment_review").await,
        vec![short.0.clone()],
        "refusals change nothing"
    );

    let cleared = clear(&manager, &short.0, "payment_review").await;
    assert_eq!(cleared.status(), 200);
    let view: Value = cleared.json().await.unwrap();
    assert_eq!(
        (view["status"].as_str(), view["payment_review"].as_bool()),
        (Some("pending_payment"), Some(false)),
        "the flag is down and the state unchanged"
    );
    assert!(listed("payment_review").await.is_empty());
    assert_eq!(listed("needs_refund").await, vec![cancelled.0.clone()]);
    assert!(!listed("needs_refund").await.contains(&unflagged.0));

    let manager_id = token_claims(&manager)["sub"].as_str().unwrap().to_owned();
    let audited: Vec<(String, String, String)> = shopd::db::schema::audit_log::table
        .select((
            shopd::db::schema::audit_log::staff_id,
            shopd::db::schema::audit_log::action,
            shopd::db::schema::audit_log::target_id,
        ))
        .filter(shopd::db::schema::audit_log::target_kind.eq("order"))
        .load(&mut app.conn())
        .unwrap();
    assert_eq!(
        audited,
        vec![(
            manager_id,
            "order_payment_review_cleared".to_owned(),
            short.0.clone()
        )]
    );
}

/// The data export (GDPR access) holds every personal value the customer gave, their orders with lines,
/// totals, states, status history and addresses, and which staff roles revealed their data and when, naming
/// no staff member; nothing of another customer's.
#[tokio::test]
async fn the_export_holds_everything_of_the_customer_and_nothing_of_anyone_else() {
    let app = TestApp::spawn().await;
    let product = app.add_product("Green tea", 450, 100);
    let address = |name: &str, line1: &str, city: &str| {
        json!({"name": name, "line1": line1, "line2": format!("{line1} annex"), "city": city,
               "postal_code": "EX1 2AB", "country": "GB"})
    };
    let place = |token: String, address: Value| {
        let app = &app;
        let product = product.clone();
        async move {
            let body = json!({"items": [{"product_id": product, "quantity": 2}], "shipping_address": address});
            let placed = app
                .place_order(&token, Some(&crate::helpers::new_key()), &body)
                .await;
            assert_eq!(placed.status(), 201);
            placed.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    // The customer, with a name and an e-mail, two orders to two addresses, one cancelled.
    let phone = unique_phone();
    let pair = app.register(&phone).await;
    let token = pair["access_token"].as_str().unwrap().to_owned();
    let patched = app
        .request(
            Method::PATCH,
            "/v1/me",
            &token,
            Some(&json!({"name": "Grace Hopper", "email": "grace@navy.example"})),
        )
        .await;
    assert_eq!(patched.status(), 200);
    let first = place(
        token.clone(),
        address("Grace Hopper", "1 Harbour Row", "Arlington"),
    )
    .await;
    let second = place(
        token.clone(),
        address("G. Hopper", "9 Cobol Lane", "New York"),
    )
    .await;
    let cancelled = app
        .request(
            Method::POST,
            &format!("/v1/orders/{second}/cancel"),
            &token,
            None,
        )
        .await;
    assert_eq!(cancelled.status(), 200);
    // Someone else, behind the same counter.
    let other_phone = unique_phone();
    let other = app.register(&other_phone).await;
    let other_token = other["access_token"].as_str().unwrap().to_owned();
    let other_order = place(
        other_token,
        address("Alan Turing", "7 Bletchley Park", "Milton Keynes"),
    )
    .await;
    // A clerk reveals an address of each; an admin reveals the customer's contact.
    let clerk_email = email_for("clerk");
    add_staff(&app, &clerk_email, "clerk");
    let clerk = staff_login(&app, &clerk_email).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for order in [&first, &other_order] {
        let revealed = app
            .request(
                Method::GET,
                &format!("/v1/staff/orders/{order}/shipping-address"),
                &clerk,
                None,
            )
            .await;
        assert_eq!(revealed.status(), 200);
    }
    let admin_email = email_for("admin");
    add_staff(&app, &admin_email, "admin");
    let admin = staff_login(&app, &admin_email).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let customer_id = pair["customer_id"].as_str().unwrap();
    let contact = app
        .request(
            Method::GET,
            &format!("/v1/staff/customers/{customer_id}/contact"),
            &admin,
            None,
        )
        .await;
    assert_eq!(contact.status(), 200);

    let response = app
        .request(Method::GET, "/v1/me/export", &token, None)
        .await;
    assert_eq!(response.status(), 200);
    let export: Value = response.json().await.unwrap();
    let text = export.to_string();
    // Every personal value the customer gave.
    for value in [
        phone.as_str(),
        "Grace Hopper",
        "grace@navy.example",
        "1 Harbour Row",
        "1 Harbour Row annex",
        "Arlington",
        "G. Hopper",
        "9 Cobol Lane",
        "New York",
        "EX1 2AB",
    ] {
        assert!(text.contains(value), "{value} is missing from the export");
    }
    // The orders, oldest first, with lines, totals, states and history.
    let orders = export["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 2);
    assert_eq!(
        (orders[0]["id"].as_str(), orders[1]["id"].as_str()),
        (Some(first.as_str()), Some(second.as_str()))
    );
    assert_eq!(orders[0]["status"], "pending_payment");
    assert_eq!(orders[1]["status"], "cancelled");
    assert_eq!(orders[0]["items"][0]["name"], "Green tea");
    assert_eq!(orders[0]["items"][0]["quantity"], 2);
    assert_eq!(orders[0]["total"]["amount"], 900);
    assert_eq!(orders[0]["shipping_address"]["line1"], "1 Harbour Row");
    assert_eq!(orders[1]["shipping_address"]["city"], "New York");
    let history: Vec<(&str, &str)> = orders[1]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["to"].as_str().unwrap(), h["by"].as_str().unwrap()))
        .collect();
    assert_eq!(
        history,
        [("pending_payment", "customer"), ("cancelled", "customer")]
    );
    // Who revealed what, by role, and no staff member named.
    let reveals: Vec<(&str, Option<&str>, &str)> = export["revealed_by_staff"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["what"].as_str().unwrap(),
                r["order_id"].as_str(),
                r["role"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        reveals,
        [
            ("shipping_address", Some(first.as_str()), "clerk"),
            ("contact", None, "admin")
        ]
    );
    // Nothing of anyone else's.
    for foreign in [
        other_phone.as_str(),
        other_order.as_str(),
        "Alan Turing",
        "7 Bletchley Park",
        "Milton Keynes",
        clerk_email.as_str(),
        admin_email.as_str(),
    ] {
        assert!(!text.contains(foreign), "{foreign} is in the export");
    }
}

#[tokio::test]
async fn the_api_ships_with_a_carrier_and_tracking_number_that_both_views_show() {
    let app = TestApp::spawn().await;
    let token = staff_token(&app, "clerk").await;
    let order = paid_order(&app).await;
    let path = format!("/v1/staff/orders/{order}/transitions");
    let fulfil = app
        .request(
            Method::POST,
            &path,
            &token,
            Some(&json!({"to": "fulfilling"})),
        )
        .await;
    assert_eq!(fulfil.status(), 200);
    let half = app
        .request(
            Method::POST,
            &path,
            &token,
            Some(&json!({"to": "shipped", "carrier": "DHL"})),
        )
        .await;
    assert_problem(half, 422, "invalid_shipment").await;
    let wrong_step = app
        .request(
            Method::POST,
            &path,
            &token,
            Some(&json!({"to": "delivered", "carrier": "DHL", "tracking_number": "1"})),
        )
        .await;
    assert_problem(wrong_step, 422, "invalid_shipment").await;
    let shipped: Value = app
        .request(
            Method::POST,
            &path,
            &token,
            Some(&json!({"to": "shipped", "carrier": " DHL ", "tracking_number": "JD0146"})),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shipped["status"], "shipped");
    assert_eq!(
        shipped["shipment"],
        json!({"carrier": "DHL", "tracking_number": "JD0146"})
    );
}
