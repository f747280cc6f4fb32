//! What staff do with orders and the catalogue: the list (no personal data), the detail with its history,
//! changes of state through the order state machine (refunds through the payment provider first), the audited
//! reveal of a shipping address, and product changes (each recorded in the audit log).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{Role, Staff, audit};
use crate::crypto::IndexKind;
use crate::db::schema::{customers, orders, products};
use crate::domain::{Money, ShippingAddress};
use crate::error::{AppError, AppResult, Problem};
use crate::notify::outbox::{self, Amount, Notification};
use crate::orders::read::{self, AddressRead, OrderDetail, OrderSummary, Shipment};
use crate::orders::state::{self, Actor, OrderEvent, OrderFlag, OrderStatus, set_flag, transition};
use crate::orders::{NewProduct, Orders, Product};

/// A line of the staff order list: no name, no address, no phone.
#[derive(Debug, Clone)]
pub struct StaffOrderLine {
    pub id: String,
    pub customer_id: String,
    pub status: String,
    pub total: Money,
    pub item_count: i32,
    pub payment_review: bool,
    pub needs_refund: bool,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Default, Clone)]
pub struct OrderFilter {
    pub status: Option<OrderStatus>,
    pub since: Option<NaiveDateTime>,
    pub until: Option<NaiveDateTime>,
    /// Newest first, before this id.
    pub cursor: Option<String>,
    pub limit: i64,
    /// A customer's phone (E.164), looked up by its blind index: manager and up.
    pub customer_phone: Option<String>,
    /// Only the orders with this flag raised.
    pub flag: Option<OrderFlag>,
}

type LineRow = (
    String,
    String,
    String,
    i64,
    String,
    i32,
    bool,
    bool,
    NaiveDateTime,
);

/// A change to a product; `None` leaves a field as it is.
#[derive(Debug, Default, Clone)]
pub struct ProductChange {
    pub name: Option<String>,
    pub price: Option<i64>,
    pub stock: Option<i64>,
    pub active: Option<bool>,
}

fn provider_unavailable(e: crate::payments::PaymentError) -> AppError {
    tracing::warn!(error = %e, "the refund was not made");
    Problem::new(
        502,
        "payment_provider_unavailable",
        "Payment provider unavailable",
        "The payment provider did not confirm the refund; the order is unchanged. Try again.",
    )
    .into()
}

/// The longest carrier name or tracking number kept.
pub const MAX_SHIPMENT_CHARS: usize = 80;

/// A shipment as staff type it: both parts given, printable, at most `MAX_SHIPMENT_CHARS` each.
pub fn parse_shipment(carrier: &str, tracking_number: &str) -> AppResult<Shipment> {
    let part = |text: &str, field: &'static str| -> AppResult<String> {
        let text = text.trim();
        if text.is_empty()
            || text.chars().count() > MAX_SHIPMENT_CHARS
            || text.chars().any(char::is_control)
        {
            return Err(Problem::invalid(
                "invalid_shipment",
                field,
                format!("`{field}` is 1 to {MAX_SHIPMENT_CHARS} printable characters."),
            )
            .into());
        }
        Ok(text.to_owned())
    };
    Ok(Shipment {
        carrier: part(carrier, "carrier")?,
        tracking_number: part(tracking_number, "tracking_number")?,
    })
}

/// A payment provider's webhook about an order, as the order page lists it.
#[derive(Debug, Clone)]
pub struct WebhookLine {
    pub event_type: Option<String>,
    pub verification: String,
    pub outcome: Option<String>,
    pub received_at: NaiveDateTime,
}

impl Staff {
    /// How many orders are in each status, for the queue's tabs.
    pub async fn order_counts(&self) -> AppResult<Vec<(String, i64)>> {
        self.db
            .run(|conn| -> AppResult<Vec<(String, i64)>> {
                Ok(orders::table
                    .group_by(orders::status)
                    .select((orders::status, diesel::dsl::count_star()))
                    .load(conn)?)
            })
            .await
    }

    /// Webhook receipts of the last day by verification and outcome, most first: the operations page.
    pub async fn webhook_outcomes(&self) -> AppResult<Vec<(String, Option<String>, i64)>> {
        use crate::db::schema::webhook_events as events;
        let since = chrono::Utc::now().naive_utc() - chrono::Duration::days(1);
        self.db
            .run(
                move |conn| -> AppResult<Vec<(String, Option<String>, i64)>> {
                    let mut rows: Vec<(String, Option<String>, i64)> = events::table
                        .filter(events::received_at.gt(since))
                        .group_by((events::verification, events::outcome))
                        .select((
                            events::verification,
                            events::outcome,
                            diesel::dsl::count_star(),
                        ))
                        .load(conn)?;
                    rows.sort_by_key(|r| std::cmp::Reverse(r.2));
                    Ok(rows)
                },
            )
            .await
    }

    /// E-mail that failed for good or waits for a retry, newest first (no address: the outbox holds none).
    pub async fn failing_email(&self) -> AppResult<Vec<crate::notify::outbox::OutboxRow>> {
        self.db
            .run(|conn| -> AppResult<_> { Ok(outbox::list(conn, true, 50)?) })
            .await
    }

    /// The webhook events that named an order, oldest first.
    pub async fn order_webhooks(&self, order_id: &str) -> AppResult<Vec<WebhookLine>> {
        use crate::db::schema::webhook_events as events;
        let id = order_id.to_owned();
        self.db
            .run(move |conn| -> AppResult<Vec<WebhookLine>> {
                let rows: Vec<(Option<String>, String, Option<String>, NaiveDateTime)> =
                    events::table
                        .filter(events::order_id.eq(&id))
                        .order(events::received_at)
                        .select((
                            events::event_type,
                            events::verification,
                            events::outcome,
                            events::received_at,
                        ))
                        .load(conn)?;
                Ok(rows
                    .into_iter()
                    .map(
                        |(event_type, verification, outcome, received_at)| WebhookLine {
                            event_type,
                            verification,
                            outcome,
                            received_at,
                        },
                    )
                    .collect())
            })
            .await
    }

    pub async fn orders(&self, filter: OrderFilter) -> AppResult<Vec<StaffOrderLine>> {
        let index = filter
            .customer_phone
            .as_deref()
            .map(|p| self.vault.blind_index(IndexKind::Phone, p));
        self.db
            .run(move |conn| -> AppResult<Vec<StaffOrderLine>> {
                let mut query = orders::table
                    .select((
                        orders::id,
                        orders::customer_id,
                        orders::status,
                        orders::total_amount,
                        orders::currency,
                        orders::item_count,
                        orders::payment_review,
                        orders::needs_refund,
                        orders::created_at,
                    ))
                    .order(orders::id.desc())
                    .limit(filter.limit)
                    .into_boxed();
                if let Some(status) = filter.status {
                    query = query.filter(orders::status.eq(status.as_str()));
                }
                if let Some(since) = filter.since {
                    query = query.filter(orders::created_at.ge(since));
                }
                if let Some(until) = filter.until {
                    query = query.filter(orders::created_at.lt(until));
                }
                match filter.flag {
                    Some(OrderFlag::PaymentReview) => {
                        query = query.filter(orders::payment_review.eq(true));
                    }
                    Some(OrderFlag::NeedsRefund) => {
                        query = query.filter(orders::needs_refund.eq(true));
                    }
                    None => {}
                }
                if let Some(cursor) = filter.cursor {
                    query = query.filter(orders::id.lt(cursor));
                }
                if let Some(index) = index {
                    let ids: Vec<String> = customers::table
                        .filter(customers::phone_index.eq(index))
                        .select(customers::id)
                        .load(conn)?;
                    query = query.filter(orders::customer_id.eq_any(ids));
                }
                let rows: Vec<LineRow> = query.load(conn)?;
                Ok(rows
                    .into_iter()
                    .map(
                        |(
                            id,
                            customer_id,
                            status,
                            amount,
                            currency,
                            item_count,
                            review,
                            refund,
                            created_at,
                        )| {
                            StaffOrderLine {
                                id,
                                customer_id,
                                status,
                                total: Money { amount, currency },
                                item_count,
                                payment_review: review,
                                needs_refund: refund,
                                created_at,
                            }
                        },
                    )
                    .collect())
            })
            .await
    }

    pub async fn order(
        &self,
        order_id: &str,
    ) -> AppResult<(OrderSummary, OrderDetail, Vec<OrderEvent>)> {
        let id = order_id.to_owned();
        self.db
            .run(move |conn| -> AppResult<_> {
                let summary = read::summary(conn, &id)?;
                let detail = read::detail(conn, &id, None)?;
                Ok((summary, detail, state::events(conn, &id)?))
            })
            .await
    }

    /// The shipping address of an order, audited in the same transaction. Never the value in the audit entry.
    pub async fn order_address(
        &self,
        actor: &str,
        order_id: &str,
        request_id: Option<String>,
    ) -> AppResult<Option<ShippingAddress>> {
        let vault = self.vault.clone();
        let (actor, id) = (actor.to_owned(), order_id.to_owned());
        self.db
            .write(move |conn| -> AppResult<Option<ShippingAddress>> {
                let address = read::shipping_address(conn, &vault, &id, None)?;
                audit(
                    conn,
                    &actor,
                    "reveal_shipping_address",
                    ("order", &id),
                    request_id.as_deref(),
                )?;
                Ok(match address {
                    AddressRead::Address(a) => Some(a),
                    AddressRead::Erased => None,
                })
            })
            .await
    }

    /// Moves an order on, as a staff member. `cancelled` and `refunded` need a manager; from a paid order
    /// both refund the payment first, and the order moves only on the provider's confirmation. A note is kept
    /// to its first `MAX_NOTE_CHARS` characters.
    pub async fn change_order(
        &self,
        orders: &Orders,
        actor: (&str, Role),
        order_id: &str,
        to: OrderStatus,
        note: Option<String>,
        shipment: Option<Shipment>,
    ) -> AppResult<OrderStatus> {
        let (staff_id, role) = actor;
        let note = note.map(|n| n.chars().take(state::MAX_NOTE_CHARS).collect::<String>());
        if shipment.is_some() && to != OrderStatus::Shipped {
            return Err(Problem::invalid(
                "invalid_shipment",
                "carrier",
                "A carrier and tracking number go with `shipped` only.",
            )
            .into());
        }
        if matches!(to, OrderStatus::Cancelled | OrderStatus::Refunded) && role < Role::Manager {
            return Err(Problem::new(
                403,
                "forbidden",
                "Forbidden",
                format!("Only a manager may make an order `{to}`."),
            )
            .into());
        }
        let id = order_id.to_owned();
        let summary = self.db.run(move |conn| read::summary(conn, &id)).await?;
        if !state::allowed(summary.status, to, state::ActorKind::Staff) {
            return Err(state::invalid_transition(
                summary.status,
                to,
                state::ActorKind::Staff,
            ));
        }
        let paid = matches!(summary.status, OrderStatus::Paid | OrderStatus::Fulfilling);
        let refunds = paid && matches!(to, OrderStatus::Cancelled | OrderStatus::Refunded);
        if refunds {
            let payment_id = summary.payment_id.clone().ok_or_else(|| {
                AppError::Internal(anyhow::anyhow!("a paid order without a payment id"))
            })?;
            orders
                .payments
                .refund(&payment_id, &summary.id)
                .await
                .map_err(provider_unavailable)?;
        }
        let (actor, id) = (Actor::Staff(staff_id.to_owned()), order_id.to_owned());
        self.db
            .write(move |conn| -> AppResult<OrderStatus> {
                let done = transition(conn, &id, to, &actor, note.as_deref())?;
                if let Some(shipment) = &shipment {
                    diesel::update(orders::table.find(&id))
                        .set((
                            orders::carrier.eq(&shipment.carrier),
                            orders::tracking_number.eq(&shipment.tracking_number),
                        ))
                        .execute(conn)?;
                }
                let amount = Amount::new(summary.total.amount, &summary.total.currency);
                if refunds {
                    outbox::enqueue(
                        conn,
                        Notification::Refunded {
                            customer_id: summary.customer_id.clone(),
                            order_id: id.clone(),
                            amount,
                        },
                    )?;
                } else if to == OrderStatus::Shipped {
                    outbox::enqueue(
                        conn,
                        Notification::OrderShipped {
                            customer_id: summary.customer_id.clone(),
                            order_id: id.clone(),
                        },
                    )?;
                }
                Ok(done.to)
            })
            .await
    }

    /// Clears `flag` on the order, once a manager has handled it; audited, as is clearing a flag that was
    /// already down. `NotFound` when there is no such order.
    pub async fn clear_order_flag(
        &self,
        actor: &str,
        order_id: &str,
        flag: OrderFlag,
        request_id: Option<String>,
    ) -> AppResult<()> {
        let (actor, id) = (actor.to_owned(), order_id.to_owned());
        self.db
            .write(move |conn| -> AppResult<()> {
                if !set_flag(conn, &id, flag, false)? {
                    return Err(AppError::NotFound);
                }
                let action = format!("order_{}_cleared", flag.as_str());
                audit(conn, &actor, &action, ("order", &id), request_id.as_deref())?;
                Ok(())
            })
            .await
    }

    pub async fn create_product(
        &self,
        actor: &str,
        product: NewProduct,
        request_id: Option<String>,
    ) -> AppResult<String> {
        let actor = actor.to_owned();
        self.db
            .write(move |conn| -> AppResult<String> {
                let id = crate::orders::catalogue::insert_products(
                    conn,
                    std::slice::from_ref(&product),
                    |_| {},
                )?
                .remove(0);
                audit(
                    conn,
                    &actor,
                    "product_created",
                    ("product", &id),
                    request_id.as_deref(),
                )?;
                Ok(id)
            })
            .await
    }

    /// Adds the products of an import in one transaction (all or nothing), audited once with their count.
    pub async fn import_products(
        &self,
        actor: &str,
        rows: Vec<NewProduct>,
        request_id: Option<String>,
    ) -> AppResult<usize> {
        let actor = actor.to_owned();
        self.db
            .write(move |conn| -> AppResult<usize> {
                let ids = crate::orders::catalogue::insert_products(conn, &rows, |_| {})?;
                audit(
                    conn,
                    &actor,
                    "products_imported",
                    ("products", &ids.len().to_string()),
                    request_id.as_deref(),
                )?;
                Ok(ids.len())
            })
            .await
    }

    /// Changes a product; a stock change is its own audit entry (who, which product, when).
    pub async fn update_product(
        &self,
        actor: &str,
        product_id: &str,
        change: ProductChange,
        request_id: Option<String>,
    ) -> AppResult<Product> {
        let (actor, id) = (actor.to_owned(), product_id.to_owned());
        self.db
            .write(move |conn| -> AppResult<Product> {
                let current = crate::orders::catalogue::get(conn, &id)?;
                let checked = NewProduct::parse(
                    change.name.as_deref().unwrap_or(&current.name),
                    change.price.unwrap_or(current.price.amount),
                    Some(&current.price.currency),
                    change.stock.unwrap_or(i64::from(current.stock)),
                    change.active.unwrap_or(current.active),
                    &current.price.currency,
                )
                .map_err(|e| AppError::from(Problem::invalid("invalid_product", "product", e)))?;
                diesel::update(products::table.find(&id))
                    .set((
                        products::name.eq(&checked.name),
                        products::price.eq(checked.price),
                        products::active.eq(checked.active),
                        products::updated_at.eq(chrono::Utc::now().naive_utc()),
                    ))
                    .execute(conn)?;
                if let Some(stock) = change.stock {
                    diesel::update(products::table.find(&id))
                        .set(products::stock.eq(stock as i32))
                        .execute(conn)?;
                    audit(
                        conn,
                        &actor,
                        "product_stock_set",
                        ("product", &id),
                        request_id.as_deref(),
                    )?;
                }
                audit(
                    conn,
                    &actor,
                    "product_updated",
                    ("product", &id),
                    request_id.as_deref(),
                )?;
                crate::orders::catalogue::get(conn, &id)
            })
            .await
    }
}
