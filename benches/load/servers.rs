//! The processes under load: the release builds of shopd and of the baseline, each started on a free port of
//! 127.0.0.1, shopd on a database of its own (SQLite in a temporary folder, or a fresh PostgreSQL database
//! dropped afterwards), with the default (production) argon2 cost and its texts going to the fake Twilio.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use diesel::Connection;
use diesel::connection::SimpleConnection;
use tokio::process::{Child, Command};

use crate::Db;
use crate::twilio;

/// Where cargo puts the release binaries: the target folder this harness itself was built into.
pub fn release_dir() -> anyhow::Result<PathBuf> {
    // target/release/deps/load-<hash>
    let exe = std::env::current_exe()?;
    let release = exe
        .parent()
        .and_then(Path::parent)
        .context("cannot find the target folder from the harness's own path")?;
    Ok(release.to_path_buf())
}

/// `cargo build --release` of shopd, then of the baseline example. Two builds: one with both targets would
/// turn on the dev-dependencies' features (an example may use them) in the crates shopd shares with them,
/// and so measure a shopd that differs from the one `cargo build --release` makes, its symbol names too
/// (`link/startup.order` would no longer match it).
pub fn build() -> anyhow::Result<()> {
    eprintln!("building shopd and examples/baseline in release mode…");
    cargo_build_release(&["--bin", "shopd"])?;
    cargo_build_release(&["--example", "baseline"])
}

fn cargo_build_release(target: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--release"])
        .args(target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_clear()
        .envs(std::env::vars_os().filter(|(name, _)| !set_by_cargo_for_a_target(name)))
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release {} failed", target.join(" "));
    }
    Ok(())
}

/// The variables `cargo bench` sets for the program it runs (the harness). Build scripts such as ring's rerun
/// when one of them changes (`rerun-if-env-changed=CARGO_MANIFEST_DIR`, …), so passing them on to the inner
/// `cargo build` made every `cargo bench` after it, from a shell without them, rebuild ring, rustls and actix.
fn set_by_cargo_for_a_target(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with("CARGO_PKG_")
        || [
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_MANIFEST_LINKS",
            "CARGO_CRATE_NAME",
            "CARGO_BIN_NAME",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_TMPDIR",
            "CARGO_RUSTC_CURRENT_DIR",
            "OUT_DIR",
        ]
        .contains(&name.as_ref())
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The shell line that raises the open-file limit (for 1,000 connections) and then becomes the program.
pub const RAISE_NOFILE: &str =
    "ulimit -n 65536 2>/dev/null || ulimit -n \"$(ulimit -Hn)\" 2>/dev/null; exec \"$0\" \"$@\"";

/// `program args…` started through `sh -c` with a raised open-file limit (the pid stays the program's).
pub fn with_raised_nofile(program: &Path) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(RAISE_NOFILE).arg(program);
    cmd
}

/// A started server, stopped (killed) when dropped.
pub struct Server {
    pub name: &'static str,
    pub pid: u32,
    pub port: u16,
    /// shopd's `/metrics` is served (on its public address, behind `METRICS_TOKEN`).
    pub metrics: bool,
    child: Child,
    log: PathBuf,
    /// How to run a `shopd` command against the same database (shopd only).
    cli: Option<Cli>,
    /// The SQLite folder (or just the log's), removed when dropped.
    _dir: tempfile::TempDir,
    /// Dropped after the process is killed, so the database has no client left.
    postgres: Option<PostgresDb>,
}

impl Server {
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The last lines of its log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Runs `shopd ARGS…` with the server's configuration (its database, its keys); fails unless it succeeds.
    pub async fn run_cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let cli = self.cli.as_ref().context("not a shopd server")?;
        let output = Command::new(&cli.program)
            .args(args)
            .env_clear()
            .envs(clean_env(&cli.env))
            .current_dir(self._dir.path())
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("running shopd {}", args.join(" ")))?;
        if !output.status.success() {
            bail!(
                "shopd {} failed ({}):\n{}{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        // The database goes once its last client is gone.
        drop(self.postgres.take());
    }

    async fn wait_until_answering(&mut self, path: &str) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = format!("{}{path}", self.base_url());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited ({status}) before answering:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if let Ok(r) = client.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!(
                    "{} did not answer {path} within 60 s:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

pub async fn start_baseline(release: &Path) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let log = dir.path().join("baseline.log");
    let child = with_raised_nofile(&release.join("examples/baseline"))
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::create(dir.path().join("baseline.err"))?)
        .kill_on_drop(true)
        .spawn()
        .context("starting examples/baseline (built?)")?;
    let mut server = Server {
        name: "baseline",
        pid: child.id().context("no pid")?,
        port,
        metrics: false,
        child,
        log,
        cli: None,
        _dir: dir,
        postgres: None,
    };
    server.wait_until_answering("/").await?;
    Ok(server)
}

pub struct ShopdOptions<'a> {
    pub db: Db,
    /// An administrative URL of the PostgreSQL server, like `postgres://postgres@127.0.0.1:5432/postgres`.
    pub postgres_admin_url: &'a str,
    pub twilio_base: &'a str,
    /// The fake Apple's JWKS, for Sign in with Apple (scenario g).
    pub apple_jwks: &'a str,
    pub rust_log: &'a str,
    pub extra_env: &'a [(String, String)],
}

pub async fn start_shopd(release: &Path, options: &ShopdOptions<'_>) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let (database_url, postgres) = match options.db {
        Db::Sqlite => (
            format!("sqlite://{}", dir.path().join("shopd.db").display()),
            None,
        ),
        Db::Postgres => {
            let pg = PostgresDb::create(options.postgres_admin_url)?;
            (pg.url.clone(), Some(pg))
        }
    };
    let log = dir.path().join("shopd.log");
    let mut env: Vec<(String, String)> = [
        ("SHOPD_BIND", format!("127.0.0.1:{port}")),
        // Read before and after each scenario (`inside.rs`), never during it. On the public address: a
        // metrics address of its own (`METRICS_BIND`) would add a server to the idle memory measured.
        ("METRICS_TOKEN", METRICS_TOKEN.into()),
        ("SHOPD_DATA_DIR", dir.path().display().to_string()),
        ("DATABASE_URL", database_url),
        ("SHOP_DOMAIN", "shop.example.com".into()),
        ("SHOP_CURRENCY", "EUR".into()),
        ("RUST_LOG", options.rust_log.into()),
        ("SMS_PROVIDER", "twilio".into()),
        ("TWILIO_API_BASE", options.twilio_base.into()),
        ("TWILIO_ACCOUNT_SID", twilio::ACCOUNT_SID.into()),
        ("TWILIO_AUTH_TOKEN", twilio::AUTH_TOKEN.into()),
        ("TWILIO_FROM", twilio::FROM.into()),
        ("APPLE_CLIENT_IDS", crate::sign_ins::APPLE_CLIENT.into()),
        ("APPLE_JWKS_URL", options.apple_jwks.into()),
        ("PAYMENT_PROVIDER", "sandbox".into()),
        ("STANDARD_WEBHOOK_SECRETS", WEBHOOK_SECRET.into()),
        // The load comes from one address and a few accounts: the rate limits would answer most of it with
        // 429s.
        ("RATE_LIMIT_AUTH", "off".into()),
        ("RATE_LIMIT_ACCOUNT", "off".into()),
        ("RATE_LIMIT_WEBHOOKS", "off".into()),
        ("RATE_LIMIT_API", "off".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    env.extend(options.extra_env.iter().cloned());
    let mut cmd = with_raised_nofile(&release.join("shopd"));
    cmd.arg("serve")
        .env_clear()
        .envs(clean_env(&env))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::options().append(true).open(&log)?)
        .kill_on_drop(true);
    let child = cmd.spawn().context("starting shopd (built?)")?;
    let mut server = Server {
        name: "shopd",
        pid: child.id().context("no pid")?,
        port,
        metrics: true,
        child,
        log,
        cli: Some(Cli {
            program: release.join("shopd"),
            env,
        }),
        _dir: dir,
        postgres,
    };
    server.wait_until_answering("/readyz").await?;
    Ok(server)
}

/// shopd's `METRICS_TOKEN`, for the harness's reads of `/metrics`.
pub const METRICS_TOKEN: &str = "load-harness-metrics-token-0123456789";

/// The Standard Webhooks secret shopd is given (`STANDARD_WEBHOOK_SECRETS`); the harness signs with it.
pub const WEBHOOK_SECRET: &str = "whsec_bG9hZC1oYXJuZXNzLXdlYmhvb2stc2VjcmV0LTMyYg==";

struct Cli {
    program: PathBuf,
    env: Vec<(String, String)>,
}

/// A clean environment: nothing of the caller's (a DATABASE_URL, a .env in the working folder) leaks in.
fn clean_env(env: &[(String, String)]) -> Vec<(String, String)> {
    let mut all = vec![("PATH".to_owned(), std::env::var("PATH").unwrap_or_default())];
    all.extend(env.iter().cloned());
    all
}

/// A fresh PostgreSQL database for one run, dropped afterwards (also when the harness fails).
pub struct PostgresDb {
    admin_url: String,
    name: String,
    pub url: String,
}

impl PostgresDb {
    fn create(admin_url: &str) -> anyhow::Result<Self> {
        let name = format!("shopd_load_{}", uuid::Uuid::new_v4().simple());
        // Before the process's first PostgreSQL connection, as shopd's own (see the function).
        shopd::db::prepare_postgres_client();
        let mut admin = diesel::PgConnection::establish(admin_url)
            .with_context(|| format!("connecting to PostgreSQL at {admin_url}"))?;
        admin.batch_execute(&format!("CREATE DATABASE {name}"))?;
        let mut url = url::Url::parse(admin_url)?;
        url.set_path(&format!("/{name}"));
        // The server is on this machine: no TLS on loopback, as with a database on the same host (libpq's
        // default `prefer` would encrypt every round trip when the server has ssl=on, as Debian's does).
        if !url.query_pairs().any(|(k, _)| k == "sslmode") {
            url.query_pairs_mut().append_pair("sslmode", "disable");
        }
        Ok(Self {
            admin_url: admin_url.to_owned(),
            name,
            url: url.to_string(),
        })
    }
}

impl Drop for PostgresDb {
    fn drop(&mut self) {
        let dropped = diesel::PgConnection::establish(&self.admin_url).and_then(|mut c| {
            c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))
        });
        if let Err(e) = dropped {
            eprintln!("could not drop the database {}: {e}", self.name);
        }
    }
}
