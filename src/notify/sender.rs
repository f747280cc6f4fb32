//! The background sender of the outbox: claims due rows, opens each recipient's address through the vault,
//! renders, hands the message over, and marks the row. One runs in every instance; the claims keep them
//! from sending a row twice at once.
//!
//! Delivery is at least once. The one case where a message goes out twice: the server accepted it and the
//! process died (or lost the database) before the row was marked sent; the claim expires and the message is
//! sent again. Both copies carry the same `Message-ID`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use diesel::prelude::*;
use lettre::message::Mailbox;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::mailer::{Mailer, SendFailure, build_message};
use super::outbox::{self, AfterFailure, Notification, OutboxRow, Recipient};
use super::templates::{self, Context};
use crate::config::EmailConfig;
use crate::db::schema::customers;
use crate::db::{Db, DbConnection, DbError};
use crate::domain::Sensitive;
use crate::vault::{Field, Opened, Vault, VaultError};

/// Rows claimed at once.
pub const BATCH: i64 = 10;
/// A message still undelivered this long after its cause is marked failed: an alert that late is no use.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(3 * 86_400);
/// Sent and dropped rows are deleted this long after they finished.
pub const KEEP_FINISHED: Duration = Duration::from_secs(30 * 86_400);
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Counters of this instance since it started, for the metrics endpoint. The backlog across every instance
/// is `outbox::backlog`.
#[derive(Debug, Default)]
pub struct OutboxMetrics {
    pub sent: AtomicU64,
    /// Messages with nobody to send to (no e-mail, erased customer, no staff alert address).
    pub dropped: AtomicU64,
    /// Attempts that failed; each is retried later unless it failed for good.
    pub failed_attempts: AtomicU64,
    /// Messages marked failed: refused for good, or undelivered when the retry window closed.
    pub failed: AtomicU64,
}

impl OutboxMetrics {
    pub fn snapshot(&self) -> [(&'static str, u64); 4] {
        [
            ("sent", self.sent.load(Ordering::Relaxed)),
            ("dropped", self.dropped.load(Ordering::Relaxed)),
            (
                "failed_attempts",
                self.failed_attempts.load(Ordering::Relaxed),
            ),
            ("failed", self.failed.load(Ordering::Relaxed)),
        ]
    }
}

/// What became of one claimed row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    Dropped(&'static str),
    Retry(String),
    Failed(String),
}

#[derive(Clone)]
pub struct EmailSender {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    vault: Vault,
    mailer: Mailer,
    from: Mailbox,
    staff_alert: Option<Sensitive<String>>,
    shop_domain: String,
    /// Where the staff console is, for the links of staff invitations.
    console_origin: String,
    retry_base: Duration,
    retry_cap: Duration,
    poll_interval: Duration,
    /// A whole attempt (connect, TLS, every command) is cut off after this.
    send_deadline: Duration,
    /// How long a claim lasts: longer than `send_deadline`, so a live sender never loses its row.
    claim_ttl: Duration,
    /// This sender's claim name.
    claimer: String,
    metrics: Arc<OutboxMetrics>,
}

impl std::fmt::Debug for EmailSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailSender")
            .field("mailer", &self.inner.mailer)
            .field("claimer", &self.inner.claimer)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error(transparent)]
    Mailer(#[from] super::mailer::MailerError),
}

/// A value the sender could not get from the database or the vault: retried like a failed send.
#[derive(Debug, thiserror::Error)]
enum LookupError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Vault(#[from] VaultError),
}

impl From<diesel::result::Error> for LookupError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(e.into())
    }
}

/// The address a message goes to, or why there is none.
enum Address {
    To(Sensitive<String>),
    Nobody(&'static str),
}

impl EmailSender {
    pub fn new(
        db: Db,
        vault: Vault,
        config: &EmailConfig,
        shop_domain: &str,
        console_origin: &str,
        metrics: Arc<OutboxMetrics>,
    ) -> Result<Self, SenderError> {
        let mailer = Mailer::new(&config.transport, shop_domain)?;
        let timeout = match &config.transport {
            crate::config::EmailTransport::Smtp(s) => s.timeout,
            crate::config::EmailTransport::Files(_) => Duration::from_secs(30),
        };
        let send_deadline = timeout * 4;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                vault,
                mailer,
                from: config.from.parse().map_err(|_| {
                    super::mailer::MailerError("EMAIL_FROM is not an address".into())
                })?,
                staff_alert: config.staff_alert.clone(),
                shop_domain: shop_domain.to_owned(),
                console_origin: console_origin.to_owned(),
                retry_base: config.retry_base,
                retry_cap: config.retry_cap,
                poll_interval: config.poll_interval,
                send_deadline,
                claim_ttl: send_deadline + Duration::from_secs(60),
                claimer: format!("sender-{}", uuid::Uuid::new_v4()),
                metrics,
            }),
        })
    }

    pub fn metrics(&self) -> Arc<OutboxMetrics> {
        self.inner.metrics.clone()
    }

    /// Runs the sender until `shutdown` turns true: the message in hand is finished, unused claims are given
    /// back.
    pub fn spawn(self, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut last_purge: Option<tokio::time::Instant> = None;
            loop {
                if *shutdown.borrow() {
                    break;
                }
                if last_purge.is_none_or(|at| at.elapsed() >= PURGE_EVERY) {
                    last_purge = Some(tokio::time::Instant::now());
                    self.purge().await;
                }
                let full = match self.run_once(Some(&shutdown)).await {
                    Ok(done) => done as i64 == BATCH,
                    Err(e) => {
                        tracing::warn!(error = %e, "outbox: cannot claim messages");
                        false
                    }
                };
                if full {
                    continue;
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.inner.poll_interval) => {}
                    changed = shutdown.changed() => {
                        // The other end is gone with its `Application`: stop as well.
                        if changed.is_err() {
                            break;
                        }
                    }
                }
            }
            self.release().await;
            tracing::info!("outbox sender stopped");
        })
    }

    /// Claims one batch of due rows and delivers them; returns how many it claimed. With `shutdown`, stops
    /// between two messages once it turns true.
    pub async fn run_once(
        &self,
        shutdown: Option<&watch::Receiver<bool>>,
    ) -> Result<usize, DbError> {
        let due = self
            .inner
            .db
            .run(|conn| -> Result<_, DbError> { Ok(outbox::any_due(conn)?) })
            .await?;
        if !due {
            return Ok(0);
        }
        let claimer = self.inner.claimer.clone();
        let ttl = chrono::Duration::from_std(self.inner.claim_ttl).expect("a short duration");
        let rows = self
            .inner
            .db
            .write(move |conn| -> Result<_, DbError> {
                Ok(outbox::claim_due(conn, &claimer, ttl, BATCH)?)
            })
            .await?;
        let claimed = rows.len();
        for row in rows {
            if shutdown.is_some_and(|s| *s.borrow()) {
                break;
            }
            let outcome = self.deliver(&row).await;
            if let Err(e) = self.record(&row, &outcome).await {
                tracing::warn!(outbox_id = %row.id, error = %e, "outbox: cannot record an outcome");
            }
        }
        Ok(claimed)
    }

    async fn deliver(&self, row: &OutboxRow) -> Outcome {
        let notification = match row.notification() {
            Ok(n) => n,
            Err(e) => return Outcome::Failed(format!("unreadable outbox row: {e}")),
        };
        let address = match self.address_of(&notification).await {
            Ok(Address::To(address)) => address,
            Ok(Address::Nobody(reason)) => return Outcome::Dropped(reason),
            Err(e) => return Outcome::Retry(format!("recipient lookup: {e}")),
        };
        let link = match &notification {
            Notification::StaffInvitation { invitation_id, .. } => {
                Some(crate::staff::invitations::link(
                    &self.inner.vault,
                    &self.inner.console_origin,
                    invitation_id,
                ))
            }
            _ => None,
        };
        let context = Context {
            shop: &self.inner.shop_domain,
            when: row.created_at,
            link,
        };
        let rendered = match templates::render(&notification, &context) {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let message = match build_message(
            &self.inner.from,
            &address,
            &row.id,
            &self.inner.shop_domain,
            rendered,
        ) {
            Ok(m) => m,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let sent = tokio::time::timeout(
            self.inner.send_deadline,
            self.inner.mailer.send(message, address.expose()),
        )
        .await
        .unwrap_or_else(|_| {
            Err(SendFailure {
                permanent: false,
                detail: format!("no answer within {:?}", self.inner.send_deadline),
            })
        });
        match sent {
            Ok(()) => Outcome::Sent,
            Err(failure) if failure.permanent => Outcome::Failed(failure.detail),
            Err(failure) => Outcome::Retry(failure.detail),
        }
    }

    /// Opens the recipient's address: the customer's e-mail through the vault, or the staff alert address.
    async fn address_of(&self, notification: &Notification) -> Result<Address, LookupError> {
        let customer_id = match notification.recipient() {
            Recipient::StaffAlert => {
                return Ok(match &self.inner.staff_alert {
                    Some(address) => Address::To(address.clone()),
                    None => Address::Nobody("no STAFF_ALERT_EMAIL set"),
                });
            }
            Recipient::Customer(id) => id.to_owned(),
            Recipient::Staff(id) => {
                let (vault, id) = (self.inner.vault.clone(), id.to_owned());
                return self
                    .inner
                    .db
                    .run(move |conn| staff_address(conn, &vault, &id))
                    .await;
            }
        };
        let vault = self.inner.vault.clone();
        self.inner
            .db
            .run(move |conn| customer_address(conn, &vault, &customer_id))
            .await
    }

    async fn record(&self, row: &OutboxRow, outcome: &Outcome) -> Result<(), DbError> {
        let metrics = &self.inner.metrics;
        let (id, claimer) = (row.id.clone(), self.inner.claimer.clone());
        let attempts = row.attempts + 1;
        match outcome {
            Outcome::Sent => {
                metrics.sent.fetch_add(1, Ordering::Relaxed);
                tracing::info!(outbox_id = %row.id, template = %row.template, attempts, "e-mail sent");
                let marked = self
                    .inner
                    .db
                    .write(move |conn| -> Result<_, DbError> { Ok(outbox::mark_sent(conn, &id)?) })
                    .await?;
                if !marked {
                    tracing::warn!(outbox_id = %row.id, "e-mail sent, but another sender had finished it already");
                }
            }
            Outcome::Dropped(reason) => {
                metrics.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::info!(outbox_id = %row.id, template = %row.template, reason, "e-mail dropped: nobody to send it to");
                let reason = *reason;
                self.inner
                    .db
                    .write(move |conn| -> Result<_, DbError> {
                        Ok(outbox::mark_dropped(conn, &id, &claimer, reason)?)
                    })
                    .await?;
            }
            Outcome::Retry(error) | Outcome::Failed(error) => {
                metrics.failed_attempts.fetch_add(1, Ordering::Relaxed);
                let age = (outbox::now() - row.created_at)
                    .to_std()
                    .unwrap_or_default();
                let after = match outcome {
                    Outcome::Retry(_) if age < GIVE_UP_AFTER => {
                        let wait =
                            backoff(self.inner.retry_base, self.inner.retry_cap, attempts as u32);
                        tracing::warn!(
                            outbox_id = %row.id, template = %row.template, attempts, error = %error,
                            retry_in = ?wait, "e-mail not sent; will retry"
                        );
                        AfterFailure::RetryAt(
                            outbox::now() + chrono::Duration::from_std(wait).expect("short"),
                        )
                    }
                    _ => {
                        metrics.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(
                            outbox_id = %row.id, template = %row.template, attempts, error = %error,
                            "e-mail failed for good"
                        );
                        AfterFailure::GiveUp
                    }
                };
                let error = error.clone();
                self.inner
                    .db
                    .write(move |conn| -> Result<_, DbError> {
                        Ok(outbox::record_failure(conn, &id, &claimer, &error, after)?)
                    })
                    .await?;
            }
        }
        Ok(())
    }

    async fn release(&self) {
        let claimer = self.inner.claimer.clone();
        let released = self
            .inner
            .db
            .write(move |conn| -> Result<_, DbError> { Ok(outbox::release(conn, &claimer)?) })
            .await;
        if let Err(e) = released {
            tracing::warn!(error = %e, "outbox: cannot give back claims; they expire by themselves");
        }
    }

    async fn purge(&self) {
        let before =
            outbox::now() - chrono::Duration::from_std(KEEP_FINISHED).expect("a short duration");
        match self
            .inner
            .db
            .write(move |conn| -> Result<_, DbError> { Ok(outbox::purge_finished(conn, before)?) })
            .await
        {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "old outbox rows deleted"),
            Err(e) => tracing::warn!(error = %e, "outbox purge failed"),
        }
    }
}

fn staff_address(
    conn: &mut DbConnection,
    vault: &Vault,
    staff_id: &str,
) -> Result<Address, LookupError> {
    let row: Option<(Vec<u8>, Option<chrono::NaiveDateTime>)> = crate::db::schema::staff::table
        .find(staff_id)
        .select((
            crate::db::schema::staff::email,
            crate::db::schema::staff::disabled_at,
        ))
        .first(conn)
        .optional()?;
    let sealed = match row {
        None => return Ok(Address::Nobody("no such staff member")),
        Some((_, Some(_))) => return Ok(Address::Nobody("staff member disabled")),
        Some((sealed, None)) => sealed,
    };
    let field = Field {
        table: "staff",
        column: "email",
        row_id: staff_id,
    };
    Ok(match vault.open(conn, staff_id, field, &sealed)? {
        Opened::Value(address) => Address::To(address),
        Opened::Erased => Address::Nobody("staff member erased"),
    })
}

fn customer_address(
    conn: &mut DbConnection,
    vault: &Vault,
    customer_id: &str,
) -> Result<Address, LookupError> {
    let row: Option<(Option<Vec<u8>>, Option<chrono::NaiveDateTime>)> = customers::table
        .find(customer_id)
        .select((customers::email, customers::erased_at))
        .first(conn)
        .optional()?;
    let sealed = match row {
        None => return Ok(Address::Nobody("no such customer")),
        Some((_, Some(_))) => return Ok(Address::Nobody("customer erased")),
        Some((None, None)) => return Ok(Address::Nobody("no e-mail address")),
        Some((Some(sealed), None)) => sealed,
    };
    let field = Field {
        table: "customers",
        column: "email",
        row_id: customer_id,
    };
    Ok(match vault.open(conn, customer_id, field, &sealed)? {
        Opened::Value(address) => Address::To(address),
        Opened::Erased => Address::Nobody("customer erased"),
    })
}

/// The pause after the `attempts`-th failure: `base`, doubling each time, at most `cap`.
pub fn backoff(base: Duration, cap: Duration, attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(32);
    base.checked_mul(1u32 << doublings.min(31))
        .unwrap_or(cap)
        .min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let (base, cap) = (Duration::from_secs(30), Duration::from_secs(3600));
        let waits: Vec<u64> = (1..=10).map(|n| backoff(base, cap, n).as_secs()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(backoff(base, cap, 0), base);
        assert_eq!(backoff(base, cap, u32::MAX), cap);
    }
}
