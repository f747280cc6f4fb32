//! The second factor of a password sign-in (issue 30): on a device shopd does not know, a right password gets
//! no tokens but a code texted to the verified phone; `CUSTOMER_SECOND_FACTOR` says when.

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_problem, token_claims, unique_phone};

async fn login_with(app: &TestApp, phone: &str, device: Option<&str>) -> reqwest::Response {
    let mut body = json!({"phone": phone, "password": PASSWORD});
    if let Some(device) = device {
        body["device_token"] = device.into();
    }
    app.post_json("/v1/auth/login", &body).await
}

async fn verify(app: &TestApp, asked: &Value, code: &str) -> reqwest::Response {
    app.post_json(
        "/v1/auth/login/verify",
        &json!({"verification_id": asked["verification_id"], "code": code}),
    )
    .await
}

#[tokio::test]
async fn a_password_on_a_new_device_gets_no_tokens_until_the_texted_code() {
    let app = TestApp::spawn().await;
    let phone = unique_phone();
    let signup = app.register(&phone).await;
    let first_device = signup["device_token"].as_str().unwrap().to_owned();

    let asked = login_with(&app, &phone, None).await;
    assert_eq!(asked.status(), 202);
    let asked: Value = asked.json().await.unwrap();
    assert_eq!(asked["second_factor_required"], true);
    assert!(asked.get("access_token").is_none() && asked.get("refresh_token").is_none());
    let text = app.twilio.messages().last().unwrap().clone();
    assert_eq!(text.to, phone);
    assert!(text.body.contains("sign-in code"));
    let code = app.code_for(&phone);

    assert_problem(verify(&app, &asked, "000000").await, 422, "invalid_code").await;
    let signed_in = verify(&app, &asked, &code).await;
    assert_eq!(signed_in.status(), 200);
    let signed_in: Value = signed_in.json().await.unwrap();
    assert!(signed_in["access_token"].is_string());
    let second_device = signed_in["device_token"].as_str().unwrap().to_owned();
    let claims = token_claims(signed_in["access_token"].as_str().unwrap());
    assert_eq!(claims["amr"], json!(["pwd", "sms", "mfa"]));
    assert_ne!(second_device, first_device);
    assert_problem(verify(&app, &asked, &code).await, 422, "verification_used").await;

    // Either known device signs in with the password alone; a made-up token or another customer's does not.
    for device in [&first_device, &second_device] {
        let known = login_with(&app, &phone, Some(device)).await;
        assert_eq!(known.status(), 200);
        let known: Value = known.json().await.unwrap();
        let claims = token_claims(known["access_token"].as_str().unwrap());
        assert_eq!(claims["amr"], json!(["pwd"]), "the password alone");
    }
    assert_eq!(
        login_with(&app, &phone, Some("dv_made-up")).await.status(),
        202
    );
    let other_phone = unique_phone();
    let other = app.register(&other_phone).await;
    assert_eq!(
        login_with(&app, &phone, other["device_token"].as_str())
            .await
            .status(),
        202
    );
    // A wrong password is the same 401 with or without a device, and texts nothing.
    let texts = app.twilio.messages().len();
    let wrong = app
        .post_json(
            "/v1/auth/login",
            &json!({"phone": phone, "password": "not the password", "device_token": first_device}),
        )
        .await;
    assert_problem(wrong, 401, "invalid_credentials").await;
    assert_eq!(app.twilio.messages().len(), texts);
}

#[tokio::test]
async fn always_asks_on_every_device_and_off_never_does() {
    let always = TestApp::spawn_with(|vars| vars.set("CUSTOMER_SECOND_FACTOR", "always")).await;
    let phone = unique_phone();
    let signup = always.register(&phone).await;
    assert_eq!(
        login_with(&always, &phone, signup["device_token"].as_str())
            .await
            .status(),
        202
    );

    let off = TestApp::spawn_with(|vars| vars.set("CUSTOMER_SECOND_FACTOR", "off")).await;
    let phone = unique_phone();
    off.register(&phone).await;
    assert_eq!(login_with(&off, &phone, None).await.status(), 200);
}
