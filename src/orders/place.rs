//! Placing an order: `POST /v1/orders`.
//!
//! 1. Claim the Idempotency-Key (a replay or a reuse ends here).
//! 2. In the same write transaction: read the products' prices (prices come only from the database), reserve
//!    the stock of each line with a conditional decrement (`stock = stock - n WHERE stock >= n AND active`,
//!    never read-then-write), seal the shipping address under the customer's data key, insert the order, its
//!    lines and its first event. Anything refused here rolls back whole, the claim with it: the key is
//!    forgotten. (On SQLite the transaction is a job of the writer thread: see `db::sqlite_writer`.)
//! 3. Create the payment with the provider, outside any transaction (a network call never holds a lock).
//! 4. Store the payment id on the order and the response under the key, in one transaction.
//!
//! When the provider fails at step 3, the order stays `pending_payment` with its stock held, the claim is
//! released, and the answer is 502 `payment_provider_unavailable`. The same request again (same key, same body)
//! resumes at step 3 with the same order, and the provider's own idempotency (the order id) makes it the same
//! payment. An order whose client gives up expires after `ORDER_PAYMENT_TTL` like any unpaid order, giving its
//! stock back.

use std::collections::HashSet;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::idempotency::{self, Claim, Held, IdempotencyKey, OrderPayment, StoredResponse};
use super::state::{Actor, OrderStatus, record_event};
use super::{Orders, now};
use crate::crypto::IndexKind;
use crate::db::DbConnection;
use crate::db::schema::{customers, order_items, orders, products};
use crate::domain::{Money, ShippingAddress};
use crate::error::{AppError, AppResult, Problem};
use crate::payments::{Payment, PaymentError, PaymentRequest};
use crate::vault::Field;

pub const MAX_LINES: usize = 50;
pub const MAX_QUANTITY: i64 = 99;

/// One line of a new order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLine {
    pub product_id: String,
    pub quantity: i32,
}

/// A validated order request: 1 to 50 lines of distinct products, each 1 to 99, and an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    lines: Vec<NewLine>,
    address: ShippingAddress,
}

impl NewOrder {
    /// Validates the lines; the problem names the field at fault (`items[2].quantity`).
    pub fn new(lines: Vec<(String, i64)>, address: ShippingAddress) -> Result<Self, Problem> {
        if lines.is_empty() || lines.len() > MAX_LINES {
            return Err(Problem::invalid(
                "invalid_items",
                "items",
                format!("An order has 1 to {MAX_LINES} lines."),
            ));
        }
        let mut seen = HashSet::new();
        let mut valid = Vec::with_capacity(lines.len());
        for (i, (product_id, quantity)) in lines.into_iter().enumerate() {
            if !(1..=MAX_QUANTITY).contains(&quantity) {
                return Err(Problem::invalid(
                    "invalid_quantity",
                    format!("items[{i}].quantity"),
                    format!("A quantity is a whole number from 1 to {MAX_QUANTITY}."),
                ));
            }
            let Ok(id) = uuid::Uuid::parse_str(&product_id) else {
                return Err(unknown_product(i));
            };
            let product_id = id.hyphenated().to_string();
            if !seen.insert(product_id.clone()) {
                return Err(Problem::invalid(
                    "duplicate_product",
                    format!("items[{i}].product_id"),
                    "Each product appears on one line; add up the quantities instead.",
                ));
            }
            valid.push(NewLine {
                product_id,
                quantity: i32::try_from(quantity).expect("at most 99"),
            });
        }
        Ok(Self {
            lines: valid,
            address,
        })
    }

    pub fn lines(&self) -> &[NewLine] {
        &self.lines
    }

    /// The request in one canonical text: equal requests, however their JSON was laid out, give equal text.
    fn canonical(&self) -> String {
        let lines: Vec<(&str, i32)> = self
            .lines
            .iter()
            .map(|l| (l.product_id.as_str(), l.quantity))
            .collect();
        serde_json::to_string(&(lines, &self.address)).expect("a request serialises")
    }
}

fn unknown_product(line: usize) -> Problem {
    Problem::invalid(
        "unknown_product",
        format!("items[{line}].product_id"),
        "This product does not exist or is not for sale.",
    )
}

/// What the response of a placed order says.
#[derive(Debug, Clone)]
pub struct PlacedOrder {
    pub id: String,
    pub status: OrderStatus,
    pub total: Money,
    pub expires_at: NaiveDateTime,
    pub provider: &'static str,
    pub payment: Payment,
}

/// Renders the response body of a placed order (the wire form belongs to the API). Its bytes are stored and
/// replayed as they are.
pub type Render = fn(&PlacedOrder) -> Vec<u8>;

/// An order as step 2 left it (or as a resumed request finds it).
#[derive(Debug, Clone)]
struct Made {
    id: String,
    status: OrderStatus,
    total: Money,
    expires_at: NaiveDateTime,
}

enum Step {
    Done(StoredResponse),
    Pay(Held, Made),
}

fn payment_unavailable() -> AppError {
    Problem::new(
        502,
        "payment_provider_unavailable",
        "Bad gateway",
        "The payment could not be set up. Your order is kept: send the same request again with the same \
         Idempotency-Key to finish it.",
    )
    .into()
}

impl Orders {
    /// Places an order for `customer_id` (see the module's documentation), idempotently under `key`. The answer is
    /// the response to send: the first one, or the stored one again for a replay.
    pub async fn place(
        &self,
        customer_id: &str,
        key: IdempotencyKey,
        order: NewOrder,
        render: Render,
    ) -> AppResult<StoredResponse> {
        let key_hash = key.digest();
        let request_hash = self
            .vault
            .blind_index(IndexKind::OrderRequest, &order.canonical());
        let this = self.clone();
        let customer = customer_id.to_owned();
        // The claim and the order in one transaction: a refused order (unknown product, out of stock) rolls
        // the claim back with it, leaving no trace.
        let step = self
            .db
            .write(move |conn| -> AppResult<Step> {
                let now = now();
                let (held, resumed) = match idempotency::claim(
                    conn,
                    &this.vault,
                    &customer,
                    &key_hash,
                    &request_hash,
                    now,
                )? {
                    Claim::Replay(stored) => return Ok(Step::Done(stored)),
                    Claim::Fresh(held) => (held, false),
                    Claim::Resumed(held) => (held, true),
                };
                if resumed && let Some(made) = made_under(conn, &held.key_id)? {
                    return Ok(Step::Pay(held, made));
                }
                let made = this.create(conn, &customer, &held, &order, now)?;
                Ok(Step::Pay(held, made))
            })
            .await?;
        let (held, made) = match step {
            Step::Done(stored) => return Ok(stored),
            Step::Pay(held, made) => (held, made),
        };
        if matches!(made.status, OrderStatus::Cancelled | OrderStatus::Expired) {
            self.release(held).await;
            return Err(Problem::conflict(
                "order_closed",
                format!(
                    "The order made with this Idempotency-Key is {} and cannot be paid; place a new order with a \
                     new key.",
                    made.status
                ),
            )
            .into());
        }
        let request = PaymentRequest {
            order_id: made.id.clone(),
            amount: made.total.amount,
            currency: made.total.currency.clone(),
        };
        let payment = match self.payments.create_payment(&request).await {
            Ok(payment) => payment,
            Err(e) => {
                match &e {
                    PaymentError::Unavailable(why) => {
                        tracing::warn!(order_id = %made.id, reason = %why, "payment not created; the order waits for a retry")
                    }
                    PaymentError::Refused(why) => {
                        tracing::error!(order_id = %made.id, reason = %why, "payment refused by the provider; the order waits for a retry")
                    }
                }
                self.release(held).await;
                return Err(payment_unavailable());
            }
        };
        let placed = PlacedOrder {
            id: made.id,
            status: made.status,
            total: made.total,
            expires_at: made.expires_at,
            provider: self.payments.name(),
            payment,
        };
        let body = render(&placed);
        let this = self.clone();
        let customer = customer_id.to_owned();
        let (order_id, payment_id) = (placed.id.clone(), placed.payment.payment_id.clone());
        let stored_body = body.clone();
        let stored = self
            .db
            .write(move |conn| -> AppResult<bool> {
                let payment = OrderPayment {
                    order_id: &order_id,
                    payment_id: &payment_id,
                };
                idempotency::finish(
                    conn,
                    &this.vault,
                    &customer,
                    &held,
                    payment,
                    201,
                    &stored_body,
                )
            })
            .await?;
        if !stored {
            tracing::warn!(order_id = %placed.id, "idempotency claim lost before the response was stored");
        }
        tracing::info!(
            order_id = %placed.id,
            amount = placed.total.amount,
            currency = %placed.total.currency,
            "order placed"
        );
        Ok(StoredResponse {
            status: 201,
            body,
            replayed: false,
        })
    }

    async fn release(&self, held: Held) {
        let released = self
            .db
            .run(move |conn| -> AppResult<()> { Ok(idempotency::release(conn, &held)?) })
            .await;
        if let Err(e) = released {
            // The lease runs out on its own.
            tracing::warn!(error = %e, "cannot release an idempotency claim");
        }
    }

    /// Step 2, inside a write transaction.
    fn create(
        &self,
        conn: &mut DbConnection,
        customer_id: &str,
        held: &Held,
        order: &NewOrder,
        now: NaiveDateTime,
    ) -> AppResult<Made> {
        // An account made by a platform sign-in has no phone until the customer verifies one.
        let has_phone: bool = customers::table
            .find(customer_id)
            .select(customers::phone_index.is_not_null())
            .first(conn)?;
        if !has_phone {
            return Err(Problem::new(
                403,
                "phone_verification_required",
                "Forbidden",
                "Verify a phone (POST /v1/me/phone) before placing an order.",
            )
            .into());
        }
        let ids: Vec<&str> = order.lines.iter().map(|l| l.product_id.as_str()).collect();
        let found: Vec<(String, String, i64, String)> = products::table
            .filter(products::id.eq_any(&ids))
            .filter(products::active.eq(true))
            .select((
                products::id,
                products::name,
                products::price,
                products::currency,
            ))
            .load(conn)?;
        let mut priced = Vec::with_capacity(order.lines.len());
        for (i, line) in order.lines.iter().enumerate() {
            let (_, name, price, currency) = found
                .iter()
                .find(|p| p.0 == line.product_id)
                .ok_or_else(|| unknown_product(i))?;
            if *currency != self.currency {
                return Err(unknown_product(i).into());
            }
            priced.push((i, line, name.clone(), *price));
        }

        // Reserve, in product id order so that two orders never wait on each other's rows in a cycle.
        let mut by_id: Vec<_> = priced.iter().collect();
        by_id.sort_by(|a, b| a.1.product_id.cmp(&b.1.product_id));
        for (i, line, name, _) in by_id {
            let reserved = diesel::update(
                products::table
                    .filter(products::id.eq(&line.product_id))
                    .filter(products::stock.ge(line.quantity))
                    .filter(products::active.eq(true)),
            )
            .set(products::stock.eq(products::stock - line.quantity))
            .execute(conn)?;
            if reserved == 0 {
                return Err(Problem {
                    field: Some(format!("items[{i}].product_id")),
                    ..Problem::conflict(
                        "out_of_stock",
                        format!(
                            "Not enough stock of “{name}” (product {}) for {} more.",
                            line.product_id, line.quantity
                        ),
                    )
                }
                .into());
            }
        }

        let too_large = || {
            AppError::from(Problem::invalid(
                "order_too_large",
                "items",
                "The order's total is too large.",
            ))
        };
        let mut total: i64 = 0;
        let mut item_count: i32 = 0;
        for (_, line, _, price) in &priced {
            let amount = price
                .checked_mul(i64::from(line.quantity))
                .ok_or_else(too_large)?;
            total = total.checked_add(amount).ok_or_else(too_large)?;
            item_count += line.quantity;
        }

        let id = uuid::Uuid::now_v7().to_string();
        let sealed = self.vault.seal(
            conn,
            customer_id,
            Field {
                table: "orders",
                column: "shipping_address",
                row_id: &id,
            },
            &order.address.to_sealable(),
        )?;
        let expires_at =
            now + chrono::Duration::from_std(self.payment_ttl).expect("at most 7 days");
        let status = OrderStatus::PendingPayment;
        let inserted = diesel::insert_into(orders::table)
            .values((
                orders::id.eq(&id),
                orders::customer_id.eq(customer_id),
                orders::status.eq(status.as_str()),
                orders::total_amount.eq(total),
                orders::currency.eq(&self.currency),
                orders::item_count.eq(item_count),
                orders::shipping_address.eq(&sealed),
                orders::payment_provider.eq(self.payments.name()),
                orders::idempotency_key_id.eq(Some(&held.key_id)),
                orders::expires_at.eq(expires_at),
                orders::created_at.eq(now),
                orders::updated_at.eq(now),
            ))
            .execute(conn);
        match inserted {
            Ok(_) => {}
            // Another request took this key over (its lease ran out) and made the order first.
            Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            )) => return Err(idempotency::in_progress()),
            Err(e) => return Err(e.into()),
        }
        insert_items(conn, &id, &priced)?;
        record_event(
            conn,
            &id,
            None,
            status,
            &Actor::Customer(customer_id.to_owned()),
            None,
            now,
        )?;
        Ok(Made {
            id,
            status,
            total: Money::new(total, self.currency.clone()),
            expires_at,
        })
    }
}

/// A priced line: its index in the request, the line, the product's name and unit price.
type Priced<'a> = (usize, &'a NewLine, String, i64);

/// The lines of order `id`, numbered from 1, in one multi-row insert.
fn insert_items(conn: &mut DbConnection, id: &str, priced: &[Priced<'_>]) -> QueryResult<()> {
    let rows: Vec<_> = priced
        .iter()
        .enumerate()
        .map(|(n, (_, line, name, price))| {
            (
                order_items::order_id.eq(id),
                order_items::line.eq(n as i32 + 1),
                order_items::product_id.eq(line.product_id.clone()),
                order_items::name.eq(name.clone()),
                order_items::unit_price.eq(*price),
                order_items::quantity.eq(line.quantity),
            )
        })
        .collect();
    // diesel writes a multi-row insert for each backend itself, not through the multi-backend connection.
    let insert = diesel::insert_into(order_items::table).values(rows);
    match conn {
        DbConnection::Sqlite(c) => insert.execute(c)?,
        DbConnection::Postgresql(c) => insert.execute(c)?,
    };
    Ok(())
}

/// The order an unfinished key made before, if any.
fn made_under(conn: &mut DbConnection, key_id: &str) -> AppResult<Option<Made>> {
    let row: Option<(String, String, i64, String, NaiveDateTime)> = orders::table
        .filter(orders::idempotency_key_id.eq(key_id))
        .select((
            orders::id,
            orders::status,
            orders::total_amount,
            orders::currency,
            orders::expires_at,
        ))
        .first(conn)
        .optional()?;
    row.map(|(id, status, amount, currency, expires_at)| {
        Ok(Made {
            id,
            status: OrderStatus::from_stored(&status)?,
            total: Money::new(amount, currency),
            expires_at,
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address() -> ShippingAddress {
        ShippingAddress::parse(
            "Ada".into(),
            "1 High St".into(),
            None,
            "Leeds".into(),
            "LS1".into(),
            "GB".into(),
        )
        .unwrap()
    }

    const P: &str = "0193a0b2-7c3d-7e4f-8a5b-6c7d8e9f0a1b";
    const Q: &str = "0193a0b2-7c3d-7e4f-8a5b-6c7d8e9f0a1c";

    #[test]
    fn lines_are_validated() {
        let code = |lines: Vec<(String, i64)>| NewOrder::new(lines, address()).unwrap_err();
        assert_eq!(code(vec![]).code, "invalid_items");
        assert_eq!(
            code((0..51).map(|_| (P.to_owned(), 1)).collect()).code,
            "invalid_items"
        );
        let e = code(vec![(P.into(), 1), (Q.into(), 100)]);
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("invalid_quantity", Some("items[1].quantity"))
        );
        assert_eq!(code(vec![(P.into(), 0)]).code, "invalid_quantity");
        assert_eq!(
            code(vec![(P.into(), 1), (P.into(), 2)]).code,
            "duplicate_product"
        );
        assert_eq!(code(vec![("p1".into(), 1)]).code, "unknown_product");
        assert!(NewOrder::new(vec![(P.into(), 99), (Q.into(), 1)], address()).is_ok());
    }

    #[test]
    fn the_canonical_form_ignores_layout_but_not_content() {
        let a = NewOrder::new(vec![(P.to_uppercase(), 2)], address()).unwrap();
        let b = NewOrder::new(vec![(P.into(), 2)], address()).unwrap();
        let c = NewOrder::new(vec![(P.into(), 3)], address()).unwrap();
        assert_eq!(a.canonical(), b.canonical());
        assert_ne!(b.canonical(), c.canonical());
    }
}
