//! Building and running the application: `Application::build(config)` binds (port 0 in tests), migrates and
//! mounts every route; `run_until_stopped()` serves until SIGTERM/SIGINT, draining in-flight requests.
//!
//! The middleware of every request, outermost first: `request_context` (request id, log line, metrics),
//! `edge::security_headers`, `error_normaliser` (problem+json), `edge::rate_limit`, `attestation::attest`.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};

use crate::api::{self, json::BodyLimit};
use crate::config::Config;
use crate::state::{AppState, StartError};
use crate::tls::{self, CertificateStore};

/// How long in-flight requests may take to finish after SIGTERM/SIGINT.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How long a closing connection may take to shut down cleanly.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);

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

impl Application {
    pub async fn build(mut config: Config) -> Result<Self, StartError> {
        let (listener, port) = listen(config.bind)?;
        // The address really listened on (port 0 picks one): links to the console name it.
        config.bind.set_port(port);
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
