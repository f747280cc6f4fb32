//! `/v1/staff/*`: staff login, the audit log and audited reveals. Every request first passes `guard`, built
//! from the security matrix (`staff::matrix`).

use std::future::{Ready, ready};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{RefreshRequest, TokenPair, no_store};
use super::authn::{bearer, user_agent};
use super::edge::client_ip;
use super::json::ApiJson;
use super::products::MoneyView;
use super::request_context::RequestId;
use crate::auth::claims::{self, Audience, Expectations};
use crate::domain::Sensitive;
use crate::error::{AppError, AppResult, Problem};
use crate::orders::{OrderFlag, OrderStatus};
use crate::staff::orders::{OrderFilter, ProductChange};
use crate::staff::{Role, matrix};
use crate::state::AppState;

/// A staff member, authenticated by the guard.
#[derive(Debug, Clone)]
pub struct StaffAuth {
    pub staff_id: String,
    pub session_id: String,
    pub role: Role,
}

impl FromRequest for StaffAuth {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(req.extensions().get::<StaffAuth>().cloned().ok_or_else(|| {
            Problem::unauthorized("invalid_token", "A staff access token is required.").into()
        }))
    }
}

async fn authenticate(req: &HttpRequest, state: &AppState) -> Result<StaffAuth, AppError> {
    let token = bearer(req)?;
    let tokens = &state.identity.tokens;
    let expect = Expectations {
        issuer: &tokens.issuer,
        audience: Audience::Staff,
        now: chrono::Utc::now().timestamp(),
    };
    let claims = claims::verify(&tokens.keys, token, &expect).map_err(|e| {
        AppError::from(Problem::unauthorized(
            "invalid_token",
            format!("The access token is not valid: {e}."),
        ))
    })?;
    let role = claims
        .role
        .as_deref()
        .and_then(Role::parse)
        .ok_or_else(|| {
            AppError::from(Problem::unauthorized(
                "invalid_token",
                "The token names no staff role.",
            ))
        })?;
    if !state
        .staff
        .session_is_live(&claims.sid, &claims.sub)
        .await?
    {
        return Err(
            Problem::unauthorized("session_ended", "The session has ended; log in again.").into(),
        );
    }
    Ok(StaffAuth {
        staff_id: claims.sub,
        session_id: claims.sid,
        role,
    })
}

/// The route guard of the staff scope: 401 without a valid staff token, 403 below the route's least role,
/// and a refusal for a route the matrix does not list.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let pattern = req.match_pattern().unwrap_or_default();
    let method = req.method().as_str().to_owned();
    let refuse = |req: ServiceRequest, error: AppError| {
        Ok(req
            .into_response(error.error_response())
            .map_into_right_body())
    };
    let Some(rule) = matrix::rule_for(&method, &pattern) else {
        if matrix::knows_path(&pattern) {
            return next
                .call(req)
                .await
                .map(ServiceResponse::map_into_left_body);
        }
        tracing::error!(route = %pattern, "a staff route is missing from the security matrix: refused");
        return refuse(req, AppError::NotFound);
    };
    if let Some(least) = rule.least {
        let state = req
            .app_data::<web::Data<AppState>>()
            .cloned()
            .ok_or_else(|| actix_web::error::ErrorInternalServerError("no state"))?;
        let who = match authenticate(req.request(), &state).await {
            Ok(who) => who,
            Err(e) => return refuse(req, e),
        };
        if who.role < least {
            return refuse(
                req,
                Problem::new(
                    403,
                    "forbidden",
                    "Forbidden",
                    format!("This needs the {least} role or above."),
                )
                .into(),
            );
        }
        req.extensions_mut().insert(who);
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

fn request_id(req: &HttpRequest) -> Option<String> {
    req.extensions().get::<RequestId>().map(|r| r.0.clone())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaffLoginRequest {
    email: String,
    #[schema(value_type = String)]
    password: Sensitive<String>,
    /// The second factor, once the member has one: six digits from the authenticator app, or a recovery code.
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    code: Option<Sensitive<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditEntryView {
    id: String,
    staff_id: String,
    action: String,
    target_kind: String,
    target_id: String,
    request_id: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Deserialize)]
pub struct AuditQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ContactView {
    customer_id: String,
    phone: Option<String>,
    name: Option<String>,
    email: Option<String>,
}

/// Staff login.
#[utoipa::path(post, path = "/v1/staff/auth/login", operation_id = "staffLogin", tag = "staff", request_body = StaffLoginRequest,
    responses((status = 200, description = "Signed in: a token pair", body = TokenPair),
        (status = 401, description = "invalid_credentials, second_factor_required, invalid_second_factor"),
        (status = 403, description = "second_factor_enrolment_required: set up a factor in the console at /staff/ first")))]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ApiJson<StaffLoginRequest>,
) -> AppResult<HttpResponse> {
    let b = body.0;
    let issued = state
        .staff
        .login(
            &b.email,
            b.password,
            b.code,
            client_ip(&req),
            user_agent(&req),
        )
        .await?;
    Ok(no_store(
        HttpResponse::Ok().json(TokenPair::from(issued, false)),
    ))
}

/// Staff token refresh.
#[utoipa::path(post, path = "/v1/staff/auth/refresh", operation_id = "staffRefreshTokens", tag = "staff", request_body = RefreshRequest,
    responses((status = 200, description = "A new token pair; the refresh token presented is spent", body = TokenPair), (status = 401, description = "invalid_refresh_token, session_ended, refresh_token_reused")))]
pub async fn refresh(
    state: web::Data<AppState>,
    body: ApiJson<RefreshRequest>,
) -> AppResult<HttpResponse> {
    let issued = state.staff.refresh(body.0.refresh_token).await?;
    Ok(no_store(
        HttpResponse::Ok().json(TokenPair::from(issued, false)),
    ))
}

/// Staff logout (this session).
#[utoipa::path(post, path = "/v1/staff/auth/logout", operation_id = "staffLogout", tag = "staff", responses((status = 204, description = "The session ended")), security(("bearer" = [])))]
pub async fn logout(state: web::Data<AppState>, who: StaffAuth) -> AppResult<HttpResponse> {
    state.staff.logout(&who.session_id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The audit log, newest first (admin).
#[utoipa::path(get, path = "/v1/staff/audit-log", operation_id = "listAuditLog", tag = "staff",
    params(("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, description = "A page of the audit log, newest first", body = [AuditEntryView])), security(("bearer" = [])))]
pub async fn audit_log(
    state: web::Data<AppState>,
    _who: StaffAuth,
    query: web::Query<AuditQuery>,
) -> AppResult<HttpResponse> {
    let limit = query.limit.unwrap_or(50).clamp(1, 200);
    let entries: Vec<AuditEntryView> = state
        .staff
        .audit_log(limit, query.cursor.clone())
        .await?
        .into_iter()
        .map(|e| AuditEntryView {
            id: e.id,
            staff_id: e.staff_id,
            action: e.action,
            target_kind: e.target_kind,
            target_id: e.target_id,
            request_id: e.request_id,
            created_at: e.created_at.and_utc(),
        })
        .collect();
    Ok(no_store(HttpResponse::Ok().json(entries)))
}

/// A customer's contact, decrypted (admin; audited).
#[utoipa::path(get, path = "/v1/staff/customers/{id}/contact", operation_id = "revealCustomerContact", tag = "staff",
    responses((status = 200, description = "The customer's contact, decrypted; the reveal is audited", body = ContactView), (status = 404, description = "not_found")), security(("bearer" = [])))]
pub async fn customer_contact(
    state: web::Data<AppState>,
    who: StaffAuth,
    req: HttpRequest,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    let c = state
        .staff
        .customer_contact(&who.staff_id, &id, request_id(&req))
        .await?;
    Ok(no_store(HttpResponse::Ok().json(ContactView {
        customer_id: c.customer_id,
        phone: c.phone.map(Sensitive::into_inner),
        name: c.name.map(Sensitive::into_inner),
        email: c.email.map(Sensitive::into_inner),
    })))
}

/// Erase a customer on their request (admin; audited).
#[utoipa::path(post, path = "/v1/staff/customers/{id}/erase", operation_id = "eraseCustomer", tag = "staff",
    responses((status = 204, description = "The customer is erased; audited"), (status = 404, description = "not_found")), security(("bearer" = [])))]
pub async fn customer_erase(
    state: web::Data<AppState>,
    who: StaffAuth,
    req: HttpRequest,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    state
        .staff
        .erase_customer(&state.identity, &who.staff_id, &id, request_id(&req))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
pub struct OrdersQuery {
    status: Option<String>,
    since: Option<chrono::DateTime<chrono::Utc>>,
    until: Option<chrono::DateTime<chrono::Utc>>,
    cursor: Option<String>,
    limit: Option<i64>,
    customer_phone: Option<String>,
    flag: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct StaffOrderLineView {
    id: String,
    customer_id: String,
    status: String,
    total: MoneyView,
    item_count: i32,
    payment_review: bool,
    needs_refund: bool,
    created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct StaffOrdersPage {
    items: Vec<StaffOrderLineView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct StaffItemView {
    product_id: String,
    name: String,
    quantity: i32,
    unit_price: MoneyView,
}

#[derive(Serialize, ToSchema)]
pub struct OrderEventView {
    from: Option<String>,
    to: String,
    actor_kind: String,
    actor_id: Option<String>,
    note: Option<String>,
    at: chrono::DateTime<chrono::Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct StaffOrderView {
    id: String,
    customer_id: String,
    status: String,
    items: Vec<StaffItemView>,
    total: MoneyView,
    payment_provider: String,
    payment_id: Option<String>,
    payment_review: bool,
    needs_refund: bool,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
    /// The carrier and tracking number, once shipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    shipment: Option<super::orders::ShipmentView>,
    history: Vec<OrderEventView>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionRequest {
    to: String,
    note: Option<String>,
    /// With `shipped`: the carrier, shown to the customer's app with the tracking number.
    carrier: Option<String>,
    /// With `shipped`: the carrier's tracking number.
    tracking_number: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClearFlagRequest {
    /// `payment_review` or `needs_refund`.
    flag: String,
}

fn parse_flag(name: &str, field: &'static str) -> AppResult<OrderFlag> {
    OrderFlag::parse(name).ok_or_else(|| {
        Problem::invalid(
            "invalid_flag",
            field,
            "A flag is `payment_review` or `needs_refund`.",
        )
        .into()
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductRequest {
    name: String,
    price: i64,
    stock: i64,
    #[serde(default = "yes")]
    active: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ProductPatch {
    name: Option<String>,
    price: Option<i64>,
    stock: Option<i64>,
    active: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct StaffProductView {
    id: String,
    name: String,
    price: MoneyView,
    stock: i32,
    active: bool,
}

fn parse_status(text: &str, field: &str) -> AppResult<OrderStatus> {
    OrderStatus::parse(text).ok_or_else(|| {
        Problem::invalid(
            "invalid_status",
            field.to_owned(),
            format!("`{text}` is not an order status."),
        )
        .into()
    })
}

/// Orders, newest first, a line each with no personal data (clerk); by customer phone (manager).
#[utoipa::path(get, path = "/v1/staff/orders", operation_id = "listStaffOrders", tag = "staff",
    params(("status" = Option<String>, Query), ("since" = Option<String>, Query), ("until" = Option<String>, Query),
        ("cursor" = Option<String>, Query), ("limit" = Option<i64>, Query), ("customer_phone" = Option<String>, Query),
        ("flag" = Option<String>, Query)),
    responses((status = 200, description = "A page of orders, newest first, with counts per status", body = StaffOrdersPage)), security(("bearer" = [])))]
pub async fn orders(
    state: web::Data<AppState>,
    who: StaffAuth,
    query: web::Query<OrdersQuery>,
) -> AppResult<HttpResponse> {
    let q = query.into_inner();
    let customer_phone = match q.customer_phone {
        Some(_) if who.role < Role::Manager => {
            return Err(Problem::new(
                403,
                "forbidden",
                "Forbidden",
                "A search by phone needs the manager role.",
            )
            .into());
        }
        Some(text) => Some(
            crate::domain::Phone::parse(&text)
                .map_err(|e| {
                    AppError::from(Problem::invalid(
                        "invalid_phone",
                        "customer_phone",
                        e.to_string(),
                    ))
                })?
                .e164()
                .to_owned(),
        ),
        None => None,
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(Problem::invalid("invalid_limit", "limit", "`limit` is from 1 to 100.").into());
    }
    let filter = OrderFilter {
        status: q
            .status
            .as_deref()
            .map(|s| parse_status(s, "status"))
            .transpose()?,
        since: q.since.map(|t| t.naive_utc()),
        until: q.until.map(|t| t.naive_utc()),
        cursor: q.cursor,
        limit,
        customer_phone,
        flag: q
            .flag
            .as_deref()
            .map(|f| parse_flag(f, "flag"))
            .transpose()?,
    };
    let lines = state.staff.orders(filter).await?;
    let next_cursor = (lines.len() as i64 == limit)
        .then(|| lines.last().map(|l| l.id.clone()))
        .flatten();
    let items = lines
        .into_iter()
        .map(|l| StaffOrderLineView {
            id: l.id,
            customer_id: l.customer_id,
            status: l.status,
            total: l.total.into(),
            item_count: l.item_count,
            payment_review: l.payment_review,
            needs_refund: l.needs_refund,
            created_at: l.created_at.and_utc(),
        })
        .collect();
    Ok(no_store(
        HttpResponse::Ok().json(StaffOrdersPage { items, next_cursor }),
    ))
}

/// An order with its items and status history (clerk).
#[utoipa::path(get, path = "/v1/staff/orders/{id}", operation_id = "getStaffOrder", tag = "staff",
    responses((status = 200, description = "The order with its payment and status history", body = StaffOrderView), (status = 404, description = "not_found")), security(("bearer" = [])))]
pub async fn order(
    state: web::Data<AppState>,
    _who: StaffAuth,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    let (summary, detail, events) = state.staff.order(&id).await?;
    Ok(no_store(
        HttpResponse::Ok().json(StaffOrderView {
            id: summary.id,
            customer_id: summary.customer_id,
            status: summary.status.as_str().to_owned(),
            items: detail
                .items
                .into_iter()
                .map(|i| StaffItemView {
                    product_id: i.product_id,
                    name: i.name,
                    quantity: i.quantity,
                    unit_price: i.unit_price.into(),
                })
                .collect(),
            total: summary.total.into(),
            payment_provider: summary.payment_provider,
            payment_id: summary.payment_id,
            payment_review: summary.payment_review,
            needs_refund: summary.needs_refund,
            created_at: summary.created_at.and_utc(),
            updated_at: summary.updated_at.and_utc(),
            shipment: detail.shipment.map(super::orders::ShipmentView::from),
            history: events
                .into_iter()
                .map(|e| OrderEventView {
                    from: e.from,
                    to: e.to,
                    actor_kind: e.actor_kind,
                    actor_id: e.actor_id,
                    note: e.note,
                    at: e.at.and_utc(),
                })
                .collect(),
        }),
    ))
}

/// Move an order on (clerk: fulfilling, shipped, delivered; manager: cancelled, refunded, with a refund).
#[utoipa::path(post, path = "/v1/staff/orders/{id}/transitions", operation_id = "transitionOrder", tag = "staff", request_body = TransitionRequest,
    responses((status = 200, description = "The order in its new state", body = StaffOrderView), (status = 403, description = "forbidden: the role may not take this transition"), (status = 409, description = "invalid_transition"),
        (status = 502, description = "payment_provider_unavailable")), security(("bearer" = [])))]
pub async fn transition(
    state: web::Data<AppState>,
    who: StaffAuth,
    id: web::Path<String>,
    body: ApiJson<TransitionRequest>,
) -> AppResult<HttpResponse> {
    let b = body.0;
    let to = parse_status(&b.to, "to")?;
    let note = b.note;
    let shipment = match (b.carrier, b.tracking_number) {
        (None, None) => None,
        (carrier, tracking) => Some(crate::staff::orders::parse_shipment(
            carrier.as_deref().unwrap_or_default(),
            tracking.as_deref().unwrap_or_default(),
        )?),
    };
    state
        .staff
        .change_order(
            &state.orders,
            (&who.staff_id, who.role),
            &id,
            to,
            note,
            shipment,
        )
        .await?;
    order(state, who, id).await
}

/// Clear an order's `payment_review` or `needs_refund` flag once it is handled (manager; audited).
#[utoipa::path(post, path = "/v1/staff/orders/{id}/clear-flag", operation_id = "clearOrderFlag", tag = "staff", request_body = ClearFlagRequest,
    responses((status = 200, description = "The order, its flag cleared; audited", body = StaffOrderView), (status = 403, description = "forbidden"), (status = 404, description = "not_found"),
        (status = 422, description = "invalid_flag")), security(("bearer" = [])))]
pub async fn clear_flag(
    state: web::Data<AppState>,
    who: StaffAuth,
    req: HttpRequest,
    id: web::Path<String>,
    body: ApiJson<ClearFlagRequest>,
) -> AppResult<HttpResponse> {
    let flag = parse_flag(&body.0.flag, "flag")?;
    state
        .staff
        .clear_order_flag(&who.staff_id, &id, flag, request_id(&req))
        .await?;
    order(state, who, id).await
}

/// An order's shipping address (clerk; audited).
#[utoipa::path(get, path = "/v1/staff/orders/{id}/shipping-address", operation_id = "revealOrderShippingAddress", tag = "staff",
    responses((status = 200, description = "The order's shipping address; the reveal is audited"), (status = 404, description = "not_found, address_erased")), security(("bearer" = [])))]
pub async fn order_address(
    state: web::Data<AppState>,
    who: StaffAuth,
    req: HttpRequest,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    match state
        .staff
        .order_address(&who.staff_id, &id, request_id(&req))
        .await?
    {
        Some(address) => Ok(no_store(HttpResponse::Ok().json(address))),
        None => Err(Problem::new(
            404,
            "address_erased",
            "Not found",
            "The address was erased with the customer's data.",
        )
        .into()),
    }
}

fn product_view(p: crate::orders::Product) -> StaffProductView {
    StaffProductView {
        id: p.id,
        name: p.name,
        price: p.price.into(),
        stock: p.stock,
        active: p.active,
    }
}

/// Create a product (manager).
#[utoipa::path(post, path = "/v1/staff/products", operation_id = "createProduct", tag = "staff", request_body = ProductRequest,
    responses((status = 201, description = "The product", body = StaffProductView), (status = 422, description = "invalid_field")), security(("bearer" = [])))]
pub async fn create_product(
    state: web::Data<AppState>,
    who: StaffAuth,
    req: HttpRequest,
    body: ApiJson<ProductRequest>,
) -> AppResult<HttpResponse> {
    let b = body.0;
    let currency = state.config.shop_currency.clone();
    let product =
        crate::orders::NewProduct::parse(&b.name, b.price, None, b.stock, b.active, &currency)
            .map_err(|e| AppError::from(Problem::invalid("invalid_product", "product", e)))?;
    let id = state
        .staff
        .create_product(&who.staff_id, product, request_id(&req))
        .await?;
    let created = state.orders.product_any(&id).await?;
    Ok(HttpResponse::Created().json(product_view(created)))
}

/// Change a product's name, price, stock or active flag (manager; audited).
#[utoipa::path(patch, path = "/v1/staff/products/{id}", operation_id = "updateProduct", tag = "staff", request_body = ProductPatch,
    responses((status = 200, description = "The product as changed", body = StaffProductView), (status = 404, description = "not_found"), (status = 422, description = "invalid_field")), security(("bearer" = [])))]
pub async fn update_product(
    state: web::Data<AppState>,
    who: StaffAuth,
    req: HttpRequest,
    id: web::Path<String>,
    body: ApiJson<ProductPatch>,
) -> AppResult<HttpResponse> {
    let b = body.0;
    let change = ProductChange {
        name: b.name,
        price: b.price,
        stock: b.stock,
        active: b.active,
    };
    let product = state
        .staff
        .update_product(&who.staff_id, &id, change, request_id(&req))
        .await?;
    Ok(HttpResponse::Ok().json(product_view(product)))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1/staff")
            .wrap(actix_web::middleware::from_fn(guard))
            .service(web::resource("/auth/login").route(web::post().to(login)))
            .service(web::resource("/auth/refresh").route(web::post().to(refresh)))
            .service(web::resource("/auth/logout").route(web::post().to(logout)))
            .service(web::resource("/orders").route(web::get().to(orders)))
            .service(web::resource("/orders/{id}").route(web::get().to(order)))
            .service(web::resource("/orders/{id}/transitions").route(web::post().to(transition)))
            .service(web::resource("/orders/{id}/clear-flag").route(web::post().to(clear_flag)))
            .service(
                web::resource("/orders/{id}/shipping-address").route(web::get().to(order_address)),
            )
            .service(web::resource("/products").route(web::post().to(create_product)))
            .service(web::resource("/products/{id}").route(web::patch().to(update_product)))
            .service(web::resource("/audit-log").route(web::get().to(audit_log)))
            .service(
                web::resource("/customers/{id}/contact").route(web::get().to(customer_contact)),
            )
            .service(web::resource("/customers/{id}/erase").route(web::post().to(customer_erase))),
    );
}
