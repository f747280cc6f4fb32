//! Store staff, black-box: accounts from the CLI, login, the security matrix over every staff route, audited
//! reveals, disabling.

use reqwest::Method;
use serde_json::{Value, json};
use shopd::staff::Role;
use shopd::staff::matrix::MATRIX;

use crate::helpers::{PASSWORD, TestApp, assert_not_logged, assert_problem, unique_phone};

const STAFF_PASSWORD: &str = "staff passphrase long enough";

fn add_staff(app: &TestApp, email: &str, role: &str) {
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

async fn staff_login(app: &TestApp, email: &str) -> Value {
    let response = app
        .post_json(
            "/v1/staff/auth/login",
            &json!({"email": email, "password": STAFF_PASSWORD}),
        )
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn email_for(role: &str) -> String {
    format!("{role}.{}@shop.example.com", uuid::Uuid::new_v4().simple())
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
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            pair["access_token"]
                .as_str()
                .unwrap()
                .split('.')
                .nth(1)
                .unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
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

    for rule in MATRIX {
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
        for (role, email) in roles.iter().zip(&emails) {
            let token = staff_login(&app, email).await["access_token"]
                .as_str()
                .unwrap()
                .to_owned();
            let status = app
                .request(method.clone(), &path, &token, None)
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
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/security-matrix.md"
    ))
    .expect("docs/security-matrix.md");
    assert_eq!(
        doc,
        shopd::staff::matrix::markdown(),
        "regenerate docs/security-matrix.md from the matrix"
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
