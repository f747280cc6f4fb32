//! The load harness of issue 10: shopd in release mode under a fixed-time load, on SQLite and on PostgreSQL,
//! beside a minimal actix-web app (`examples/baseline.rs`) measured in the same run.
//!
//!     cargo bench --bench load -- --db both --duration 10s            # prints the table
//!     cargo bench --bench load -- --db both --duration 10s --update-docs
//!
//! It builds shopd and the baseline (`cargo build --release`), installs `wrk` from Debian when missing,
//! then for each database: starts shopd on a fresh database (SQLite in a temporary folder; PostgreSQL: a
//! new database, dropped afterwards) with its texts going to a fake Twilio, signs up customers, and runs
//! every ready scenario of `scenarios.rs` (warm-up, then the measured time; before (f), it times argon2
//! hashes for the bound on logins), recording requests/s, p50, p99, shopd's peak RSS and who used the CPU.
//! The Markdown table goes to `target/loadtest/report.md`; `--update-docs` also writes it into
//! `docs/performance.md` (between the `load-harness` markers).
//!
//! Not a test: `cargo test` does not build it, CI does not run it, plain `cargo bench` skips it.
//! Run it on a quiet machine: the load generator shares the cores with the server.

mod client;
mod inside;
mod measure;
mod procfs;
mod report;
mod scenarios;
mod servers;
mod sign_ins;
mod twilio;
mod wrk;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

use measure::Measured;
use report::{Argon2Bound, Block, Outcome, Report, Row};
use scenarios::{Ctx, Load, SCENARIOS};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DbChoice {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

impl Db {
    pub fn name(self) -> &'static str {
        match self {
            Db::Sqlite => "SQLite",
            Db::Postgres => "PostgreSQL",
        }
    }
}

/// Load harness of shopd (issue 10).
#[derive(Debug, Parser)]
#[command(name = "load")]
struct Args {
    /// Which database shopd runs on.
    #[arg(long, value_enum, default_value = "both")]
    db: DbChoice,
    /// Measured time per scenario (whole seconds: 10s, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Warm-up before each scenario, not measured (0s for none).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Concurrent connections of every scenario but the memory one.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Customers signed up before the scenarios run.
    #[arg(long, default_value_t = 64)]
    customers: usize,
    /// Only these scenarios, like `a,e,f` (default: every ready one).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// PostgreSQL server to create the run's database on (any database of it, as an administrator).
    #[arg(
        long,
        env = "LOAD_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    postgres_url: String,
    /// shopd's log filter during the run (`info` logs a line per request, as production does).
    #[arg(long, default_value = "warn")]
    rust_log: String,
    /// Also write the table into docs/performance.md.
    #[arg(long)]
    update_docs: bool,
    /// An extra variable for shopd, like `MALLOC_ARENA_MAX=2` (repeatable; for experiments).
    #[arg(long = "shopd-env", value_parser = parse_env)]
    shopd_env: Vec<(String, String)>,
    /// Use the release binaries already built.
    #[arg(long)]
    skip_build: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 10s or 1m"))?;
    match unit {
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("`{text}` is not a duration like 10s or 1m")),
    }
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{text}` is not NAME=value"))
}

fn argon2_production() -> anyhow::Result<argon2::Argon2<'static>> {
    use argon2::{Algorithm, Argon2, Params, Version};
    let params = Params::new(19_456, 2, 1, Some(32)).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_once(argon: &argon2::Argon2<'_>) -> anyhow::Result<Duration> {
    let mut out = [0u8; 32];
    let t = Instant::now();
    argon
        .hash_password_into(
            b"correct horse battery staple",
            b"load-harness-salt",
            &mut out,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(t.elapsed())
}

/// One argon2id hash at the production parameters, in this (release) build: the fastest of 9, the best
/// estimate of its cost on an otherwise idle core.
fn time_argon2() -> anyhow::Result<Duration> {
    let argon = argon2_production()?;
    hash_once(&argon)?;
    let times = (0..9)
        .map(|_| hash_once(&argon))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(times.into_iter().min().expect("nine"))
}

/// Hashes a second with `threads` threads hashing at once for 2 s, nothing else running: what the cores
/// together really do, where hashes at once share the memory bus and the last-level cache (two hashes'
/// 19 MiB each may not fit where one does).
fn argon2_rate_at_once(threads: usize) -> anyhow::Result<f64> {
    let until = Instant::now() + Duration::from_secs(2);
    let started = Instant::now();
    let counts = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<u64> {
                    let argon = argon2_production()?;
                    let mut n = 0;
                    while Instant::now() < until {
                        hash_once(&argon)?;
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a hashing thread"))
            .collect::<anyhow::Result<Vec<u64>>>()
    })?;
    Ok(counts.iter().sum::<u64>() as f64 / started.elapsed().as_secs_f64())
}

/// The bound on logins (cores ÷ one hash) and what the cores do hashing at once.
fn argon2_bound(cores: usize) -> anyhow::Result<Argon2Bound> {
    let hash_time = time_argon2()?;
    eprintln!("  one argon2id hash (m=19456 KiB, t=2, p=1): {hash_time:.2?}");
    let at_once = argon2_rate_at_once(cores)?;
    eprintln!("  {cores} hashes at once: {at_once:.0} hashes/s");
    Ok(Argon2Bound {
        hash_time,
        cores,
        at_once,
    })
}

struct Run<'a> {
    args: &'a Args,
    metrics_client: reqwest::Client,
    wrk_threads: usize,
    dir: tempfile::TempDir,
}

impl Run<'_> {
    async fn execute(
        &self,
        load: &Load,
        ctx: &Ctx,
        duration: Duration,
    ) -> anyhow::Result<Measured> {
        match load {
            Load::Wrk(job) => wrk::run(job, duration, self.wrk_threads, self.dir.path()).await,
            Load::Logins { connections } => Ok(ctx
                .shop
                .login_load(ctx.phones.clone(), *connections, duration)
                .await),
        }
    }

    /// `metrics_port`: where shopd's own `/metrics` is, read right before and right after the measured time
    /// (none for the baseline).
    async fn scenario(
        &self,
        scenario: &scenarios::Scenario,
        ctx: &mut Ctx,
        server_pid: u32,
        metrics_port: Option<u16>,
    ) -> anyhow::Result<Outcome> {
        let id = scenario.id;
        if !self.args.warmup.is_zero() {
            let warm = scenarios::load_for(id, ctx, self.args.warmup).await?;
            self.execute(&warm, ctx, self.args.warmup).await?;
        }
        let load = scenarios::load_for(id, ctx, self.args.duration).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let watched = metrics_port.zip(scenario.route);
        let scrape = |port| inside::scrape(&self.metrics_client, port);
        let inside_before = match watched {
            Some((port, _)) => Some(scrape(port).await?),
            None => None,
        };
        let probe = procfs::RssProbe::start(server_pid);
        let before = procfs::CpuSnapshot::take(server_pid);
        let m = self.execute(&load, ctx, self.args.duration).await?;
        let after = procfs::CpuSnapshot::take(server_pid);
        let inside = match watched.zip(inside_before) {
            Some(((port, route), earlier)) => {
                Some(inside::between(&earlier, &scrape(port).await?, route))
            }
            _ => None,
        };
        Ok(Outcome::Measured {
            inside,
            m,
            start_rss_kib: probe.start_kib,
            peak_rss_kib: probe.stop(),
            cpu: before.until(&after),
        })
    }
}

fn wanted(args: &Args, id: &str) -> bool {
    args.only.is_empty() || args.only.iter().any(|o| o == id)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let command = {
        let mut words: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| a != "--bench")
            .collect();
        words.retain(|w| w != "--skip-build");
        format!("cargo bench --bench load -- {}", words.join(" "))
            .trim_end_matches(" -- ")
            .to_owned()
    };
    let dbs: Vec<Db> = match args.db {
        DbChoice::Sqlite => vec![Db::Sqlite],
        DbChoice::Postgres => vec![Db::Postgres],
        DbChoice::Both => vec![Db::Sqlite, Db::Postgres],
    };
    for id in &args.only {
        if !SCENARIOS.iter().any(|s| s.id == id) {
            anyhow::bail!("no scenario `{id}` (see benches/load/scenarios.rs)");
        }
    }

    wrk::ensure_installed()?;
    if !args.skip_build {
        servers::build()?;
    }
    let release = servers::release_dir()?;
    let machine = procfs::Machine::read();
    let load_start = procfs::load_average();
    eprintln!(
        "{} cores ({}), load average {load_start:.2}: other work on the machine skews every figure",
        machine.cores, machine.cpu_model
    );

    let twilio = Arc::new(twilio::FakeTwilio::start()?);
    let apple = sign_ins::FakeApple::start()?;
    let baseline = servers::start_baseline(&release).await?;
    let run = Run {
        args: &args,
        metrics_client: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()?,
        wrk_threads: machine.cores,
        dir: tempfile::tempdir()?,
    };
    let shopd_env = args.shopd_env.clone();
    let addresses = client::SourceAddresses::default();
    let mut blocks = Vec::new();
    for db in dbs {
        eprintln!("— {}: starting shopd on a fresh database", db.name());
        let shopd = servers::start_shopd(
            &release,
            &servers::ShopdOptions {
                db,
                postgres_admin_url: &args.postgres_url,
                twilio_base: &twilio.base_url,
                apple_jwks: &apple.jwks_url,
                rust_log: &args.rust_log,
                extra_env: &shopd_env,
            },
        )
        .await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle_rss_kib = procfs::status_kib(shopd.pid, "VmRSS").unwrap_or(0);
        let idle_file_kib = procfs::status_kib(shopd.pid, "RssFile").unwrap_or(0);
        let mut ctx = Ctx::new(
            client::Shop {
                port: shopd.port,
                addresses: addresses.clone(),
            },
            shopd.port,
            baseline.port,
            twilio.clone(),
            args.connections,
        );
        let seeding = Instant::now();
        ctx.seed_customers(args.customers)
            .await
            .with_context(|| format!("seeding customers:\n{}", shopd.log_tail()))?;
        ctx.seed_products(&shopd)
            .await
            .with_context(|| format!("seeding products:\n{}", shopd.log_tail()))?;
        eprintln!(
            "  {} customers signed up and {} products imported in {:.1?}",
            args.customers,
            scenarios::PRODUCTS,
            seeding.elapsed()
        );
        let mut rows = Vec::new();
        let mut argon2 = None;
        for scenario in SCENARIOS {
            if !wanted(&args, scenario.id) {
                continue;
            }
            if scenario.id == "f" {
                // Right before the logins, so that the bound and the logins see the machine alike.
                argon2 = Some(argon2_bound(machine.cores)?);
            }
            eprintln!("  ({}) {}", scenario.id, scenario.title);
            let (pid, metrics_port) = if scenario.id == "a" {
                (baseline.pid, None)
            } else {
                (shopd.pid, shopd.metrics.then_some(shopd.port))
            };
            let outcome = match run.scenario(scenario, &mut ctx, pid, metrics_port).await {
                Ok(outcome) => outcome,
                Err(e) => Outcome::Failed(format!("{e:#}")),
            };
            match &outcome {
                Outcome::Measured {
                    m,
                    peak_rss_kib,
                    inside,
                    ..
                } => {
                    eprintln!(
                        "      {}/s, p50 {}, p99 {}, peak RSS {:.1} MiB{}",
                        report::fmt_rate(m.rate()),
                        report::fmt_latency(m.p50),
                        report::fmt_latency(m.p99),
                        report::mib(*peak_rss_kib),
                        if m.notes.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", m.notes.join("; "))
                        }
                    );
                    if let Some(inside) = inside {
                        eprintln!("      inside shopd: {}", report::fmt_inside(inside));
                    }
                }
                Outcome::Failed(e) => eprintln!("      failed: {e}\n{}", shopd.log_tail()),
            }
            rows.push(Row { scenario, outcome });
        }
        shopd.stop().await;
        blocks.push(Block {
            db,
            idle_rss_kib,
            idle_file_kib,
            argon2,
            rows,
        });
    }
    baseline.stop().await;

    let report = Report {
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        command,
        machine,
        load_start,
        load_end: procfs::load_average(),
        duration: args.duration,
        warmup: args.warmup,
        connections: args.connections,
        wrk_threads: run.wrk_threads,
        customers: args.customers,
        rust_log: args.rust_log.clone(),
        blocks,
    };
    let markdown = report.markdown();
    let out = release
        .parent()
        .context("no target folder")?
        .join("loadtest");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("report.md"), &markdown)?;
    println!("{markdown}");
    eprintln!("written: {}", out.join("report.md").display());
    if args.update_docs {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        let doc_path = docs.join("performance.md");
        let doc = std::fs::read_to_string(&doc_path)?;
        std::fs::write(&doc_path, report::splice(&doc, &format!("{markdown}\n")))?;
        eprintln!("updated: {}", doc_path.display());
    }
    Ok(())
}
