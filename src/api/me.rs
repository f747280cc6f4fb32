//! `/v1/me`: the profile (masked), its changes, the GDPR export and erasure.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::auth::{VerificationResponse, no_store};
use super::authn::CustomerAuth;
use super::edge::client_ip;
use super::json::ApiJson;
use super::orders::{AddressView, OrderDetailView};
use crate::auth::{Profile, ProfileChange};
use crate::domain::Sensitive;
use crate::error::AppResult;
use crate::orders::AddressRead;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct ProfileView {
    id: String,
    name: Option<String>,
    /// Like `+44•••••••123`.
    phone_masked: Option<String>,
    /// Like `j•••@example.com`.
    email_masked: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
}

impl From<Profile> for ProfileView {
    fn from(p: Profile) -> Self {
        Self {
            id: p.id,
            name: p.name.map(Sensitive::into_inner),
            phone_masked: p.phone_masked,
            email_masked: p.email_masked,
            created_at: p.created_at.and_utc(),
        }
    }
}

/// Present-and-null (clear) apart from absent (leave as is).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfilePatch {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    email: Option<Option<String>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseRequest {
    /// Required when the account has a password; an account without one (made by a platform sign-in) needs a
    /// sign-in within the last 5 minutes instead.
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    password: Option<Sensitive<String>>,
}

/// Everything shopd holds about the customer, decrypted (docs/privacy.md lists it).
#[derive(Serialize, ToSchema)]
pub struct ExportView {
    id: String,
    phone: Option<String>,
    name: Option<String>,
    email: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
    sessions: Vec<ExportSession>,
    /// Every order, oldest first, with its lines, shipping address and status history.
    orders: Vec<ExportOrder>,
    /// When the shop's staff revealed the contact or an order's address, by the role of who did it.
    revealed_by_staff: Vec<ExportReveal>,
    /// Security events of the customer's sessions (`refresh_token_reuse`).
    security_events: Vec<ExportSecurityEvent>,
    /// The linked Apple and Google sign-ins, with the e-mail each gave (perhaps an Apple relay address).
    identities: Vec<ExportIdentity>,
    passkeys: Vec<super::passkeys::PasskeyView>,
}

#[derive(Serialize, ToSchema)]
pub struct ExportIdentity {
    provider: String,
    email: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct ExportOrder {
    #[serde(flatten)]
    order: OrderDetailView,
    /// `null` only for an order of an erased customer, which never reaches an export.
    shipping_address: Option<AddressView>,
    history: Vec<ExportOrderEvent>,
}

#[derive(Serialize, ToSchema)]
pub struct ExportOrderEvent {
    from: Option<String>,
    to: String,
    /// `customer`, `staff`, `provider` or `system`; which staff member is not said.
    by: String,
    note: Option<String>,
    at: chrono::DateTime<chrono::Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct ExportReveal {
    /// `contact` or `shipping_address`.
    what: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<String>,
    role: String,
    at: chrono::DateTime<chrono::Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct ExportSecurityEvent {
    kind: String,
    at: chrono::DateTime<chrono::Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct ExportSession {
    id: String,
    created_at: chrono::DateTime<chrono::Utc>,
    last_used_at: chrono::DateTime<chrono::Utc>,
    client: String,
    current: bool,
}

/// The customer's profile, with the phone and e-mail masked.
#[utoipa::path(get, path = "/v1/me", operation_id = "getProfile", tag = "profile", responses((status = 200, description = "The profile, phone and e-mail masked", body = ProfileView)),
    security(("bearer" = [])))]
pub async fn get(state: web::Data<AppState>, who: CustomerAuth) -> AppResult<HttpResponse> {
    let profile = state.identity.profile(&who.customer_id).await?;
    Ok(no_store(
        HttpResponse::Ok().json(ProfileView::from(profile)),
    ))
}

/// Change the name or the e-mail (`null` clears).
#[utoipa::path(patch, path = "/v1/me", operation_id = "updateProfile", tag = "profile", request_body = ProfilePatch,
    responses((status = 200, description = "The profile as changed", body = ProfileView), (status = 422, description = "invalid_name, invalid_email")),
    security(("bearer" = [])))]
pub async fn patch(
    state: web::Data<AppState>,
    who: CustomerAuth,
    body: ApiJson<ProfilePatch>,
) -> AppResult<HttpResponse> {
    let change = ProfileChange {
        name: body.0.name,
        email: body.0.email,
    };
    let profile = state
        .identity
        .update_profile(&who.customer_id, change)
        .await?;
    Ok(no_store(
        HttpResponse::Ok().json(ProfileView::from(profile)),
    ))
}

/// Every personal value, decrypted (GDPR access). Needs a login within the last 5 minutes.
#[utoipa::path(get, path = "/v1/me/export", operation_id = "exportMyData", tag = "profile",
    responses((status = 200, description = "Everything shopd holds about the customer, decrypted", body = ExportView), (status = 401, description = "reauthentication_required")),
    security(("bearer" = [])))]
pub async fn export(state: web::Data<AppState>, who: CustomerAuth) -> AppResult<HttpResponse> {
    let e = state
        .identity
        .export(&who.customer_id, &who.session_id, who.auth_time)
        .await?;
    let view = ExportView {
        id: e.id,
        phone: e.phone.map(Sensitive::into_inner),
        name: e.name.map(Sensitive::into_inner),
        email: e.email.map(Sensitive::into_inner),
        created_at: e.created_at.and_utc(),
        updated_at: e.updated_at.and_utc(),
        sessions: e
            .sessions
            .into_iter()
            .map(|s| ExportSession {
                id: s.id,
                created_at: s.created_at.and_utc(),
                last_used_at: s.last_used_at.and_utc(),
                client: s.client,
                current: s.current,
            })
            .collect(),
        orders: e
            .orders
            .into_iter()
            .map(|o| ExportOrder {
                order: o.detail.into(),
                shipping_address: match o.shipping_address {
                    AddressRead::Address(a) => Some(a.into()),
                    AddressRead::Erased => None,
                },
                history: o
                    .history
                    .into_iter()
                    .map(|h| ExportOrderEvent {
                        from: h.from,
                        to: h.to,
                        by: h.actor_kind,
                        note: h.note,
                        at: h.at.and_utc(),
                    })
                    .collect(),
            })
            .collect(),
        revealed_by_staff: e
            .reveals
            .into_iter()
            .map(|r| ExportReveal {
                what: r.what,
                order_id: r.order_id,
                role: r.role,
                at: r.at.and_utc(),
            })
            .collect(),
        security_events: e
            .security_events
            .into_iter()
            .map(|(kind, at)| ExportSecurityEvent {
                kind,
                at: at.and_utc(),
            })
            .collect(),
        identities: e
            .identities
            .into_iter()
            .map(|i| ExportIdentity {
                provider: i.provider,
                email: i.email.map(Sensitive::into_inner),
                created_at: i.created_at.and_utc(),
            })
            .collect(),
        passkeys: e.passkeys.into_iter().map(Into::into).collect(),
    };
    Ok(no_store(HttpResponse::Ok().json(view)))
}

/// Erase the account: every session ends and every personal value is destroyed.
#[utoipa::path(delete, path = "/v1/me", operation_id = "eraseMe", tag = "profile", request_body = EraseRequest,
    responses((status = 204, description = "The account is erased: sessions ended, personal data destroyed"), (status = 401, description = "invalid_credentials")), security(("bearer" = [])))]
pub async fn erase(
    state: web::Data<AppState>,
    who: CustomerAuth,
    body: ApiJson<EraseRequest>,
) -> AppResult<HttpResponse> {
    state
        .identity
        .erase(&who.customer_id, body.0.password, who.auth_time)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"phone": "+44 7700 900123"}))]
pub struct PhoneRequest {
    /// In international form.
    phone: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhoneVerifyRequest {
    verification_id: String,
    #[schema(value_type = String)]
    code: Sensitive<String>,
}

/// Verify a phone for the account (the first one, or a new one): texts a code. Needs a sign-in within the last
/// 5 minutes.
#[utoipa::path(post, path = "/v1/me/phone", operation_id = "startPhoneVerification", tag = "profile", request_body = PhoneRequest, responses(
    (status = 202, description = "A code was texted to the phone: verify it with the `verification_id`", body = VerificationResponse),
    (status = 401, description = "reauthentication_required"), (status = 409, description = "phone_unchanged"),
    (status = 422, description = "invalid_phone, region_not_allowed"), (status = 429, description = "too many texts")),
    security(("bearer" = [])))]
pub async fn start_phone(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: CustomerAuth,
    body: ApiJson<PhoneRequest>,
) -> AppResult<HttpResponse> {
    let started = state
        .identity
        .start_phone_verification(
            &who.customer_id,
            who.auth_time,
            &body.0.phone,
            client_ip(&req),
        )
        .await?;
    Ok(no_store(
        HttpResponse::Accepted().json(VerificationResponse::from(started)),
    ))
}

/// The texted code: the phone is the account's from here on.
#[utoipa::path(post, path = "/v1/me/phone/verify", operation_id = "verifyPhone", tag = "profile", request_body = PhoneVerifyRequest, responses(
    (status = 200, description = "The profile, with the phone", body = ProfileView),
    (status = 404, description = "verification_not_found"), (status = 409, description = "phone_taken"),
    (status = 422, description = "invalid_code, code_expired, verification_locked, verification_used")),
    security(("bearer" = [])))]
pub async fn verify_phone(
    state: web::Data<AppState>,
    who: CustomerAuth,
    body: ApiJson<PhoneVerifyRequest>,
) -> AppResult<HttpResponse> {
    let b = body.0;
    state
        .identity
        .verify_phone(&who.customer_id, &b.verification_id, b.code.expose())
        .await?;
    let profile = state.identity.profile(&who.customer_id).await?;
    Ok(no_store(
        HttpResponse::Ok().json(ProfileView::from(profile)),
    ))
}
