//! Sign in with Apple and Google: `/v1/auth/nonce`, `/v1/auth/{apple,google}`, the linked identities under
//! `/v1/me/identities`, and Apple's notifications at `/v1/webhooks/apple`.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{TokenPair, no_store};
use super::authn::{CustomerAuth, user_agent};
use super::json::ApiJson;
use crate::auth::platforms::Platform;
use crate::domain::Sensitive;
use crate::error::{AppError, AppResult};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"nonce": "q3F0v9mJ5c1o2Qe7y4tB8a6Zk0pW1sXr3dLh5nGf7uI", "expires_in": 300}))]
pub struct NonceResponse {
    /// Give it to the platform's sign-in (Apple: its SHA-256, hex; Google: as is), then send it here with the
    /// ID token. Single use.
    nonce: String,
    expires_in: u64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id_token": "eyJraWQiOiJXNldjT0tC…", "nonce": "q3F0v9mJ5c1o2Qe7y4tB8a6Zk0pW1sXr3dLh5nGf7uI"}))]
pub struct PlatformSignInRequest {
    /// The ID token the platform's SDK gave the app.
    #[schema(value_type = String)]
    id_token: Sensitive<String>,
    /// The nonce from `POST /v1/auth/nonce` (for Apple the raw one, not its hash).
    #[schema(value_type = String)]
    nonce: Sensitive<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PlatformSignInResponse {
    #[serde(flatten)]
    tokens: TokenPair,
    /// Whether this sign-in made the account.
    created: bool,
    /// `false` until the customer verifies a phone (`POST /v1/me/phone`); orders wait for it.
    phone_verified: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// `apple` or `google`.
    provider: String,
    #[schema(value_type = String)]
    id_token: Sensitive<String>,
    #[schema(value_type = String)]
    nonce: Sensitive<String>,
}

#[derive(Serialize, ToSchema)]
pub struct IdentityView {
    /// `apple` or `google`.
    provider: String,
    /// The e-mail the provider gave (perhaps an Apple relay address), masked.
    email_masked: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Deserialize, ToSchema)]
pub struct AppleNotificationBody {
    /// The notification: a JWT signed by Apple.
    payload: String,
}

#[derive(Serialize, ToSchema)]
pub struct AppleAcknowledged {
    /// `unlinked`, `erased`, `unknown_identity` or `no_effect`.
    outcome: &'static str,
}

fn platform(name: &str) -> AppResult<Platform> {
    Platform::parse(name).ok_or_else(|| {
        crate::error::Problem::invalid("unknown_provider", "provider", "Use `apple` or `google`.")
            .into()
    })
}

/// A nonce for one platform sign-in.
#[utoipa::path(post, path = "/v1/auth/nonce", operation_id = "startPlatformSignIn", tag = "identity",
    responses((status = 201, description = "A single-use nonce, valid 5 minutes", body = NonceResponse)))]
pub async fn nonce(state: web::Data<AppState>) -> AppResult<HttpResponse> {
    let (nonce, expires_in) = state.identity.sign_in_nonce().await?;
    Ok(no_store(HttpResponse::Created().json(NonceResponse {
        nonce: nonce.into_inner(),
        expires_in,
    })))
}

async fn sign_in(
    state: &AppState,
    req: &HttpRequest,
    platform: Platform,
    body: PlatformSignInRequest,
) -> AppResult<HttpResponse> {
    let signed_in = state
        .identity
        .sign_in_with(
            platform,
            body.id_token.expose(),
            body.nonce.expose(),
            user_agent(req),
        )
        .await?;
    let mut response = if signed_in.created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok(no_store(response.json(PlatformSignInResponse {
        created: signed_in.created,
        phone_verified: signed_in.phone_verified,
        tokens: TokenPair::from(signed_in.issued, true),
    })))
}

/// Sign in with Apple: the identity token from `ASAuthorizationAppleIDCredential` and the raw nonce.
#[utoipa::path(post, path = "/v1/auth/apple", operation_id = "signInWithApple", tag = "identity", request_body = PlatformSignInRequest, responses(
    (status = 200, description = "Signed in", body = PlatformSignInResponse),
    (status = 201, description = "Signed in to a new account, which must verify a phone before ordering", body = PlatformSignInResponse),
    (status = 401, description = "invalid_id_token"), (status = 422, description = "invalid_nonce"),
    (status = 404, description = "provider_not_enabled"), (status = 503, description = "provider_unavailable")))]
pub async fn apple(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ApiJson<PlatformSignInRequest>,
) -> AppResult<HttpResponse> {
    sign_in(&state, &req, Platform::Apple, body.0).await
}

/// Sign in with Google: the ID token from Credential Manager's `GoogleIdTokenCredential` and its nonce.
#[utoipa::path(post, path = "/v1/auth/google", operation_id = "signInWithGoogle", tag = "identity", request_body = PlatformSignInRequest, responses(
    (status = 200, description = "Signed in", body = PlatformSignInResponse),
    (status = 201, description = "Signed in to a new account, which must verify a phone before ordering", body = PlatformSignInResponse),
    (status = 401, description = "invalid_id_token"), (status = 422, description = "invalid_nonce"),
    (status = 404, description = "provider_not_enabled"), (status = 503, description = "provider_unavailable")))]
pub async fn google(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ApiJson<PlatformSignInRequest>,
) -> AppResult<HttpResponse> {
    sign_in(&state, &req, Platform::Google, body.0).await
}

/// The platform identities linked to the account.
#[utoipa::path(get, path = "/v1/me/identities", operation_id = "listIdentities", tag = "profile",
    responses((status = 200, description = "The linked identities", body = [IdentityView])), security(("bearer" = [])))]
pub async fn list(state: web::Data<AppState>, who: CustomerAuth) -> AppResult<HttpResponse> {
    let views: Vec<IdentityView> = state
        .identity
        .identities(&who.customer_id)
        .await?
        .into_iter()
        .map(|i| IdentityView {
            provider: i.provider,
            email_masked: i.email.map(|e| crate::domain::mask_email(e.expose())),
            created_at: i.created_at.and_utc(),
        })
        .collect();
    Ok(no_store(HttpResponse::Ok().json(views)))
}

/// Link a platform identity (a sign-in within the last 5 minutes).
#[utoipa::path(post, path = "/v1/me/identities", operation_id = "linkIdentity", tag = "profile", request_body = LinkRequest, responses(
    (status = 204, description = "Linked (or it was already)"),
    (status = 401, description = "invalid_id_token, reauthentication_required"),
    (status = 409, description = "identity_taken, provider_already_linked"),
    (status = 422, description = "invalid_nonce, unknown_provider")), security(("bearer" = [])))]
pub async fn link(
    state: web::Data<AppState>,
    who: CustomerAuth,
    body: ApiJson<LinkRequest>,
) -> AppResult<HttpResponse> {
    let b = body.0;
    state
        .identity
        .link_identity(
            &who.customer_id,
            who.auth_time,
            platform(&b.provider)?,
            b.id_token.expose(),
            b.nonce.expose(),
        )
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Unlink a platform identity, unless it is the account's last way in.
#[utoipa::path(delete, path = "/v1/me/identities/{provider}", operation_id = "unlinkIdentity", tag = "profile", responses(
    (status = 204, description = "Unlinked"), (status = 404, description = "not_found"),
    (status = 409, description = "last_way_in")), security(("bearer" = [])))]
pub async fn unlink(
    state: web::Data<AppState>,
    who: CustomerAuth,
    provider: web::Path<String>,
) -> AppResult<HttpResponse> {
    let platform = Platform::parse(&provider).ok_or(AppError::NotFound)?;
    state
        .identity
        .unlink_identity(&who.customer_id, platform)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Apple's server-to-server notifications for Sign in with Apple (consent revoked, account deleted).
#[utoipa::path(post, path = "/v1/webhooks/apple", operation_id = "receiveAppleNotification", tag = "webhooks", request_body = AppleNotificationBody, responses(
    (status = 200, description = "Verified and acted on", body = AppleAcknowledged),
    (status = 401, description = "invalid_id_token: not signed by Apple for this app"),
    (status = 404, description = "provider_not_enabled"), (status = 503, description = "provider_unavailable")))]
pub async fn apple_notification(
    state: web::Data<AppState>,
    body: ApiJson<AppleNotificationBody>,
) -> AppResult<HttpResponse> {
    let outcome = state.identity.apple_notification(&body.0.payload).await?;
    Ok(HttpResponse::Ok().json(AppleAcknowledged { outcome }))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/auth/nonce").route(web::post().to(nonce)))
        .service(web::resource("/v1/auth/apple").route(web::post().to(apple)))
        .service(web::resource("/v1/auth/google").route(web::post().to(google)))
        .service(
            web::resource("/v1/me/identities")
                .route(web::get().to(list))
                .route(web::post().to(link)),
        )
        .service(web::resource("/v1/me/identities/{provider}").route(web::delete().to(unlink)));
}
