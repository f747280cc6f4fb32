//! The catalogue: products with a price in minor units, a currency, a stock count and an active flag. Shared by
//! the product routes, order placement, `shopd products import` and (later) the staff's catalogue routes.

use diesel::prelude::*;

use super::{Page, now};
use crate::db::DbConnection;
use crate::db::schema::products;
use crate::domain::Money;
use crate::error::{AppError, AppResult};

/// The longest product name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// The highest price accepted, in minor units (ten billion units of the currency).
pub const MAX_PRICE: i64 = 1_000_000_000_000;
/// The most stock one product can hold.
pub const MAX_STOCK: i64 = 1_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: String,
    pub name: String,
    pub price: Money,
    pub stock: i32,
    pub active: bool,
}

impl Product {
    /// For sale and in stock.
    pub fn available(&self) -> bool {
        self.active && self.stock > 0
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = products)]
struct ProductRow {
    id: String,
    name: String,
    price: i64,
    currency: String,
    stock: i32,
    active: bool,
}

impl From<ProductRow> for Product {
    fn from(r: ProductRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            price: Money::new(r.price, r.currency),
            stock: r.stock,
            active: r.active,
        }
    }
}

/// A product to add, validated by `NewProduct::parse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct {
    pub name: String,
    pub price: i64,
    pub currency: String,
    pub stock: i32,
    pub active: bool,
}

impl NewProduct {
    /// Validates a product; the error names what is wrong, never in more than a short phrase. `currency`
    /// defaults to the shop's and must be it.
    pub fn parse(
        name: &str,
        price: i64,
        currency: Option<&str>,
        stock: i64,
        active: bool,
        shop_currency: &str,
    ) -> Result<Self, String> {
        let name = name.trim();
        if name.is_empty() {
            return Err("`name` is empty".into());
        }
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(format!("`name` is longer than {MAX_NAME_CHARS} characters"));
        }
        if name.chars().any(char::is_control) {
            return Err("`name` holds a control character".into());
        }
        if !(0..=MAX_PRICE).contains(&price) {
            return Err(format!(
                "`price` must be from 0 to {MAX_PRICE} (minor units)"
            ));
        }
        if !(0..=MAX_STOCK).contains(&stock) {
            return Err(format!("`stock` must be from 0 to {MAX_STOCK}"));
        }
        let currency = match currency.map(str::trim) {
            None | Some("") => shop_currency.to_owned(),
            Some(c) if c.eq_ignore_ascii_case(shop_currency) => shop_currency.to_owned(),
            Some(_) => {
                return Err(format!(
                    "`currency` must be the shop's currency, {shop_currency}"
                ));
            }
        };
        Ok(Self {
            name: name.to_owned(),
            price,
            currency,
            stock: i32::try_from(stock).map_err(|_| "`stock` is too large".to_owned())?,
            active,
        })
    }
}

/// Inserts products (in batches of 500 rows a statement) and returns their new ids, in order. Run it in a
/// transaction to make it all or nothing.
pub fn insert_products(
    conn: &mut DbConnection,
    new: &[NewProduct],
    mut progress: impl FnMut(usize),
) -> QueryResult<Vec<String>> {
    let at = now();
    let mut ids = Vec::with_capacity(new.len());
    for chunk in new.chunks(500) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|p| {
                let id = uuid::Uuid::now_v7().to_string();
                ids.push(id.clone());
                (
                    products::id.eq(id),
                    products::name.eq(p.name.clone()),
                    products::price.eq(p.price),
                    products::currency.eq(p.currency.clone()),
                    products::stock.eq(p.stock),
                    products::active.eq(p.active),
                    products::created_at.eq(at),
                    products::updated_at.eq(at),
                )
            })
            .collect();
        match conn {
            DbConnection::Sqlite(c) => diesel::insert_into(products::table)
                .values(rows)
                .execute(c)?,
            DbConnection::Postgresql(c) => diesel::insert_into(products::table)
                .values(rows)
                .execute(c)?,
        };
        progress(chunk.len());
    }
    Ok(ids)
}

/// Active products, in id order (ids are UUIDv7, so in order of creation), after the cursor.
pub fn list_active(
    conn: &mut DbConnection,
    after: Option<&str>,
    limit: i64,
) -> AppResult<Page<Product>> {
    list(conn, after, limit, true)
}

/// Every product, active or not, in id order after the cursor (the staff's list).
pub fn list_all(
    conn: &mut DbConnection,
    after: Option<&str>,
    limit: i64,
) -> AppResult<Page<Product>> {
    list(conn, after, limit, false)
}

fn list(
    conn: &mut DbConnection,
    after: Option<&str>,
    limit: i64,
    active_only: bool,
) -> AppResult<Page<Product>> {
    let mut query = products::table
        .select(ProductRow::as_select())
        .order(products::id)
        .limit(limit + 1)
        .into_boxed();
    if active_only {
        query = query.filter(products::active.eq(true));
    }
    if let Some(after) = after {
        query = query.filter(products::id.gt(after.to_owned()));
    }
    let rows: Vec<ProductRow> = query.load(conn)?;
    Ok(Page::of(
        rows.into_iter().map(Product::from).collect(),
        limit,
        |p| p.id.clone(),
    ))
}

/// An active product; an inactive or unknown one is `NotFound`.
pub fn get_active(conn: &mut DbConnection, id: &str) -> AppResult<Product> {
    products::table
        .find(id)
        .filter(products::active.eq(true))
        .select(ProductRow::as_select())
        .first(conn)
        .optional()?
        .map(Product::from)
        .ok_or(AppError::NotFound)
}

/// Any product, active or not (staff, tests).
pub fn get(conn: &mut DbConnection, id: &str) -> AppResult<Product> {
    products::table
        .find(id)
        .select(ProductRow::as_select())
        .first(conn)
        .optional()?
        .map(Product::from)
        .ok_or(AppError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_products_are_validated() {
        let ok = NewProduct::parse(" Tea ", 450, None, 3, true, "EUR").unwrap();
        assert_eq!((ok.name.as_str(), ok.currency.as_str()), ("Tea", "EUR"));
        assert_eq!(
            NewProduct::parse("Tea", 450, Some("eur"), 3, true, "EUR")
                .unwrap()
                .currency,
            "EUR"
        );
        for (name, price, currency, stock) in [
            ("", 1, None, 1),
            ("Tea", -1, None, 1),
            ("Tea", 1, Some("USD"), 1),
            ("Tea", 1, None, -1),
            ("Tea", 1, None, MAX_STOCK + 1),
            ("Tea", MAX_PRICE + 1, None, 1),
        ] {
            assert!(
                NewProduct::parse(name, price, currency, stock, true, "EUR").is_err(),
                "{name} {price} {currency:?} {stock}"
            );
        }
    }
}
