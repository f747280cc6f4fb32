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
use super::authn::{bearer, client_ip, user_agent};
use super::json::ApiJson;
use super::request_context::RequestId;
use crate::crypto::jwt::{Audience, Expectations};
use crate::domain::Sensitive;
use crate::error::{AppError, AppResult, Problem};
use crate::staff::{Role, matrix};
use crate::startup::AppState;

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
    let claims = tokens
        .keys
        .verify(
            token,
            &Expectations {
                issuer: &tokens.issuer,
                audience: Audience::Staff,
                now: chrono::Utc::now().timestamp(),
            },
        )
        .map_err(|e| {
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
#[utoipa::path(post, path = "/v1/staff/auth/login", tag = "staff", request_body = StaffLoginRequest,
    responses((status = 200, body = TokenPair), (status = 401, description = "invalid_credentials")))]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ApiJson<StaffLoginRequest>,
) -> AppResult<HttpResponse> {
    let b = body.0;
    let issued = state
        .staff
        .login(&b.email, b.password, client_ip(&req), user_agent(&req))
        .await?;
    Ok(no_store(
        HttpResponse::Ok().json(TokenPair::from(issued, false)),
    ))
}

/// Staff token refresh.
#[utoipa::path(post, path = "/v1/staff/auth/refresh", tag = "staff", request_body = RefreshRequest,
    responses((status = 200, body = TokenPair), (status = 401)))]
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
#[utoipa::path(post, path = "/v1/staff/auth/logout", tag = "staff", responses((status = 204)), security(("bearer" = [])))]
pub async fn logout(state: web::Data<AppState>, who: StaffAuth) -> AppResult<HttpResponse> {
    state.staff.logout(&who.session_id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The audit log, newest first (admin).
#[utoipa::path(get, path = "/v1/staff/audit-log", tag = "staff",
    params(("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = [AuditEntryView])), security(("bearer" = [])))]
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
#[utoipa::path(get, path = "/v1/staff/customers/{id}/contact", tag = "staff",
    responses((status = 200, body = ContactView), (status = 404)), security(("bearer" = [])))]
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
#[utoipa::path(post, path = "/v1/staff/customers/{id}/erase", tag = "staff",
    responses((status = 204), (status = 404)), security(("bearer" = [])))]
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

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1/staff")
            .wrap(actix_web::middleware::from_fn(guard))
            .service(web::resource("/auth/login").route(web::post().to(login)))
            .service(web::resource("/auth/refresh").route(web::post().to(refresh)))
            .service(web::resource("/auth/logout").route(web::post().to(logout)))
            .service(web::resource("/audit-log").route(web::get().to(audit_log)))
            .service(
                web::resource("/customers/{id}/contact").route(web::get().to(customer_contact)),
            )
            .service(web::resource("/customers/{id}/erase").route(web::post().to(customer_erase))),
    );
}
