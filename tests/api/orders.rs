//! Catalogue and orders, black-box: placement with server-side prices and reserved stock, idempotency keys,
//! body validation, other customers' orders, the list and detail shapes, expiry, cancelling, the state machine,
//! the Stripe provider against a local PaymentIntents server, erasure, and what never reaches the logs or the
//! database in clear.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use reqwest::Method;
use serde_json::{Value, json};
use shopd::db::schema::{idempotency_keys, order_events, orders};
use shopd::orders::{Actor, AddressRead, OrderStatus, PageRequest};

use crate::fake_stripe::{FakeStripe, STRIPE_KEY};
use crate::helpers::{
    PASSWORD, TestApp, TestDb, address, assert_not_logged, assert_problem, new_key, order_body,
    unique_phone,
};
use crate::statements;

fn s(v: &Value) -> &str {
    v.as_str().expect("a string")
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect()
}

fn set(names: &[&'static str]) -> BTreeSet<&'static str> {
    names.iter().copied().collect()
}

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("a JSON body")
}

async fn stripe_app(fake: &FakeStripe) -> TestApp {
    let base = fake.base_url.clone();
    TestApp::spawn_with(move |vars| {
        vars.set("PAYMENT_PROVIDER", "stripe");
        vars.set("STRIPE_SECRET_KEY", STRIPE_KEY);
        vars.set("STRIPE_API_BASE", base);
    })
    .await
}

fn order_count(app: &TestApp) -> i64 {
    orders::table.count().get_result(&mut app.conn()).unwrap()
}

#[tokio::test]
async fn placing_an_order_prices_it_from_the_catalogue_and_reserves_the_stock() {
    let app = TestApp::spawn().await;
    let (token, _) = app.direct_customer();
    let tea = app.add_product("Green tea", 450, 10);
    let pot = app.add_product("Teapot", 2_999, 2);

    let response = app
        .place_order(
            &token,
            Some(&new_key()),
            &order_body(&[(&tea, 3), (&pot, 1)]),
        )
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["content-type"], "application/json");
    let placed = json_of(response).await;
    assert_eq!(
        keys(&placed),
        set(&["id", "status", "total", "expires_at", "payment"])
    );
    assert_eq!(placed["status"], "pending_payment");
    assert_eq!(
        placed["total"],
        json!({"amount": 3 * 450 + 2_999, "currency": "EUR"})
    );
    assert_eq!(
        keys(&placed["payment"]),
        set(&["provider", "payment_id", "client_secret"])
    );
    assert_eq!(placed["payment"]["provider"], "sandbox");
    assert!(s(&placed["payment"]["payment_id"]).starts_with("sbx_"));
    assert!(s(&placed["payment"]["client_secret"]).contains("_secret_"));
    let expires_at = chrono::DateTime::parse_from_rfc3339(s(&placed["expires_at"])).unwrap();
    let left = expires_at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(left > chrono::Duration::minutes(29) && left <= chrono::Duration::minutes(30));

    assert_eq!((app.stock_of(&tea), app.stock_of(&pot)), (7, 1));

    let id = s(&placed["id"]);
    let detail = json_of(
        app.request(Method::GET, &format!("/v1/orders/{id}"), &token, None)
            .await,
    )
    .await;
    assert_eq!(detail["items"][0]["name"], "Green tea");
    assert_eq!(detail["items"][0]["quantity"], 3);
    assert_eq!(
        detail["items"][0]["unit_price"],
        json!({"amount": 450, "currency": "EUR"})
    );
    assert_eq!(detail["items"][1]["product_id"], pot.as_str());
    assert_eq!(detail["total"], placed["total"]);

    let list = json_of(app.request(Method::GET, "/v1/orders", &token, None).await).await;
    assert_eq!(list["items"][0]["id"], id);
    assert_eq!(list["items"][0]["item_count"], 4);
}

#[tokio::test]
async fn fifty_concurrent_buyers_of_seven_items_make_exactly_seven_orders() {
    let app = Arc::new(TestApp::spawn().await);
    let product = app.add_product("Limited edition", 10_000, 7);
    let buyers: Vec<(String, String)> = (0..50).map(|_| app.direct_customer()).collect();
    let mut tasks = Vec::new();
    for (token, _) in buyers {
        let (app, product) = (app.clone(), product.clone());
        tasks.push(tokio::spawn(async move {
            let response = app
                .place_order(&token, Some(&new_key()), &order_body(&[(&product, 1)]))
                .await;
            let status = response.status().as_u16();
            let body = json_of(response).await;
            (status, body)
        }));
    }
    let mut created = 0;
    let mut sold_out = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            201 => created += 1,
            409 => {
                assert_eq!(body["code"], "out_of_stock");
                assert!(s(&body["detail"]).contains("Limited edition"), "{body}");
                assert!(s(&body["detail"]).contains(&product), "names the product");
                sold_out += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((created, sold_out), (7, 43));
    assert_eq!(app.stock_of(&product), 0);
    assert_eq!(order_count(&app), 7);
}

#[tokio::test]
async fn the_same_key_replays_the_first_response_byte_for_byte() {
    let app = TestApp::spawn().await;
    let (token, _) = app.direct_customer();
    let product = app.add_product("Kettle", 3_500, 5);
    let key = new_key();
    let body = order_body(&[(&product, 2)]);

    let first = app.place_order(&token, Some(&key), &body).await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first = first.bytes().await.unwrap();

    // The same request, and the same JSON laid out differently: the first answer again, stock taken once.
    let relaid = json!({
        "shipping_address": address(),
        "items": [{"quantity": 2, "product_id": product}],
    });
    for again in [&body, &relaid] {
        let replay = app.place_order(&token, Some(&key), again).await;
        assert_eq!(replay.status(), 201);
        assert_eq!(replay.headers()["idempotent-replayed"], "true");
        assert_eq!(replay.headers()["cache-control"], "no-store");
        assert_eq!(replay.bytes().await.unwrap(), first, "byte for byte");
    }
    assert_eq!(app.stock_of(&product), 3);
    assert_eq!(order_count(&app), 1);

    // Another body with the same key.
    let other = app
        .place_order(&token, Some(&key), &order_body(&[(&product, 1)]))
        .await;
    let problem = assert_problem(other, 422, "idempotency_key_reused").await;
    assert_eq!(problem["field"], "Idempotency-Key");
    let mut moved = address();
    moved["line2"] = json!("Flat 4");
    let other = app
        .place_order(
            &token,
            Some(&key),
            &json!({"items": [{"product_id": product, "quantity": 2}], "shipping_address": moved}),
        )
        .await;
    assert_problem(other, 422, "idempotency_key_reused").await;

    // Keys are per customer: another customer's request with the same key is their own.
    let (other_token, _) = app.direct_customer();
    let theirs = app.place_order(&other_token, Some(&key), &body).await;
    assert_eq!(theirs.status(), 201);
    assert_ne!(theirs.bytes().await.unwrap(), first);
    assert_eq!(app.stock_of(&product), 1);
}

#[tokio::test]
async fn concurrent_first_requests_with_one_key_make_one_order() {
    let app = Arc::new(TestApp::spawn().await);
    let (token, _) = app.direct_customer();
    let product = app.add_product("Mug", 800, 50);
    let key = new_key();
    let body = order_body(&[(&product, 1)]);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (app, token, key, body) = (app.clone(), token.clone(), key.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let response = app.place_order(&token, Some(&key), &body).await;
            (response.status().as_u16(), response.bytes().await.unwrap())
        }));
    }
    let mut bodies = BTreeSet::new();
    let mut in_progress = 0;
    for task in tasks {
        let (status, bytes) = task.await.unwrap();
        match status {
            201 => {
                bodies.insert(bytes);
            }
            409 => {
                let problem: Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(problem["code"], "idempotency_in_progress");
                in_progress += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(bodies.len(), 1, "every 201 is the same response");
    assert!(in_progress < 10);
    assert_eq!(order_count(&app), 1);
    assert_eq!(app.stock_of(&product), 49);
}

#[tokio::test]
async fn a_key_whose_first_request_is_still_running_is_409() {
    let fake = FakeStripe::start(STRIPE_KEY).await;
    fake.set_delay(Duration::from_millis(1_500));
    let app = Arc::new(stripe_app(&fake).await);
    let (token, _) = app.direct_customer();
    let product = app.add_product("Slow lamp", 5_000, 3);
    let key = new_key();
    let body = order_body(&[(&product, 1)]);
    let first = {
        let (app, token, key, body) = (app.clone(), token.clone(), key.clone(), body.clone());
        tokio::spawn(async move { app.place_order(&token, Some(&key), &body).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = app.place_order(&token, Some(&key), &body).await;
    assert_problem(second, 409, "idempotency_in_progress").await;
    let first = first.await.unwrap();
    assert_eq!(first.status(), 201);
    let first = first.bytes().await.unwrap();
    fake.set_delay(Duration::ZERO);
    let third = app.place_order(&token, Some(&key), &body).await;
    assert_eq!(third.bytes().await.unwrap(), first);
    assert_eq!(fake.intent_count(), 1);
}

#[tokio::test]
async fn a_claim_that_outlived_its_lease_is_taken_over() {
    let app = TestApp::spawn().await;
    let (token, _) = app.direct_customer();
    let product = app.add_product("Clock", 1_000, 5);
    let key = new_key();
    let body = order_body(&[(&product, 1)]);
    // A request that died holding the key (a crash): its row claimed, no order, no response.
    let first = app.place_order(&token, Some(&key), &body).await;
    assert_eq!(first.status(), 201);
    let order_id = s(&json_of(first).await["id"]).to_owned();
    let mut conn = app.conn();
    diesel::delete(order_events::table)
        .execute(&mut conn)
        .unwrap();
    diesel::delete(shopd::db::schema::order_items::table)
        .execute(&mut conn)
        .unwrap();
    diesel::delete(orders::table).execute(&mut conn).unwrap();
    let soon = chrono::Utc::now().naive_utc() + chrono::Duration::seconds(30);
    diesel::update(idempotency_keys::table)
        .set((
            idempotency_keys::response_status.eq(None::<i32>),
            idempotency_keys::response_body.eq(None::<Vec<u8>>),
            idempotency_keys::claim_token.eq(Some("dead")),
            idempotency_keys::claimed_until.eq(Some(soon)),
        ))
        .execute(&mut conn)
        .unwrap();
    let held = app.place_order(&token, Some(&key), &body).await;
    assert_problem(held, 409, "idempotency_in_progress").await;

    let past = chrono::Utc::now().naive_utc() - chrono::Duration::seconds(1);
    diesel::update(idempotency_keys::table)
        .set(idempotency_keys::claimed_until.eq(Some(past)))
        .execute(&mut conn)
        .unwrap();
    let resumed = app.place_order(&token, Some(&key), &body).await;
    assert_eq!(resumed.status(), 201);
    assert_ne!(s(&json_of(resumed).await["id"]), order_id);
    assert_eq!(order_count(&app), 1);
}

#[tokio::test]
async fn the_idempotency_key_is_required_and_bounded() {
    let app = TestApp::spawn().await;
    let (token, _) = app.direct_customer();
    let product = app.add_product("Spoon", 150, 5);
    let body = order_body(&[(&product, 1)]);
    assert_problem(
        app.place_order(&token, None, &body).await,
        400,
        "idempotency_key_required",
    )
    .await;
    assert_problem(
        app.place_order(&token, Some(""), &body).await,
        400,
        "idempotency_key_required",
    )
    .await;
    assert_problem(
        app.place_order(&token, Some(&"k".repeat(256)), &body).await,
        400,
        "invalid_idempotency_key",
    )
    .await;
    // Checked before the body: no key and a bad body is still the missing key.
    assert_problem(
        app.place_order(&token, None, &json!({"items": []})).await,
        400,
        "idempotency_key_required",
    )
    .await;
    assert_eq!(
        app.place_order(&token, Some(&"k".repeat(255)), &body)
            .await
            .status(),
        201
    );
    assert_eq!(app.stock_of(&product), 4);
    // Without a token: 401 before anything else.
    let anonymous = app
        .client
        .post(app.url("/v1/orders"))
        .header("Idempotency-Key", new_key())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, 401, "invalid_token").await;
}

#[tokio::test]
async fn prices_and_totals_from_the_client_are_refused() {
    let app = TestApp::spawn().await;
    let (token, _) = app.direct_customer();
    let product = app.add_product("Gold bar", 5_000_000, 3);
    let bodies = [
        (
            json!({"items": [{"product_id": product, "quantity": 1, "price": 1}], "shipping_address": address()}),
            "items[0].price",
        ),
        (
            json!({"items": [{"product_id": product, "quantity": 1, "unit_price": 1}], "shipping_address": address()}),
            "items[0].unit_price",
        ),
        (
            json!({"items": [{"product_id": product, "quantity": 1}], "shipping_address": address(), "total": 1}),
            "total",
        ),
        (
            json!({"items": [{"product_id": product, "quantity": 1}], "shipping_address": address(),
                   "total": {"amount": 1, "currency": "EUR"}}),
            "total",
        ),
    ];
    for (body, field) in bodies {
        let problem = assert_problem(
            app.place_order(&token, Some(&new_key()), &body).await,
            422,
            "invalid_field",
        )
        .await;
        assert_eq!(problem["field"], field);
    }
    assert_eq!(app.stock_of(&product), 3);
    assert_eq!(order_count(&app), 0);
}

#[tokio::test]
async fn the_body_is_validated_naming_the_field() {
    let app = TestApp::spawn().await;
    let (token, _) = app.direct_customer();
    let product = app.add_product("Plate", 1_200, 500);
    let hidden = app.add_product_with("Withdrawn", 100, 5, false);
    let with_address = |change: &dyn Fn(&mut Value)| {
        let mut body = order_body(&[(&product, 1)]);
        change(&mut body["shipping_address"]);
        body
    };
    let many: Vec<(String, i64)> = (0..51)
        .map(|_| (uuid::Uuid::now_v7().to_string(), 1))
        .collect();
    let many: Vec<(&str, i64)> = many.iter().map(|(id, q)| (id.as_str(), *q)).collect();
    let cases: Vec<(Value, &str, &str)> = vec![
        (order_body(&[]), "invalid_items", "items"),
        (order_body(&many), "invalid_items", "items"),
        (
            order_body(&[(&product, 0)]),
            "invalid_quantity",
            "items[0].quantity",
        ),
        (
            order_body(&[(&product, 100)]),
            "invalid_quantity",
            "items[0].quantity",
        ),
        (
            order_body(&[(&product, -1)]),
            "invalid_quantity",
            "items[0].quantity",
        ),
        (
            json!({"items": [{"product_id": product, "quantity": 1.5}], "shipping_address": address()}),
            "invalid_field",
            "items[0].quantity",
        ),
        (
            order_body(&[(&product, 1), (&product, 2)]),
            "duplicate_product",
            "items[1].product_id",
        ),
        (
            order_body(&[(&product, 1), ("no-such-product", 1)]),
            "unknown_product",
            "items[1].product_id",
        ),
        (
            order_body(&[(&uuid::Uuid::now_v7().to_string(), 1)]),
            "unknown_product",
            "items[0].product_id",
        ),
        (
            order_body(&[(&hidden, 1)]),
            "unknown_product",
            "items[0].product_id",
        ),
        (
            json!({"items": [{"product_id": product, "quantity": 1}]}),
            "invalid_field",
            "shipping_address",
        ),
        (
            with_address(&|a| {
                a.as_object_mut().unwrap().remove("city");
            }),
            "invalid_field",
            "shipping_address.city",
        ),
        (
            with_address(&|a| a["name"] = json!("   ")),
            "invalid_address",
            "shipping_address.name",
        ),
        (
            with_address(&|a| a["line1"] = json!("x".repeat(201))),
            "invalid_address",
            "shipping_address.line1",
        ),
        (
            with_address(&|a| a["postal_code"] = json!(12345)),
            "invalid_field",
            "shipping_address.postal_code",
        ),
        (
            with_address(&|a| a["country"] = json!("UK")),
            "invalid_country",
            "shipping_address.country",
        ),
        (
            with_address(&|a| a["country"] = json!("GBR")),
            "invalid_country",
            "shipping_address.country",
        ),
        (
            with_address(&|a| a["phone"] = json!("+447700900123")),
            "invalid_field",
            "shipping_address.phone",
        ),
    ];
    for (body, code, field) in cases {
        let problem = assert_problem(
            app.place_order(&token, Some(&new_key()), &body).await,
            422,
            code,
        )
        .await;
        assert_eq!(problem["field"], field, "{code}: {problem}");
    }
    // Not JSON at all.
    let malformed = app
        .client
        .post(app.url("/v1/orders"))
        .bearer_auth(&token)
        .header("Idempotency-Key", new_key())
        .header("content-type", "application/json")
        .body("{\"items\": [")
        .send()
        .await
        .unwrap();
    assert_problem(malformed, 400, "malformed_json").await;
    // 200 characters of any script is fine; a lower-case country is taken.
    let fine = with_address(&|a| {
        a["line1"] = json!("é".repeat(200));
        a["country"] = json!("ie");
    });
    assert_eq!(
        app.place_order(&token, Some(&new_key()), &fine)
            .await
            .status(),
        201
    );
    assert_eq!(app.stock_of(&product), 499);
    assert_eq!(app.stock_of(&hidden), 5);
}

#[tokio::test]
async fn another_customers_order_and_address_are_not_found() {
    let app = TestApp::spawn().await;
    let (alice, _) = app.direct_customer();
    let (bob, _) = app.direct_customer();
    let product = app.add_product("Vase", 4_000, 5);
    let placed = json_of(
        app.place_order(&alice, Some(&new_key()), &order_body(&[(&product, 1)]))
            .await,
    )
    .await;
    let id = s(&placed["id"]);
    for path in [
        format!("/v1/orders/{id}"),
        format!("/v1/orders/{id}/shipping-address"),
    ] {
        assert_eq!(
            app.request(Method::GET, &path, &alice, None).await.status(),
            200
        );
        assert_problem(
            app.request(Method::GET, &path, &bob, None).await,
            404,
            "not_found",
        )
        .await;
    }
    assert_problem(
        app.request(Method::POST, &format!("/v1/orders/{id}/cancel"), &bob, None)
            .await,
        404,
        "not_found",
    )
    .await;
    let bobs = json_of(app.request(Method::GET, "/v1/orders", &bob, None).await).await;
    assert_eq!(bobs["items"], json!([]));
    for missing in [
        "/v1/orders/nothing-here",
        "/v1/orders/nothing-here/shipping-address",
    ] {
        assert_problem(
            app.request(Method::GET, missing, &alice, None).await,
            404,
            "not_found",
        )
        .await;
    }
    // Still pending: Bob's attempt changed nothing.
    let detail = json_of(
        app.request(Method::GET, &format!("/v1/orders/{id}"), &alice, None)
            .await,
    )
    .await;
    assert_eq!(detail["status"], "pending_payment");
}

/// Many reads at once (answered in batches: on PostgreSQL several orders a statement, on SQLite several
/// statements a transaction): each reader gets exactly its own orders, with their own lines, and `not_found`
/// for anyone else's and for none.
#[tokio::test]
async fn concurrent_reads_of_many_customers_orders_each_get_only_their_own() {
    let app = Arc::new(TestApp::spawn().await);
    let products: Vec<String> = (0..4)
        .map(|i| app.add_product(&format!("Item {i}"), 100 * (i + 1), 1_000))
        .collect();
    let customers: Vec<(String, String)> = (0..6).map(|_| app.direct_customer()).collect();
    // (owner, order id, the lines it was placed with)
    let mut orders = Vec::new();
    for (n, (token, _)) in customers.iter().enumerate() {
        for k in 0..(1 + n % 3) {
            let lines: Vec<(&str, i64)> = (0..=(n + k) % products.len())
                .map(|p| (products[p].as_str(), (n + k + p + 1) as i64))
                .collect();
            let placed = app
                .place_order(token, Some(&new_key()), &order_body(&lines))
                .await;
            assert_eq!(placed.status(), 201);
            let id = s(&json_of(placed).await["id"]).to_owned();
            let lines: Vec<(String, i64)> =
                lines.iter().map(|(p, q)| ((*p).to_owned(), *q)).collect();
            orders.push((n, id, lines));
        }
    }
    let orders = Arc::new(orders);
    let customers = Arc::new(customers);
    let mut tasks = Vec::new();
    for round in 0..300usize {
        let (app, orders, customers) = (app.clone(), orders.clone(), customers.clone());
        tasks.push(tokio::spawn(async move {
            let reader = round % customers.len();
            let token = &customers[reader].0;
            if round % 25 == 0 {
                let response = app
                    .request(
                        Method::GET,
                        &format!("/v1/orders/{}", uuid::Uuid::now_v7()),
                        token,
                        None,
                    )
                    .await;
                assert_problem(response, 404, "not_found").await;
                return;
            }
            let (owner, id, lines) = &orders[(round * 7) % orders.len()];
            let response = app
                .request(Method::GET, &format!("/v1/orders/{id}"), token, None)
                .await;
            if *owner != reader {
                assert_problem(response, 404, "not_found").await;
                return;
            }
            assert_eq!(response.status(), 200);
            let detail = json_of(response).await;
            assert_eq!(s(&detail["id"]), id);
            let got: Vec<(String, i64)> = detail["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|i| {
                    (
                        s(&i["product_id"]).to_owned(),
                        i["quantity"].as_i64().unwrap(),
                    )
                })
                .collect();
            assert_eq!(&got, lines, "order {id}");
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[derive(QueryableByName)]
struct ScanCounts {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    scans: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    rows_scanned: i64,
}

/// The scans of `orders` PostgreSQL has counted so far (all of them, and the rows read by sequential ones).
fn order_scans(app: &TestApp) -> ScanCounts {
    diesel::sql_query(
        "SELECT COALESCE(seq_scan + idx_scan, 0) AS scans, COALESCE(seq_tup_read, 0) AS rows_scanned \
         FROM pg_stat_user_tables WHERE relname = 'orders'",
    )
    .get_result(&mut app.conn())
    .unwrap()
}

/// `customers` new customers, each with `each` orders of one product: (owner's access token, order id).
async fn orders_of_new_customers(
    app: &TestApp,
    customers: usize,
    each: usize,
) -> Vec<(String, String)> {
    let product = app.add_product("Tea", 450, 1_000);
    let mut orders = Vec::new();
    for _ in 0..customers {
        let (token, _) = app.direct_customer();
        for _ in 0..each {
            let placed = app
                .place_order(&token, Some(&new_key()), &order_body(&[(&product, 1)]))
                .await;
            assert_eq!(placed.status(), 201);
            orders.push((token.clone(), s(&json_of(placed).await["id"]).to_owned()));
        }
    }
    orders
}

/// Reads every order of `orders` (token, id) at once, `rounds` times: in batches of several.
async fn read_all_at_once(app: &Arc<TestApp>, orders: &Arc<Vec<(String, String)>>, rounds: usize) {
    for _ in 0..rounds {
        let reads: Vec<_> = (0..orders.len())
            .map(|n| {
                let (app, orders) = (app.clone(), orders.clone());
                tokio::spawn(async move {
                    let (token, id) = &orders[n];
                    let response = app
                        .request(Method::GET, &format!("/v1/orders/{id}"), token, None)
                        .await;
                    assert_eq!(response.status(), 200);
                    assert_eq!(s(&json_of(response).await["id"]), id);
                })
            })
            .collect();
        for read in reads {
            read.await.unwrap();
        }
    }
}

/// Reads until PostgreSQL has counted at least `scans` scans of `orders`. A backend reports its counts as it
/// goes idle when it last did so a second ago or more, else ten seconds later.
async fn counted_scans(
    app: &Arc<TestApp>,
    orders: &Arc<Vec<(String, String)>>,
    scans: i64,
) -> ScanCounts {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        read_all_at_once(app, orders, 1).await;
        let counts = order_scans(app);
        if counts.scans >= scans || Instant::now() > deadline {
            return counts;
        }
    }
}

/// An order read keeps looking orders up by key after the table grows. PostgreSQL keeps one plan for a
/// statement run many times on a connection (its generic plan), made with the statistics of that moment; a
/// plan made while the shop had few orders could scan the whole table and keep doing so at any size until the
/// next ANALYZE (autovacuum is off on the CI's server).
#[tokio::test]
async fn order_reads_do_not_scan_every_order_after_the_table_grows() {
    let app = Arc::new(TestApp::spawn().await);
    if !app.db.is_postgres() {
        return; // SQLite plans a statement when it is prepared.
    }
    let orders = orders_of_new_customers(&app, 8, 5).await;
    let orders = Arc::new(orders);
    // Enough reads for PostgreSQL to settle on one plan, while the table holds 40 orders.
    read_all_at_once(&app, &orders, 10).await;
    let counted = counted_scans(&app, &orders, 10).await;
    const GROWN: i64 = 5_000;
    // No DDL here (a temporary table would do): a new schema object drops every cached plan on the server.
    app.conn()
        .batch_execute(&format!(
            "INSERT INTO orders (id, customer_id, status, total_amount, currency, item_count, \
             shipping_address, payment_provider, expires_at, created_at, updated_at) \
             SELECT gen_random_uuid()::text, customer_id, status, total_amount, currency, item_count, \
             shipping_address, payment_provider, expires_at, created_at, updated_at \
             FROM orders, generate_series(1, {GROWN} / 40)"
        ))
        .unwrap();
    let grown = counted_scans(&app, &orders, counted.scans + 1).await;
    read_all_at_once(&app, &orders, 5).await;
    let after = counted_scans(&app, &orders, grown.scans + 5).await;
    assert!(after.scans >= grown.scans + 5, "the reads were counted");
    assert!(
        after.rows_scanned - grown.rows_scanned < GROWN,
        "the reads after the growth scanned {} rows of orders",
        after.rows_scanned - grown.rows_scanned
    );
}

#[tokio::test]
async fn the_list_the_detail_and_the_address_carry_exactly_the_documented_keys() {
    let app = TestApp::spawn().await;
    let (token, _) = app.direct_customer();
    let tea = app.add_product("Green tea", 450, 10);
    let pot = app.add_product("Teapot", 2_999, 2);
    let placed = json_of(
        app.place_order(
            &token,
            Some(&new_key()),
            &order_body(&[(&tea, 3), (&pot, 1)]),
        )
        .await,
    )
    .await;
    let id = s(&placed["id"]);

    let list = app.request(Method::GET, "/v1/orders", &token, None).await;
    assert_eq!(list.headers()["cache-control"], "no-store");
    let list = json_of(list).await;
    insta::assert_json_snapshot!("order_list", list, {
        ".items[].id" => "[order id]",
        ".items[].created_at" => "[time]",
    });

    let detail = app
        .request(Method::GET, &format!("/v1/orders/{id}"), &token, None)
        .await;
    assert_eq!(detail.headers()["cache-control"], "no-store");
    let detail = json_of(detail).await;
    insta::assert_json_snapshot!("order_detail", detail, {
        ".id" => "[order id]",
        ".items[].product_id" => "[product id]",
        ".created_at" => "[time]",
        ".updated_at" => "[time]",
    });
    assert_eq!(detail["items"][0]["product_id"], tea.as_str());

    let address = app
        .request(
            Method::GET,
            &format!("/v1/orders/{id}/shipping-address"),
            &token,
            None,
        )
        .await;
    assert_eq!(address.headers()["cache-control"], "no-store");
    insta::assert_json_snapshot!("order_shipping_address", json_of(address).await);
}

#[tokio::test]
async fn the_order_list_pages_stay_correct_while_orders_are_added() {
    let app = TestApp::spawn().await;
    let (token, _) = app.direct_customer();
    let product = app.add_product("Pencil", 100, 1_000);
    let place = |n: i64| {
        let (app, token, product) = (&app, token.clone(), product.clone());
        async move {
            let placed = json_of(
                app.place_order(&token, Some(&new_key()), &order_body(&[(&product, n)]))
                    .await,
            )
            .await;
            s(&placed["id"]).to_owned()
        }
    };
    let mut ids = Vec::new();
    for n in 1..=7 {
        ids.push(place(n).await);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            None => "/v1/orders?limit=3".to_owned(),
            Some(c) => format!("/v1/orders?limit=3&cursor={c}"),
        };
        let page = json_of(app.request(Method::GET, &path, &token, None).await).await;
        for line in page["items"].as_array().unwrap() {
            seen.push(s(&line["id"]).to_owned());
        }
        pages += 1;
        // New orders arrive while the list is being read.
        place(1).await;
        match page.get("next_cursor") {
            Some(next) => cursor = Some(s(next).to_owned()),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, none skipped or repeated");
    assert_eq!(pages, 3);
    for bad in ["/v1/orders?limit=0", "/v1/orders?limit=101"] {
        assert_problem(
            app.request(Method::GET, bad, &token, None).await,
            422,
            "invalid_limit",
        )
        .await;
    }
    assert_problem(
        app.request(Method::GET, "/v1/orders?cursor=not-a-cursor", &token, None)
            .await,
        422,
        "invalid_cursor",
    )
    .await;
    assert_problem(
        app.request(Method::GET, "/v1/orders?limit=many", &token, None)
            .await,
        422,
        "invalid_query",
    )
    .await;
    let full = json_of(
        app.request(Method::GET, "/v1/orders?limit=100", &token, None)
            .await,
    )
    .await;
    assert_eq!(full["items"].as_array().unwrap().len(), 10);
    assert!(full.get("next_cursor").is_none());
}

async fn status_of(app: &TestApp, token: &str, id: &str) -> String {
    let detail = json_of(
        app.request(Method::GET, &format!("/v1/orders/{id}"), token, None)
            .await,
    )
    .await;
    s(&detail["status"]).to_owned()
}

#[tokio::test]
async fn unpaid_orders_expire_and_give_their_stock_back() {
    let app = TestApp::spawn_with(|vars| vars.set("ORDER_PAYMENT_TTL", "1s")).await;
    let (token, _) = app.direct_customer();
    let product = app.add_product("Umbrella", 1_500, 5);
    let placed = json_of(
        app.place_order(&token, Some(&new_key()), &order_body(&[(&product, 2)]))
            .await,
    )
    .await;
    let id = s(&placed["id"]).to_owned();
    assert_eq!(app.stock_of(&product), 3);
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_of(&app, &token, &id).await != "expired" {
        assert!(Instant::now() < deadline, "expired within 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.stock_of(&product), 5);
    let events = shopd::orders::state::events(&mut app.conn(), &id).unwrap();
    let last = events.last().unwrap();
    assert_eq!(
        (
            last.from.as_deref(),
            last.to.as_str(),
            last.actor_kind.as_str()
        ),
        (Some("pending_payment"), "expired", "system")
    );
    // An expired order cannot be cancelled, and gives nothing back twice.
    assert_problem(
        app.request(
            Method::POST,
            &format!("/v1/orders/{id}/cancel"),
            &token,
            None,
        )
        .await,
        409,
        "invalid_transition",
    )
    .await;
    assert_eq!(app.stock_of(&product), 5);
}

#[tokio::test]
async fn expiry_on_several_instances_expires_each_order_once() {
    let first = TestApp::spawn_with(|vars| vars.set("ORDER_PAYMENT_TTL", "300ms")).await;
    let second = TestApp::spawn_on(first.db.clone(), Some(first.vars.clone()), |_| {}).await;
    let product = first.add_product("Scarf", 2_000, 100);
    let (token, _) = first.direct_customer();
    let mut ids = Vec::new();
    for i in 0..12 {
        let app = if i % 2 == 0 { &first } else { &second };
        let placed = json_of(
            app.place_order(&token, Some(&new_key()), &order_body(&[(&product, 3)]))
                .await,
        )
        .await;
        ids.push(s(&placed["id"]).to_owned());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pending: i64 = orders::table
            .filter(orders::status.eq("pending_payment"))
            .count()
            .get_result(&mut first.conn())
            .unwrap();
        if pending == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "all expired within 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let expiries: i64 = order_events::table
        .filter(order_events::to_status.eq("expired"))
        .count()
        .get_result(&mut first.conn())
        .unwrap();
    assert_eq!(expiries, 12, "each order expired once");
    assert_eq!(first.stock_of(&product), 100, "stock given back once each");
}

#[tokio::test]
async fn cancelling_works_only_while_pending_payment() {
    let app = TestApp::spawn().await;
    let (token, customer_id) = app.direct_customer();
    let product = app.add_product("Candle", 900, 4);
    let place = || async {
        let placed = json_of(
            app.place_order(&token, Some(&new_key()), &order_body(&[(&product, 2)]))
                .await,
        )
        .await;
        s(&placed["id"]).to_owned()
    };
    let id = place().await;
    assert_eq!(app.stock_of(&product), 2);
    let cancelled = app
        .request(
            Method::POST,
            &format!("/v1/orders/{id}/cancel"),
            &token,
            None,
        )
        .await;
    assert_eq!(cancelled.status(), 200);
    assert_eq!(cancelled.headers()["cache-control"], "no-store");
    assert_eq!(json_of(cancelled).await["status"], "cancelled");
    assert_eq!(app.stock_of(&product), 4);
    // Twice: cancelled → cancelled is not in the table.
    assert_problem(
        app.request(
            Method::POST,
            &format!("/v1/orders/{id}/cancel"),
            &token,
            None,
        )
        .await,
        409,
        "invalid_transition",
    )
    .await;
    assert_eq!(app.stock_of(&product), 4, "stock given back once");

    // Paid (as a webhook will do it): the customer can no longer cancel.
    let paid = place().await;
    app.state
        .orders
        .change_status(
            &paid,
            OrderStatus::Paid,
            Actor::Provider("sandbox".into()),
            None,
        )
        .await
        .unwrap();
    assert_problem(
        app.request(
            Method::POST,
            &format!("/v1/orders/{paid}/cancel"),
            &token,
            None,
        )
        .await,
        409,
        "invalid_transition",
    )
    .await;
    assert_eq!(status_of(&app, &token, &paid).await, "paid");
    assert_eq!(app.stock_of(&product), 2);

    let events = shopd::orders::state::events(&mut app.conn(), &id).unwrap();
    let trail: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.from.clone(),
                e.to.clone(),
                e.actor_kind.clone(),
                e.actor_id.clone(),
            )
        })
        .collect();
    assert_eq!(
        trail,
        vec![
            (
                None,
                "pending_payment".into(),
                "customer".into(),
                Some(customer_id.clone())
            ),
            (
                Some("pending_payment".into()),
                "cancelled".into(),
                "customer".into(),
                Some(customer_id)
            ),
        ]
    );
}

#[tokio::test]
async fn every_change_outside_the_table_is_an_invalid_transition() {
    use shopd::orders::allowed;
    let app = TestApp::spawn().await;
    let (token, customer_id) = app.direct_customer();
    let product = app.add_product("Chair", 10_000, 1_000);
    let actors = [
        Actor::Customer(customer_id.clone()),
        Actor::Staff("staff-1".into()),
        Actor::Provider("sandbox".into()),
        Actor::System,
    ];
    // An order in each state, reached through the table itself.
    let path: [(OrderStatus, Actor); 4] = [
        (OrderStatus::Paid, Actor::Provider("sandbox".into())),
        (OrderStatus::Fulfilling, Actor::Staff("staff-1".into())),
        (OrderStatus::Shipped, Actor::Staff("staff-1".into())),
        (OrderStatus::Delivered, Actor::Staff("staff-1".into())),
    ];
    let mut checked = 0;
    for from in OrderStatus::ALL {
        for to in OrderStatus::ALL {
            for actor in &actors {
                if allowed(from, to, actor.kind()) {
                    continue;
                }
                let placed = json_of(
                    app.place_order(&token, Some(&new_key()), &order_body(&[(&product, 1)]))
                        .await,
                )
                .await;
                let id = s(&placed["id"]).to_owned();
                let reach = match from {
                    OrderStatus::PendingPayment => vec![],
                    OrderStatus::Paid
                    | OrderStatus::Fulfilling
                    | OrderStatus::Shipped
                    | OrderStatus::Delivered => {
                        let n = path.iter().position(|(s, _)| *s == from).unwrap();
                        path[..=n].to_vec()
                    }
                    OrderStatus::Cancelled => {
                        vec![(OrderStatus::Cancelled, Actor::Staff("staff-1".into()))]
                    }
                    OrderStatus::Expired => vec![(OrderStatus::Expired, Actor::System)],
                    OrderStatus::Refunded => vec![
                        (OrderStatus::Paid, Actor::Provider("sandbox".into())),
                        (OrderStatus::Refunded, Actor::Provider("sandbox".into())),
                    ],
                };
                for (step, by) in reach {
                    app.state
                        .orders
                        .change_status(&id, step, by, None)
                        .await
                        .unwrap();
                }
                let before = app.stock_of(&product);
                let refused = app
                    .state
                    .orders
                    .change_status(&id, to, actor.clone(), Some("not allowed".into()))
                    .await
                    .unwrap_err();
                match refused {
                    shopd::error::AppError::Problem(p) => {
                        assert_eq!(
                            (p.status, p.code),
                            (409, "invalid_transition"),
                            "{from} -> {to}"
                        )
                    }
                    other => panic!("{from} -> {to}: {other}"),
                }
                assert_eq!(status_of(&app, &token, &id).await, from.as_str());
                assert_eq!(app.stock_of(&product), before, "nothing released");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 8 * 8 * 4 - 13);
    // A missing order is a 404, not a transition.
    let missing = app
        .state
        .orders
        .change_status("no-such-order", OrderStatus::Paid, Actor::System, None)
        .await
        .unwrap_err();
    assert!(matches!(missing, shopd::error::AppError::NotFound));
}

#[tokio::test]
async fn stripe_payment_intents_are_created_with_the_order_id_as_idempotency_key() {
    let fake = FakeStripe::start(STRIPE_KEY).await;
    let app = stripe_app(&fake).await;
    let (token, _) = app.direct_customer();
    let product = app.add_product("Bicycle", 45_000, 2);
    let key = new_key();
    let response = app
        .place_order(&token, Some(&key), &order_body(&[(&product, 2)]))
        .await;
    assert_eq!(response.status(), 201);
    let placed = json_of(response).await;
    assert_eq!(placed["payment"]["provider"], "stripe");
    let payment_id = s(&placed["payment"]["payment_id"]);
    assert!(payment_id.starts_with("pi_"));
    assert!(s(&placed["payment"]["client_secret"]).starts_with(&format!("{payment_id}_secret_")));
    let received = fake.received();
    assert_eq!(received.len(), 1);
    let sent = &received[0];
    assert_eq!(sent.idempotency_key.as_deref(), Some(s(&placed["id"])));
    assert_eq!(sent.form["amount"], "90000");
    assert_eq!(sent.form["currency"], "eur");
    assert_eq!(sent.form["metadata[order_id]"], s(&placed["id"]));
    assert_eq!(sent.form["automatic_payment_methods[enabled]"], "true");
    let summary = shopd::orders::read::summary(&mut app.conn(), s(&placed["id"])).unwrap();
    assert_eq!(summary.payment_id.as_deref(), Some(payment_id));
    assert_eq!(summary.payment_provider, "stripe");
    assert_eq!(
        shopd::orders::read::find_by_payment_id(&mut app.conn(), payment_id)
            .unwrap()
            .unwrap()
            .id,
        s(&placed["id"])
    );
    assert_not_logged(&[s(&placed["payment"]["client_secret"]), STRIPE_KEY]);
}

#[tokio::test]
async fn a_provider_failure_keeps_the_order_and_the_same_request_again_finishes_it() {
    let fake = FakeStripe::start(STRIPE_KEY).await;
    let app = stripe_app(&fake).await;
    let (token, _) = app.direct_customer();
    let product = app.add_product("Tent", 25_000, 3);
    let key = new_key();
    let body = order_body(&[(&product, 1)]);

    fake.fail_next(2, 503);
    let failed = app.place_order(&token, Some(&key), &body).await;
    assert_problem(failed, 502, "payment_provider_unavailable").await;
    assert_eq!(fake.received().len(), 2, "one retry inside the provider");
    // The order is kept, unpaid, with its stock held.
    let list = json_of(app.request(Method::GET, "/v1/orders", &token, None).await).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let order_id = s(&list["items"][0]["id"]).to_owned();
    assert_eq!(list["items"][0]["status"], "pending_payment");
    assert_eq!(app.stock_of(&product), 2);

    // A refusal (a bad key, say) is the same for the app: the order waits.
    fake.fail_next(1, 400);
    assert_problem(
        app.place_order(&token, Some(&key), &body).await,
        502,
        "payment_provider_unavailable",
    )
    .await;
    // Another body with the key is still a reuse.
    assert_problem(
        app.place_order(&token, Some(&key), &order_body(&[(&product, 2)]))
            .await,
        422,
        "idempotency_key_reused",
    )
    .await;

    let finished = app.place_order(&token, Some(&key), &body).await;
    assert_eq!(finished.status(), 201);
    let finished = finished.bytes().await.unwrap();
    let placed: Value = serde_json::from_slice(&finished).unwrap();
    assert_eq!(placed["id"], order_id.as_str(), "the same order");
    assert_eq!(app.stock_of(&product), 2, "stock taken once");
    assert_eq!(order_count(&app), 1);
    assert!(
        fake.received()
            .iter()
            .all(|r| r.idempotency_key.as_deref() == Some(order_id.as_str())),
        "every attempt under the order id"
    );
    assert_eq!(fake.intent_count(), 1);
    let replay = app.place_order(&token, Some(&key), &body).await;
    assert_eq!(replay.bytes().await.unwrap(), finished);
}

#[tokio::test]
async fn a_provider_that_never_answers_times_out_into_a_502() {
    let fake = FakeStripe::start(STRIPE_KEY).await;
    let app = stripe_app(&fake).await;
    let provider = shopd::payments::stripe::StripeProvider::with_timeouts(
        shopd::payments::stripe::StripeConfig {
            secret_key: shopd::domain::Sensitive::new(STRIPE_KEY.to_owned()),
            api_base: url::Url::parse(&fake.base_url).unwrap(),
        },
        Duration::from_millis(500),
        Duration::from_millis(300),
    );
    fake.set_delay(Duration::from_secs(2));
    use shopd::payments::PaymentProvider;
    let started = Instant::now();
    let result = provider
        .create_payment(&shopd::payments::PaymentRequest {
            order_id: uuid::Uuid::now_v7().to_string(),
            amount: 100,
            currency: "EUR".into(),
        })
        .await;
    assert!(matches!(
        result,
        Err(shopd::payments::PaymentError::Unavailable(_))
    ));
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "two short attempts"
    );
    // A wrong key is a refusal.
    let wrong =
        shopd::payments::stripe::StripeProvider::new(shopd::payments::stripe::StripeConfig {
            secret_key: shopd::domain::Sensitive::new("sk_test_wrong".to_owned()),
            api_base: url::Url::parse(&fake.base_url).unwrap(),
        });
    fake.set_delay(Duration::ZERO);
    let refused = wrong
        .create_payment(&shopd::payments::PaymentRequest {
            order_id: uuid::Uuid::now_v7().to_string(),
            amount: 100,
            currency: "EUR".into(),
        })
        .await;
    assert!(matches!(
        refused,
        Err(shopd::payments::PaymentError::Refused(_))
    ));
    drop(app);
}

#[tokio::test]
async fn a_refused_request_leaves_no_trace_of_its_key() {
    let app = TestApp::spawn().await;
    let (token, _) = app.direct_customer();
    let product = app.add_product("Last one", 700, 1);
    let (other, _) = app.direct_customer();
    assert_eq!(
        app.place_order(&other, Some(&new_key()), &order_body(&[(&product, 1)]))
            .await
            .status(),
        201
    );
    let key = new_key();
    let body = order_body(&[(&product, 1)]);
    assert_problem(
        app.place_order(&token, Some(&key), &body).await,
        409,
        "out_of_stock",
    )
    .await;
    // Restocked: the same request with the same key now goes through.
    diesel::update(shopd::db::schema::products::table.find(&product))
        .set(shopd::db::schema::products::stock.eq(1))
        .execute(&mut app.conn())
        .unwrap();
    assert_eq!(
        app.place_order(&token, Some(&key), &body).await.status(),
        201
    );
}

#[tokio::test]
async fn idempotency_keys_are_purged_after_a_day() {
    let app = TestApp::spawn().await;
    let (token, _) = app.direct_customer();
    let product = app.add_product("Notebook", 300, 10);
    let key = new_key();
    let body = order_body(&[(&product, 1)]);
    let first = json_of(app.place_order(&token, Some(&key), &body).await).await;
    assert_eq!(app.state.orders.purge_idempotency_keys().await.unwrap(), 0);
    let old = chrono::Utc::now().naive_utc() - chrono::Duration::hours(25);
    diesel::update(idempotency_keys::table)
        .set(idempotency_keys::created_at.eq(old))
        .execute(&mut app.conn())
        .unwrap();
    // The instance's own purge task may get there first; either way the key is gone.
    assert!(app.state.orders.purge_idempotency_keys().await.unwrap() <= 1);
    let left: i64 = idempotency_keys::table
        .count()
        .get_result(&mut app.conn())
        .unwrap();
    assert_eq!(left, 0);
    let second = json_of(app.place_order(&token, Some(&key), &body).await).await;
    assert_ne!(first["id"], second["id"], "a purged key is a new key");
    assert_eq!(app.stock_of(&product), 8);
}

#[tokio::test]
async fn an_erased_customers_orders_still_list_and_their_address_reads_as_erased() {
    let app = TestApp::spawn().await;
    let phone = unique_phone();
    let pair = app.register(&phone).await;
    let token = s(&pair["access_token"]).to_owned();
    let customer_id = s(&pair["customer_id"]).to_owned();
    let product = app.add_product("Lamp", 6_500, 3);
    let placed = json_of(
        app.place_order(&token, Some(&new_key()), &order_body(&[(&product, 2)]))
            .await,
    )
    .await;
    let order_id = s(&placed["id"]).to_owned();
    assert!(matches!(
        app.state
            .orders
            .shipping_address(&customer_id, &order_id)
            .await
            .unwrap(),
        AddressRead::Address(_)
    ));
    // A second order, paid: erasure leaves it as it is (the books), while the first, still awaiting payment,
    // is cancelled and gives its stock back.
    let paid = json_of(
        app.place_order(&token, Some(&new_key()), &order_body(&[(&product, 1)]))
            .await,
    )
    .await;
    let paid_id = s(&paid["id"]).to_owned();
    app.state
        .orders
        .change_status(
            &paid_id,
            OrderStatus::Paid,
            Actor::Provider("test".into()),
            None,
        )
        .await
        .unwrap();
    assert_eq!(app.stock_of(&product), 0);

    let erased = app
        .request(
            Method::DELETE,
            "/v1/me",
            &token,
            Some(&json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(erased.status(), 204);
    assert_problem(
        app.request(Method::GET, "/v1/orders", &token, None).await,
        401,
        "session_ended",
    )
    .await;

    // For the books (and the staff routes that read through the same functions).
    let page = app
        .state
        .orders
        .list(&customer_id, PageRequest::parse(None, None).unwrap())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    let detail = app
        .state
        .orders
        .detail(&customer_id, &order_id)
        .await
        .unwrap();
    assert_eq!(detail.items[0].name, "Lamp");
    assert_eq!(detail.total.amount, 13_000);
    assert_eq!(detail.status, OrderStatus::Cancelled);
    assert_eq!(app.stock_of(&product), 2);
    let events = shopd::orders::state::events(&mut app.conn(), &order_id).unwrap();
    let last = events.last().unwrap();
    assert_eq!(
        (last.to.as_str(), last.note.as_deref()),
        ("cancelled", Some("the customer was erased"))
    );
    let kept = app
        .state
        .orders
        .detail(&customer_id, &paid_id)
        .await
        .unwrap();
    assert_eq!(kept.status, OrderStatus::Paid);
    assert_eq!(
        app.state
            .orders
            .shipping_address(&customer_id, &order_id)
            .await
            .unwrap(),
        AddressRead::Erased
    );
    let mut conn = app.conn();
    assert_eq!(
        shopd::orders::read::shipping_address(&mut conn, &app.state.vault, &order_id, None)
            .unwrap(),
        AddressRead::Erased
    );
}

#[tokio::test]
async fn an_address_reaches_neither_the_logs_nor_the_database_in_clear() {
    let app = TestApp::spawn().await;
    let (token, _) = app.direct_customer();
    let product = app.add_product("Telescope", 89_900, 2);
    let distinctive = json!({
        "name": "Zebedee Quimby-Fotheringay",
        "line1": "77 Wobbleton Crescent",
        "line2": "Gazebo Annexe",
        "city": "Puddlecombe-on-Sea",
        "postal_code": "QX9 7ZB",
        "country": "GB",
    });
    let body =
        json!({"items": [{"product_id": product, "quantity": 1}], "shipping_address": distinctive});
    let placed = json_of(app.place_order(&token, Some(&new_key()), &body).await).await;
    let id = s(&placed["id"]);
    let read = json_of(
        app.request(
            Method::GET,
            &format!("/v1/orders/{id}/shipping-address"),
            &token,
            None,
        )
        .await,
    )
    .await;
    assert_eq!(read, distinctive, "the address opens for its customer");
    // Refused bodies carrying the address do not log it either.
    let mut bad = body.clone();
    bad["shipping_address"]["country"] = json!("Wobbleton");
    assert_problem(
        app.place_order(&token, Some(&new_key()), &bad).await,
        422,
        "invalid_country",
    )
    .await;
    let values = [
        "Zebedee",
        "Quimby-Fotheringay",
        "Wobbleton",
        "Gazebo Annexe",
        "Puddlecombe",
        "QX9 7ZB",
        s(&placed["payment"]["client_secret"]),
    ];
    assert_not_logged(&values);
    crate::crypto::assert_nowhere_in_the_database(&app, &values).await;
}

#[tokio::test]
async fn the_openapi_document_has_every_order_route() {
    let app = TestApp::spawn().await;
    let doc = json_of(app.get("/openapi.json").await).await;
    for (path, method) in [
        ("/v1/products", "get"),
        ("/v1/products/{id}", "get"),
        ("/v1/orders", "post"),
        ("/v1/orders", "get"),
        ("/v1/orders/{id}", "get"),
        ("/v1/orders/{id}/shipping-address", "get"),
        ("/v1/orders/{id}/cancel", "post"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
    let post = &doc["paths"]["/v1/orders"]["post"];
    assert!(
        post["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header")
    );
}

#[tokio::test]
async fn an_order_placement_issues_at_most_fifteen_statements() {
    let db = Arc::new(TestDb::new());
    let url = db.connection_url();
    statements::record_for(&url);
    let app = TestApp::spawn_on(db, None, |_| {}).await;
    let (token, _) = app.direct_customer();
    let product = app.add_product("Counted", 1_000, 100);
    let others: Vec<String> = (0..2)
        .map(|i| app.add_product(&format!("Extra {i}"), 10, 100))
        .collect();
    // Warm up: the first order of a connection.
    assert_eq!(
        app.place_order(&token, Some(&new_key()), &order_body(&[(&product, 1)]))
            .await
            .status(),
        201
    );
    statements::take(&url);
    assert_eq!(
        app.place_order(&token, Some(&new_key()), &order_body(&[(&product, 1)]))
            .await
            .status(),
        201
    );
    let one_line = statements::placement_checkouts(&statements::take(&url));
    let count: usize = one_line.iter().map(Vec::len).sum();
    eprintln!("statements for a one-line order ({count}):");
    for (n, group) in one_line.iter().enumerate() {
        for sql in group {
            eprintln!(
                "  checkout {n}: {}",
                sql.chars().take(110).collect::<String>()
            );
        }
    }
    // The order's transaction (the claim, the data key, the customer's verified phone, the prices, the stock,
    // the order, its lines and first event), then the payment's (the data key, the payment id, the stored
    // response).
    assert!(count <= 15, "{count} statements");

    assert_eq!(
        app.place_order(
            &token,
            Some(&new_key()),
            &order_body(&[(&product, 1), (&others[0], 1), (&others[1], 1)])
        )
        .await
        .status(),
        201
    );
    let three_lines: usize = statements::placement_checkouts(&statements::take(&url))
        .iter()
        .map(Vec::len)
        .sum();
    eprintln!("statements for a three-line order: {three_lines}");
    assert_eq!(three_lines, count + 2, "one more stock update a line");

    // A replay: the claim insert that meets the key, the read of the stored response and of the data key
    // that opens it, inside the transaction the claim shares with the order it would make (BEGIN and COMMIT).
    let key = new_key();
    let body = order_body(&[(&product, 1)]);
    app.place_order(&token, Some(&key), &body).await;
    statements::take(&url);
    assert_eq!(
        app.place_order(&token, Some(&key), &body).await.status(),
        201
    );
    let replay: usize = statements::placement_checkouts(&statements::take(&url))
        .iter()
        .map(Vec::len)
        .sum();
    eprintln!("statements for a replay: {replay}");
    assert!(replay <= 5, "{replay}");
}
