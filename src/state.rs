//! The application's state: every service a handler or a command can reach, built once from the
//! configuration (`AppState::build`: connect, migrate, build the services), and the background work of a
//! serving instance. Below `api` and `cli`, which use it, and above the features it holds.

use std::sync::Arc;

use crate::auth::passwords::Hasher;
use crate::auth::revocations::Revocations;
use crate::auth::{Identity, IdentityParts};
use crate::config::{Config, SmsSettings};
use crate::db::{Db, DbError};
use crate::limits::RouteLimits;
use crate::notify::sender::{EmailSender, OutboxMetrics, SenderError};
use crate::notify::sms::{LogSender, SmsSender, TwilioConfig, TwilioSender};
use crate::orders::{Orders, OrdersParts};
use crate::staff::Staff;
use crate::telemetry::Metrics;
use crate::tls::TlsError;
use crate::vault::Vault;
use crate::webhooks::{Webhooks, WebhooksParts};

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
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
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
        let hasher = Hasher::new(config.identity.password_hashing);
        let identity = Identity::new(IdentityParts {
            db: db.clone(),
            vault: vault.clone(),
            config: config.clone(),
            sms: sms_sender(&config.identity.sms),
            revocations: Revocations::default(),
            metrics: metrics.clone(),
            hasher,
        });
        let staff = Staff::new(
            db.clone(),
            vault.clone(),
            &identity,
            config.identity.clerks_need_second_factor,
        );
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
    pub(crate) fn spawn_background_tasks(
        &self,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<tokio::task::JoinHandle<()>, StartError> {
        self.db.spawn_checkpoints();
        self.identity.revocations.spawn_poller(self.db.clone());
        crate::auth::purge::spawn(self.db.clone());
        self.orders.spawn_background();
        self.webhooks.spawn_purge();
        let email = EmailSender::new(
            self.db.clone(),
            self.vault.clone(),
            &self.config.email,
            &self.config.shop_domain,
            &self.config.console_origin(),
            self.outbox.clone(),
        )?;
        Ok(email.spawn(stop))
    }
}

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
