//! Building and running the application: `Application::build(config)` binds (port 0 in tests), migrates and
//! mounts every route; `run_until_stopped()` serves until SIGTERM/SIGINT, draining in-flight requests.
//!
//! The middleware of every request, outermost first: `request_context` (request id, log line, metrics),
//! `edge::security_headers`, `error_normaliser` (problem+json), `edge::rate_limit`, `attestation::attest`.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};

use crate::api::edge::RouteLimits;
use crate::api::{self, json::BodyLimit};
use crate::auth::passwords::Hasher;
use crate::auth::revocations::Revocations;
use crate::auth::{CgroupError, HashingCgroup, Identity, IdentityParts};
use crate::config::Config;
use crate::config::SmsSettings;
use crate::db::{Db, DbError};
use crate::notify::sender::{EmailSender, OutboxMetrics, SenderError};
use crate::notify::sms::{LogSender, SmsSender, TwilioConfig, TwilioSender};
use crate::orders::{Orders, OrdersParts};
use crate::staff::Staff;
use crate::telemetry::Metrics;
use crate::tls::{self, CertificateStore, TlsError};
use crate::vault::Vault;
use crate::webhooks::{Webhooks, WebhooksParts};

fn sms_sender(settings: &SmsSettings) -> Arc<dyn SmsSender> {
    match settings {
        SmsSettings::Log => Arc::new(LogSender),
        SmsSettings::Twilio {
            account_sid,
            auth_token,
            from,
            api_base,
        } => Arc::new(TwilioSender::new(TwilioConfig {
            account_sid: account_sid.clone(),
            auth_token: auth_token.clone(),
            from: from.clone(),
            api_base: api_base.clone(),
        })),
    }
}

/// How long in-flight requests may take to finish after SIGTERM/SIGINT.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How long a closing connection may take to shut down cleanly.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What every handler can reach. Cheap to clone: everything inside is shared.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub vault: Vault,
    pub identity: Identity,
    pub staff: Staff,
    /// The Prometheus registry of this instance.
    pub metrics: Metrics,
    /// The per-address rate limits of the route classes.
    pub limits: Arc<RouteLimits>,
    pub orders: Orders,
    pub webhooks: Webhooks,
    /// Counters of this instance's outbox sender.
    pub outbox: Arc<OutboxMetrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Database(#[from] DbError),
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("{0}")]
    Email(#[from] SenderError),
    #[error("{0}")]
    HashingCgroup(#[from] CgroupError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

pub struct Application {
    port: u16,
    server: Server,
    state: AppState,
    /// `/metrics` on `METRICS_BIND`, and its port.
    metrics_server: Option<(Server, u16)>,
    /// Tells the background outbox sender to stop once the server has.
    shutdown: tokio::sync::watch::Sender<bool>,
    sender: tokio::task::JoinHandle<()>,
}

impl AppState {
    /// Connects, migrates and builds every service, without serving or starting background work: what
    /// `Application::build` and the command line share.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let db = Db::connect(&config.database)?;
        let applied = {
            let db = db.clone();
            tokio::task::spawn_blocking(move || db.run_migrations())
                .await
                .map_err(|e| DbError::Task(e.to_string()))??
        };
        if applied > 0 {
            tracing::info!(applied, "database migrated");
        }
        let config = Arc::new(config);
        let metrics = Metrics::new();
        let vault = Vault::new(&config.keys);
        let hashing_cgroup = config
            .identity
            .hashing_cgroup
            .as_deref()
            .map(HashingCgroup::prepare)
            .transpose()?;
        if hashing_cgroup.is_some() {
            tracing::info!("password hashing runs in an idle cgroup");
        }
        let hasher = Hasher::start(config.identity.password_hashing, hashing_cgroup)?;
        let identity = Identity::new(IdentityParts {
            db: db.clone(),
            vault: vault.clone(),
            config: config.clone(),
            sms: sms_sender(&config.identity.sms),
            revocations: Revocations::default(),
            metrics: metrics.clone(),
            hasher,
        });
        let staff = Staff::new(db.clone(), vault.clone(), &identity);
        let orders = Orders::new(OrdersParts {
            db: db.clone(),
            vault: vault.clone(),
            config: config.clone(),
            payments: crate::payments::from_settings(&config.orders.payments),
            metrics: metrics.clone(),
        });
        let webhooks = Webhooks::new(WebhooksParts {
            db: db.clone(),
            vault: vault.clone(),
            stripe: config.webhooks.stripe.clone(),
            standard: config.webhooks.standard.clone(),
            tolerance: config.webhooks.tolerance,
            retention: config.webhooks.retention,
            metrics: metrics.clone(),
        });
        Ok(Self {
            webhooks,
            vault,
            limits: Arc::new(RouteLimits::new(&config.edge.rate_limits)),
            config,
            db,
            identity,
            staff,
            metrics,
            orders,
            outbox: Arc::default(),
        })
    }

    /// The background work of a serving instance; the outbox sender runs until `stop` turns true.
    fn spawn_background_tasks(
        &self,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<tokio::task::JoinHandle<()>, StartError> {
        self.identity.revocations.spawn_poller(self.db.clone());
        crate::auth::purge::spawn(self.db.clone());
        self.orders.spawn_background();
        self.webhooks.spawn_purge();
        let email = EmailSender::new(
            self.db.clone(),
            self.vault.clone(),
            &self.config.email,
            &self.config.shop_domain,
            self.outbox.clone(),
        )?;
        Ok(email.spawn(stop))
    }
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let (listener, port) = listen(config.bind)?;
        let metrics_listener = config.edge.metrics.bind.map(listen).transpose()?;
        let state = AppState::build(config).await?;
        let tls = match &state.config.edge.tls {
            None => None,
            Some(files) => {
                let store = CertificateStore::load(files)?;
                tls::spawn_reloader(&store, state.metrics.clone());
                Some(tls::server_config(store)?)
            }
        };
        let (shutdown, stop) = tokio::sync::watch::channel(false);
        let sender = state.spawn_background_tasks(stop)?;
        let bind_error = |addr| move |source| StartError::Bind { addr, source };
        let server = serve(listener, state.clone(), tls).map_err(bind_error(state.config.bind))?;
        let metrics_server = match metrics_listener {
            None => None,
            Some((listener, port)) => {
                let addr = listener
                    .local_addr()
                    .map_err(bind_error(state.config.bind))?;
                Some((
                    serve_metrics(listener, state.clone()).map_err(bind_error(addr))?,
                    port,
                ))
            }
        };
        Ok(Self {
            port,
            server,
            state,
            metrics_server,
            shutdown,
            sender,
        })
    }

    /// Stops the server, letting in-flight requests finish.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of `/metrics` when it has an address of its own (`METRICS_BIND`).
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_server.as_ref().map(|(_, port)| *port)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until stopped; then stops the metrics server, if any, and the outbox sender, letting the
    /// message in hand finish.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let metrics = self.metrics_server.map(|(server, _)| {
            let handle = server.handle();
            (handle, tokio::spawn(server))
        });
        let served = self.server.await;
        if let Some((handle, task)) = metrics {
            handle.stop(true).await;
            let _ = task.await;
        }
        let _ = self.shutdown.send(true);
        if tokio::time::timeout(SHUTDOWN_GRACE, self.sender)
            .await
            .is_err()
        {
            tracing::warn!("the outbox sender did not stop in time; its claims will expire");
        }
        served
    }
}

fn listen(addr: std::net::SocketAddr) -> Result<(TcpListener, u16), StartError> {
    let error = |source| StartError::Bind { addr, source };
    let listener = TcpListener::bind(addr).map_err(error)?;
    let port = listener.local_addr().map_err(error)?.port();
    Ok((listener, port))
}

fn serve(
    listener: TcpListener,
    state: AppState,
    tls: Option<rustls::ServerConfig>,
) -> std::io::Result<Server> {
    let body_limit = state.config.body_limit;
    let workers = state.config.workers;
    let limits = state.config.edge.server;
    let public_metrics = state.config.edge.metrics.on_public_address();
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        // Called on each worker's own thread, as the worker starts.
        crate::orders::batch_order_reads_on_this_thread();
        App::new()
            .app_data(data.clone())
            .app_data(BodyLimit(body_limit))
            .configure(api::extractor_config)
            .configure(api::routes)
            .configure(|cfg| {
                if public_metrics {
                    api::metrics::route(cfg);
                }
            })
            .default_service(web::to(api::unknown_route))
            .wrap(from_fn(api::attestation::attest))
            .wrap(from_fn(api::edge::rate_limit))
            .wrap(api::error_normaliser())
            .wrap(from_fn(api::edge::security_headers))
            .wrap(from_fn(api::request_context))
    })
    .workers(workers)
    .max_connections(limits.max_connections.div_ceil(workers).max(1))
    .client_request_timeout(limits.request_timeout)
    .client_disconnect_timeout(DISCONNECT_TIMEOUT)
    .keep_alive(limits.keep_alive)
    .shutdown_timeout(SHUTDOWN_GRACE.as_secs());
    let server = match tls {
        Some(config) => server.listen_rustls_0_23(listener, config)?,
        None => server.listen(listener)?,
    };
    Ok(server.run())
}

/// `/metrics` alone, on its own address: nothing else is served there.
fn serve_metrics(listener: TcpListener, state: AppState) -> std::io::Result<Server> {
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .configure(api::metrics::route)
            .default_service(web::to(api::unknown_route))
            .wrap(api::error_normaliser())
            .wrap(from_fn(api::edge::security_headers))
    })
    .workers(1)
    .max_connections(64)
    .client_request_timeout(Duration::from_secs(5))
    .shutdown_timeout(5)
    .listen(listener)?
    .run();
    Ok(server)
}
