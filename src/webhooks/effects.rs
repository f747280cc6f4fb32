//! What a payment event does to its order, in the transaction that records its receipt.
//!
//! - succeeded: `pending_payment` → `paid` when amount and currency equal the order's, else the order stays
//!   unpaid and is flagged `payment_review`; an `expired` or `cancelled` order is flagged `needs_refund`;
//!   any later state: no effect.
//! - failed: recorded; the order stays payable. After success: no effect.
//! - refunded, of the order's whole total: `paid`/`fulfilling` → `refunded`; a refund that arrives before its
//!   payment succeeded is kept and applied when it does (events come out of order); on a `needs_refund` order
//!   it clears the flag.
//! - refunded, of another amount or currency (a partial refund): no state changes, the order is flagged
//!   `payment_review` for a person to look at, whatever its state.
//! - a duplicate (the receipt exists) changes nothing.

use diesel::prelude::*;

use super::Provider;
use super::events::{Kind, PaymentEvent};
use crate::db::DbConnection;
use crate::db::DbError;
use crate::db::schema::{orders, webhook_receipts};
use crate::error::AppError;
use crate::notify::outbox::{self, Amount, Notification};
use crate::orders::read::{self, OrderSummary};
use crate::orders::state::{Actor, OrderFlag, OrderStatus, set_flag, transition};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Paid,
    PaymentReview,
    NeedsRefund,
    PaymentFailed,
    Refunded,
    RefundDeferred,
    RefundRecorded,
    RefundReview,
    UnknownOrder,
    NoEffect,
    Duplicate,
    Ignored,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Paid => "paid",
            Self::PaymentReview => "payment_review",
            Self::NeedsRefund => "needs_refund",
            Self::PaymentFailed => "payment_failed",
            Self::Refunded => "refunded",
            Self::RefundDeferred => "refund_deferred",
            Self::RefundRecorded => "refund_recorded",
            Self::RefundReview => "refund_review",
            Self::UnknownOrder => "unknown_order",
            Self::NoEffect => "no_effect",
            Self::Duplicate => "duplicate",
            Self::Ignored => "ignored",
        }
    }
}

/// A transaction that found its event already received rolls back with `Duplicate`.
#[derive(Debug)]
pub enum ApplyError {
    Duplicate,
    App(AppError),
}

impl From<diesel::result::Error> for ApplyError {
    fn from(e: diesel::result::Error) -> Self {
        match e {
            diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            ) => Self::Duplicate,
            other => Self::App(other.into()),
        }
    }
}

impl From<DbError> for ApplyError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Query(q) => q.into(),
            other => Self::App(other.into()),
        }
    }
}

impl From<AppError> for ApplyError {
    fn from(e: AppError) -> Self {
        Self::App(e)
    }
}

impl crate::db::Contention for ApplyError {
    fn is_contention(&self) -> bool {
        matches!(self, Self::App(e) if crate::db::Contention::is_contention(e))
    }
}

/// Applies `event` and records its receipt; returns the outcome and the order it concerned (as it was read
/// before the effect).
pub fn apply(
    conn: &mut DbConnection,
    provider: Provider,
    event: &PaymentEvent,
) -> Result<(Outcome, Option<OrderSummary>), ApplyError> {
    // The receipt first: a concurrent delivery of the same event waits on this key and then fails with a
    // unique violation, which rolls its transaction back as a duplicate.
    let seen: i64 = webhook_receipts::table
        .find((provider.as_str(), &event.event_id))
        .count()
        .get_result(conn)?;
    if seen > 0 {
        return Err(ApplyError::Duplicate);
    }
    diesel::insert_into(webhook_receipts::table)
        .values((
            webhook_receipts::provider.eq(provider.as_str()),
            webhook_receipts::event_id.eq(&event.event_id),
            webhook_receipts::kind.eq(event.kind.as_str()),
            webhook_receipts::outcome.eq("processing"),
            webhook_receipts::processed_at.eq(chrono::Utc::now().naive_utc()),
        ))
        .execute(conn)?;

    let order = match find_order(conn, event)? {
        // Take the order's row lock (a no-op update, portable across backends) and read it again, so two
        // events of one order (a success and a refund) are applied one after the other, each seeing the other.
        Some(found) => {
            diesel::update(orders::table.find(&found.id))
                .set(orders::updated_at.eq(orders::updated_at))
                .execute(conn)?;
            Some(read::summary(conn, &found.id)?)
        }
        None => None,
    };
    let outcome = match &order {
        None => Outcome::UnknownOrder,
        Some(order) => effect(conn, provider, event, order)?,
    };
    diesel::update(webhook_receipts::table.find((provider.as_str(), &event.event_id)))
        .set((
            webhook_receipts::outcome.eq(outcome.as_str()),
            webhook_receipts::order_id.eq(order.as_ref().map(|o| &o.id)),
        ))
        .execute(conn)?;
    Ok((outcome, order))
}

/// The order an event is about: by the order id it carries, checked against the payment id; or by the
/// payment id alone.
fn find_order(
    conn: &mut DbConnection,
    event: &PaymentEvent,
) -> Result<Option<OrderSummary>, ApplyError> {
    let order = match &event.order_id {
        Some(id) => match read::summary(conn, id) {
            Ok(order) => Some(order),
            Err(AppError::NotFound) => None,
            Err(e) => return Err(e.into()),
        },
        None => read::find_by_payment_id(conn, &event.payment_id)?,
    };
    // An event naming an order but another payment is not that order's.
    Ok(order.filter(|o| {
        o.payment_id
            .as_deref()
            .is_none_or(|p| p == event.payment_id)
    }))
}

fn effect(
    conn: &mut DbConnection,
    provider: Provider,
    event: &PaymentEvent,
    order: &OrderSummary,
) -> Result<Outcome, ApplyError> {
    use OrderStatus::*;
    let actor = Actor::Provider(format!("{}:{}", provider.as_str(), event.event_id));
    let outcome = match (event.kind, order.status) {
        (Kind::Succeeded, PendingPayment) => {
            if is_whole_total(event, order) {
                transition(conn, &order.id, Paid, &actor, Some("payment succeeded"))?;
                notify_paid(conn, order)?;
                if refund_waiting(conn, &order.id, &event.event_id)? {
                    transition(
                        conn,
                        &order.id,
                        Refunded,
                        &actor,
                        Some("refund received before the payment"),
                    )?;
                    notify_refunded(conn, order)?;
                    Outcome::Refunded
                } else {
                    Outcome::Paid
                }
            } else {
                set_flag(conn, &order.id, OrderFlag::PaymentReview, true)?;
                Outcome::PaymentReview
            }
        }
        (Kind::Succeeded, Expired | Cancelled) => {
            if refund_waiting(conn, &order.id, &event.event_id)? {
                Outcome::RefundRecorded
            } else {
                set_flag(conn, &order.id, OrderFlag::NeedsRefund, true)?;
                Outcome::NeedsRefund
            }
        }
        (Kind::Succeeded, _) => Outcome::NoEffect,
        (Kind::Refunded, _) if !is_whole_total(event, order) => {
            set_flag(conn, &order.id, OrderFlag::PaymentReview, true)?;
            Outcome::RefundReview
        }
        (Kind::Failed, PendingPayment) => Outcome::PaymentFailed,
        (Kind::Failed, _) => Outcome::NoEffect,
        (Kind::Refunded, Paid | Fulfilling) => {
            transition(
                conn,
                &order.id,
                Refunded,
                &actor,
                Some("refunded by the provider"),
            )?;
            notify_refunded(conn, order)?;
            Outcome::Refunded
        }
        (Kind::Refunded, PendingPayment) => Outcome::RefundDeferred,
        (Kind::Refunded, Expired | Cancelled) if order.needs_refund => {
            set_flag(conn, &order.id, OrderFlag::NeedsRefund, false)?;
            Outcome::RefundRecorded
        }
        (Kind::Refunded, _) => Outcome::NoEffect,
    };
    Ok(outcome)
}

/// Whether the event's amount is the order's whole total. A refund of less (Stripe's `amount_refunded` counts
/// all refunds of the charge so far) must not end the order: the customer paid for the rest.
fn is_whole_total(event: &PaymentEvent, order: &OrderSummary) -> bool {
    event.amount == order.total.amount && event.currency == order.total.currency
}

/// Whether a refund of this order arrived before (another event than `this_event`).
fn refund_waiting(conn: &mut DbConnection, order_id: &str, this_event: &str) -> QueryResult<bool> {
    let n: i64 = webhook_receipts::table
        .filter(webhook_receipts::order_id.eq(order_id))
        .filter(webhook_receipts::kind.eq(Kind::Refunded.as_str()))
        .filter(webhook_receipts::outcome.eq(Outcome::RefundDeferred.as_str()))
        .filter(webhook_receipts::event_id.ne(this_event))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

fn amount(order: &OrderSummary) -> Amount {
    Amount::new(order.total.amount, &order.total.currency)
}

/// The order confirmation to the customer and the alert to the staff, in the transaction that paid it.
fn notify_paid(conn: &mut DbConnection, order: &OrderSummary) -> Result<(), ApplyError> {
    let detail = read::detail(conn, &order.id, None)?;
    let items = detail
        .items
        .into_iter()
        .map(|i| outbox::OrderItem {
            name: i.name,
            quantity: i.quantity.max(0) as u32,
        })
        .collect();
    outbox::enqueue(
        conn,
        Notification::OrderConfirmation {
            customer_id: order.customer_id.clone(),
            order_id: order.id.clone(),
            items,
            total: amount(order),
        },
    )?;
    outbox::enqueue(
        conn,
        Notification::OrderPaidStaffAlert {
            order_id: order.id.clone(),
            total: amount(order),
        },
    )?;
    Ok(())
}

fn notify_refunded(conn: &mut DbConnection, order: &OrderSummary) -> Result<(), ApplyError> {
    outbox::enqueue(
        conn,
        Notification::Refunded {
            customer_id: order.customer_id.clone(),
            order_id: order.id.clone(),
            amount: amount(order),
        },
    )?;
    Ok(())
}
