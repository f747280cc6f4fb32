use actix_web::{App, HttpResponse, test, web};
use serde::Deserialize;
use shopd::api::json::{ApiJson, BodyLimit};

use crate::helpers::{TestApp, assert_problem};

#[tokio::test]
async fn an_unknown_route_is_a_problem_json_404() {
    let app = TestApp::spawn().await;
    let response = app.client.post(app.url("/nope")).send().await.unwrap();
    assert_problem(response, 404, "not_found").await;
    assert_problem(app.get("/v1/nothing/here?x=1").await, 404, "not_found").await;
}

#[tokio::test]
async fn a_wrong_method_is_a_problem_json_405() {
    let app = TestApp::spawn().await;
    let response = app.client.post(app.url("/healthz")).send().await.unwrap();
    assert_problem(response, 405, "method_not_allowed").await;
    let response = app.client.delete(app.url("/readyz")).send().await.unwrap();
    assert_problem(response, 405, "method_not_allowed").await;
}

/// The JSON extractor every route uses, mounted on the same error handling as the server.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Signup {
    phone: String,
    quantity: u8,
}

/// Sends `request` to an app with the extractor on `/echo` and a 1 KiB body limit.
async fn call(request: test::TestRequest) -> (u16, serde_json::Value) {
    let service = test::init_service(
        App::new()
            .app_data(BodyLimit(1024))
            .route(
                "/echo",
                web::post()
                    .to(|_body: ApiJson<Signup>| async { HttpResponse::NoContent().finish() }),
            )
            .wrap(shopd::api::error_normaliser()),
    )
    .await;
    let response = test::call_service(&service, request.uri("/echo").to_request()).await;
    let status = response.status().as_u16();
    if status == 204 {
        return (status, serde_json::Value::Null);
    }
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "application/problem+json"
    );
    (status, test::read_body_json(response).await)
}

async fn post(body: &'static [u8], content_type: &str) -> (u16, serde_json::Value) {
    call(
        test::TestRequest::post()
            .insert_header(("content-type", content_type))
            .set_payload(body),
    )
    .await
}

#[actix_web::test]
async fn json_bodies_fail_cleanly() {
    assert_eq!(
        post(br#"{"phone":"1","quantity":2}"#, "application/json")
            .await
            .0,
        204
    );

    let (status, body) = post(br#"{"phone": "1", "quantity": "#, "application/json").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("malformed_json"))
    );

    let (status, body) = post(
        br#"{"phone":"1","quantity":2} trailing"#,
        "application/json",
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("malformed_json"))
    );

    // Not JSON at all, whatever the type of its first value: 400, never 422.
    for not_json in [
        &b"[1, 2,]"[..],
        b"[\"a\", 1,",
        b"{\"phone\": 1,}",
        b"7 8",
        b"\"open",
    ] {
        let (status, body) = post(not_json, "application/json").await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("malformed_json")),
            "{}",
            String::from_utf8_lossy(not_json)
        );
    }
    // Well-formed JSON of the wrong shape stays a 422.
    let (status, body) = post(b"[1, 2]", "application/json").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("invalid_field"))
    );

    let (status, body) = post(br#"{"quantity":2}"#, "application/json").await;
    assert_eq!(
        (status, body["code"].as_str(), body["field"].as_str()),
        (422, Some("invalid_field"), Some("phone"))
    );

    let (status, body) = post(
        br#"{"phone":"1","quantity":2,"price":1}"#,
        "application/json",
    )
    .await;
    assert_eq!((status, body["field"].as_str()), (422, Some("price")));

    let (status, body) = post(
        br#"{"phone":"+447700900123","quantity":900}"#,
        "application/json",
    )
    .await;
    assert_eq!((status, body["field"].as_str()), (422, Some("quantity")));

    let (status, body) = post(
        br#"{"phone":"+447700900123","quantity":"lots"}"#,
        "application/json",
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        !body.to_string().contains("lots"),
        "the offending value is not echoed: {body}"
    );

    let (status, body) = post(br#"{"phone":"1","quantity":2}"#, "text/plain").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
}

#[actix_web::test]
async fn an_oversized_body_is_a_413_whether_declared_or_streamed() {
    let big = format!(r#"{{"phone":"{}","quantity":1}}"#, "9".repeat(4096));
    let declared = test::TestRequest::post()
        .insert_header(("content-type", "application/json"))
        .set_payload(big.clone());
    let understated = test::TestRequest::post()
        .insert_header(("content-type", "application/json"))
        .set_payload(big)
        .insert_header(("content-length", "10"));
    for request in [declared, understated] {
        let (status, body) = call(request).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (413, Some("payload_too_large"))
        );
    }
}

/// A body that is not JSON (here `[1, 2,]`, whose first value would be of the wrong type for every route) is
/// `400 malformed_json` on every route that takes JSON, over HTTP, signed in where the route needs it.
#[tokio::test]
async fn a_body_that_is_not_json_is_a_400_on_every_json_route() {
    let app = TestApp::spawn().await;
    let (token, _) = app.direct_customer();
    let routes: Vec<(reqwest::Method, String)> = [
        "/v1/auth/signup",
        "/v1/auth/signup/verify",
        "/v1/auth/otp/resend",
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/auth/logout",
        "/v1/auth/password-reset",
        "/v1/auth/password-reset/verify",
        "/v1/orders",
        "/v1/staff/auth/login",
        "/v1/staff/auth/refresh",
    ]
    .iter()
    .map(|path| (reqwest::Method::POST, (*path).to_owned()))
    .chain([
        (reqwest::Method::PATCH, "/v1/me".to_owned()),
        (reqwest::Method::DELETE, "/v1/me".to_owned()),
    ])
    .collect();
    for (method, path) in routes {
        let response = app
            .client
            .request(method.clone(), app.url(&path))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .header("idempotency-key", crate::helpers::new_key())
            .body("[1, 2,]")
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("malformed_json")),
            "{method} {path}: {body}"
        );
    }
}

/// What OpenAPI requires of every operation and what client generators rely on (CI also runs an OpenAPI 3.1
/// validator and a generator on the document: `tools/api-client/check`): a unique `operationId`, a described
/// response for every status, problems typed `application/problem+json`, a tag that the document describes.
#[tokio::test]
async fn the_openapi_document_names_describes_and_types_every_operation() {
    let app = TestApp::spawn().await;
    let doc: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    let tags: Vec<&str> = doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .inspect(|t| assert!(t["description"].is_string(), "{t}"))
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_owned()), "{id} twice");
            assert!(
                tags.contains(&op["tags"][0].as_str().unwrap()),
                "{method} {path}"
            );
            for (status, response) in op["responses"].as_object().unwrap() {
                let description = response["description"].as_str().unwrap_or_default();
                assert!(!description.is_empty(), "{method} {path} {status}");
                if status.starts_with('4') || status.starts_with('5') {
                    assert!(
                        response["content"]["application/problem+json"].is_object()
                            && description.contains("`code`: "),
                        "{method} {path} {status}: {response}"
                    );
                }
            }
        }
    }
    for id in [
        "placeOrder",
        "getOrder",
        "staffLogin",
        "login",
        "getProduct",
    ] {
        assert!(ids.contains(id), "{id}");
    }
}
