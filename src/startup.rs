//! Building and running the application: `Application::build(config)` binds (port 0 in tests), migrates and
//! mounts every route; `run_until_stopped()` serves until SIGTERM/SIGINT, draining in-flight requests.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};

use crate::api::{self, json::BodyLimit};
use crate::auth::revocations::Revocations;
use crate::auth::{Identity, IdentityParts};
use crate::config::Config;
use crate::config::SmsSettings;
use crate::db::{Db, DbError};
use crate::notify::sender::{EmailSender, OutboxMetrics, SenderError};
use crate::notify::sms::{LogSender, SmsSender, TwilioConfig, TwilioSender};
use crate::orders::{Orders, OrdersParts};
use crate::staff::Staff;
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

/// What every handler can reach. Cheap to clone: everything inside is shared.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub vault: Vault,
    pub identity: Identity,
    pub staff: Staff,
    pub orders: Orders,
    pub webhooks: Webhooks,
    /// Counters of this instance's outbox sender.
    pub outbox: Arc<OutboxMetrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Database(#[from] DbError),
    #[error("{0}")]
    Email(#[from] SenderError),
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
        let vault = Vault::new(&config.keys);
        let identity = Identity::new(IdentityParts {
            db: db.clone(),
            vault: vault.clone(),
            config: config.clone(),
            sms: sms_sender(&config.identity.sms),
            revocations: Revocations::default(),
        });
        let staff = Staff::new(db.clone(), vault.clone(), &identity);
        let orders = Orders::new(OrdersParts {
            db: db.clone(),
            vault: vault.clone(),
            config: config.clone(),
            payments: crate::payments::from_settings(&config.orders.payments),
        });
        let webhooks = Webhooks::new(WebhooksParts {
            db: db.clone(),
            vault: vault.clone(),
            stripe: config.webhooks.stripe.clone(),
            standard: config.webhooks.standard.clone(),
            tolerance: config.webhooks.tolerance,
            retention: config.webhooks.retention,
        });
        Ok(Self {
            webhooks,
            vault,
            config,
            db,
            identity,
            staff,
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
        let bind = config.bind;
        let bind_error = |source| StartError::Bind { addr: bind, source };
        let listener = TcpListener::bind(bind).map_err(bind_error)?;
        let port = listener.local_addr().map_err(bind_error)?.port();
        let state = AppState::build(config).await?;
        let (shutdown, stop) = tokio::sync::watch::channel(false);
        let sender = state.spawn_background_tasks(stop)?;
        let server = serve(listener, state.clone()).map_err(bind_error)?;
        Ok(Self {
            port,
            server,
            state,
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

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until stopped, then stops the outbox sender, letting the message in hand finish.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
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

fn serve(listener: TcpListener, state: AppState) -> std::io::Result<Server> {
    let body_limit = state.config.body_limit;
    let workers = state.config.workers;
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(BodyLimit(body_limit))
            .configure(api::extractor_config)
            .configure(api::routes)
            .default_service(web::to(api::unknown_route))
            .wrap(api::error_normaliser())
            .wrap(from_fn(api::request_context))
    })
    .workers(workers)
    .shutdown_timeout(SHUTDOWN_GRACE.as_secs())
    .listen(listener)?
    .run();
    Ok(server)
}
