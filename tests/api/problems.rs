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
