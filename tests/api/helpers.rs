use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use shopd::config::{Config, DatabaseUrl, Environment, Vars, secrets};
use shopd::startup::{AppState, Application};
use tempfile::TempDir;

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
            },
            Some(base) => {
                let name = format!("shopd_test_{}", uuid::Uuid::new_v4().simple());
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
    vars
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    #[allow(dead_code)]
    pub state: AppState,
    handle: actix_web::dev::ServerHandle,
    pub db: TestDb,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts the application with the test configuration changed by `customise`.
    pub async fn spawn_with(customise: impl FnOnce(&mut Vars)) -> Self {
        init_logs();
        let db = TestDb::new();
        let mut vars = test_vars(&db);
        customise(&mut vars);
        let config = Config::from_vars(&vars).expect("test configuration is valid");
        let app = Application::build(config)
            .await
            .expect("application starts");
        let address = format!("http://127.0.0.1:{}", app.port());
        let state = app.state().clone();
        let handle = app.handle();
        tokio::spawn(app.run_until_stopped());
        Self {
            address,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            state,
            handle,
            db,
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

impl Drop for TestApp {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { handle.stop(false).await });
        }
    }
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
