//! The orders queue and an order's page: its lines, payment and webhooks, timeline and flags, the actions the
//! member's role may take, and the audited reveal of the shipping address.

use actix_web::{HttpRequest, web};
use askama::Template;
use chrono::{NaiveDate, NaiveDateTime};
use serde::Deserialize;

use super::{ConsoleError, Member, Nav, PageResult, page, see_other};
use crate::api::request_context::RequestId;
use crate::domain::{Money, Phone, ShippingAddress};
use crate::orders::state::{self, ActorKind, OrderEvent};
use crate::orders::{OrderFlag, OrderStatus, OrderSummary};
use crate::staff::Role;
use crate::staff::orders::{OrderFilter, StaffOrderLine, WebhookLine, parse_shipment};
use crate::state::AppState;

const PAGE_SIZE: i64 = 50;

pub fn request_id(req: &HttpRequest) -> Option<String> {
    use actix_web::HttpMessage;
    req.extensions().get::<RequestId>().map(|r| r.0.clone())
}

pub fn money(m: &Money) -> String {
    format!(
        "{}.{:02} {}",
        m.amount / 100,
        (m.amount % 100).abs(),
        m.currency
    )
}

pub fn when(t: &NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M").to_string()
}

#[derive(Deserialize, Default)]
pub struct QueueQuery {
    status: Option<String>,
    flag: Option<String>,
    since: Option<String>,
    until: Option<String>,
    before: Option<String>,
    order: Option<String>,
    phone: Option<String>,
}

pub struct StatusTab {
    pub name: &'static str,
    pub count: i64,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "console/orders.html")]
struct QueuePage {
    nav: Nav,
    tabs: Vec<StatusTab>,
    lines: Vec<StaffOrderLine>,
    status: String,
    flag: String,
    since: String,
    until: String,
    phone: String,
    next: Option<String>,
    error: Option<String>,
}

impl QueuePage {
    fn total(&self, line: &StaffOrderLine) -> String {
        money(&line.total)
    }
    fn placed(&self, line: &StaffOrderLine) -> String {
        when(&line.created_at)
    }
}

pub fn date(text: &Option<String>, field: &str) -> Result<Option<NaiveDateTime>, String> {
    match text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => NaiveDate::parse_from_str(t, "%Y-%m-%d")
            .map(|d| d.and_hms_opt(0, 0, 0))
            .map_err(|_| format!("`{field}` is a date like 2026-12-07.")),
    }
}

fn given(text: &Option<String>) -> Option<&str> {
    text.as_deref().map(str::trim).filter(|t| !t.is_empty())
}

async fn queue(
    state: web::Data<AppState>,
    member: Member,
    query: web::Query<QueueQuery>,
) -> PageResult {
    let q = query.into_inner();
    if let Some(id) = given(&q.order) {
        return Ok(see_other(&format!(
            "/staff/orders/{}",
            url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
        )));
    }
    let mut error = None;
    let status = given(&q.status).and_then(OrderStatus::parse);
    let flag = given(&q.flag).and_then(OrderFlag::parse);
    let (since, until) = match (date(&q.since, "from"), date(&q.until, "to")) {
        (Ok(since), Ok(until)) => (since, until.map(|u| u + chrono::Duration::days(1))),
        (Err(e), _) | (_, Err(e)) => {
            error = Some(e);
            (None, None)
        }
    };
    let customer_phone = match given(&q.phone) {
        Some(_) if member.role < Role::Manager => {
            return Err(ConsoleError::refused(
                403,
                "Forbidden",
                "A search by phone needs the manager role.",
            ));
        }
        Some(text) => match Phone::parse(text) {
            Ok(phone) => Some(phone.e164().to_owned()),
            Err(e) => {
                error = Some(format!("The phone: {e}"));
                None
            }
        },
        None => None,
    };
    let filter = OrderFilter {
        status,
        since,
        until,
        cursor: given(&q.before).map(str::to_owned),
        limit: PAGE_SIZE,
        customer_phone,
        flag,
    };
    let (lines, counts) = if error.is_some() {
        (Vec::new(), state.staff.order_counts().await?)
    } else {
        futures_util::try_join!(state.staff.orders(filter), state.staff.order_counts())?
    };
    let tabs = OrderStatus::ALL
        .iter()
        .map(|s| StatusTab {
            name: s.as_str(),
            count: counts
                .iter()
                .find(|(name, _)| name == s.as_str())
                .map_or(0, |(_, n)| *n),
            current: status == Some(*s),
        })
        .collect();
    let next = (lines.len() as i64 == PAGE_SIZE)
        .then(|| lines.last().map(|l| l.id.clone()))
        .flatten();
    let keep = |v: &Option<String>| given(v).unwrap_or_default().to_owned();
    page(&QueuePage {
        nav: member.nav,
        tabs,
        lines,
        status: status.map(|s| s.as_str().to_owned()).unwrap_or_default(),
        flag: flag.map(|f| f.as_str().to_owned()).unwrap_or_default(),
        since: keep(&q.since),
        until: keep(&q.until),
        phone: keep(&q.phone),
        next,
        error,
    })
}

/// A step the order may take, offered as a button when the member's role may take it.
pub struct Action {
    pub to: &'static str,
    pub label: &'static str,
}

#[derive(Template)]
#[template(path = "console/order.html")]
struct OrderPage {
    nav: Nav,
    summary: OrderSummary,
    items: Vec<(String, i32, String)>,
    total: String,
    shipment: Option<(String, String)>,
    webhooks: Vec<WebhookLine>,
    events: Vec<OrderEvent>,
    actions: Vec<Action>,
    can_ship: bool,
    address: Option<Option<ShippingAddress>>,
    notice: Option<String>,
}

impl OrderPage {
    fn at(&self, t: &NaiveDateTime) -> String {
        when(t)
    }
}

#[derive(Deserialize)]
pub struct OrderQuery {
    done: Option<String>,
}

fn actions(summary: &OrderSummary, role: Role) -> Vec<Action> {
    let steps = [
        (OrderStatus::Fulfilling, "Start fulfilment"),
        (OrderStatus::Delivered, "Mark delivered"),
        (OrderStatus::Cancelled, "Cancel"),
        (OrderStatus::Refunded, "Refund"),
    ];
    steps
        .into_iter()
        .filter(|(to, _)| state::allowed(summary.status, *to, ActorKind::Staff))
        .filter(|(to, _)| {
            !matches!(to, OrderStatus::Cancelled | OrderStatus::Refunded) || role >= Role::Manager
        })
        .map(|(to, label)| Action {
            to: to.as_str(),
            label,
        })
        .collect()
}

async fn order_page(
    state: &AppState,
    member: Member,
    id: &str,
    address: Option<Option<ShippingAddress>>,
    notice: Option<String>,
) -> PageResult {
    let ((summary, detail, events), webhooks) =
        futures_util::try_join!(state.staff.order(id), state.staff.order_webhooks(id))?;
    let can_ship = state::allowed(summary.status, OrderStatus::Shipped, ActorKind::Staff);
    page(&OrderPage {
        actions: actions(&summary, member.role),
        nav: member.nav,
        items: detail
            .items
            .iter()
            .map(|i| (i.name.clone(), i.quantity, money(&i.unit_price)))
            .collect(),
        total: money(&summary.total),
        shipment: detail.shipment.map(|s| (s.carrier, s.tracking_number)),
        summary,
        webhooks,
        events,
        can_ship,
        address,
        notice,
    })
}

async fn order(
    state: web::Data<AppState>,
    member: Member,
    id: web::Path<String>,
    query: web::Query<OrderQuery>,
) -> PageResult {
    let notice = query.done.as_deref().map(|done| match done {
        "flag" => "The flag is cleared.".to_owned(),
        to => format!("The order is {}.", to.replace('_', " ")),
    });
    order_page(&state, member, &id, None, notice).await
}

#[derive(Deserialize)]
pub struct TransitionForm {
    to: String,
    carrier: Option<String>,
    tracking_number: Option<String>,
    note: Option<String>,
}

async fn transition(
    state: web::Data<AppState>,
    member: Member,
    id: web::Path<String>,
    form: web::Form<TransitionForm>,
) -> PageResult {
    let form = form.into_inner();
    let to = OrderStatus::parse(&form.to)
        .ok_or_else(|| ConsoleError::refused(422, "Invalid", "No such order status."))?;
    let shipment = if to == OrderStatus::Shipped {
        Some(parse_shipment(
            form.carrier.as_deref().unwrap_or_default(),
            form.tracking_number.as_deref().unwrap_or_default(),
        )?)
    } else {
        None
    };
    let note = given(&form.note).map(str::to_owned);
    state
        .staff
        .change_order(
            &state.orders,
            (&member.staff_id, member.role),
            &id,
            to,
            note,
            shipment,
        )
        .await?;
    Ok(see_other(&format!(
        "/staff/orders/{}?done={}",
        id.as_str(),
        to.as_str()
    )))
}

async fn reveal(
    state: web::Data<AppState>,
    member: Member,
    req: HttpRequest,
    id: web::Path<String>,
) -> PageResult {
    let address = state
        .staff
        .order_address(&member.staff_id, &id, request_id(&req))
        .await?;
    order_page(&state, member, &id, Some(address), None).await
}

#[derive(Deserialize)]
pub struct FlagForm {
    flag: String,
}

async fn clear_flag(
    state: web::Data<AppState>,
    member: Member,
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<FlagForm>,
) -> PageResult {
    let flag = OrderFlag::parse(&form.flag)
        .ok_or_else(|| ConsoleError::refused(422, "Invalid", "No such flag."))?;
    state
        .staff
        .clear_order_flag(&member.staff_id, &id, flag, request_id(&req))
        .await?;
    Ok(see_other(&format!(
        "/staff/orders/{}?done=flag",
        id.as_str()
    )))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/orders").route(web::get().to(queue)))
        .service(web::resource("/orders/{id}").route(web::get().to(order)))
        .service(web::resource("/orders/{id}/transition").route(web::post().to(transition)))
        .service(web::resource("/orders/{id}/reveal").route(web::post().to(reveal)))
        .service(web::resource("/orders/{id}/clear-flag").route(web::post().to(clear_flag)));
}
