//! The staff console's orders queue with 100,000 orders in the database (issue 28: p99 ≤ 50 ms on SQLite and on
//! PostgreSQL). Seeds the orders straight into a fresh database, signs an admin in through the console's own
//! functions, then GETs `/staff/orders` over HTTP, one request at a time, first page and each status tab.
//!
//! `cargo bench --bench console_queue` (SQLite), and with `--pg postgres://postgres@127.0.0.1:5432/postgres`
//! PostgreSQL too (a database of its own, dropped afterwards). `--orders N` changes the 100,000.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use shopd::config::{Config, Vars, secrets};
use shopd::db::DbConnection;
use shopd::db::schema::{customers, orders};
use shopd::domain::Sensitive;
use shopd::orders::OrderStatus;
use shopd::staff::Role;
use shopd::startup::Application;

const REQUESTS_PER_PAGE: usize = 400;
const CUSTOMERS: usize = 20_000;

struct Args {
    orders: usize,
    pg: Option<String>,
}

fn args() -> Args {
    let mut out = Args {
        orders: 100_000,
        pg: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--orders" => out.orders = it.next().and_then(|n| n.parse().ok()).expect("--orders N"),
            "--pg" => out.pg = it.next(),
            _ => {} // cargo bench passes --bench
        }
    }
    out
}

/// `count` orders over the last year, newest last, their statuses spread as a running shop's are.
fn seed(conn: &mut DbConnection, count: usize) {
    let statuses = [
        (OrderStatus::Delivered, 70),
        (OrderStatus::Shipped, 8),
        (OrderStatus::Paid, 6),
        (OrderStatus::Fulfilling, 4),
        (OrderStatus::Cancelled, 4),
        (OrderStatus::Expired, 5),
        (OrderStatus::Refunded, 2),
        (OrderStatus::PendingPayment, 1),
    ];
    let wheel: Vec<OrderStatus> = statuses
        .iter()
        .flat_map(|(s, n)| std::iter::repeat_n(*s, *n))
        .collect();
    let start = chrono::Utc::now().timestamp() - 365 * 86_400;
    let now = chrono::Utc::now().naive_utc();
    for first in (0..CUSTOMERS).step_by(1000) {
        let rows: Vec<_> = (first..first + 1000)
            .map(|n| {
                (
                    customers::id.eq(format!("customer-{n}")),
                    customers::created_at.eq(now),
                    customers::updated_at.eq(now),
                )
            })
            .collect();
        match conn {
            DbConnection::Sqlite(c) => diesel::insert_into(customers::table)
                .values(rows)
                .execute(c),
            DbConnection::Postgresql(c) => diesel::insert_into(customers::table)
                .values(rows)
                .execute(c),
        }
        .expect("seed customers");
    }
    let step = (365 * 86_400) / count.max(1) as i64;
    for chunk_start in (0..count).step_by(1000) {
        let rows: Vec<_> = (chunk_start..(chunk_start + 1000).min(count))
            .map(|n| {
                let secs = start + n as i64 * step;
                let at = chrono::DateTime::from_timestamp(secs, 0)
                    .unwrap()
                    .naive_utc();
                let id = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
                    uuid::NoContext,
                    secs as u64,
                    n as u32,
                ))
                .to_string();
                let status = wheel[(n * 7919) % wheel.len()];
                (
                    orders::id.eq(id),
                    orders::customer_id.eq(format!("customer-{}", n % CUSTOMERS)),
                    orders::status.eq(status.as_str()),
                    orders::total_amount.eq(1_000 + (n % 9_000) as i64),
                    orders::currency.eq("EUR"),
                    orders::item_count.eq(1 + (n % 4) as i32),
                    orders::shipping_address.eq(vec![0u8; 64]),
                    orders::payment_provider.eq("sandbox"),
                    orders::payment_review.eq(n % 997 == 0),
                    orders::needs_refund.eq(n % 1999 == 0),
                    orders::expires_at.eq(at),
                    orders::created_at.eq(at),
                    orders::updated_at.eq(at),
                )
            })
            .collect();
        match conn {
            DbConnection::Sqlite(c) => diesel::insert_into(orders::table).values(rows).execute(c),
            DbConnection::Postgresql(c) => {
                diesel::insert_into(orders::table).values(rows).execute(c)
            }
        }
        .expect("seed orders");
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn measure(label: &str, database_url: String, dir: &std::path::Path, orders: usize) {
    let mut vars = Vars::new(secrets::generate_all());
    vars.set("DATABASE_URL", database_url);
    vars.set("SHOPD_BIND", "127.0.0.1:0");
    vars.set("SHOPD_DATA_DIR", dir.to_string_lossy());
    vars.set("SHOP_DOMAIN", "shop.example.com");
    vars.set("RATE_LIMIT_API", "off");
    vars.set("RATE_LIMIT_ACCOUNT", "off");
    vars.set("RATE_LIMIT_AUTH", "off");
    let config = Config::from_vars(&vars).expect("configuration");
    let app = Application::build(config).await.expect("starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    let handle = app.handle();
    let served = tokio::spawn(app.run_until_stopped());

    let seeding = Instant::now();
    let db = state.db.clone();
    db.write(move |conn| -> Result<(), shopd::error::AppError> {
        seed(conn, orders);
        Ok(())
    })
    .await
    .unwrap();
    if label == "PostgreSQL" {
        db.run(|conn| -> Result<(), shopd::error::AppError> {
            diesel::sql_query("VACUUM ANALYZE orders").execute(conn)?;
            Ok(())
        })
        .await
        .unwrap();
    }
    eprintln!(
        "{label}: {orders} orders seeded in {:.1?}",
        seeding.elapsed()
    );

    let email = "bench.admin@shop.example.com";
    let password = "bench passphrase long enough";
    state
        .staff
        .add(email, Role::Admin, Sensitive::new(password.to_owned()))
        .await
        .unwrap();
    let ip = "127.0.0.1".parse().unwrap();
    let (token, _) = state
        .staff
        .console_sign_in(
            email,
            Sensitive::new(password.to_owned()),
            ip,
            "bench".into(),
        )
        .await
        .unwrap();
    let session = state
        .staff
        .console_session(token.expose())
        .await
        .unwrap()
        .unwrap();
    let enrolment = state.staff.enrolment(&session.staff_id).await.unwrap();
    let totp = totp_rs::Builder::new()
        .with_secret(totp_rs::Secret::try_from_base32(enrolment.secret.expose()).unwrap())
        .build()
        .unwrap();
    let code = totp
        .generate(chrono::Utc::now().timestamp() as u64)
        .to_string();
    state
        .staff
        .console_enrol(&session, Sensitive::new(code), "bench".into())
        .await
        .unwrap()
        .unwrap();

    let client = reqwest::Client::new();
    let cookie = format!("__Host-shopd-console={}", token.expose());
    let pages = [
        "/staff/orders".to_owned(),
        "/staff/orders?status=paid".to_owned(),
        "/staff/orders?status=delivered".to_owned(),
        "/staff/orders?flag=payment_review".to_owned(),
    ];
    println!(
        "\n{label}, {orders} orders: GET, one at a time, {REQUESTS_PER_PAGE} requests a page after 40 to warm up"
    );
    println!("| page | p50 | p99 | max |\n|---|---|---|---|");
    for path in &pages {
        let mut times = Vec::with_capacity(REQUESTS_PER_PAGE);
        for n in 0..REQUESTS_PER_PAGE + 40 {
            let began = Instant::now();
            let response = client
                .get(format!("{base}{path}"))
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{path}");
            let body = response.text().await.unwrap();
            assert!(body.contains("<table class=\"queue\">"));
            if n >= 40 {
                times.push(began.elapsed());
            }
        }
        times.sort();
        println!(
            "| `{path}` | {:.1} ms | {:.1} ms | {:.1} ms |",
            percentile(&times, 0.50).as_secs_f64() * 1e3,
            percentile(&times, 0.99).as_secs_f64() * 1e3,
            times.last().unwrap().as_secs_f64() * 1e3,
        );
    }
    handle.stop(true).await;
    let _ = served.await;
}

fn main() {
    let args = args();
    let runtime = actix_web::rt::System::new();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
        measure("SQLite", sqlite, dir.path(), args.orders).await;
        if let Some(base) = &args.pg {
            shopd::db::prepare_postgres_client();
            let name = format!("shopd_bench_{}", uuid::Uuid::new_v4().simple());
            let mut admin = diesel::PgConnection::establish(base).expect("PostgreSQL reachable");
            diesel::sql_query(format!("CREATE DATABASE {name}"))
                .execute(&mut admin)
                .unwrap();
            let mut url = url::Url::parse(base).unwrap();
            url.set_path(&format!("/{name}"));
            let pg_dir = tempfile::tempdir().unwrap();
            measure("PostgreSQL", url.to_string(), pg_dir.path(), args.orders).await;
            diesel::sql_query(format!("DROP DATABASE {name} WITH (FORCE)"))
                .execute(&mut admin)
                .unwrap();
        }
    });
}
