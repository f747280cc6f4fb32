//! Orders: the catalogue, order placement with idempotency keys and stock reservation, the order state machine,
//! expiry, and the customer's reads. Payments are created through `crate::payments`.
//!
//! For the payment webhooks and staff, the functions that work on a caller's connection (inside the caller's
//! write transaction) are: `state::transition`, `state::set_flag`, `state::events`, `read::summary`,
//! `read::find_by_payment_id`, `read::detail`, `read::shipping_address`, `catalogue::insert_products`.

pub mod catalogue;
mod detail_reads;
pub mod expiry;
mod idempotency;
pub mod import;
mod place;
pub mod read;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDateTime, SubsecRound};

use crate::config::Config;
use crate::db::Db;
use crate::error::{AppResult, Problem};
use crate::payments::PaymentProvider;
use crate::vault::Vault;

pub use catalogue::{NewProduct, Product};
pub use idempotency::{IdempotencyKey, StoredResponse};
pub use place::{MAX_LINES, MAX_QUANTITY, NewLine, NewOrder, PlacedOrder, Render};
pub use read::{AddressRead, ExportedOrder, OrderDetail, OrderItem, OrderLine, OrderSummary};
pub use state::{
    Actor, ActorKind, OrderEvent, OrderFlag, OrderStatus, TRANSITIONS, Transition, allowed,
    set_flag, transition,
};

/// Now, in UTC, to the microsecond: what both backends store exactly, so a time read back equals the time
/// written.
pub fn now() -> NaiveDateTime {
    chrono::Utc::now().naive_utc().trunc_subsecs(6)
}

pub const DEFAULT_PAGE: u32 = 20;
pub const MAX_PAGE: u32 = 100;

/// Which page to read: after (or, for newest-first lists, before) `cursor`, at most `limit` rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub cursor: Option<String>,
    pub limit: i64,
}

impl PageRequest {
    /// `cursor` is the `next_cursor` of the page before (empty: the first page); `limit` is 1 to 100 (20 when
    /// absent).
    pub fn parse(cursor: Option<&str>, limit: Option<u32>) -> Result<Self, Problem> {
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(Problem::invalid(
                "invalid_limit",
                "limit",
                format!("`limit` is from 1 to {MAX_PAGE}."),
            ));
        }
        let cursor = match cursor.map(str::trim).filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => Some(
                uuid::Uuid::parse_str(c)
                    .map_err(|_| {
                        Problem::invalid(
                            "invalid_cursor",
                            "cursor",
                            "`cursor` is not a cursor this list gave out.",
                        )
                    })?
                    .hyphenated()
                    .to_string(),
            ),
        };
        Ok(Self {
            cursor,
            limit: i64::from(limit),
        })
    }
}

/// A page of a list and the cursor of the next one (`None` on the last page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// From up to `limit + 1` rows: the extra row only says that there is a next page.
    fn of(mut rows: Vec<T>, limit: i64, cursor: impl Fn(&T) -> String) -> Self {
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next_cursor = if more { rows.last().map(cursor) } else { None };
        Self {
            items: rows,
            next_cursor,
        }
    }
}

/// The orders service: what the handlers call.
#[derive(Clone)]
pub struct Orders {
    pub(crate) db: Db,
    pub(crate) vault: Vault,
    pub(crate) payments: Arc<dyn PaymentProvider>,
    /// `SHOP_CURRENCY`: every order is in it.
    pub(crate) currency: String,
    pub(crate) payment_ttl: Duration,
    /// The batched order reads, started at the first read (`detail_reads`).
    detail_reads: Arc<std::sync::OnceLock<detail_reads::DetailReads>>,
}

impl std::fmt::Debug for Orders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Orders")
            .field("provider", &self.payments.name())
            .field("currency", &self.currency)
            .field("payment_ttl", &self.payment_ttl)
            .finish_non_exhaustive()
    }
}

pub struct OrdersParts {
    pub db: Db,
    pub vault: Vault,
    pub config: Arc<Config>,
    pub payments: Arc<dyn PaymentProvider>,
}

/// How often the purge of old idempotency keys runs.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(600);

/// How often expiry looks for due orders: a quarter of the payment time, from 50 ms to 30 s.
pub fn expiry_interval(payment_ttl: Duration) -> Duration {
    (payment_ttl / 4).clamp(Duration::from_millis(50), Duration::from_secs(30))
}

impl Orders {
    pub fn new(parts: OrdersParts) -> Self {
        Self {
            db: parts.db,
            vault: parts.vault,
            payments: parts.payments,
            currency: parts.config.shop_currency.clone(),
            payment_ttl: parts.config.orders.payment_ttl,
            detail_reads: Arc::default(),
        }
    }

    /// `GET /v1/products`.
    pub async fn products(&self, page: PageRequest) -> AppResult<Page<Product>> {
        self.db
            .run(move |conn| catalogue::list_active(conn, page.cursor.as_deref(), page.limit))
            .await
    }

    /// Every product, active or not (staff).
    pub async fn all_products(&self, page: PageRequest) -> AppResult<Page<Product>> {
        self.db
            .run(move |conn| catalogue::list_all(conn, page.cursor.as_deref(), page.limit))
            .await
    }

    /// A product whether or not it is for sale (for staff).
    pub async fn product_any(&self, id: &str) -> AppResult<Product> {
        let id = id.to_owned();
        self.db.run(move |conn| catalogue::get(conn, &id)).await
    }

    /// `GET /v1/products/{id}`: an active product.
    pub async fn product(&self, id: &str) -> AppResult<Product> {
        let id = id.to_owned();
        self.db
            .run(move |conn| catalogue::get_active(conn, &id))
            .await
    }

    /// `GET /v1/orders`: the customer's own orders, newest first.
    pub async fn list(&self, customer_id: &str, page: PageRequest) -> AppResult<Page<OrderLine>> {
        let customer = customer_id.to_owned();
        self.db
            .run(move |conn| {
                read::list_for_customer(conn, &customer, page.cursor.as_deref(), page.limit)
            })
            .await
    }

    /// `GET /v1/orders/{id}`: one of the customer's own orders; anyone else's is `NotFound`.
    pub async fn detail(&self, customer_id: &str, order_id: &str) -> AppResult<OrderDetail> {
        self.detail_reads
            .get_or_init(|| detail_reads::DetailReads::start(&self.db))
            .detail(customer_id, order_id)
            .await
    }

    /// `GET /v1/orders/{id}/shipping-address`.
    pub async fn shipping_address(
        &self,
        customer_id: &str,
        order_id: &str,
    ) -> AppResult<AddressRead> {
        let (customer, id) = (customer_id.to_owned(), order_id.to_owned());
        let vault = self.vault.clone();
        self.db
            .run(move |conn| read::shipping_address(conn, &vault, &id, Some(&customer)))
            .await
    }

    /// `POST /v1/orders/{id}/cancel`: the customer cancels their own order, while it is `pending_payment`.
    pub async fn cancel(&self, customer_id: &str, order_id: &str) -> AppResult<OrderDetail> {
        let (customer, id) = (customer_id.to_owned(), order_id.to_owned());
        self.db
            .write(move |conn| {
                read::ensure_owner(conn, &id, &customer)?;
                transition(
                    conn,
                    &id,
                    OrderStatus::Cancelled,
                    &Actor::Customer(customer.clone()),
                    None,
                )?;
                read::detail(conn, &id, Some(&customer))
            })
            .await
    }

    /// Any change of state in a transaction of its own (for callers with nothing else to commit with it).
    pub async fn change_status(
        &self,
        order_id: &str,
        to: OrderStatus,
        actor: Actor,
        note: Option<String>,
    ) -> AppResult<Transition> {
        let id = order_id.to_owned();
        self.db
            .write(move |conn| transition(conn, &id, to, &actor, note.as_deref()))
            .await
    }

    /// Expires the orders that are due now.
    pub async fn expire_due(&self) -> AppResult<usize> {
        self.db
            .run(move |conn| expiry::expire_due(conn, now()))
            .await
    }

    /// Purges idempotency keys older than 24 hours.
    pub async fn purge_idempotency_keys(&self) -> AppResult<usize> {
        self.db
            .write(move |conn| Ok(idempotency::purge(conn, now())?))
            .await
    }

    /// Starts the expiry and purge tasks; they run until the process ends.
    pub fn spawn_background(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(expiry_interval(this.payment_ttl));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match this.expire_due().await {
                    Ok(0) => {}
                    Ok(expired) => tracing::info!(expired, "unpaid orders expired"),
                    Err(e) => tracing::warn!(error = %e, "cannot expire unpaid orders"),
                }
            }
        });
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PURGE_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match this.purge_idempotency_keys().await {
                    Ok(0) => {}
                    Ok(purged) => tracing::info!(purged, "old idempotency keys purged"),
                    Err(e) => tracing::warn!(error = %e, "cannot purge idempotency keys"),
                }
            }
        });
    }
}
