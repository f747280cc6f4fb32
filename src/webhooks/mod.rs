//! Payment webhooks: the signature is checked on the raw bytes before anything is parsed, then the event's
//! effect is applied in one transaction with its receipt (the provider's event id under a primary key), so
//! every effect happens exactly once however often and in whatever order the events arrive.

mod effects;
pub mod events;

use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use sha2::{Digest, Sha256};

use crate::crypto::webhook::{self, SignatureError, WebhookSecrets};
use crate::db::schema::webhook_events;
use crate::db::{Db, DbConnection, DbError};
use crate::error::{AppError, AppResult, Problem};
use crate::telemetry::Metrics;
use crate::vault::{Field, Vault};

pub use effects::Outcome;
use effects::{ApplyError, apply};
use events::Parsed;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Stripe,
    Standard,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stripe => "stripe",
            Self::Standard => "standard",
        }
    }
}

/// The headers of a webhook request that matter, as received.
#[derive(Debug, Default, Clone)]
pub struct Received {
    pub stripe_signature: Option<String>,
    pub webhook_id: Option<String>,
    pub webhook_timestamp: Option<String>,
    pub webhook_signature: Option<String>,
    pub content_type: Option<String>,
    pub user_agent: Option<String>,
}

impl Received {
    /// For the audit row: ids and timestamps, and only whether a signature was present (no secret material
    /// here, but a signature is of no use to a reader either).
    fn audit_json(&self) -> String {
        serde_json::json!({
            "webhook-id": self.webhook_id,
            "webhook-timestamp": self.webhook_timestamp,
            "signature_present": self.stripe_signature.is_some() || self.webhook_signature.is_some(),
            "content-type": self.content_type,
            "user-agent": self.user_agent.as_deref().map(|u| u.chars().take(120).collect::<String>()),
        })
        .to_string()
    }
}

#[derive(Clone)]
pub struct Webhooks {
    db: Db,
    vault: Vault,
    stripe: Option<WebhookSecrets>,
    standard: Option<WebhookSecrets>,
    tolerance: Duration,
    retention: Duration,
    metrics: Metrics,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("tolerance", &self.tolerance)
            .finish_non_exhaustive()
    }
}

pub struct WebhooksParts {
    pub db: Db,
    pub vault: Vault,
    pub stripe: Option<WebhookSecrets>,
    pub standard: Option<WebhookSecrets>,
    pub tolerance: Duration,
    pub retention: Duration,
    /// Counts refused signatures (`shopd_webhook_signature_failures_total{provider}`).
    pub metrics: Metrics,
}

fn refused(error: SignatureError) -> AppError {
    Problem::unauthorized(error.code(), format!("The webhook is refused: {error}.")).into()
}

impl Webhooks {
    pub fn new(parts: WebhooksParts) -> Self {
        Self {
            db: parts.db,
            vault: parts.vault,
            stripe: parts.stripe,
            standard: parts.standard,
            tolerance: parts.tolerance,
            retention: parts.retention,
            metrics: parts.metrics,
        }
    }

    /// Verifies, parses and applies one delivery. The answer is 2xx only once the effect is committed, or the
    /// event is a duplicate or of a type shopd ignores.
    pub async fn ingest(
        &self,
        provider: Provider,
        received: Received,
        body: Vec<u8>,
    ) -> AppResult<Outcome> {
        let now = chrono::Utc::now().timestamp();
        let verified = match provider {
            Provider::Stripe => self.stripe.as_ref().map(|secrets| {
                webhook::verify_stripe(
                    received.stripe_signature.as_deref(),
                    &body,
                    secrets,
                    now,
                    self.tolerance,
                )
            }),
            Provider::Standard => self.standard.as_ref().map(|secrets| {
                webhook::verify_standard(
                    received.webhook_id.as_deref(),
                    received.webhook_timestamp.as_deref(),
                    received.webhook_signature.as_deref(),
                    &body,
                    secrets,
                    now,
                    self.tolerance,
                )
            }),
        };
        let Some(verified) = verified else {
            return Err(Problem::new(
                404,
                "not_found",
                "Not found",
                "This webhook is not configured.",
            )
            .into());
        };
        if let Err(error) = verified {
            self.metrics.webhook_signature_failure(provider.as_str());
            tracing::warn!(
                provider = provider.as_str(),
                reason = error.code(),
                "webhook signature refused"
            );
            self.record(provider, &received, &body, Audit::refused(error))
                .await;
            return Err(refused(error));
        }

        let parsed = match provider {
            Provider::Stripe => events::parse_stripe(&body),
            Provider::Standard => {
                events::parse_standard(received.webhook_id.as_deref().unwrap_or_default(), &body)
            }
        };
        let event = match parsed {
            Err(bad) => {
                self.record(
                    provider,
                    &received,
                    &body,
                    Audit::outcome(None, None, "invalid_event"),
                )
                .await;
                return Err(Problem::bad_request(
                    "invalid_event",
                    format!("The body is not the event it claims to be: {bad}."),
                )
                .into());
            }
            Ok(Parsed::Ignored {
                event_id,
                event_type,
            }) => {
                tracing::info!(
                    provider = provider.as_str(),
                    event_type,
                    "webhook of an ignored type"
                );
                let audit = Audit {
                    event_id: Some(event_id),
                    event_type: Some(event_type),
                    ..Audit::outcome(None, None, "ignored")
                };
                self.record(provider, &received, &body, audit).await;
                return Ok(Outcome::Ignored);
            }
            Ok(Parsed::Payment(event)) => event,
        };

        // The effect and its audit row in one transaction; a duplicate's audit row on its own.
        let headers = received.audit_json();
        let mut attempt = 0;
        let applied = loop {
            let (e, vault, headers, body) = (
                event.clone(),
                self.vault.clone(),
                headers.clone(),
                body.clone(),
            );
            let result = self
                .db
                .write(move |conn| {
                    let (outcome, order) = apply(conn, provider, &e)?;
                    let audit = Audit {
                        event_id: Some(e.event_id.clone()),
                        event_type: Some(e.kind.as_str().to_owned()),
                        ..Audit::outcome(
                            order.as_ref().map(|o| o.id.clone()),
                            None,
                            outcome.as_str(),
                        )
                    };
                    let customer = order.as_ref().map(|o| o.customer_id.as_str());
                    keep(conn, &vault, provider, &headers, &body, &audit, customer)?;
                    Ok(outcome)
                })
                .await;
            match result {
                Err(ApplyError::Duplicate) if attempt == 0 => attempt += 1,
                Err(ApplyError::Duplicate) => break Ok(None),
                Err(ApplyError::App(e)) => break Err(e),
                Ok(outcome) => break Ok(Some(outcome)),
            }
        };
        match applied? {
            Some(outcome) => Ok(outcome),
            None => {
                let audit = Audit {
                    event_id: Some(event.event_id.clone()),
                    event_type: Some(event.kind.as_str().to_owned()),
                    ..Audit::outcome(None, None, Outcome::Duplicate.as_str())
                };
                self.record(provider, &received, &body, audit).await;
                Ok(Outcome::Duplicate)
            }
        }
    }

    /// Keeps the delivery for audit; a failure here is logged, never turned into a refusal of the delivery.
    async fn record(&self, provider: Provider, received: &Received, body: &[u8], audit: Audit) {
        let vault = self.vault.clone();
        let headers = received.audit_json();
        let body = body.to_vec();
        let result = self
            .db
            .write(move |conn| keep(conn, &vault, provider, &headers, &body, &audit, None))
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "a webhook delivery could not be kept for audit");
        }
    }

    /// Deletes audit rows older than the retention.
    pub async fn purge(&self) -> AppResult<usize> {
        let cutoff = now()
            - chrono::Duration::from_std(self.retention).unwrap_or(chrono::Duration::days(90));
        self.db
            .write(move |conn| {
                diesel::delete(webhook_events::table.filter(webhook_events::received_at.lt(cutoff)))
                    .execute(conn)
                    .map_err(DbError::from)
            })
            .await
            .map_err(AppError::from)
    }

    pub fn spawn_purge(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tick.tick().await;
                if let Err(e) = this.purge().await {
                    tracing::warn!(error = %e, "webhook audit purge failed");
                }
            }
        });
    }
}

fn now() -> NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

/// Inserts the audit row of a delivery. The body is sealed under the data key of `customer` (the customer
/// of the order it concerns), so erasing them shreds it too; a body that cannot be tied to an order is kept
/// only as its digest.
fn keep(
    conn: &mut DbConnection,
    vault: &Vault,
    provider: Provider,
    headers: &str,
    body: &[u8],
    audit: &Audit,
    customer: Option<&str>,
) -> AppResult<()> {
    let id = uuid::Uuid::now_v7().to_string();
    let customer_id = customer.map(str::to_owned);
    let sealed = match &customer_id {
        Some(customer) => {
            let text = String::from_utf8_lossy(body);
            let field = Field {
                table: "webhook_events",
                column: "body",
                row_id: &id,
            };
            match vault.seal(conn, customer, field, &text) {
                Ok(sealed) => Some(sealed),
                // A database error aborts the transaction: it is the transaction's error (a lost race
                // runs it again), never swallowed to run the next statement in an aborted transaction.
                Err(crate::vault::VaultError::Db(e)) => return Err(e.into()),
                // The customer's key is gone (erased): the body is kept as its digest only.
                Err(_) => None,
            }
        }
        None => None,
    };
    diesel::insert_into(webhook_events::table)
        .values((
            webhook_events::id.eq(&id),
            webhook_events::provider.eq(provider.as_str()),
            webhook_events::event_id.eq(&audit.event_id),
            webhook_events::event_type.eq(&audit.event_type),
            webhook_events::verification.eq(audit.verification),
            webhook_events::outcome.eq(&audit.outcome),
            webhook_events::order_id.eq(&audit.order_id),
            webhook_events::customer_id.eq(&customer_id),
            webhook_events::headers.eq(headers),
            webhook_events::body.eq(sealed),
            webhook_events::body_sha256.eq(Sha256::digest(body).to_vec()),
            webhook_events::body_len.eq(body.len() as i32),
            webhook_events::received_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}

struct Audit {
    event_id: Option<String>,
    event_type: Option<String>,
    verification: &'static str,
    outcome: Option<String>,
    order_id: Option<String>,
}

impl Audit {
    fn refused(error: SignatureError) -> Self {
        Self {
            event_id: None,
            event_type: None,
            verification: error.code(),
            outcome: None,
            order_id: None,
        }
    }

    fn outcome(order_id: Option<String>, event_type: Option<String>, outcome: &str) -> Self {
        Self {
            event_id: None,
            event_type,
            verification: "verified",
            outcome: Some(outcome.to_owned()),
            order_id,
        }
    }
}
