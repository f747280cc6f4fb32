//! Passkeys (issue 30) over HTTP with a software authenticator (`soft_passkey`): registration while signed in,
//! the passwordless sign-in, and each refusal — a replayed ceremony, another origin or relying party, no user
//! verification, a cloned authenticator, an expired step-up — and the `/.well-known/` files.

use diesel::prelude::*;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, unique_phone};
use crate::soft_passkey::{self, Behaviour, FLAG_UP, SoftCredential};

const ORIGIN: &str = "https://shop.example.com";
/// The SHA-256 of the test Android app's signing certificate.
const ANDROID_PRINT: &str = "14:6D:E9:83:C5:73:06:50:D8:EE:B9:95:2F:34:FC:64:16:A0:83:42:E6:1D:BE:A8:8A:04:96:B2:3F:CF:44:E5";

fn phone_like() -> Behaviour {
    Behaviour::browser(ORIGIN)
}

/// Registers a passkey for the signed-in `token`: the credential the authenticator keeps and the passkey's view.
async fn add_passkey(app: &TestApp, token: &str, how: &Behaviour) -> (SoftCredential, Value) {
    let begun = app
        .request(Method::POST, "/v1/me/passkeys/begin", token, None)
        .await;
    assert_eq!(begun.status(), 201);
    let begun: Value = begun.json().await.unwrap();
    let options = &begun["options"];
    assert_eq!(options["publicKey"]["rp"]["id"], "shop.example.com");
    assert_eq!(
        options["publicKey"]["authenticatorSelection"]["userVerification"],
        "required"
    );
    assert_eq!(
        options["publicKey"]["authenticatorSelection"]["residentKey"],
        "required"
    );
    let (credential, kept) = soft_passkey::create(options, how);
    let finished = app
        .request(
            Method::POST,
            "/v1/me/passkeys/finish",
            token,
            Some(&json!({"ceremony_id": begun["ceremony_id"], "name": "iPhone", "credential": credential})),
        )
        .await;
    assert_eq!(finished.status(), 201);
    (kept, finished.json().await.unwrap())
}

/// Begins a passkey sign-in: the ceremony id and the options.
async fn begin_sign_in(app: &TestApp) -> (Value, Value) {
    let begun = app.post_json("/v1/auth/passkey/begin", &json!({})).await;
    assert_eq!(begun.status(), 201);
    let begun: Value = begun.json().await.unwrap();
    assert_eq!(
        begun["options"]["publicKey"]["userVerification"],
        "required"
    );
    assert!(begun["options"].get("mediation").is_none());
    (begun["ceremony_id"].clone(), begun["options"].clone())
}

async fn finish_sign_in(app: &TestApp, ceremony: &Value, assertion: &Value) -> reqwest::Response {
    app.post_json(
        "/v1/auth/passkey/finish",
        &json!({"ceremony_id": ceremony, "credential": assertion}),
    )
    .await
}

async fn signed_up(app: &TestApp) -> Value {
    app.register(&unique_phone()).await
}

#[tokio::test]
async fn a_passkey_registered_while_signed_in_signs_in_without_a_password_and_once_per_ceremony() {
    let app = TestApp::spawn().await;
    let pair = signed_up(&app).await;
    let token = pair["access_token"].as_str().unwrap();
    let (key, view) = add_passkey(&app, token, &phone_like()).await;
    assert_eq!(view["name"], "iPhone");
    let list: Value = app
        .request(Method::GET, "/v1/me/passkeys", token, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], view["id"]);
    let export: Value = app
        .request(Method::GET, "/v1/me/export", token, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(export["passkeys"][0]["name"], "iPhone");

    // A synced passkey keeps its sign count at 0: the ceremony itself is what cannot be used twice.
    let (ceremony, options) = begin_sign_in(&app).await;
    let assertion = soft_passkey::get(&options, &key, &phone_like());
    let signed_in = finish_sign_in(&app, &ceremony, &assertion).await;
    assert_eq!(signed_in.status(), 200);
    let signed_in: Value = signed_in.json().await.unwrap();
    assert_eq!(signed_in["customer_id"], pair["customer_id"]);
    let claims = crate::helpers::token_claims(signed_in["access_token"].as_str().unwrap());
    assert_eq!(claims["amr"], json!(["hwk", "user", "mfa"]));
    assert!(
        signed_in["device_token"].is_string(),
        "a passkey is two factors: the device is known from here on"
    );
    let me = app
        .request(
            Method::GET,
            "/v1/me",
            signed_in["access_token"].as_str().unwrap(),
            None,
        )
        .await;
    assert_eq!(me.status(), 200);
    assert_problem(
        finish_sign_in(&app, &ceremony, &assertion).await,
        422,
        "ceremony_not_found",
    )
    .await;
    // The same assertion against a new ceremony answers the wrong challenge.
    let (fresh, _) = begin_sign_in(&app).await;
    let body = assert_problem(
        finish_sign_in(&app, &fresh, &assertion).await,
        401,
        "passkey_refused",
    )
    .await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("another challenge")
    );

    let list: Value = app
        .request(Method::GET, "/v1/me/passkeys", token, None)
        .await
        .json()
        .await
        .unwrap();
    assert!(list[0]["last_used_at"].is_string());
}

#[tokio::test]
async fn another_origin_another_relying_party_or_no_user_verification_is_refused_and_spends_the_ceremony()
 {
    let app = TestApp::spawn().await;
    let pair = signed_up(&app).await;
    let token = pair["access_token"].as_str().unwrap();
    let (key, _) = add_passkey(&app, token, &phone_like()).await;
    let cases = [
        (
            Behaviour::browser("https://evil.example"),
            "another site or app",
        ),
        (
            Behaviour {
                rp_id_override: Some("evil.example".into()),
                ..phone_like()
            },
            "another relying party",
        ),
        (
            Behaviour {
                flags: FLAG_UP,
                ..phone_like()
            },
            "not verified",
        ),
    ];
    for (how, reason) in cases {
        let (ceremony, options) = begin_sign_in(&app).await;
        let assertion = soft_passkey::get(&options, &key, &how);
        let body = assert_problem(
            finish_sign_in(&app, &ceremony, &assertion).await,
            401,
            "passkey_refused",
        )
        .await;
        assert!(body["detail"].as_str().unwrap().contains(reason), "{body}");
        // Refused, the ceremony is spent all the same.
        let good = soft_passkey::get(&options, &key, &phone_like());
        assert_problem(
            finish_sign_in(&app, &ceremony, &good).await,
            422,
            "ceremony_not_found",
        )
        .await;
    }

    // Registration checks the same: a passkey made for another origin, or without user verification, is not
    // stored.
    for how in [
        Behaviour::browser("https://evil.example"),
        Behaviour {
            flags: FLAG_UP,
            ..phone_like()
        },
    ] {
        let begun: Value = app
            .request(Method::POST, "/v1/me/passkeys/begin", token, None)
            .await
            .json()
            .await
            .unwrap();
        let (credential, _) = soft_passkey::create(&begun["options"], &how);
        let refused = app
            .request(
                Method::POST,
                "/v1/me/passkeys/finish",
                token,
                Some(&json!({"ceremony_id": begun["ceremony_id"], "credential": credential})),
            )
            .await;
        assert_problem(refused, 422, "passkey_refused").await;
    }
    let malformed = app
        .request(
            Method::POST,
            "/v1/me/passkeys/finish",
            token,
            Some(&json!({"ceremony_id": "x", "credential": {"id": 1}})),
        )
        .await;
    assert_problem(malformed, 422, "invalid_credential").await;
    let list: Value = app
        .request(Method::GET, "/v1/me/passkeys", token, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_sign_count_going_back_is_a_cloned_authenticator_and_is_refused() {
    let app = TestApp::spawn().await;
    let pair = signed_up(&app).await;
    let token = pair["access_token"].as_str().unwrap();
    let counting = Behaviour {
        sign_count: 1,
        ..phone_like()
    };
    let (key, _) = add_passkey(&app, token, &counting).await;
    let (ceremony, options) = begin_sign_in(&app).await;
    let at_five = Behaviour {
        sign_count: 5,
        ..phone_like()
    };
    let assertion = soft_passkey::get(&options, &key, &at_five);
    assert_eq!(
        finish_sign_in(&app, &ceremony, &assertion).await.status(),
        200
    );
    let (ceremony, options) = begin_sign_in(&app).await;
    let clone = Behaviour {
        sign_count: 3,
        ..phone_like()
    };
    let assertion = soft_passkey::get(&options, &key, &clone);
    let body = assert_problem(
        finish_sign_in(&app, &ceremony, &assertion).await,
        401,
        "passkey_refused",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("cloned"));
    let events: i64 = shopd::db::schema::security_events::table
        .filter(shopd::db::schema::security_events::kind.eq("passkey_possibly_cloned"))
        .filter(
            shopd::db::schema::security_events::subject_id
                .eq(pair["customer_id"].as_str().unwrap()),
        )
        .count()
        .get_result(&mut app.conn())
        .unwrap();
    assert_eq!(events, 1);
    // The genuine authenticator, counting on, still signs in.
    let (ceremony, options) = begin_sign_in(&app).await;
    let genuine = Behaviour {
        sign_count: 6,
        ..phone_like()
    };
    let assertion = soft_passkey::get(&options, &key, &genuine);
    assert_eq!(
        finish_sign_in(&app, &ceremony, &assertion).await.status(),
        200
    );
}

#[tokio::test]
async fn adding_a_passkey_needs_a_recent_sign_in_and_the_last_way_in_stays() {
    let app = TestApp::spawn().await;
    let pair = signed_up(&app).await;
    let old = app.aged_session(&pair).await;
    assert_problem(
        app.request(Method::POST, "/v1/me/passkeys/begin", &old, None)
            .await,
        401,
        "reauthentication_required",
    )
    .await;

    // An account whose only way in is a passkey keeps it.
    let (issued, _) = app.direct_customer_session();
    let token = issued.access_token.expose().to_owned();
    let (_, view) = add_passkey(&app, &token, &phone_like()).await;
    let path = format!("/v1/me/passkeys/{}", view["id"].as_str().unwrap());
    let renamed = app
        .request(
            Method::PATCH,
            &path,
            &token,
            Some(&json!({"name": "Work phone"})),
        )
        .await;
    assert_eq!(renamed.status(), 204);
    assert_problem(
        app.request(
            Method::PATCH,
            &path,
            &token,
            Some(&json!({"name": "x".repeat(61)})),
        )
        .await,
        422,
        "invalid_name",
    )
    .await;
    assert_problem(
        app.request(Method::DELETE, &path, &token, None).await,
        409,
        "last_way_in",
    )
    .await;
    // Another's passkey is not found; with a second passkey the first can go.
    let other = pair["access_token"].as_str().unwrap();
    assert_problem(
        app.request(Method::DELETE, &path, other, None).await,
        404,
        "not_found",
    )
    .await;
    add_passkey(&app, &token, &phone_like()).await;
    assert_eq!(
        app.request(Method::DELETE, &path, &token, None)
            .await
            .status(),
        204
    );
    let list: Value = app
        .request(Method::GET, "/v1/me/passkeys", &token, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["name"], "iPhone");
}

#[tokio::test]
async fn the_android_app_signs_in_from_its_own_origin_and_the_well_known_files_name_the_apps() {
    let app = TestApp::spawn_with(|vars| {
        vars.set("APPLE_APP_IDS", "ABCDE12345.com.example.shop");
        vars.set("ANDROID_APP_PACKAGE", "com.example.shop");
        vars.set("ANDROID_CERT_FINGERPRINTS", ANDROID_PRINT);
    })
    .await;
    let aasa = app.get("/.well-known/apple-app-site-association").await;
    assert_eq!(aasa.status(), 200);
    assert_eq!(aasa.headers()["content-type"], "application/json");
    let aasa: Value = aasa.json().await.unwrap();
    assert_eq!(
        aasa,
        json!({"webcredentials": {"apps": ["ABCDE12345.com.example.shop"]}})
    );
    let links: Value = app
        .get("/.well-known/assetlinks.json")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        links[0]["relation"]
            .as_array()
            .unwrap()
            .contains(&json!("delegate_permission/common.get_login_creds"))
    );
    assert_eq!(links[0]["target"]["package_name"], "com.example.shop");
    assert_eq!(
        links[0]["target"]["sha256_cert_fingerprints"][0],
        ANDROID_PRINT
    );

    use base64::Engine as _;
    let print = hex::decode(ANDROID_PRINT.replace(':', "")).unwrap();
    let android = Behaviour::browser(&format!(
        "android:apk-key-hash:{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(print)
    ));
    let pair = signed_up(&app).await;
    let (key, _) = add_passkey(&app, pair["access_token"].as_str().unwrap(), &android).await;
    let (ceremony, options) = begin_sign_in(&app).await;
    let assertion = soft_passkey::get(&options, &key, &android);
    assert_eq!(
        finish_sign_in(&app, &ceremony, &assertion).await.status(),
        200
    );
    // Another app's signing certificate is another origin.
    let (ceremony, options) = begin_sign_in(&app).await;
    let impostor =
        Behaviour::browser("android:apk-key-hash:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let assertion = soft_passkey::get(&options, &key, &impostor);
    assert_problem(
        finish_sign_in(&app, &ceremony, &assertion).await,
        401,
        "passkey_refused",
    )
    .await;

    let bare = TestApp::spawn().await;
    assert_eq!(
        bare.get("/.well-known/apple-app-site-association")
            .await
            .status(),
        404
    );
    assert_eq!(bare.get("/.well-known/assetlinks.json").await.status(), 404);
}

#[tokio::test]
async fn erasure_takes_the_passkeys_with_it() {
    let app = TestApp::spawn().await;
    let pair = signed_up(&app).await;
    let token = pair["access_token"].as_str().unwrap();
    let (key, _) = add_passkey(&app, token, &phone_like()).await;
    let erased = app
        .request(
            Method::DELETE,
            "/v1/me",
            token,
            Some(&json!({"password": crate::helpers::PASSWORD})),
        )
        .await;
    assert_eq!(erased.status(), 204);
    let (ceremony, options) = begin_sign_in(&app).await;
    let assertion = soft_passkey::get(&options, &key, &phone_like());
    let body = assert_problem(
        finish_sign_in(&app, &ceremony, &assertion).await,
        401,
        "passkey_refused",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("not known"));
}
