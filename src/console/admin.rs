//! The manager's products and the admin's pages: customers (audited contact reveal, erasure after a
//! confirmation), staff members (role, disable, second-factor reset, all audited) and the audit log.

use actix_web::{HttpRequest, web};
use askama::Template;
use serde::Deserialize;

use super::orders::{money, request_id, when};
use super::{ConsoleError, Member, Nav, PageResult, page, see_other};
use crate::domain::Sensitive;
use crate::orders::{PageRequest, Product};
use crate::staff::orders::ProductChange;
use crate::staff::{AuditEntry, Role, StaffMember};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct ListQuery {
    after: Option<String>,
    done: Option<String>,
}

#[derive(Template)]
#[template(path = "console/products.html")]
struct ProductsPage {
    nav: Nav,
    products: Vec<Product>,
    next: Option<String>,
    notice: Option<String>,
}

impl ProductsPage {
    fn price(&self, p: &Product) -> String {
        money(&p.price)
    }
}

async fn products(
    state: web::Data<AppState>,
    member: Member,
    query: web::Query<ListQuery>,
) -> PageResult {
    let page_request = PageRequest {
        cursor: query.after.clone(),
        limit: 50,
    };
    let found = state.orders.all_products(page_request).await?;
    page(&ProductsPage {
        nav: member.nav,
        products: found.items,
        next: found.next_cursor,
        notice: query
            .done
            .as_ref()
            .map(|_| "The product is saved.".to_owned()),
    })
}

#[derive(Template)]
#[template(path = "console/import.html")]
struct ImportPage {
    nav: Nav,
    imported: Option<usize>,
    problem: Option<String>,
    bad_rows: Vec<(usize, String)>,
}

/// The file of a product import form (`multipart/form-data`, field `file`), its name and bytes.
async fn uploaded_file(req: &HttpRequest, body: web::Bytes) -> Result<(String, Vec<u8>), String> {
    let content_type = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = multer::parse_boundary(content_type)
        .map_err(|_| "Send the file with the form on this page.".to_owned())?;
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
    let mut parts = multer::Multipart::new(stream, boundary);
    while let Some(field) = parts
        .next_field()
        .await
        .map_err(|e| format!("The upload is unreadable: {e}."))?
    {
        if field.name() == Some("file") {
            let name = field.file_name().unwrap_or_default().to_owned();
            let bytes = field
                .bytes()
                .await
                .map_err(|e| format!("The upload is unreadable: {e}."))?;
            return Ok((name, bytes.to_vec()));
        }
    }
    Err("Choose a file to import.".to_owned())
}

async fn import_form(member: Member) -> PageResult {
    page(&ImportPage {
        nav: member.nav,
        imported: None,
        problem: None,
        bad_rows: Vec::new(),
    })
}

async fn import(
    state: web::Data<AppState>,
    member: Member,
    req: HttpRequest,
    body: web::Bytes,
) -> PageResult {
    use crate::orders::import::{self, Format, Refused};
    let refused = |nav: Nav, problem: Option<String>, bad_rows: Vec<(usize, String)>| {
        Ok(super::html(
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            &ImportPage {
                nav,
                imported: None,
                problem,
                bad_rows,
            },
        ))
    };
    let (name, bytes) = match uploaded_file(&req, body).await {
        Ok(file) => file,
        Err(why) => return refused(member.nav, Some(why), Vec::new()),
    };
    let format = match name
        .rsplit('.')
        .next()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("json") => Format::Json,
        Some("csv") => Format::Csv,
        _ => Format::sniff(&bytes),
    };
    let rows = match import::parse(&bytes, format, &state.config.shop_currency) {
        Ok(rows) if rows.is_empty() => {
            return refused(
                member.nav,
                Some("The file holds no products.".into()),
                Vec::new(),
            );
        }
        Ok(rows) => rows,
        Err(Refused::File(why)) => return refused(member.nav, Some(why), Vec::new()),
        Err(Refused::Rows(bad)) => return refused(member.nav, None, bad),
    };
    let imported = state
        .staff
        .import_products(&member.staff_id, rows, request_id(&req))
        .await?;
    page(&ImportPage {
        nav: member.nav,
        imported: Some(imported),
        problem: None,
        bad_rows: Vec::new(),
    })
}

#[derive(Template)]
#[template(path = "console/product.html")]
struct ProductPage {
    nav: Nav,
    product: Product,
    error: Option<String>,
}

async fn product(state: web::Data<AppState>, member: Member, id: web::Path<String>) -> PageResult {
    let product = state.orders.product_any(&id).await?;
    page(&ProductPage {
        nav: member.nav,
        product,
        error: None,
    })
}

#[derive(Deserialize)]
pub struct ProductForm {
    name: String,
    /// In major units, as typed: `12.50`.
    price: String,
    stock: i64,
    active: Option<String>,
}

/// A price typed in major units (at most two decimals) as minor units.
fn minor_units(text: &str) -> Option<i64> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || fraction.len() > 2
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let cents = format!("{fraction:0<2}").parse::<i64>().ok()?;
    whole
        .parse::<i64>()
        .ok()?
        .checked_mul(100)?
        .checked_add(cents)
}

async fn save_product(
    state: web::Data<AppState>,
    member: Member,
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<ProductForm>,
) -> PageResult {
    let form = form.into_inner();
    let Some(price) = minor_units(&form.price) else {
        let product = state.orders.product_any(&id).await?;
        return Ok(super::html(
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            &ProductPage {
                nav: member.nav,
                product,
                error: Some("The price is a number like 12.50.".into()),
            },
        ));
    };
    let change = ProductChange {
        name: Some(form.name),
        price: Some(price),
        stock: Some(form.stock),
        active: Some(form.active.is_some()),
    };
    match state
        .staff
        .update_product(&member.staff_id, &id, change, request_id(&req))
        .await
    {
        Ok(_) => Ok(see_other("/staff/products?done=saved")),
        Err(crate::error::AppError::Problem(p)) if p.status == 422 => {
            let product = state.orders.product_any(&id).await?;
            Ok(super::html(
                actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
                &ProductPage {
                    nav: member.nav,
                    product,
                    error: Some(p.detail),
                },
            ))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "console/customer.html")]
struct CustomerPage {
    nav: Nav,
    customer_id: String,
    contact: Option<(String, String, String)>,
    notice: Option<String>,
}

#[derive(Deserialize)]
pub struct CustomerQuery {
    id: Option<String>,
    done: Option<String>,
}

async fn customers(member: Member, query: web::Query<CustomerQuery>) -> PageResult {
    page(&CustomerPage {
        nav: member.nav,
        customer_id: query.id.clone().unwrap_or_default().trim().to_owned(),
        contact: None,
        notice: query
            .done
            .as_ref()
            .map(|_| "The customer's personal data is erased.".to_owned()),
    })
}

async fn reveal_contact(
    state: web::Data<AppState>,
    member: Member,
    req: HttpRequest,
    id: web::Path<String>,
) -> PageResult {
    let contact = state
        .staff
        .customer_contact(&member.staff_id, &id, request_id(&req))
        .await?;
    let open = |v: Option<Sensitive<String>>| v.map_or("—".to_owned(), Sensitive::into_inner);
    page(&CustomerPage {
        nav: member.nav,
        customer_id: contact.customer_id.clone(),
        contact: Some((open(contact.phone), open(contact.name), open(contact.email))),
        notice: None,
    })
}

#[derive(Deserialize)]
pub struct EraseForm {
    confirm: String,
}

async fn erase(
    state: web::Data<AppState>,
    member: Member,
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<EraseForm>,
) -> PageResult {
    if form.confirm.trim() != id.as_str() {
        return Err(ConsoleError::refused(
            422,
            "Not confirmed",
            "Type the customer's id to confirm the erasure; nothing was erased.",
        ));
    }
    state
        .staff
        .erase_customer(&state.identity, &member.staff_id, &id, request_id(&req))
        .await?;
    Ok(see_other("/staff/customers?done=erased"))
}

#[derive(Template)]
#[template(path = "console/members.html")]
struct MembersPage {
    nav: Nav,
    members: Vec<StaffMember>,
    notice: Option<String>,
}

impl MembersPage {
    fn since(&self, m: &StaffMember) -> String {
        when(&m.created_at)
    }
}

async fn members(
    state: web::Data<AppState>,
    member: Member,
    query: web::Query<ListQuery>,
) -> PageResult {
    page(&MembersPage {
        nav: member.nav,
        members: state.staff.list().await?,
        notice: query.done.as_ref().map(|done| match done.as_str() {
            "disabled" => "The member is disabled; their sessions ended.".to_owned(),
            "reset" => "The second factor is reset; they set up a new one at their next sign-in."
                .to_owned(),
            "invited" => {
                "Invited: the e-mail with their link to set a password is on its way.".to_owned()
            }
            _ => "The role is changed.".to_owned(),
        }),
    })
}

#[derive(Deserialize)]
pub struct InviteForm {
    email: String,
    role: String,
}

async fn invite(
    state: web::Data<AppState>,
    member: Member,
    req: HttpRequest,
    form: web::Form<InviteForm>,
) -> PageResult {
    let role = Role::parse(&form.role)
        .ok_or_else(|| ConsoleError::refused(422, "Invalid", "No such role."))?;
    match state
        .staff
        .invite(&member.staff_id, form.email.trim(), role, request_id(&req))
        .await
    {
        Ok(_) => Ok(see_other("/staff/members?done=invited")),
        Err(crate::error::AppError::Problem(p)) if p.status == 409 || p.status == 422 => {
            Err(ConsoleError::refused(p.status, "Not invited", p.detail))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct RoleForm {
    role: String,
}

async fn change_role(
    state: web::Data<AppState>,
    member: Member,
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<RoleForm>,
) -> PageResult {
    let role = Role::parse(&form.role)
        .ok_or_else(|| ConsoleError::refused(422, "Invalid", "No such role."))?;
    state
        .staff
        .change_role(&member.staff_id, &id, role, request_id(&req))
        .await?;
    Ok(see_other("/staff/members?done=role"))
}

async fn disable(
    state: web::Data<AppState>,
    member: Member,
    req: HttpRequest,
    id: web::Path<String>,
) -> PageResult {
    state
        .staff
        .disable_member(&member.staff_id, &id, request_id(&req))
        .await?;
    Ok(see_other("/staff/members?done=disabled"))
}

async fn reset_factor(
    state: web::Data<AppState>,
    member: Member,
    req: HttpRequest,
    id: web::Path<String>,
) -> PageResult {
    state
        .staff
        .reset_factor(&member.staff_id, &id, request_id(&req))
        .await?;
    Ok(see_other("/staff/members?done=reset"))
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    nav: Nav,
    entries: Vec<AuditEntry>,
    staff_id: String,
    action: String,
    since: String,
    until: String,
    error: Option<String>,
    next: Option<String>,
}

impl AuditPage {
    fn at(&self, e: &AuditEntry) -> String {
        when(&e.created_at)
    }
}

#[derive(Deserialize)]
pub struct AuditQuery {
    staff_id: Option<String>,
    action: Option<String>,
    since: Option<String>,
    until: Option<String>,
    before: Option<String>,
}

async fn audit(
    state: web::Data<AppState>,
    member: Member,
    query: web::Query<AuditQuery>,
) -> PageResult {
    let q = query.into_inner();
    let pick = |v: Option<String>| v.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
    let (staff_id, action) = (pick(q.staff_id), pick(q.action));
    let (since_text, until_text) = (pick(q.since), pick(q.until));
    let (since, until, error) = match (
        super::orders::date(&since_text, "from"),
        super::orders::date(&until_text, "to"),
    ) {
        (Ok(since), Ok(until)) => (since, until.map(|u| u + chrono::Duration::days(1)), None),
        (Err(e), _) | (_, Err(e)) => (None, None, Some(e)),
    };
    let filter = crate::staff::AuditFilter {
        staff_id: staff_id.clone(),
        action: action.clone(),
        since,
        until,
    };
    let entries = if error.is_some() {
        Vec::new()
    } else {
        state
            .staff
            .audit_entries(50, pick(q.before), filter)
            .await?
    };
    let next = (entries.len() == 50)
        .then(|| entries.last().map(|e| e.id.clone()))
        .flatten();
    page(&AuditPage {
        nav: member.nav,
        entries,
        staff_id: staff_id.unwrap_or_default(),
        action: action.unwrap_or_default(),
        since: since_text.unwrap_or_default(),
        until: until_text.unwrap_or_default(),
        error,
        next,
    })
}

#[derive(Template)]
#[template(path = "console/operations.html")]
struct OperationsPage {
    nav: Nav,
    email: Vec<crate::notify::outbox::OutboxRow>,
    webhooks: Vec<(String, Option<String>, i64)>,
    counters: Vec<crate::telemetry::metrics::Figure>,
}

impl OperationsPage {
    fn at(&self, t: &chrono::NaiveDateTime) -> String {
        when(t)
    }
}

/// The counters of `/metrics` an operator looks at first.
const WATCHED: &[&str] = &[
    "attestation_failures_total",
    "webhook_signature_failures_total",
    "outbox_messages_total",
    "login_throttled_total",
    "rate_limited_total",
    "refresh_token_reuse_total",
    "otp_wrong_codes_total",
];

async fn operations(state: web::Data<AppState>, member: Member) -> PageResult {
    let (email, webhooks) =
        futures_util::try_join!(state.staff.failing_email(), state.staff.webhook_outcomes())?;
    page(&OperationsPage {
        nav: member.nav,
        email,
        webhooks,
        counters: state.metrics.counters(WATCHED),
    })
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/products").route(web::get().to(products)))
        .service(
            web::resource("/products/import")
                .route(web::get().to(import_form))
                .route(web::post().to(import)),
        )
        .service(
            web::resource("/products/{id}")
                .route(web::get().to(product))
                .route(web::post().to(save_product)),
        )
        .service(web::resource("/customers").route(web::get().to(customers)))
        .service(web::resource("/customers/{id}/reveal").route(web::post().to(reveal_contact)))
        .service(web::resource("/customers/{id}/erase").route(web::post().to(erase)))
        .service(
            web::resource("/members")
                .route(web::get().to(members))
                .route(web::post().to(invite)),
        )
        .service(web::resource("/members/{id}/role").route(web::post().to(change_role)))
        .service(web::resource("/members/{id}/disable").route(web::post().to(disable)))
        .service(web::resource("/members/{id}/reset-factor").route(web::post().to(reset_factor)))
        .service(web::resource("/audit").route(web::get().to(audit)))
        .service(web::resource("/operations").route(web::get().to(operations)));
}

#[cfg(test)]
mod tests {
    use super::minor_units;

    #[test]
    fn prices_are_typed_in_major_units() {
        assert_eq!(minor_units("12.5"), Some(1250));
        assert_eq!(minor_units("12.50"), Some(1250));
        assert_eq!(minor_units("7"), Some(700));
        assert_eq!(minor_units("0.05"), Some(5));
        for bad in ["", "1.234", "-1", "1,50", "a", ".5"] {
            assert_eq!(minor_units(bad), None, "{bad}");
        }
    }
}
