//! Passkeys: `/v1/me/passkeys` (register while signed in; list, rename, delete), `/v1/auth/passkey` (sign in),
//! and the `/.well-known/` files iOS and Android read before an app may use the domain's passkeys.

use actix_web::http::header::CACHE_CONTROL;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::auth::{TokenPair, no_store};
use super::authn::{CustomerAuth, user_agent};
use super::json::ApiJson;
use crate::auth::passkeys::{Ceremony, PasskeyInfo};
use crate::error::{AppError, AppResult};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct CeremonyView {
    /// Send it back with the platform's answer, within 5 minutes. Single use.
    ceremony_id: String,
    /// WebAuthn options as the platform's passkey API takes them: `{"publicKey": {…}}`.
    #[schema(value_type = Object)]
    options: Value,
}

impl From<Ceremony> for CeremonyView {
    fn from(c: Ceremony) -> Self {
        Self {
            ceremony_id: c.id,
            options: c.options,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterFinish {
    ceremony_id: String,
    /// What the customer calls it, like `iPhone` (default `Passkey`; at most 60 characters).
    name: Option<String>,
    /// The platform's registration response (a `PublicKeyCredential` as JSON: `id`, `rawId`, `type`,
    /// `response.attestationObject`, `response.clientDataJSON`).
    #[schema(value_type = Object)]
    credential: Value,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInFinish {
    ceremony_id: String,
    /// The platform's assertion (a `PublicKeyCredential` as JSON, with `response.userHandle`).
    #[schema(value_type = Object)]
    credential: Value,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenamePasskey {
    name: String,
}

#[derive(Serialize, ToSchema)]
pub struct PasskeyView {
    id: String,
    name: String,
    created_at: chrono::DateTime<chrono::Utc>,
    last_used_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<PasskeyInfo> for PasskeyView {
    fn from(p: PasskeyInfo) -> Self {
        Self {
            id: p.id,
            name: p.name,
            created_at: p.created_at.and_utc(),
            last_used_at: p.last_used_at.map(|t| t.and_utc()),
        }
    }
}

/// Begin adding a passkey (a sign-in within the last 5 minutes).
#[utoipa::path(post, path = "/v1/me/passkeys/begin", operation_id = "beginPasskeyRegistration", tag = "profile", responses(
    (status = 201, description = "The options for the platform's passkey creation", body = CeremonyView),
    (status = 401, description = "reauthentication_required")), security(("bearer" = [])))]
pub async fn register_begin(
    state: web::Data<AppState>,
    who: CustomerAuth,
) -> AppResult<HttpResponse> {
    let ceremony = state
        .identity
        .begin_passkey_registration(&who.customer_id, who.auth_time)
        .await?;
    Ok(no_store(
        HttpResponse::Created().json(CeremonyView::from(ceremony)),
    ))
}

/// Finish adding a passkey with the platform's answer.
#[utoipa::path(post, path = "/v1/me/passkeys/finish", operation_id = "finishPasskeyRegistration", tag = "profile", request_body = RegisterFinish, responses(
    (status = 201, description = "The passkey is the account's", body = PasskeyView),
    (status = 409, description = "passkey_exists"),
    (status = 422, description = "ceremony_not_found, passkey_refused, invalid_credential, invalid_name")), security(("bearer" = [])))]
pub async fn register_finish(
    state: web::Data<AppState>,
    who: CustomerAuth,
    body: ApiJson<RegisterFinish>,
) -> AppResult<HttpResponse> {
    let b = body.0;
    let passkey = state
        .identity
        .finish_passkey_registration(&who.customer_id, &b.ceremony_id, b.name, b.credential)
        .await?;
    Ok(HttpResponse::Created().json(PasskeyView::from(passkey)))
}

/// The account's passkeys.
#[utoipa::path(get, path = "/v1/me/passkeys", operation_id = "listPasskeys", tag = "profile",
    responses((status = 200, description = "The passkeys", body = [PasskeyView])), security(("bearer" = [])))]
pub async fn list(state: web::Data<AppState>, who: CustomerAuth) -> AppResult<HttpResponse> {
    let list: Vec<PasskeyView> = state
        .identity
        .passkeys(&who.customer_id)
        .await?
        .into_iter()
        .map(PasskeyView::from)
        .collect();
    Ok(no_store(HttpResponse::Ok().json(list)))
}

/// Rename a passkey.
#[utoipa::path(patch, path = "/v1/me/passkeys/{id}", operation_id = "renamePasskey", tag = "profile", request_body = RenamePasskey, responses(
    (status = 204, description = "Renamed"), (status = 404, description = "not_found"), (status = 422, description = "invalid_name")),
    security(("bearer" = [])))]
pub async fn rename(
    state: web::Data<AppState>,
    who: CustomerAuth,
    id: web::Path<String>,
    body: ApiJson<RenamePasskey>,
) -> AppResult<HttpResponse> {
    state
        .identity
        .rename_passkey(&who.customer_id, &id, body.0.name)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Delete a passkey, unless it is the account's last way in.
#[utoipa::path(delete, path = "/v1/me/passkeys/{id}", operation_id = "deletePasskey", tag = "profile", responses(
    (status = 204, description = "Deleted"), (status = 404, description = "not_found"), (status = 409, description = "last_way_in")),
    security(("bearer" = [])))]
pub async fn delete(
    state: web::Data<AppState>,
    who: CustomerAuth,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    state.identity.delete_passkey(&who.customer_id, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Begin a passkey sign-in (no user name: the platform offers the customer's passkeys for this domain).
#[utoipa::path(post, path = "/v1/auth/passkey/begin", operation_id = "beginPasskeySignIn", tag = "identity", responses(
    (status = 201, description = "The options for the platform's passkey assertion", body = CeremonyView)))]
pub async fn sign_in_begin(state: web::Data<AppState>) -> AppResult<HttpResponse> {
    let ceremony = state.identity.begin_passkey_sign_in().await?;
    Ok(no_store(
        HttpResponse::Created().json(CeremonyView::from(ceremony)),
    ))
}

/// Finish a passkey sign-in with the platform's assertion.
#[utoipa::path(post, path = "/v1/auth/passkey/finish", operation_id = "finishPasskeySignIn", tag = "identity", request_body = SignInFinish, responses(
    (status = 200, description = "Signed in: a token pair and `customer_id`", body = TokenPair),
    (status = 401, description = "passkey_refused"),
    (status = 422, description = "ceremony_not_found, invalid_credential")))]
pub async fn sign_in_finish(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ApiJson<SignInFinish>,
) -> AppResult<HttpResponse> {
    let b = body.0;
    let issued = state
        .identity
        .finish_passkey_sign_in(&b.ceremony_id, b.credential, user_agent(&req))
        .await?;
    Ok(no_store(
        HttpResponse::Ok().json(TokenPair::from(issued, true)),
    ))
}

fn well_known(body: Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "public, max-age=3600"))
        .json(body)
}

/// The iOS apps that may use this domain's passkeys (`webcredentials`), from `APPLE_APP_IDS`.
#[utoipa::path(get, path = "/.well-known/apple-app-site-association", operation_id = "getAppleAppSiteAssociation", tag = "identity",
    responses((status = 200, description = "`{\"webcredentials\": {\"apps\": […]}}`"), (status = 404, description = "no iOS app is configured")))]
pub async fn apple_app_site_association(state: web::Data<AppState>) -> AppResult<HttpResponse> {
    let apps = &state.config.identity.apps.apple_app_ids;
    if apps.is_empty() {
        return Err(AppError::NotFound);
    }
    Ok(well_known(json!({"webcredentials": {"apps": apps}})))
}

/// The Android app that may use this domain's passkeys (`get_login_creds`), from `ANDROID_APP_PACKAGE`.
#[utoipa::path(get, path = "/.well-known/assetlinks.json", operation_id = "getAssetLinks", tag = "identity",
    responses((status = 200, description = "A Digital Asset Links statement list"), (status = 404, description = "no Android app is configured")))]
pub async fn asset_links(state: web::Data<AppState>) -> AppResult<HttpResponse> {
    let android = state
        .config
        .identity
        .apps
        .android
        .as_ref()
        .ok_or(AppError::NotFound)?;
    let prints: Vec<String> = android
        .cert_fingerprints
        .iter()
        .map(|p| {
            p.iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(":")
        })
        .collect();
    Ok(well_known(json!([{
        "relation": ["delegate_permission/common.handle_all_urls", "delegate_permission/common.get_login_creds"],
        "target": {"namespace": "android_app", "package_name": android.package, "sha256_cert_fingerprints": prints}
    }])))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/.well-known/apple-app-site-association")
            .route(web::get().to(apple_app_site_association)),
    )
    .service(web::resource("/.well-known/assetlinks.json").route(web::get().to(asset_links)))
    .service(web::resource("/v1/auth/passkey/begin").route(web::post().to(sign_in_begin)))
    .service(web::resource("/v1/auth/passkey/finish").route(web::post().to(sign_in_finish)))
    .service(web::resource("/v1/me/passkeys/begin").route(web::post().to(register_begin)))
    .service(web::resource("/v1/me/passkeys/finish").route(web::post().to(register_finish)))
    .service(web::resource("/v1/me/passkeys").route(web::get().to(list)))
    .service(
        web::resource("/v1/me/passkeys/{id}")
            .route(web::patch().to(rename))
            .route(web::delete().to(delete)),
    );
}
