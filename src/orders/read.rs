//! Reading orders: the customer's list and detail (no address), the address on its own, and the summaries the
//! webhooks and staff work from.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::Page;
use super::state::OrderStatus;
use crate::db::DbConnection;
use crate::db::schema::{order_items, orders};
use crate::domain::{Money, ShippingAddress};
use crate::error::{AppError, AppResult};
use crate::vault::{Field, Opened, Vault};

/// A line of the customer's order list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub id: String,
    pub status: OrderStatus,
    pub total: Money,
    /// The number of items: the sum of the lines' quantities.
    pub item_count: i32,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderItem {
    pub product_id: String,
    /// The product's name when the order was placed.
    pub name: String,
    pub quantity: i32,
    /// The price when the order was placed.
    pub unit_price: Money,
}

/// An order with its lines, without the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderDetail {
    pub id: String,
    pub status: OrderStatus,
    pub items: Vec<OrderItem>,
    pub total: Money,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    /// Set when staff ship the order.
    pub shipment: Option<Shipment>,
}

/// How an order travels: what the staff typed when they shipped it, shown to the customer's app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipment {
    pub carrier: String,
    pub tracking_number: String,
}

/// Everything about an order but its lines and its address: what a webhook or a staff action decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderSummary {
    pub id: String,
    pub customer_id: String,
    pub status: OrderStatus,
    pub total: Money,
    pub item_count: i32,
    pub payment_provider: String,
    pub payment_id: Option<String>,
    pub payment_review: bool,
    pub needs_refund: bool,
    pub expires_at: NaiveDateTime,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// A shipping address as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressRead {
    Address(ShippingAddress),
    /// The customer was erased: their data key is gone, and so is the address.
    Erased,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = orders)]
struct SummaryRow {
    id: String,
    customer_id: String,
    status: String,
    total_amount: i64,
    currency: String,
    item_count: i32,
    payment_provider: String,
    payment_id: Option<String>,
    payment_review: bool,
    needs_refund: bool,
    expires_at: NaiveDateTime,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl SummaryRow {
    fn into_summary(self) -> AppResult<OrderSummary> {
        Ok(OrderSummary {
            status: OrderStatus::from_stored(&self.status)?,
            id: self.id,
            customer_id: self.customer_id,
            total: Money::new(self.total_amount, self.currency),
            item_count: self.item_count,
            payment_provider: self.payment_provider,
            payment_id: self.payment_id,
            payment_review: self.payment_review,
            needs_refund: self.needs_refund,
            expires_at: self.expires_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// An order's summary; `NotFound` when there is none.
pub fn summary(conn: &mut DbConnection, order_id: &str) -> AppResult<OrderSummary> {
    orders::table
        .find(order_id)
        .select(SummaryRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(AppError::NotFound)?
        .into_summary()
}

/// `NotFound` unless the order exists and is the customer's.
pub fn ensure_owner(conn: &mut DbConnection, order_id: &str, customer_id: &str) -> AppResult<()> {
    let owner: Option<String> = orders::table
        .find(order_id)
        .select(orders::customer_id)
        .first(conn)
        .optional()?;
    match owner {
        Some(owner) if owner == customer_id => Ok(()),
        _ => Err(AppError::NotFound),
    }
}

/// The order a payment belongs to, by the provider's payment id.
pub fn find_by_payment_id(
    conn: &mut DbConnection,
    payment_id: &str,
) -> AppResult<Option<OrderSummary>> {
    orders::table
        .filter(orders::payment_id.eq(payment_id))
        .select(SummaryRow::as_select())
        .first(conn)
        .optional()?
        .map(SummaryRow::into_summary)
        .transpose()
}

/// A customer's orders, newest first, before the cursor (ids are UUIDv7: a new order sorts before every page
/// already handed out, so paging on never skips or repeats one while orders are being added).
pub fn list_for_customer(
    conn: &mut DbConnection,
    customer_id: &str,
    before: Option<&str>,
    limit: i64,
) -> AppResult<Page<OrderLine>> {
    let mut query = orders::table
        .filter(orders::customer_id.eq(customer_id))
        .select((
            orders::id,
            orders::status,
            orders::total_amount,
            orders::currency,
            orders::item_count,
            orders::created_at,
        ))
        .order(orders::id.desc())
        .limit(limit + 1)
        .into_boxed();
    if let Some(before) = before {
        query = query.filter(orders::id.lt(before.to_owned()));
    }
    let rows: Vec<(String, String, i64, String, i32, NaiveDateTime)> = query.load(conn)?;
    let lines = rows
        .into_iter()
        .map(|(id, status, amount, currency, item_count, created_at)| {
            Ok(OrderLine {
                id,
                status: OrderStatus::from_stored(&status)?,
                total: Money::new(amount, currency),
                item_count,
                created_at,
            })
        })
        .collect::<AppResult<Vec<_>>>()?;
    Ok(Page::of(lines, limit, |l| l.id.clone()))
}

crate::column_tuple! {
    /// The columns of an order's detail: the order, its customer, and one of its lines.
    DETAIL_COLUMNS = orders::id,
    orders::customer_id,
    orders::status,
    orders::total_amount,
    orders::currency,
    orders::created_at,
    orders::updated_at,
    orders::carrier,
    orders::tracking_number,
    order_items::product_id,
    order_items::name,
    order_items::quantity,
    order_items::unit_price,
}

type DetailRow = (
    String,
    String,
    String,
    i64,
    String,
    NaiveDateTime,
    NaiveDateTime,
    Option<String>,
    Option<String>,
    String,
    String,
    i32,
    i64,
);

/// An order with its lines; `NotFound` when it does not exist or, with `customer_id`, is someone else's.
pub fn detail(
    conn: &mut DbConnection,
    order_id: &str,
    customer_id: Option<&str>,
) -> AppResult<OrderDetail> {
    match details(conn, &[order_id])?.remove(order_id) {
        Some((owner, detail)) if customer_id.is_none_or(|c| c == owner) => Ok(detail),
        _ => Err(AppError::NotFound),
    }
}

/// Several orders with their lines, each with its customer, in one query; an id without an order is left
/// out (the batched reads of `orders::detail_reads`).
pub fn details(
    conn: &mut DbConnection,
    order_ids: &[&str],
) -> AppResult<HashMap<String, (String, OrderDetail)>> {
    // The lines are filtered by the ids too, although the join implies it, so that both tables are looked up
    // by key.
    let rows: Vec<DetailRow> = orders::table
        .inner_join(order_items::table)
        .filter(orders::id.eq_any(order_ids))
        .filter(order_items::order_id.eq_any(order_ids))
        .select(DETAIL_COLUMNS)
        .order((orders::id, order_items::line))
        .load(conn)?;
    let mut found = HashMap::new();
    let mut rows = rows.into_iter().peekable();
    while let Some(first) = rows.next() {
        let mut one = vec![first];
        while let Some(next) = rows.next_if(|r| r.0 == one[0].0) {
            one.push(next);
        }
        if let Some((customer_id, detail)) = detail_of(one) {
            let detail = detail?;
            found.insert(detail.id.clone(), (customer_id, detail));
        }
    }
    Ok(found)
}

/// The detail of one order from its rows (one a line, in line order), and its customer; `None` without rows.
fn detail_of(rows: Vec<DetailRow>) -> Option<(String, AppResult<OrderDetail>)> {
    let (id, customer_id, status, amount, currency, created_at, updated_at, carrier, tracking, ..) =
        rows.first().cloned()?;
    let items = rows
        .into_iter()
        .map(|(.., product_id, name, quantity, price)| OrderItem {
            product_id,
            name,
            quantity,
            unit_price: Money::new(price, currency.clone()),
        })
        .collect();
    let detail = OrderStatus::from_stored(&status).map(|status| OrderDetail {
        status,
        id,
        items,
        total: Money::new(amount, currency),
        created_at,
        updated_at,
        shipment: carrier
            .zip(tracking)
            .map(|(carrier, tracking_number)| Shipment {
                carrier,
                tracking_number,
            }),
    });
    Some((customer_id, detail))
}

/// One of a customer's orders as their data export shows it.
#[derive(Debug, Clone)]
pub struct ExportedOrder {
    pub detail: OrderDetail,
    pub shipping_address: AddressRead,
    pub history: Vec<super::state::OrderEvent>,
}

/// Every order of `customer_id`, oldest first, with its lines, its shipping address opened and its status
/// history: what the customer's data export holds of orders.
pub fn all_of_customer(
    conn: &mut DbConnection,
    vault: &Vault,
    customer_id: &str,
) -> AppResult<Vec<ExportedOrder>> {
    let ids: Vec<String> = orders::table
        .filter(orders::customer_id.eq(customer_id))
        .order((orders::created_at, orders::id))
        .select(orders::id)
        .load(conn)?;
    ids.iter()
        .map(|id| {
            Ok(ExportedOrder {
                detail: detail(conn, id, Some(customer_id))?,
                shipping_address: shipping_address(conn, vault, id, Some(customer_id))?,
                history: super::state::events(conn, id)?,
            })
        })
        .collect()
}

/// Opens an order's shipping address; `NotFound` when the order does not exist or, with `customer_id`, is
/// someone else's. Staff reveal it through here too (and audit it).
pub fn shipping_address(
    conn: &mut DbConnection,
    vault: &Vault,
    order_id: &str,
    customer_id: Option<&str>,
) -> AppResult<AddressRead> {
    let mut query = orders::table
        .filter(orders::id.eq(order_id))
        .select((orders::customer_id, orders::shipping_address))
        .into_boxed();
    if let Some(customer_id) = customer_id {
        query = query.filter(orders::customer_id.eq(customer_id.to_owned()));
    }
    let (owner, sealed): (String, Vec<u8>) =
        query.first(conn).optional()?.ok_or(AppError::NotFound)?;
    let field = Field {
        table: "orders",
        column: "shipping_address",
        row_id: order_id,
    };
    match vault.open(conn, &owner, field, &sealed)? {
        Opened::Erased => Ok(AddressRead::Erased),
        Opened::Value(text) => ShippingAddress::from_sealed(text.expose())
            .map(AddressRead::Address)
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("a stored address does not parse"))),
    }
}
