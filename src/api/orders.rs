//! `/v1/orders`: placing an order (idempotent, with the `Idempotency-Key` header), the customer's own orders,
//! one order without its address, the address on its own request, and cancelling while unpaid.
//! Every response carries `Cache-Control: no-store`.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue};
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::no_store;
use super::authn::CustomerAuth;
use super::json::ApiJson;
use super::products::{MoneyView, PageQuery, paged};
use crate::domain::{Sensitive, ShippingAddress};
use crate::error::{AppError, AppResult, Problem};
use crate::orders::{
    AddressRead, IdempotencyKey, NewOrder, OrderDetail, OrderLine, PlacedOrder, StoredResponse,
};
use crate::state::AppState;

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set on a response that replays the first response to the same key.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The `Idempotency-Key` header, validated (400 when missing or malformed).
pub struct IdempotencyKeyHeader(pub IdempotencyKey);

impl FromRequest for IdempotencyKeyHeader {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let mut values = req.headers().get_all(IDEMPOTENCY_KEY);
        let first = values.next();
        let parsed = if values.next().is_some() {
            Err(Problem::bad_request(
                "invalid_idempotency_key",
                "Send one Idempotency-Key header.",
            ))
        } else {
            match first.map(|v| v.to_str()) {
                Some(Err(_)) => Err(Problem::bad_request(
                    "invalid_idempotency_key",
                    "The Idempotency-Key must be 1 to 255 visible ASCII characters.",
                )),
                Some(Ok(text)) => IdempotencyKey::parse(Some(text)),
                None => IdempotencyKey::parse(None),
            }
        };
        ready(parsed.map(Self).map_err(AppError::from))
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLineRequest {
    product_id: String,
    /// 1 to 99.
    quantity: i64,
}

/// A shipping address; each field at most 200 characters.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressRequest {
    #[schema(value_type = String)]
    name: Sensitive<String>,
    #[schema(value_type = String)]
    line1: Sensitive<String>,
    #[schema(value_type = Option<String>)]
    line2: Option<Sensitive<String>>,
    #[schema(value_type = String)]
    city: Sensitive<String>,
    #[schema(value_type = String)]
    postal_code: Sensitive<String>,
    /// ISO 3166-1 alpha-2, like `GB`.
    #[schema(value_type = String, example = "GB")]
    country: Sensitive<String>,
}

/// An order: 1 to 50 lines of distinct products. Prices are never sent: they come from the catalogue, and
/// an unknown field (`price`, `unit_price`, `total`, …) is refused with 422.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"items": [{"product_id": "0193a0b2-7c3d-7e4f-8a5b-6c7d8e9f0a1b", "quantity": 2}],
    "shipping_address": {"name": "Ada Lovelace", "line1": "12 St James's Square", "city": "London",
        "postal_code": "SW1Y 4JH", "country": "GB"}}))]
pub struct PlaceOrderRequest {
    items: Vec<OrderLineRequest>,
    shipping_address: AddressRequest,
}

impl PlaceOrderRequest {
    fn into_order(self) -> AppResult<NewOrder> {
        let a = self.shipping_address;
        let address = ShippingAddress::parse(
            a.name.into_inner(),
            a.line1.into_inner(),
            a.line2.map(Sensitive::into_inner),
            a.city.into_inner(),
            a.postal_code.into_inner(),
            a.country.into_inner(),
        )
        .map_err(|e| {
            let code = if e.field == "country" {
                "invalid_country"
            } else {
                "invalid_address"
            };
            Problem::invalid(code, format!("shipping_address.{}", e.field), e.to_string())
        })?;
        let lines = self
            .items
            .into_iter()
            .map(|l| (l.product_id, l.quantity))
            .collect();
        Ok(NewOrder::new(lines, address)?)
    }
}

#[derive(Serialize, ToSchema)]
pub struct PaymentView {
    /// `sandbox` or `stripe`.
    provider: &'static str,
    /// The provider's payment id (`pi_…`, `sbx_…`).
    payment_id: String,
    /// For the provider's SDK in the app; keep it in memory only.
    client_secret: String,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "0193a6f3-1111-7000-8000-000000000001", "status": "pending_payment",
    "total": {"amount": 900, "currency": "EUR"}, "expires_at": "2026-12-07T18:30:00Z",
    "payment": {"provider": "sandbox", "payment_id": "sbx_0193a6f3", "client_secret": "sbx_0193a6f3_secret_…"}}))]
pub struct PlacedOrderView {
    id: String,
    /// `pending_payment` until the provider confirms the payment.
    status: &'static str,
    total: MoneyView,
    /// When an unpaid order gives its stock back and becomes `expired`.
    expires_at: chrono::DateTime<chrono::Utc>,
    payment: PaymentView,
}

fn render(placed: &PlacedOrder) -> Vec<u8> {
    let view = PlacedOrderView {
        id: placed.id.clone(),
        status: placed.status.as_str(),
        total: placed.total.clone().into(),
        expires_at: placed.expires_at.and_utc(),
        payment: PaymentView {
            provider: placed.provider,
            payment_id: placed.payment.payment_id.clone(),
            client_secret: placed.payment.client_secret.expose().clone(),
        },
    };
    serde_json::to_vec(&view).expect("a placed order serialises")
}

#[derive(Serialize, ToSchema)]
pub struct OrderLineView {
    id: String,
    status: &'static str,
    total: MoneyView,
    /// The number of items (the sum of the quantities).
    item_count: i32,
    created_at: chrono::DateTime<chrono::Utc>,
}

impl From<OrderLine> for OrderLineView {
    fn from(l: OrderLine) -> Self {
        Self {
            id: l.id,
            status: l.status.as_str(),
            total: l.total.into(),
            item_count: l.item_count,
            created_at: l.created_at.and_utc(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct OrderPage {
    items: Vec<OrderLineView>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct OrderItemView {
    product_id: String,
    name: String,
    quantity: i32,
    unit_price: MoneyView,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "0193a6f3-1111-7000-8000-000000000001", "status": "paid",
    "items": [{"product_id": "0193a0b2-7c3d-7e4f-8a5b-6c7d8e9f0a1b", "name": "Green tea", "quantity": 2,
        "unit_price": {"amount": 450, "currency": "EUR"}}],
    "total": {"amount": 900, "currency": "EUR"}, "created_at": "2026-12-07T18:00:00Z",
    "updated_at": "2026-12-07T18:01:12Z"}))]
pub struct OrderDetailView {
    id: String,
    status: &'static str,
    items: Vec<OrderItemView>,
    total: MoneyView,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
    /// The carrier and tracking number, once the order is shipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    shipment: Option<ShipmentView>,
}

#[derive(Serialize, ToSchema)]
pub struct ShipmentView {
    carrier: String,
    tracking_number: String,
}

impl From<crate::orders::read::Shipment> for ShipmentView {
    fn from(s: crate::orders::read::Shipment) -> Self {
        Self {
            carrier: s.carrier,
            tracking_number: s.tracking_number,
        }
    }
}

impl From<OrderDetail> for OrderDetailView {
    fn from(d: OrderDetail) -> Self {
        Self {
            id: d.id,
            status: d.status.as_str(),
            items: d
                .items
                .into_iter()
                .map(|i| OrderItemView {
                    product_id: i.product_id,
                    name: i.name,
                    quantity: i.quantity,
                    unit_price: i.unit_price.into(),
                })
                .collect(),
            total: d.total.into(),
            created_at: d.created_at.and_utc(),
            updated_at: d.updated_at.and_utc(),
            shipment: d.shipment.map(ShipmentView::from),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AddressView {
    name: String,
    line1: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    line2: Option<String>,
    city: String,
    postal_code: String,
    country: String,
}

impl From<ShippingAddress> for AddressView {
    fn from(a: ShippingAddress) -> Self {
        Self {
            name: a.name,
            line1: a.line1,
            line2: a.line2,
            city: a.city,
            postal_code: a.postal_code,
            country: a.country,
        }
    }
}

fn stored(response: StoredResponse) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(response.status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut builder = HttpResponse::build(status);
    builder
        .insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")))
        .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store")));
    if response.replayed {
        builder.insert_header((IDEMPOTENT_REPLAYED, HeaderValue::from_static("true")));
    }
    builder.body(response.body)
}

/// Place an order. Prices come from the catalogue; the stock is reserved until the order is paid or expires.
/// The same `Idempotency-Key` with the same body returns the first response again, byte for byte (with
/// `Idempotent-Replayed: true`).
#[utoipa::path(post, path = "/v1/orders", operation_id = "placeOrder", tag = "orders", request_body = PlaceOrderRequest,
    params(("Idempotency-Key" = String, Header, description = "1 to 255 characters; a fresh UUID per order")),
    responses(
        (status = 201, description = "The order, its stock reserved, with its payment", body = PlacedOrderView),
        (status = 400, description = "idempotency_key_required, invalid_idempotency_key, malformed_json"),
        (status = 409, description = "out_of_stock, idempotency_in_progress, order_closed"),
        (status = 422, description = "invalid_field, invalid_items, invalid_quantity, duplicate_product, unknown_product, invalid_address, invalid_country, idempotency_key_reused"),
        (status = 502, description = "payment_provider_unavailable: the order is kept; retry with the same key")),
    security(("bearer" = [])))]
pub async fn place(
    state: web::Data<AppState>,
    who: CustomerAuth,
    key: IdempotencyKeyHeader,
    body: ApiJson<PlaceOrderRequest>,
) -> AppResult<HttpResponse> {
    let order = body.0.into_order()?;
    let response = state
        .orders
        .place(&who.customer_id, key.0, order, render)
        .await?;
    Ok(stored(response))
}

/// The customer's own orders, newest first.
#[utoipa::path(get, path = "/v1/orders", operation_id = "listOrders", tag = "orders", params(PageQuery),
    responses((status = 200, description = "A page of the customer's orders, newest first", body = OrderPage), (status = 422, description = "invalid_limit, invalid_cursor")),
    security(("bearer" = [])))]
pub async fn list(
    state: web::Data<AppState>,
    who: CustomerAuth,
    query: web::Query<PageQuery>,
) -> AppResult<HttpResponse> {
    let page = state.orders.list(&who.customer_id, query.page()?).await?;
    let (items, next_cursor) = paged(page, OrderLineView::from);
    Ok(no_store(
        HttpResponse::Ok().json(OrderPage { items, next_cursor }),
    ))
}

/// One of the customer's orders, without its address. Anyone else's order is a 404.
#[utoipa::path(get, path = "/v1/orders/{id}", operation_id = "getOrder", tag = "orders",
    params(("id" = String, Path, description = "The order's id")),
    responses((status = 200, description = "The order", body = OrderDetailView), (status = 404, description = "not_found")),
    security(("bearer" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    who: CustomerAuth,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    let detail = state.orders.detail(&who.customer_id, &id).await?;
    Ok(no_store(
        HttpResponse::Ok().json(OrderDetailView::from(detail)),
    ))
}

/// The shipping address of one of the customer's orders, on its own request.
#[utoipa::path(get, path = "/v1/orders/{id}/shipping-address", operation_id = "getOrderShippingAddress", tag = "orders",
    params(("id" = String, Path, description = "The order's id")),
    responses((status = 200, description = "The order's shipping address", body = AddressView),
        (status = 404, description = "not_found; address_erased when the customer was erased")),
    security(("bearer" = [])))]
pub async fn shipping_address(
    state: web::Data<AppState>,
    who: CustomerAuth,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    match state.orders.shipping_address(&who.customer_id, &id).await? {
        AddressRead::Address(a) => Ok(no_store(HttpResponse::Ok().json(AddressView::from(a)))),
        AddressRead::Erased => Err(address_erased()),
    }
}

pub fn address_erased() -> AppError {
    Problem::new(
        404,
        "address_erased",
        "Not found",
        "This order's address was erased with its customer's personal data.",
    )
    .into()
}

/// Cancel one of the customer's orders while it is `pending_payment`; its stock is given back.
#[utoipa::path(post, path = "/v1/orders/{id}/cancel", operation_id = "cancelOrder", tag = "orders",
    params(("id" = String, Path, description = "The order's id")),
    responses((status = 200, description = "The order, cancelled, its stock back", body = OrderDetailView), (status = 404, description = "not_found"),
        (status = 409, description = "invalid_transition: the order is no longer pending_payment")),
    security(("bearer" = [])))]
pub async fn cancel(
    state: web::Data<AppState>,
    who: CustomerAuth,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    let detail = state.orders.cancel(&who.customer_id, &id).await?;
    Ok(no_store(
        HttpResponse::Ok().json(OrderDetailView::from(detail)),
    ))
}
