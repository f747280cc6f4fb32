//! `/staff/`: the staff console, server-rendered pages (askama templates in `templates/console/`, one CSS file
//! embedded) over the same `Staff` functions, security matrix and audit log as the staff JSON API. Every
//! request passes `guard`: the route must be in the matrix, a state-changing one must come from this origin
//! and carry the session's CSRF token, and a signed-in route needs a live console session of a role high
//! enough. Deny by default.

mod admin;
mod orders;
mod sign_in;

use std::future::{Ready, ready};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError, web};
use askama::Template;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

use crate::error::AppError;
use crate::staff::console::{ConsoleSession, Stage};
use crate::staff::{Role, matrix};
use crate::state::AppState;

/// The cookie of a console session: `__Host-` (Secure, Path=/, no Domain), HttpOnly, SameSite=Strict.
pub const COOKIE: &str = "__Host-shopd-console";
/// The largest form the guard reads (a product import is the largest).
const FORM_LIMIT: usize = 2 * 1024 * 1024;
const CSS: &str = include_str!("../../templates/console/console.css");
const CSP: &str = "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The CSRF token of a console session: an HMAC of a fixed label under the cookie's own token, so it is bound
/// to the session, and nothing more is stored.
fn csrf_token(cookie_token: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, cookie_token.as_bytes());
    URL_SAFE_NO_PAD.encode(hmac::sign(&key, b"shopd console csrf").as_ref())
}

fn csrf_matches(cookie_token: &str, given: &str) -> bool {
    let Ok(given) = URL_SAFE_NO_PAD.decode(given) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, cookie_token.as_bytes());
    hmac::verify(&key, b"shopd console csrf", &given).is_ok()
}

/// What every page's layout needs: who is signed in (if anyone) and the form token.
#[derive(Debug, Clone)]
pub struct Nav {
    pub role: Option<Role>,
    pub csrf: String,
    pub staff_id: String,
}

impl Nav {
    pub fn signed_in(&self) -> bool {
        self.role.is_some()
    }
    pub fn manager(&self) -> bool {
        self.role >= Some(Role::Manager)
    }
    pub fn admin(&self) -> bool {
        self.role >= Some(Role::Admin)
    }
    pub fn role_name(&self) -> &'static str {
        self.role.map_or("", Role::as_str)
    }
}

/// The console session of this request, put there by the guard (any stage).
#[derive(Debug, Clone)]
pub struct Visit {
    pub session: Option<ConsoleSession>,
    pub nav: Nav,
}

impl FromRequest for Visit {
    type Error = ConsoleError;
    type Future = Ready<Result<Self, ConsoleError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<Visit>()
                .cloned()
                .ok_or(ConsoleError::SignedOut),
        )
    }
}

/// A signed-in member (the guard checked the role the route needs).
#[derive(Debug, Clone)]
pub struct Member {
    pub staff_id: String,
    pub role: Role,
    pub session: ConsoleSession,
    pub nav: Nav,
}

impl FromRequest for Member {
    type Error = ConsoleError;
    type Future = Ready<Result<Self, ConsoleError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let visit = req.extensions().get::<Visit>().cloned();
        ready(match visit {
            Some(Visit {
                session: Some(session),
                nav,
            }) if session.stage == Stage::SignedIn => Ok(Member {
                staff_id: session.staff_id.clone(),
                role: session.role,
                session,
                nav,
            }),
            _ => Err(ConsoleError::SignedOut),
        })
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage<'a> {
    nav: Nav,
    status: u16,
    title: &'a str,
    detail: &'a str,
}

/// How a console request fails: a page that says so (never problem+json, never a stack), or, signed out, the
/// way back to the sign-in page.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("signed out")]
    SignedOut,
    #[error("{title}: {detail}")]
    Refused {
        status: u16,
        title: &'static str,
        detail: String,
    },
    #[error(transparent)]
    App(#[from] AppError),
}

impl ConsoleError {
    pub fn refused(status: u16, title: &'static str, detail: impl Into<String>) -> Self {
        Self::Refused {
            status,
            title,
            detail: detail.into(),
        }
    }
}

impl ResponseError for ConsoleError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::SignedOut => StatusCode::SEE_OTHER,
            Self::Refused { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST)
            }
            Self::App(e) => e.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (status, title, detail) = match self {
            Self::SignedOut => return see_other("/staff/sign-in?signed_out=1"),
            Self::Refused {
                status,
                title,
                detail,
            } => (*status, *title, detail.clone()),
            Self::App(AppError::Problem(p)) => (p.status, p.title, p.detail.clone()),
            Self::App(AppError::NotFound) => (404, "Not found", "There is no such record.".into()),
            Self::App(e) => {
                // The API's rendering logs the cause; the page says only what the API would.
                let api = e.error_response();
                let status = api.status().as_u16();
                let (title, detail) = if status == 503 {
                    (
                        "Unavailable",
                        "The service is briefly unavailable; try again shortly.",
                    )
                } else {
                    ("Internal error", "An unexpected error occurred.")
                };
                (status, title, detail.to_owned())
            }
        };
        let nav = Nav {
            role: None,
            csrf: String::new(),
            staff_id: String::new(),
        };
        html(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            &ErrorPage {
                nav,
                status,
                title,
                detail: &detail,
            },
        )
    }
}

pub type PageResult = Result<HttpResponse, ConsoleError>;

/// A rendered page.
pub fn html(status: StatusCode, page: &impl Template) -> HttpResponse {
    match page.render() {
        Ok(body) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .body(body),
        Err(e) => {
            tracing::error!(error = %e, "a console template failed");
            HttpResponse::InternalServerError()
                .content_type("text/plain; charset=utf-8")
                .body("The page could not be made.")
        }
    }
}

pub fn page(page: &impl Template) -> PageResult {
    Ok(html(StatusCode::OK, page))
}

/// After a form: back to a page (Post/Redirect/Get).
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

pub fn session_cookie(token: &str) -> Cookie<'static> {
    Cookie::build(COOKIE, token.to_owned())
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Strict)
        .finish()
}

pub fn cleared_cookie() -> Cookie<'static> {
    let mut cookie = session_cookie("");
    cookie.make_removal();
    cookie
}

/// Whether a state-changing request comes from a page of this origin. Its `Origin` must name the host it was
/// sent to; the console's pages are `Referrer-Policy: no-referrer`, under which a browser sends its forms with
/// `Origin: null`, so then the browser's own `Sec-Fetch-Site: same-origin` must say so. A request with
/// neither is refused.
fn same_origin(req: &ServiceRequest) -> bool {
    let header_text = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    match header_text(header::ORIGIN) {
        Some(origin) if origin != "null" => {
            let Ok(origin) = url::Url::parse(origin) else {
                return false;
            };
            let host = req.connection_info().host().to_owned();
            let origin_host = match (origin.host_str(), origin.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_owned(),
                _ => return false,
            };
            origin_host.eq_ignore_ascii_case(&host)
        }
        _ => header_text(header::HeaderName::from_static("sec-fetch-site")) == Some("same-origin"),
    }
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The console's guard. Matrix first (a route not in it is a 404), then the origin and CSRF checks of every
/// POST, then the session and the role.
pub async fn guard(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let refuse = |req: ServiceRequest, error: ConsoleError| {
        Ok(req
            .into_response(error.error_response())
            .map_into_right_body())
    };
    let pattern = req.match_pattern().unwrap_or_default();
    let method = req.method().clone();
    let Some(rule) = matrix::rule_for(method.as_str(), &pattern) else {
        if matrix::knows_path(&pattern) {
            return next
                .call(req)
                .await
                .map(ServiceResponse::map_into_left_body);
        }
        tracing::error!(route = %pattern, "a console route is missing from the security matrix: refused");
        return refuse(req, AppError::NotFound.into());
    };
    if rule.path == "/staff/console.css" {
        // The stylesheet is the same for everyone: no session to look up.
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| actix_web::error::ErrorInternalServerError("no state"))?;
    let token = req.cookie(COOKIE).map(|c| c.value().to_owned());
    let session = match &token {
        Some(token) if !token.is_empty() => match state.staff.console_session(token).await {
            Ok(found) => found,
            Err(e) => return refuse(req, e.into()),
        },
        _ => None,
    };
    if method == Method::POST {
        if !same_origin(&req) {
            return refuse(
                req,
                ConsoleError::refused(
                    403,
                    "Refused",
                    "This form was not sent from a page of this console, so nothing was changed. \
                     Open the console again and send it from there.",
                ),
            );
        }
        if let (Some(_), Some(token)) = (&session, &token) {
            let body = match req.extract::<web::Bytes>().await {
                Ok(body) if body.len() <= FORM_LIMIT => body,
                _ => {
                    return refuse(
                        req,
                        ConsoleError::refused(413, "Too large", "The form is too large."),
                    );
                }
            };
            // A file upload (multipart) carries the token in its form's address instead.
            let given = form_field(&body, "csrf")
                .or_else(|| form_field(req.query_string().as_bytes(), "csrf"))
                .unwrap_or_default();
            if !csrf_matches(token, &given) {
                return refuse(
                    req,
                    ConsoleError::refused(
                        403,
                        "Refused",
                        "This form's security token is missing or belongs to another sign-in, so \
                         nothing was changed. Reload the page and try again.",
                    ),
                );
            }
            req.set_payload(Payload::from(body));
        }
    }
    let nav = Nav {
        role: session
            .as_ref()
            .filter(|s| s.stage == Stage::SignedIn)
            .map(|s| s.role),
        csrf: token.as_deref().map(csrf_token).unwrap_or_default(),
        staff_id: session
            .as_ref()
            .map(|s| s.staff_id.clone())
            .unwrap_or_default(),
    };
    if let Some(least) = rule.least {
        let signed_in = session.as_ref().filter(|s| s.stage == Stage::SignedIn);
        let Some(member) = signed_in else {
            let mut response = ConsoleError::SignedOut.error_response();
            // A sign-in half done (a code or an enrolment due) keeps its cookie; a dead one loses it.
            if token.is_some() && session.is_none() {
                let _ = response.add_cookie(&cleared_cookie());
            }
            return Ok(req.into_response(response).map_into_right_body());
        };
        if member.role < least {
            let refused = ConsoleError::refused(
                403,
                "Forbidden",
                format!("This needs the {least} role or above."),
            );
            return refuse(req, refused);
        }
    }
    req.extensions_mut().insert(Visit { session, nav });
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(CSS)
}

async fn home(visit: Visit) -> HttpResponse {
    if visit.nav.signed_in() {
        see_other("/staff/orders")
    } else {
        see_other("/staff/sign-in")
    }
}

/// The headers of every console response: a strict CSP with no inline script, no framing, no referrer, and
/// nothing stored by caches (the stylesheet excepted).
async fn page_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    Ok(res)
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::redirect("/staff", "/staff/"));
    cfg.service(
        web::scope("/staff")
            .app_data(web::PayloadConfig::new(FORM_LIMIT))
            .app_data(
                web::FormConfig::default()
                    .limit(FORM_LIMIT)
                    .error_handler(|e, _| {
                        ConsoleError::refused(
                            400,
                            "Incomplete form",
                            format!(
                                "The form is incomplete or malformed ({e}); nothing was changed."
                            ),
                        )
                        .into()
                    }),
            )
            .wrap(actix_web::middleware::from_fn(guard))
            .wrap(actix_web::middleware::from_fn(page_headers))
            .service(web::resource("/").route(web::get().to(home)))
            .service(web::resource("/console.css").route(web::get().to(stylesheet)))
            .configure(sign_in::routes)
            .configure(orders::routes)
            .configure(admin::routes),
    );
}
