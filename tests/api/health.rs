use crate::helpers::{TestApp, assert_problem};
use shopd::db;

#[tokio::test]
async fn healthz_and_readyz_answer_200() {
    let app = TestApp::spawn().await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<serde_json::Value>().await.unwrap()["status"],
        "ok"
    );
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    assert_eq!(
        ready.json::<serde_json::Value>().await.unwrap()["status"],
        "ready"
    );
}

#[tokio::test]
async fn readyz_is_503_while_a_migration_is_missing_and_200_again_after() {
    let app = TestApp::spawn().await;
    let mut conn = db::establish(&app.db.url).unwrap();
    db::revert_last_migration(&mut conn).unwrap();
    let body = assert_problem(app.get("/readyz").await, 503, "not_ready").await;
    assert!(!body["detail"].as_str().unwrap().contains("data_keys"));
    assert!(
        app.get("/healthz").await.status().is_success(),
        "alive while not ready"
    );
    db::run_pending_migrations(&mut conn).unwrap();
    assert_eq!(app.get("/readyz").await.status(), 200);
}

#[tokio::test]
async fn readyz_is_503_with_retry_after_when_the_database_is_gone() {
    let app = TestApp::spawn_with(|vars| vars.set("DATABASE_TIMEOUT", "1s")).await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    if app.db.is_postgres() {
        app.db.drop_postgres();
    } else {
        let shopd::config::DatabaseUrl::Sqlite(path) = &app.db.url else {
            unreachable!()
        };
        std::fs::remove_file(path).unwrap();
    }
    let response = app.get("/readyz").await;
    assert!(response.headers().contains_key("retry-after"));
    assert_problem(response, 503, "not_ready").await;
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn a_valid_request_id_is_echoed_and_an_invalid_one_replaced() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("X-Request-Id", "req-42.abc_DEF")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "req-42.abc_DEF");

    for bad in ["has space", "<script>", &"x".repeat(200)] {
        let response = app
            .client
            .get(app.url("/healthz"))
            .header("X-Request-Id", bad)
            .send()
            .await
            .unwrap();
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_ne!(id, bad);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id} is a fresh uuid");
    }
    let made = app.get("/nope").await;
    assert!(uuid::Uuid::parse_str(made.headers()["x-request-id"].to_str().unwrap()).is_ok());
}

#[tokio::test]
async fn request_ids_reach_the_log_line_of_their_request() {
    let app = TestApp::spawn().await;
    let id = format!("trace-{}", uuid::Uuid::new_v4().simple());
    app.client
        .get(app.url("/readyz"))
        .header("X-Request-Id", &id)
        .send()
        .await
        .unwrap();
    let logs = crate::helpers::captured_logs();
    let line = logs
        .lines()
        .find(|l| l.contains(&id))
        .expect("a log line names the request");
    assert!(
        line.contains("/readyz") && line.contains("status=200"),
        "{line}"
    );
}

#[tokio::test]
async fn openapi_lists_the_operations_routes() {
    let app = TestApp::spawn().await;
    let doc: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        assert!(
            doc["paths"][path]["get"].is_object(),
            "{path} in the document"
        );
    }
}
