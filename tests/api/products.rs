//! The catalogue, black-box: the public product routes with cursor pagination, and `shopd products import`
//! run as the real binary.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use diesel::prelude::*;
use serde_json::{Value, json};
use shopd::db::schema::products;

use crate::helpers::{TestApp, assert_problem};

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("a JSON body")
}

#[tokio::test]
async fn the_catalogue_lists_active_products_with_stable_cursor_pagination() {
    let app = TestApp::spawn().await;
    let a = app.add_product("Apple", 50, 100);
    let hidden = app.add_product_with("Hidden", 10, 5, false);
    let b = app.add_product("Banana", 30, 0);
    let c = app.add_product("Cherry", 400, 7);
    let d = app.add_product("Date", 250, 1);

    // No token needed: the catalogue is public.
    let first = app.get("/v1/products?limit=2").await;
    assert_eq!(first.status(), 200);
    let first = json_of(first).await;
    assert_eq!(keys(&first), ["items", "next_cursor"].into_iter().collect());
    let items = first["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(
        items[0],
        json!({"id": a, "name": "Apple", "price": {"amount": 50, "currency": "EUR"}, "available": true})
    );
    assert_eq!(items[1]["id"], b.as_str());
    assert_eq!(items[1]["available"], false, "out of stock");

    // Added while the list is read: it comes at the end, and nothing is skipped or repeated.
    let e = app.add_product("Elderberry", 900, 3);
    let mut seen: Vec<String> = items
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    let mut cursor = first["next_cursor"].as_str().unwrap().to_owned();
    loop {
        let page = json_of(
            app.get(&format!("/v1/products?limit=2&cursor={cursor}"))
                .await,
        )
        .await;
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned()),
        );
        match page.get("next_cursor") {
            Some(next) => cursor = next.as_str().unwrap().to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, vec![a, b, c, d, e]);
    assert!(!seen.contains(&hidden));

    let all = json_of(app.get("/v1/products").await).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 5, "20 by default");
    assert!(all.get("next_cursor").is_none());
    for bad in ["/v1/products?limit=0", "/v1/products?limit=101"] {
        assert_problem(app.get(bad).await, 422, "invalid_limit").await;
    }
    assert_problem(
        app.get("/v1/products?cursor=%27%20OR%201%3D1").await,
        422,
        "invalid_cursor",
    )
    .await;
    assert_problem(app.get("/v1/products?limit=-1").await, 422, "invalid_query").await;
}

#[tokio::test]
async fn one_product_by_id() {
    let app = TestApp::spawn().await;
    let id = app.add_product("Fig", 120, 4);
    let hidden = app.add_product_with("Withdrawn", 10, 5, false);
    let product = json_of(app.get(&format!("/v1/products/{id}")).await).await;
    insta::assert_json_snapshot!("product", product, {".id" => "[product id]"});
    for missing in [hidden, uuid::Uuid::now_v7().to_string(), "x".into()] {
        assert_problem(
            app.get(&format!("/v1/products/{missing}")).await,
            404,
            "not_found",
        )
        .await;
    }
}

/// `shopd products import FILE` on the app's database, with its configuration.
fn import(app: &TestApp, file: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shopd"));
    command
        .arg("products")
        .arg("import")
        .arg(file)
        .current_dir(app.db.dir.path())
        .env_clear();
    let mut names: Vec<&str> = shopd::config::secrets::SECRETS
        .iter()
        .map(|s| s.var)
        .collect();
    names.extend(["DATABASE_URL", "SHOPD_DATA_DIR"]);
    for var in names {
        command.env(var, app.vars.get(var).unwrap_or_default());
    }
    command.env("RUST_LOG", "warn");
    command.output().expect("shopd runs")
}

fn product_count(app: &TestApp) -> i64 {
    products::table.count().get_result(&mut app.conn()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn products_import_takes_json_and_csv() {
    let app = TestApp::spawn().await;
    let dir = app.db.dir.path();
    let json_file = dir.join("catalogue.json");
    std::fs::write(
        &json_file,
        r#"[
  {"name": "Oolong", "price": 1250, "currency": "EUR", "stock": 40},
  {"name": "Sencha", "price": 990, "stock": 12, "active": true},
  {"name": "Discontinued", "price": 100, "stock": 0, "active": false}
]"#,
    )
    .unwrap();
    let out = import(&app, &json_file);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("imported 3 product(s) from {}", json_file.display())
    );

    let csv_file = dir.join("more.csv");
    std::fs::write(
        &csv_file,
        "name,price,stock,active\n\"Cup, large\",450,10,true\nSaucer,200,10,\nOld cup,100,1,false\n",
    )
    .unwrap();
    let out = import(&app, &csv_file);
    assert!(out.status.success(), "{}", stderr(&out));

    let listed = json_of(app.get("/v1/products").await).await;
    let names: Vec<(&str, i64)> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["price"]["amount"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            ("Oolong", 1250),
            ("Sencha", 990),
            ("Cup, large", 450),
            ("Saucer", 200)
        ]
    );
    assert_eq!(
        product_count(&app),
        6,
        "inactive ones are imported, not listed"
    );
}

#[tokio::test]
async fn products_import_reports_bad_rows_by_line_and_imports_nothing() {
    let app = TestApp::spawn().await;
    let dir = app.db.dir.path();
    let json_file = dir.join("bad.json");
    std::fs::write(
        &json_file,
        r#"[
  {"name": "Good", "price": 100, "stock": 1},
  {"name": "No price", "stock": 1},
  {"name": "Good too", "price": 100, "stock": 1},
  {"name": "Dollars", "price": 100, "currency": "USD", "stock": 1},
  {"name": "Negative", "price": 100, "stock": -3}
]"#,
    )
    .unwrap();
    let out = import(&app, &json_file);
    assert!(!out.status.success());
    let reason = stderr(&out);
    assert_eq!(reason.trim().lines().count(), 1, "one line: {reason}");
    assert!(reason.starts_with("shopd: "), "{reason}");
    assert!(reason.contains("3 bad row(s)"), "{reason}");
    assert!(reason.contains("line 3: missing field `price`"), "{reason}");
    assert!(reason.contains("line 5: `currency`"), "{reason}");
    assert!(reason.contains("line 6: `stock`"), "{reason}");
    assert!(
        !reason.contains("line 2") && !reason.contains("line 4"),
        "{reason}"
    );
    assert_eq!(product_count(&app), 0, "all or nothing");

    let csv_file = dir.join("bad.csv");
    std::fs::write(
        &csv_file,
        "name,price,stock,active\nGood,100,1,true\n,100,1,true\nPricey,12.50,1,true\nGood too,1,1,yes\n",
    )
    .unwrap();
    let out = import(&app, &csv_file);
    assert!(!out.status.success());
    let reason = stderr(&out);
    assert!(reason.contains("line 3: `name` is empty"), "{reason}");
    assert!(
        reason.contains("line 4: `price` is not a whole number"),
        "{reason}"
    );
    assert_eq!(product_count(&app), 0);

    let header = dir.join("header.csv");
    std::fs::write(&header, "title,price\nTea,1\n").unwrap();
    let out = import(&app, &header);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("line 1: the header must be `name,price,stock,active`"));

    let missing = import(&app, &dir.join("nowhere.json"));
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("cannot read"),
        "{}",
        stderr(&missing)
    );
    assert_eq!(stderr(&missing).trim().lines().count(), 1);
}

#[tokio::test]
async fn a_large_import_goes_in_whole() {
    let app = TestApp::spawn().await;
    let file = app.db.dir.path().join("large.csv");
    let mut text = String::from("name,price,stock,active\n");
    for i in 0..2_500 {
        text.push_str(&format!("Item {i},{},{},true\n", 100 + i, i % 7));
    }
    std::fs::write(&file, text).unwrap();
    let out = import(&app, &file);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 2500 product(s)"));
    assert_eq!(product_count(&app), 2_500);
}
