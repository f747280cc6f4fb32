//! The order state machine: ONE table of the changes that exist (from, to, who may make them), and ONE function,
//! `transition`, through which every change goes — the customer's cancel, expiry, payment webhooks and staff.
//! Anything not in the table is a 409 `invalid_transition`. Every change writes an `order_events` row.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::now;
use crate::db::DbConnection;
use crate::db::schema::{order_events, order_items, orders, products};
use crate::error::{AppError, AppResult, Problem};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    Fulfilling,
    Shipped,
    Delivered,
    Cancelled,
    Expired,
    Refunded,
}

impl OrderStatus {
    pub const ALL: [Self; 8] = [
        Self::PendingPayment,
        Self::Paid,
        Self::Fulfilling,
        Self::Shipped,
        Self::Delivered,
        Self::Cancelled,
        Self::Expired,
        Self::Refunded,
    ];

    /// The stored and wire form: `pending_payment`, `paid`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingPayment => "pending_payment",
            Self::Paid => "paid",
            Self::Fulfilling => "fulfilling",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Reading a stored status; an unknown one is a broken row, not a client error.
    pub(crate) fn from_stored(text: &str) -> AppResult<Self> {
        Self::parse(text)
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("unknown order status {text:?}")))
    }
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who makes a change, as the table knows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActorKind {
    /// The customer who placed the order.
    Customer,
    /// A store staff member (the staff routes add their role check on top).
    Staff,
    /// The payment provider, through a verified webhook.
    Provider,
    /// shopd itself: the expiry task.
    System,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Staff => "staff",
            Self::Provider => "provider",
            Self::System => "system",
        }
    }
}

/// Who makes a change, with their id where they have one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The customer's id.
    Customer(String),
    /// The staff member's id.
    Staff(String),
    /// The provider's name or event id (`stripe`, `evt_…`).
    Provider(String),
    System,
}

impl Actor {
    pub fn kind(&self) -> ActorKind {
        match self {
            Self::Customer(_) => ActorKind::Customer,
            Self::Staff(_) => ActorKind::Staff,
            Self::Provider(_) => ActorKind::Provider,
            Self::System => ActorKind::System,
        }
    }

    pub fn id(&self) -> Option<&str> {
        match self {
            Self::Customer(id) | Self::Staff(id) | Self::Provider(id) => Some(id),
            Self::System => None,
        }
    }
}

/// One allowed change.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub from: OrderStatus,
    pub to: OrderStatus,
    pub actors: &'static [ActorKind],
}

use ActorKind::{Customer, Provider, Staff, System};
use OrderStatus::{
    Cancelled, Delivered, Expired, Fulfilling, Paid, PendingPayment, Refunded, Shipped,
};

/// Every change an order can go through, and who may make it. Nothing else is possible.
#[rustfmt::skip]
pub const TRANSITIONS: &[Rule] = &[
    Rule { from: PendingPayment, to: Paid, actors: &[Provider] },
    Rule { from: PendingPayment, to: Cancelled, actors: &[Customer, Staff] },
    Rule { from: PendingPayment, to: Expired, actors: &[System] },
    Rule { from: Paid, to: Fulfilling, actors: &[Staff] },
    Rule { from: Paid, to: Refunded, actors: &[Staff, Provider] },
    Rule { from: Paid, to: Cancelled, actors: &[Staff] },
    Rule { from: Fulfilling, to: Shipped, actors: &[Staff] },
    Rule { from: Fulfilling, to: Refunded, actors: &[Staff, Provider] },
    Rule { from: Fulfilling, to: Cancelled, actors: &[Staff] },
    Rule { from: Shipped, to: Delivered, actors: &[Staff] },
];

/// Whether `actor` may move an order from `from` to `to`.
pub fn allowed(from: OrderStatus, to: OrderStatus, actor: ActorKind) -> bool {
    TRANSITIONS
        .iter()
        .any(|r| r.from == from && r.to == to && r.actors.contains(&actor))
}

/// Entering these gives the order's items back to stock: the goods never left (pending, paid or fulfilling).
pub fn releases_stock(to: OrderStatus) -> bool {
    matches!(to, Cancelled | Expired | Refunded)
}

/// A change that was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub order_id: String,
    pub from: OrderStatus,
    pub to: OrderStatus,
    pub at: NaiveDateTime,
}

pub fn invalid_transition(from: OrderStatus, to: OrderStatus, actor: ActorKind) -> AppError {
    Problem::conflict(
        "invalid_transition",
        format!(
            "An order that is `{from}` cannot become `{to}` (by the {}).",
            actor.as_str()
        ),
    )
    .into()
}

/// The longest note kept with an event, in characters.
pub const MAX_NOTE_CHARS: usize = 500;

/// Moves an order to `to`, if the table allows it from its current state for this actor, and records the
/// event; `releases_stock` states give the items back to stock in the same transaction.
///
/// Run it inside a write transaction (`Db::write` / `db::write_tx`) with whatever else the change belongs
/// with (the webhook's event id, the staff audit entry). The update is conditional on the state it was read
/// in, so two instances racing (expiry against a payment, two webhooks) change the order once; the loser
/// sees the new state and gets `invalid_transition`. An unknown order is `AppError::NotFound`.
pub fn transition(
    conn: &mut DbConnection,
    order_id: &str,
    to: OrderStatus,
    actor: &Actor,
    note: Option<&str>,
) -> AppResult<Transition> {
    for _ in 0..3 {
        let stored: String = orders::table
            .find(order_id)
            .select(orders::status)
            .first(conn)
            .optional()?
            .ok_or(AppError::NotFound)?;
        let from = OrderStatus::from_stored(&stored)?;
        if !allowed(from, to, actor.kind()) {
            return Err(invalid_transition(from, to, actor.kind()));
        }
        let at = now();
        let changed = diesel::update(
            orders::table
                .filter(orders::id.eq(order_id))
                .filter(orders::status.eq(from.as_str())),
        )
        .set((orders::status.eq(to.as_str()), orders::updated_at.eq(at)))
        .execute(conn)?;
        if changed == 0 {
            // Changed since it was read: decide again on the new state.
            continue;
        }
        if releases_stock(to) {
            release_stock(conn, order_id)?;
        }
        record_event(conn, order_id, Some(from), to, actor, note, at)?;
        return Ok(Transition {
            order_id: order_id.to_owned(),
            from,
            to,
            at,
        });
    }
    Err(Problem::conflict(
        "order_changed",
        "The order kept changing while it was being updated; try again.",
    )
    .into())
}

/// Gives an order's items back to stock, in product id order (the order every stock change takes, so two
/// transactions never wait on each other's rows in a cycle).
fn release_stock(conn: &mut DbConnection, order_id: &str) -> QueryResult<()> {
    let items: Vec<(String, i32)> = order_items::table
        .filter(order_items::order_id.eq(order_id))
        .select((order_items::product_id, order_items::quantity))
        .order(order_items::product_id)
        .load(conn)?;
    for (product_id, quantity) in items {
        diesel::update(products::table.find(&product_id))
            .set(products::stock.eq(products::stock + quantity))
            .execute(conn)?;
    }
    Ok(())
}

pub(crate) fn record_event(
    conn: &mut DbConnection,
    order_id: &str,
    from: Option<OrderStatus>,
    to: OrderStatus,
    actor: &Actor,
    note: Option<&str>,
    at: NaiveDateTime,
) -> QueryResult<()> {
    let note: Option<String> = note.map(|n| n.chars().take(MAX_NOTE_CHARS).collect());
    diesel::insert_into(order_events::table)
        .values((
            order_events::id.eq(uuid::Uuid::now_v7().to_string()),
            order_events::order_id.eq(order_id),
            order_events::from_status.eq(from.map(OrderStatus::as_str)),
            order_events::to_status.eq(to.as_str()),
            order_events::actor_kind.eq(actor.kind().as_str()),
            order_events::actor_id.eq(actor.id()),
            order_events::note.eq(note),
            order_events::created_at.eq(at),
        ))
        .execute(conn)?;
    Ok(())
}

/// One recorded change of an order (the status history staff see).
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct OrderEvent {
    pub id: String,
    pub from: Option<String>,
    pub to: String,
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub note: Option<String>,
    pub at: NaiveDateTime,
}

/// An order's events, oldest first.
pub fn events(conn: &mut DbConnection, order_id: &str) -> AppResult<Vec<OrderEvent>> {
    Ok(order_events::table
        .filter(order_events::order_id.eq(order_id))
        .select((
            order_events::id,
            order_events::from_status,
            order_events::to_status,
            order_events::actor_kind,
            order_events::actor_id,
            order_events::note,
            order_events::created_at,
        ))
        .order(order_events::id)
        .load(conn)?)
}

/// The flags a payment webhook raises on an order; they do not change its state. A manager clears one once
/// it is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderFlag {
    /// A payment whose amount or currency differs from the order's: someone must look.
    PaymentReview,
    /// Money arrived for an order that is expired or cancelled: it must be paid back.
    NeedsRefund,
}

impl OrderFlag {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "payment_review" => Some(Self::PaymentReview),
            "needs_refund" => Some(Self::NeedsRefund),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PaymentReview => "payment_review",
            Self::NeedsRefund => "needs_refund",
        }
    }
}

/// Cancels, as the customer would, every order of `customer_id` still awaiting payment; their stock goes back.
/// For erasure: an order whose buyer and address are gone can no longer be shipped, and a payment that
/// arrives for it afterwards is flagged `needs_refund`, as for any cancelled order.
pub fn cancel_payable_orders_of(
    conn: &mut DbConnection,
    customer_id: &str,
    note: &str,
) -> AppResult<()> {
    let payable: Vec<String> = orders::table
        .filter(orders::customer_id.eq(customer_id))
        .filter(orders::status.eq(OrderStatus::PendingPayment.as_str()))
        .select(orders::id)
        .load(conn)?;
    let actor = Actor::Customer(customer_id.to_owned());
    for id in &payable {
        transition(conn, id, OrderStatus::Cancelled, &actor, Some(note))?;
    }
    Ok(())
}

/// Raises or clears a flag. Returns whether the order exists.
pub fn set_flag(
    conn: &mut DbConnection,
    order_id: &str,
    flag: OrderFlag,
    on: bool,
) -> AppResult<bool> {
    let target = orders::table.find(order_id);
    let changed = match flag {
        OrderFlag::PaymentReview => diesel::update(target)
            .set((orders::payment_review.eq(on), orders::updated_at.eq(now())))
            .execute(conn)?,
        OrderFlag::NeedsRefund => diesel::update(target)
            .set((orders::needs_refund.eq(on), orders::updated_at.eq(now())))
            .execute(conn)?,
    };
    Ok(changed > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table written out as the design states it; any drift between the two fails here.
    fn expected(from: OrderStatus, to: OrderStatus, actor: ActorKind) -> bool {
        matches!(
            (from, to, actor),
            (PendingPayment, Paid, Provider)
                | (PendingPayment, Cancelled, Customer | Staff)
                | (PendingPayment, Expired, System)
                | (Paid, Fulfilling, Staff)
                | (Paid | Fulfilling, Refunded, Staff | Provider)
                | (Paid | Fulfilling, Cancelled, Staff)
                | (Fulfilling, Shipped, Staff)
                | (Shipped, Delivered, Staff)
        )
    }

    #[test]
    fn the_table_is_exactly_the_design() {
        let kinds = [Customer, Staff, Provider, System];
        let mut allowed_count = 0;
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                for actor in kinds {
                    assert_eq!(
                        allowed(from, to, actor),
                        expected(from, to, actor),
                        "{from} -> {to} by {}",
                        actor.as_str()
                    );
                    allowed_count += usize::from(allowed(from, to, actor));
                }
            }
        }
        assert_eq!(allowed_count, 13);
    }

    #[test]
    fn final_states_go_nowhere_and_nothing_stays_put() {
        for from in [Delivered, Cancelled, Expired, Refunded] {
            assert!(
                TRANSITIONS.iter().all(|r| r.from != from),
                "{from} is final"
            );
        }
        assert!(TRANSITIONS.iter().all(|r| r.from != r.to));
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn only_the_cancelling_states_release_stock() {
        let releasing: Vec<_> = OrderStatus::ALL
            .into_iter()
            .filter(|s| releases_stock(*s))
            .collect();
        assert_eq!(releasing, vec![Cancelled, Expired, Refunded]);
    }
}
