use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use shopd::config::{Config, DatabaseUrl, Environment, Vars, secrets};
use shopd::startup::Application;
use shopd::state::AppState;
use tempfile::TempDir;

use crate::fake_twilio::FakeTwilio;

/// Every log line the applications of this test binary wrote. Tests check it for values that must never be
/// logged; it is shared by all tests, which only makes that check stricter.
static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct CapturedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = std::io::stderr().write_all(buf);
        }
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logs() -> Arc<Mutex<Vec<u8>>> {
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = CapturedWriter(buffer.clone());
        shopd::telemetry::init(
            Environment::Development,
            "shopd=debug,info",
            false,
            move || writer.clone(),
        );
        buffer
    })
    .clone()
}

/// Starts capturing log lines, as `TestApp::spawn` does, for tests that run library code without an app.
pub fn init_capture() {
    init_logs();
}

/// All captured log text so far.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&init_logs().lock().unwrap()).into_owned()
}

/// A database of its own for one test: a temporary SQLite file, or a fresh PostgreSQL database dropped
/// afterwards when `TEST_DATABASE_URL` is set.
pub struct TestDb {
    pub url: DatabaseUrl,
    postgres: Option<(String, String)>,
    pub dir: TempDir,
    /// The device token each phone's signup gave (valid on every instance of this database), sent by
    /// `TestApp::login` as the app on that phone would.
    pub devices: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl TestDb {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        match std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            None => Self {
                url: DatabaseUrl::Sqlite(dir.path().join("shopd.db")),
                postgres: None,
                dir,
                devices: Default::default(),
            },
            Some(base) => {
                let name = format!("shopd_test_{}", uuid::Uuid::new_v4().simple());
                shopd::db::prepare_postgres_client();
                let mut admin =
                    PgConnection::establish(&base).expect("TEST_DATABASE_URL reachable");
                admin
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .expect("create test database");
                let mut url = url::Url::parse(&base).expect("TEST_DATABASE_URL is a URL");
                url.set_path(&format!("/{name}"));
                Self {
                    url: DatabaseUrl::parse(url.as_str()).unwrap(),
                    postgres: Some((base, name)),
                    dir,
                    devices: Default::default(),
                }
            }
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    pub fn url_text(&self) -> String {
        match &self.url {
            DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
            DatabaseUrl::Postgres(url) => url.expose().clone(),
        }
    }

    /// The address shopd's connections are opened with, as diesel's instrumentation reports it (the file's
    /// path on SQLite, without `url_text`'s scheme).
    pub fn connection_url(&self) -> String {
        match &self.url {
            DatabaseUrl::Sqlite(path) => path.to_string_lossy().into_owned(),
            DatabaseUrl::Postgres(url) => url.expose().clone(),
        }
    }

    /// Drops the PostgreSQL database now, closing every connection to it.
    pub fn drop_postgres(&self) {
        if let Some((base, name)) = &self.postgres {
            let mut admin = PgConnection::establish(base).expect("TEST_DATABASE_URL reachable");
            admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .expect("drop test database");
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        self.drop_postgres();
    }
}

/// The variables of a test configuration: its own database and folder, fresh secrets, one worker.
pub fn test_vars(db: &TestDb) -> Vars {
    let mut vars = Vars::new(secrets::generate_all());
    vars.set("DATABASE_URL", db.url_text());
    vars.set("SHOPD_BIND", "127.0.0.1:0");
    vars.set("SHOPD_DATA_DIR", db.dir.path().to_string_lossy());
    vars.set("SHOPD_WORKERS", "1");
    vars.set("DATABASE_POOL_SIZE", "4");
    vars.set("SHOP_DOMAIN", "shop.example.com");
    // Cheap hashing for speed; the tests of the production parameters set them back.
    vars.set("ARGON2_MEMORY_KIB", "256");
    vars.set("ARGON2_ITERATIONS", "1");
    // Functional tests send a bot's worth of requests from one address; the edge tests set the per-address
    // rate limits they test.
    for class in ["ACCOUNT", "AUTH", "WEBHOOKS", "API"] {
        vars.set(&format!("RATE_LIMIT_{class}"), "off");
    }
    vars
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    #[allow(dead_code)]
    pub state: AppState,
    handle: actix_web::dev::ServerHandle,
    /// The task serving the app; it ends once the server and the outbox sender have stopped.
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    pub db: Arc<TestDb>,
    /// The configuration it was built from (for a second instance of the same deployment).
    pub vars: Vars,
    /// The local server speaking Twilio's Messages API that this app texts through.
    pub twilio: FakeTwilio,
    /// The port of `/metrics` when `METRICS_BIND` gives it an address of its own.
    pub metrics_port: Option<u16>,
}

pub const TWILIO_SID: &str = "AC00000000000000000000000000000001";
pub const TWILIO_TOKEN: &str = "test-twilio-auth-token";
pub const TWILIO_FROM: &str = "+15005550006";

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts the application with the test configuration changed by `customise`.
    pub async fn spawn_with(customise: impl FnOnce(&mut Vars)) -> Self {
        Self::spawn_on(Arc::new(TestDb::new()), None, customise).await
    }

    /// Starts an application on `db`, with the secrets of `vars` when given (a second instance of the same
    /// deployment passes the first one's), changed by `customise`.
    pub async fn spawn_on(
        db: Arc<TestDb>,
        vars: Option<Vars>,
        customise: impl FnOnce(&mut Vars),
    ) -> Self {
        init_logs();
        let twilio = FakeTwilio::start(TWILIO_SID, TWILIO_TOKEN, TWILIO_FROM).await;
        let mut vars = vars.unwrap_or_else(|| test_vars(&db));
        vars.set("SMS_PROVIDER", "twilio");
        vars.set("TWILIO_ACCOUNT_SID", TWILIO_SID);
        vars.set("TWILIO_AUTH_TOKEN", TWILIO_TOKEN);
        vars.set("TWILIO_FROM", TWILIO_FROM);
        vars.set("TWILIO_API_BASE", &twilio.base_url);
        customise(&mut vars);
        let config = Config::from_vars(&vars).expect("test configuration is valid");
        let vars_kept = vars.clone();
        let app = Application::build(config)
            .await
            .expect("application starts");
        let address = format!("http://127.0.0.1:{}", app.port());
        let state = app.state().clone();
        let metrics_port = app.metrics_port();
        let handle = app.handle();
        let served = Some(tokio::spawn(app.run_until_stopped()));
        Self {
            address,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            state,
            handle,
            served,
            db,
            twilio,
            vars: vars_kept,
            metrics_port,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }
}

/// A phone number no other test uses (a valid GB mobile).
pub fn unique_phone() -> String {
    let n = u32::from_be_bytes(shopd::config::secrets::random_bytes::<4>()) % 1_000_000;
    format!("+447400{n:06}")
}

pub const PASSWORD: &str = "correct horse battery staple";

/// The log text without what shopd writes as numbers of its own (the line's timestamp, `latency_us=`, ids),
/// so a six-digit code is searched where it could only have come from a leak.
fn logs_without_own_numbers(logs: &str) -> String {
    logs.lines()
        .map(|line| {
            line.split_whitespace()
                .skip(1)
                .filter(|word| {
                    !word.starts_with("latency_us=")
                        && !word.starts_with("request_id=")
                        && word.matches('-').count() < 4
                        && !word.starts_with("port=")
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts that no captured log line holds any of `values`.
pub fn assert_not_logged(values: &[&str]) {
    let logs = captured_logs();
    let without_own_numbers = logs_without_own_numbers(&logs);
    for value in values.iter().filter(|v| v.len() >= 6) {
        let haystack = if value.bytes().all(|b| b.is_ascii_digit()) {
            &without_own_numbers
        } else {
            &logs
        };
        assert!(
            !haystack.contains(value),
            "a log line holds a secret or personal value"
        );
    }
}

impl TestApp {
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<&serde_json::Value>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("request sent")
    }

    /// Starts a signup and returns the verification id.
    pub async fn start_signup(&self, phone: &str) -> String {
        let response = self
            .post_json(
                "/v1/auth/signup",
                &serde_json::json!({"phone": phone, "password": PASSWORD}),
            )
            .await;
        assert_eq!(response.status(), 202);
        let body: serde_json::Value = response.json().await.unwrap();
        body["verification_id"].as_str().unwrap().to_owned()
    }

    /// The code last texted to `phone`.
    pub fn code_for(&self, phone: &str) -> String {
        self.twilio.last_code_for(phone).expect("a code was texted")
    }

    /// Signs a customer up with `phone` and returns the token pair (with `customer_id`).
    pub async fn register(&self, phone: &str) -> serde_json::Value {
        let verification_id = self.start_signup(phone).await;
        let code = self.code_for(phone);
        let response = self
            .post_json(
                "/v1/auth/signup/verify",
                &serde_json::json!({"verification_id": verification_id, "code": code}),
            )
            .await;
        assert_eq!(response.status(), 201);
        let pair: serde_json::Value = response.json().await.unwrap();
        self.remember_device(phone, &pair);
        pair
    }

    /// Keeps the `device_token` of `pair` for the later logins of `phone`.
    pub fn remember_device(&self, phone: &str, pair: &serde_json::Value) {
        self.db.devices.lock().unwrap().insert(
            phone.to_owned(),
            pair["device_token"]
                .as_str()
                .expect("a device token")
                .to_owned(),
        );
    }

    /// `POST /v1/auth/login` from the phone that signed up as `phone` (with its device token, when it did
    /// through `register`).
    pub async fn login(&self, phone: &str, password: &str) -> reqwest::Response {
        let device = self.db.devices.lock().unwrap().get(phone).cloned();
        let mut body = serde_json::json!({"phone": phone, "password": password});
        if let Some(device) = device {
            body["device_token"] = device.into();
        }
        self.post_json("/v1/auth/login", &body).await
    }

    /// Stops the instance as a deployment would stop a process: the server and its background outbox sender.
    /// The database stays (other apps may hold it).
    pub async fn stop(mut self) {
        self.handle.stop(false).await;
        if let Some(served) = self.served.take() {
            let _ = served.await;
        }
    }

    /// Runs the `shopd` binary against this app's database and secrets, with `stdin` as its input.
    pub fn cli(&self, args: &[&str], stdin: &str) -> std::process::Output {
        use std::process::{Command, Stdio};
        let mut child = Command::new(env!("CARGO_BIN_EXE_shopd"))
            .args(args)
            .current_dir(self.db.dir.path())
            .env_clear()
            .envs(
                self.vars
                    .iter()
                    .filter(|(k, _)| !k.starts_with("SHOPD_BIND")),
            )
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("shopd runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// A direct database connection, for tests that move the clock of a row.
    pub fn conn(&self) -> shopd::db::PooledConn {
        self.state.db.get().unwrap()
    }

    /// Marks the spent refresh token `token` as spent 11 s ago: past the grace period of two requests
    /// racing, so that presenting it again is a reuse.
    pub fn spent_past_the_grace_period(&self, token: &serde_json::Value) {
        use diesel::prelude::*;
        use shopd::db::schema::refresh_tokens;
        let hash = shopd::auth::sessions::hash_refresh_token(token.as_str().unwrap());
        let past = chrono::Utc::now().naive_utc() - chrono::Duration::seconds(11);
        let updated = diesel::update(refresh_tokens::table.find(hash))
            .set(refresh_tokens::spent_at.eq(Some(past)))
            .execute(&mut self.conn())
            .unwrap();
        assert_eq!(updated, 1, "a refresh token of this app");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { handle.stop(false).await });
        }
    }
}

/// The message with which the application refuses to start on `vars` (a valid configuration).
pub async fn start_refused(vars: &Vars) -> String {
    let config = Config::from_vars(vars).expect("the configuration itself is valid");
    Application::build(config)
        .await
        .err()
        .expect("the start is refused")
        .to_string()
}

/// Asserts a problem+json answer with this status and code, and returns its body.
pub async fn assert_problem(
    response: reqwest::Response,
    status: u16,
    code: &str,
) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: serde_json::Value = response.json().await.expect("a JSON body");
    assert_eq!(body["code"], code, "code in {body}");
    assert_eq!(body["status"], status);
    assert!(body["title"].is_string() && body["detail"].is_string() && body["type"].is_string());
    body
}

/// A shipping address with every field.
pub fn address() -> serde_json::Value {
    serde_json::json!({
        "name": "Ada Lovelace",
        "line1": "12 St James's Square",
        "line2": "Flat 3",
        "city": "London",
        "postal_code": "SW1Y 4JH",
        "country": "GB",
    })
}

/// An order body with these `(product_id, quantity)` lines and `address()`.
pub fn order_body(lines: &[(&str, i64)]) -> serde_json::Value {
    serde_json::json!({
        "items": lines
            .iter()
            .map(|(id, q)| serde_json::json!({"product_id": id, "quantity": q}))
            .collect::<Vec<_>>(),
        "shipping_address": address(),
    })
}

impl TestApp {
    /// A customer made straight in the database with a session and an access token: for tests that need more
    /// customers than the per-address SMS limit allows. Their phone counts as verified (a blind index of a
    /// phone no one has) so that they may order. Returns (access token, customer id).
    pub fn direct_customer(&self) -> (String, String) {
        let (issued, id) = self.direct_customer_session();
        (issued.access_token.into_inner(), id)
    }

    /// As `direct_customer`, with the whole token pair of the session. Returns (pair, customer id).
    pub fn direct_customer_session(&self) -> (shopd::auth::sessions::Issued, String) {
        use diesel::prelude::*;
        use shopd::db::schema::customers;
        let id = uuid::Uuid::now_v7().to_string();
        let mut conn = self.conn();
        self.state.vault.create_data_key(&mut conn, &id).unwrap();
        let now = chrono::Utc::now().naive_utc();
        diesel::insert_into(customers::table)
            .values((
                customers::id.eq(&id),
                customers::phone_index
                    .eq(Some(shopd::config::secrets::random_bytes::<32>().to_vec())),
                customers::created_at.eq(now),
                customers::updated_at.eq(now),
            ))
            .execute(&mut conn)
            .unwrap();
        let issued = self
            .state
            .identity
            .tokens
            .start(
                &mut conn,
                shopd::auth::claims::Audience::Customer,
                &id,
                None,
                "test",
                shopd::auth::sessions::Factors::PASSWORD,
            )
            .unwrap();
        (issued, id)
    }

    /// Adds an active product and returns its id.
    pub fn add_product(&self, name: &str, price: i64, stock: i64) -> String {
        self.add_product_with(name, price, stock, true)
    }

    pub fn add_product_with(&self, name: &str, price: i64, stock: i64, active: bool) -> String {
        let product = shopd::orders::NewProduct::parse(
            name,
            price,
            None,
            stock,
            active,
            &self.state.config.shop_currency,
        )
        .unwrap();
        let mut conn = self.conn();
        shopd::orders::catalogue::insert_products(&mut conn, &[product], |_| {})
            .unwrap()
            .remove(0)
    }

    pub fn stock_of(&self, product_id: &str) -> i32 {
        let mut conn = self.conn();
        shopd::orders::catalogue::get(&mut conn, product_id)
            .unwrap()
            .stock
    }

    /// `POST /v1/orders` with `Idempotency-Key: key` (none when `None`).
    pub async fn place_order(
        &self,
        token: &str,
        key: Option<&str>,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url("/v1/orders"))
            .bearer_auth(token)
            .json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.expect("request sent")
    }
}

impl TestApp {
    /// The text of `/metrics` on the public address, with `METRICS_TOKEN` `token`.
    pub async fn metrics_text(&self, token: &str) -> String {
        let response = self
            .client
            .get(self.url("/metrics"))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent");
        assert_eq!(response.status(), 200);
        response.text().await.expect("a text body")
    }
}

/// The value of one series (`name{labels}`) in the metrics text.
pub fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {name}"))
        .trim()
        .parse()
        .expect("a number")
}

/// A fresh idempotency key.
pub fn new_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The claims of an access token, read without checking it.
pub fn token_claims(token: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Whether the test database runs every transaction serializable (`.ci/run`'s third pass sets
/// `PGOPTIONS=-c default_transaction_isolation=serializable`).
pub fn serializable(app: &TestApp) -> bool {
    use diesel::prelude::*;
    #[derive(QueryableByName)]
    struct Isolation {
        #[diesel(sql_type = diesel::sql_types::Text)]
        default_transaction_isolation: String,
    }
    if !app.db.is_postgres() {
        return false;
    }
    diesel::sql_query("SHOW default_transaction_isolation")
        .get_result::<Isolation>(&mut app.conn())
        .is_ok_and(|i| i.default_transaction_isolation == "serializable")
}

impl TestApp {
    /// An access token of the session of token pair `pair` as if its sign-in were 10 minutes ago (moved in the
    /// database, then refreshed): for the step-up checks.
    pub async fn aged_session(&self, pair: &serde_json::Value) -> String {
        use diesel::prelude::*;
        use shopd::db::schema::sessions;
        let claims = token_claims(pair["access_token"].as_str().unwrap());
        let ten_minutes_ago = chrono::Utc::now().naive_utc() - chrono::Duration::minutes(10);
        diesel::update(sessions::table.find(claims["sid"].as_str().unwrap()))
            .set(sessions::auth_time.eq(ten_minutes_ago))
            .execute(&mut self.conn())
            .unwrap();
        let refreshed = self
            .post_json(
                "/v1/auth/refresh",
                &serde_json::json!({"refresh_token": pair["refresh_token"]}),
            )
            .await;
        assert_eq!(refreshed.status(), 200);
        let body: serde_json::Value = refreshed.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }
}
