//! `/v1/auth/*`: signup with a texted code, login, refresh, logout, sessions, password reset.

use actix_web::http::header::{CACHE_CONTROL, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::authn::{CustomerAuth, user_agent};
use super::edge::client_ip;
use super::json::ApiJson;
use crate::auth::sessions::Issued;
use crate::auth::{LoginOutcome, LogoutScope};
use crate::domain::Sensitive;
use crate::error::AppResult;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"phone": "+44 7700 900123", "password": "correct horse battery staple", "name": "Ada"}))]
pub struct SignupRequest {
    /// In international form, like `+44 7400 900123`.
    phone: String,
    #[schema(value_type = String, min_length = 8, max_length = 128)]
    password: Sensitive<String>,
    name: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"verification_id": "0193a6f2-7c1e-7d3a-9b2f-2c4d5e6f7a8b", "expires_in": 300, "resend_after": 60}))]
pub struct VerificationResponse {
    verification_id: uuid::Uuid,
    /// Seconds the code stays valid.
    expires_in: u64,
    /// Seconds before a resend is allowed.
    resend_after: u64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"verification_id": "0193a6f2-7c1e-7d3a-9b2f-2c4d5e6f7a8b", "code": "123456"}))]
pub struct VerifyRequest {
    verification_id: String,
    #[schema(value_type = String)]
    code: Sensitive<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResendRequest {
    verification_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct ResendResponse {
    resend_after: u64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"phone": "+44 7700 900123", "password": "correct horse battery staple"}))]
pub struct LoginRequest {
    phone: String,
    #[schema(value_type = String)]
    password: Sensitive<String>,
    /// The `device_token` an earlier sign-in with a second factor gave this device.
    #[schema(value_type = Option<String>)]
    device_token: Option<Sensitive<String>>,
}

/// A right password on a device shopd does not know: a code was texted to the account's phone.
#[derive(Serialize, ToSchema)]
pub struct SecondFactorResponse {
    /// Always `true`: no tokens yet.
    second_factor_required: bool,
    /// `POST /v1/auth/login/verify` with it and the code (`POST /v1/auth/otp/resend` texts it again). A
    /// passkey sign-in (`/v1/auth/passkey/begin`) is the other way in.
    verification_id: uuid::Uuid,
    expires_in: u64,
    resend_after: u64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[schema(value_type = String)]
    pub refresh_token: Sensitive<String>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct LogoutRequest {
    scope: Option<LogoutScope>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    phone: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetVerifyRequest {
    verification_id: String,
    #[schema(value_type = String)]
    code: Sensitive<String>,
    #[schema(value_type = String)]
    new_password: Sensitive<String>,
}

/// A token pair.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"access_token": "eyJ0eXAiOiJKV1QiLCJhbGciOiJFZERTQSIsImtpZCI6InQyMDI2MTIwNy0zZjlhIn0.eyJ…", "token_type": "Bearer", "expires_in": 300, "refresh_token": "rt_Vb6zWq3xR0…", "refresh_expires_in": 604800, "customer_id": "0193a6f2-8000-7000-8000-000000000001"}))]
pub struct TokenPair {
    access_token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    expires_in: u64,
    refresh_token: String,
    refresh_expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    customer_id: Option<String>,
    /// After a sign-in with a second factor (signup's code, a sign-in code, a passkey): keep it in the
    /// device's secure storage and send it with the next `POST /v1/auth/login`, which then needs no code.
    #[serde(skip_serializing_if = "Option::is_none")]
    device_token: Option<String>,
}

impl TokenPair {
    pub fn from(issued: Issued, with_customer: bool) -> Self {
        Self {
            customer_id: with_customer.then(|| issued.subject_id.clone()),
            access_token: issued.access_token.into_inner(),
            token_type: "Bearer",
            expires_in: issued.expires_in,
            refresh_token: issued.refresh_token.into_inner(),
            refresh_expires_in: issued.refresh_expires_in,
            device_token: issued.device_token.map(Sensitive::into_inner),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SessionView {
    id: String,
    created_at: chrono::DateTime<chrono::Utc>,
    last_used_at: chrono::DateTime<chrono::Utc>,
    client: String,
    current: bool,
}

pub fn no_store(mut response: HttpResponse) -> HttpResponse {
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl From<crate::auth::VerificationStarted> for VerificationResponse {
    fn from(v: crate::auth::VerificationStarted) -> Self {
        Self {
            verification_id: v.verification_id,
            expires_in: v.expires_in,
            resend_after: v.resend_after,
        }
    }
}

/// Start a signup: texts a code to the phone (or, when it has an account already, a text saying so).
#[utoipa::path(post, path = "/v1/auth/signup", operation_id = "startSignup", tag = "identity", request_body = SignupRequest, responses(
    (status = 202, description = "A code was texted to the phone: verify it with the `verification_id`", body = VerificationResponse),
    (status = 422, description = "invalid_phone, region_not_allowed, weak_password, invalid_name"),
    (status = 429, description = "too many texts"), (status = 502, description = "sms_unavailable")))]
pub async fn signup(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ApiJson<SignupRequest>,
) -> AppResult<HttpResponse> {
    let b = body.0;
    let started = state
        .identity
        .signup(&b.phone, b.password, b.name, client_ip(&req))
        .await?;
    Ok(no_store(
        HttpResponse::Accepted().json(VerificationResponse::from(started)),
    ))
}

/// Finish a signup with the texted code: the account exists from here on.
#[utoipa::path(post, path = "/v1/auth/signup/verify", operation_id = "verifySignup", tag = "identity", request_body = VerifyRequest, responses(
    (status = 201, description = "The account exists: its first token pair and `customer_id`", body = TokenPair),
    (status = 422, description = "invalid_code, code_expired, verification_locked, verification_used"),
    (status = 404, description = "verification_not_found")))]
pub async fn verify(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ApiJson<VerifyRequest>,
) -> AppResult<HttpResponse> {
    let b = body.0;
    let issued = state
        .identity
        .verify_signup(&b.verification_id, b.code.expose(), user_agent(&req))
        .await?;
    Ok(no_store(
        HttpResponse::Created().json(TokenPair::from(issued, true)),
    ))
}

/// Text the code again (not within 60 s of the last text; at most 5 texts a phone an hour).
#[utoipa::path(post, path = "/v1/auth/otp/resend", operation_id = "resendCode", tag = "identity", request_body = ResendRequest, responses(
    (status = 202, description = "A new code was texted", body = ResendResponse), (status = 429, description = "too soon")))]
pub async fn resend(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ApiJson<ResendRequest>,
) -> AppResult<HttpResponse> {
    let resend_after = state
        .identity
        .resend(&body.0.verification_id, client_ip(&req))
        .await?;
    Ok(HttpResponse::Accepted().json(ResendResponse { resend_after }))
}

/// Log in with phone and password. On a device shopd does not know (no `device_token` from an earlier sign-in
/// with a second factor) the answer is a texted code to verify, not tokens.
#[utoipa::path(post, path = "/v1/auth/login", operation_id = "login", tag = "identity", request_body = LoginRequest, responses(
    (status = 200, description = "Signed in: a token pair", body = TokenPair),
    (status = 202, description = "The password is right; a code was texted for `POST /v1/auth/login/verify`", body = SecondFactorResponse),
    (status = 401, description = "invalid_credentials, for a wrong password and an unknown phone alike"),
    (status = 429, description = "login_throttled"), (status = 502, description = "sms_unavailable")))]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ApiJson<LoginRequest>,
) -> AppResult<HttpResponse> {
    let b = body.0;
    let outcome = state
        .identity
        .login(
            &b.phone,
            b.password,
            b.device_token,
            client_ip(&req),
            user_agent(&req),
        )
        .await?;
    Ok(no_store(match outcome {
        LoginOutcome::Signed(issued) => HttpResponse::Ok().json(TokenPair::from(issued, false)),
        LoginOutcome::SecondFactor(v) => HttpResponse::Accepted().json(SecondFactorResponse {
            second_factor_required: true,
            verification_id: v.verification_id,
            expires_in: v.expires_in,
            resend_after: v.resend_after,
        }),
    }))
}

/// The sign-in code texted by `POST /v1/auth/login`: the token pair, and the `device_token` that spares this
/// device the code next time.
#[utoipa::path(post, path = "/v1/auth/login/verify", operation_id = "verifyLogin", tag = "identity", request_body = VerifyRequest, responses(
    (status = 200, description = "Signed in: a token pair with `device_token`", body = TokenPair),
    (status = 422, description = "invalid_code, code_expired, verification_locked, verification_used"),
    (status = 404, description = "verification_not_found")))]
pub async fn login_verify(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ApiJson<VerifyRequest>,
) -> AppResult<HttpResponse> {
    let b = body.0;
    let issued = state
        .identity
        .verify_login(&b.verification_id, b.code.expose(), user_agent(&req))
        .await?;
    Ok(no_store(
        HttpResponse::Ok().json(TokenPair::from(issued, false)),
    ))
}

/// Spend a refresh token for a new pair in the same session.
#[utoipa::path(post, path = "/v1/auth/refresh", operation_id = "refreshTokens", tag = "identity", request_body = RefreshRequest, responses(
    (status = 200, description = "A new token pair; the refresh token presented is spent", body = TokenPair),
    (status = 401, description = "invalid_refresh_token, session_ended, refresh_token_reused")))]
pub async fn refresh(
    state: web::Data<AppState>,
    body: ApiJson<RefreshRequest>,
) -> AppResult<HttpResponse> {
    let issued = state.identity.refresh(body.0.refresh_token).await?;
    Ok(no_store(
        HttpResponse::Ok().json(TokenPair::from(issued, false)),
    ))
}

/// End this session (`local`, the default), the others, or all of them.
#[utoipa::path(post, path = "/v1/auth/logout", operation_id = "logout", tag = "identity", request_body = LogoutRequest,
    responses((status = 204, description = "The session (with `others` or `global`, the sessions) ended")), security(("bearer" = [])))]
pub async fn logout(
    state: web::Data<AppState>,
    who: CustomerAuth,
    body: web::Bytes,
) -> AppResult<HttpResponse> {
    // The body is optional; when there is one it must be a valid request.
    let scope = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        super::json::parse::<LogoutRequest>(&body)?.scope
    };
    let scope = scope.unwrap_or(LogoutScope::Local);
    state
        .identity
        .logout(&who.customer_id, &who.session_id, scope)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The customer's live sessions.
#[utoipa::path(get, path = "/v1/auth/sessions", operation_id = "listSessions", tag = "identity",
    responses((status = 200, description = "The customer's live sessions", body = [SessionView])), security(("bearer" = [])))]
pub async fn sessions(state: web::Data<AppState>, who: CustomerAuth) -> AppResult<HttpResponse> {
    let list: Vec<SessionView> = state
        .identity
        .sessions(&who.customer_id, &who.session_id)
        .await?
        .into_iter()
        .map(|s| SessionView {
            id: s.id,
            created_at: s.created_at.and_utc(),
            last_used_at: s.last_used_at.and_utc(),
            client: s.client,
            current: s.current,
        })
        .collect();
    Ok(no_store(HttpResponse::Ok().json(list)))
}

/// End one of the customer's own sessions.
#[utoipa::path(delete, path = "/v1/auth/sessions/{id}", operation_id = "endSession", tag = "identity",
    responses((status = 204, description = "The session ended"), (status = 404, description = "not_found")), security(("bearer" = [])))]
pub async fn end_session(
    state: web::Data<AppState>,
    who: CustomerAuth,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    state
        .identity
        .end_own_session(&who.customer_id, &id)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Ask for a password reset code. 202 whether or not the phone has an account.
#[utoipa::path(post, path = "/v1/auth/password-reset", operation_id = "startPasswordReset", tag = "identity", request_body = ResetRequest,
    responses((status = 202, description = "A code was texted if the phone has an account: the same answer either way", body = VerificationResponse)))]
pub async fn password_reset(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ApiJson<ResetRequest>,
) -> AppResult<HttpResponse> {
    let started = state
        .identity
        .start_password_reset(&body.0.phone, client_ip(&req))
        .await?;
    Ok(HttpResponse::Accepted().json(VerificationResponse::from(started)))
}

/// Set a new password with the texted code; every session ends.
#[utoipa::path(post, path = "/v1/auth/password-reset/verify", operation_id = "resetPassword", tag = "identity", request_body = ResetVerifyRequest,
    responses((status = 204, description = "The password is changed and every session ended"), (status = 422, description = "invalid_code, weak_password, …")))]
pub async fn password_reset_verify(
    state: web::Data<AppState>,
    body: ApiJson<ResetVerifyRequest>,
) -> AppResult<HttpResponse> {
    let b = body.0;
    state
        .identity
        .finish_password_reset(&b.verification_id, b.code.expose(), b.new_password)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The public keys that verify access tokens.
#[utoipa::path(get, path = "/.well-known/jwks.json", operation_id = "getJwks", tag = "identity", responses((status = 200, description = "The public keys that verify access tokens (a JWK Set, RFC 7517)")))]
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "public, max-age=300"))
        .json(state.identity.tokens.keys.jwks())
}
