//! `/v1/products`: the catalogue, active products only. Public: no personal data, no token needed.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::domain::Money;
use crate::error::AppResult;
use crate::orders::{Page, PageRequest, Product};
use crate::state::AppState;

/// An amount in integer minor units (cents, pence) of an ISO 4217 currency.
#[derive(Serialize, ToSchema)]
pub struct MoneyView {
    #[schema(example = 1250)]
    amount: i64,
    #[schema(example = "EUR")]
    currency: String,
}

impl From<Money> for MoneyView {
    fn from(m: Money) -> Self {
        Self {
            amount: m.amount,
            currency: m.currency,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ProductView {
    id: String,
    name: String,
    price: MoneyView,
    /// For sale and in stock now.
    available: bool,
}

impl From<Product> for ProductView {
    fn from(p: Product) -> Self {
        Self {
            available: p.available(),
            id: p.id,
            name: p.name,
            price: p.price.into(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ProductPage {
    items: Vec<ProductView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// Cursor pagination: `cursor` is the `next_cursor` of the page before; `limit` is 1 to 100 (default 20).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    cursor: Option<String>,
    limit: Option<u32>,
}

impl PageQuery {
    pub fn page(&self) -> AppResult<PageRequest> {
        Ok(PageRequest::parse(self.cursor.as_deref(), self.limit)?)
    }
}

pub fn paged<T, V>(page: Page<T>, view: impl Fn(T) -> V) -> (Vec<V>, Option<String>) {
    (page.items.into_iter().map(view).collect(), page.next_cursor)
}

/// Active products, in the order they were added.
#[utoipa::path(get, path = "/v1/products", operation_id = "listProducts", tag = "catalogue", params(PageQuery), responses(
    (status = 200, description = "A page of the products for sale", body = ProductPage),
    (status = 422, description = "invalid_limit, invalid_cursor")))]
pub async fn list(
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> AppResult<HttpResponse> {
    let page = state.orders.products(query.page()?).await?;
    let (items, next_cursor) = paged(page, ProductView::from);
    Ok(HttpResponse::Ok().json(ProductPage { items, next_cursor }))
}

/// One active product.
#[utoipa::path(get, path = "/v1/products/{id}", operation_id = "getProduct", tag = "catalogue",
    params(("id" = String, Path, description = "The product's id")),
    responses((status = 200, description = "The product", body = ProductView), (status = 404, description = "not_found")))]
pub async fn get(state: web::Data<AppState>, id: web::Path<String>) -> AppResult<HttpResponse> {
    let product = state.orders.product(&id).await?;
    Ok(HttpResponse::Ok().json(ProductView::from(product)))
}
