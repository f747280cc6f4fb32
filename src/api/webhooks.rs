//! `/v1/webhooks/*`: payment provider webhooks. The raw body is handed over untouched: the signature is
//! checked on these exact bytes before anything is parsed.

use actix_web::http::header::HeaderMap;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::AppResult;
use crate::state::AppState;
use crate::webhooks::{Provider, Received};

/// Webhook bodies are small; anything larger is refused before it is read whole.
pub const BODY_LIMIT: usize = 256 * 1024;

#[derive(Serialize, ToSchema)]
pub struct Acknowledged {
    received: bool,
    /// What the event did: `paid`, `payment_review`, `needs_refund`, `payment_failed`, `refunded`,
    /// `refund_deferred`, `refund_recorded`, `refund_review`, `unknown_order`, `no_effect`, `duplicate`,
    /// `ignored`.
    outcome: &'static str,
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn received(req: &HttpRequest) -> Received {
    let h = req.headers();
    Received {
        stripe_signature: header(h, "stripe-signature"),
        webhook_id: header(h, "webhook-id"),
        webhook_timestamp: header(h, "webhook-timestamp"),
        webhook_signature: header(h, "webhook-signature"),
        content_type: header(h, "content-type"),
        user_agent: header(h, "user-agent"),
    }
}

async fn ingest(
    state: &AppState,
    provider: Provider,
    req: &HttpRequest,
    body: web::Bytes,
) -> AppResult<HttpResponse> {
    let outcome = state
        .webhooks
        .ingest(provider, received(req), body.to_vec())
        .await?;
    Ok(HttpResponse::Ok().json(Acknowledged {
        received: true,
        outcome: outcome.as_str(),
    }))
}

/// Stripe events, signed with `Stripe-Signature`.
#[utoipa::path(post, path = "/v1/webhooks/stripe", operation_id = "receiveStripeWebhook", tag = "webhooks",
    request_body(content = String, content_type = "application/json", description = "a Stripe event"), responses(
    (status = 200, description = "The event's effect is committed (or it is a duplicate, or of a type shopd ignores)", body = Acknowledged),
    (status = 400, description = "invalid_event"),
    (status = 401, description = "signature_missing, signature_mismatch, timestamp_outside_tolerance"),
    (status = 503, description = "the effect could not be committed: retry")))]
pub async fn stripe(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> AppResult<HttpResponse> {
    ingest(&state, Provider::Stripe, &req, body).await
}

/// Standard Webhooks events (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
#[utoipa::path(post, path = "/v1/webhooks/standard", operation_id = "receiveStandardWebhook", tag = "webhooks",
    request_body(content = String, content_type = "application/json", description = "a Standard Webhooks event"), responses(
    (status = 200, description = "The event's effect is committed (or it is a duplicate, or of a type shopd ignores)", body = Acknowledged),
    (status = 400, description = "invalid_event"),
    (status = 401, description = "signature_missing, signature_mismatch, timestamp_outside_tolerance"),
    (status = 503, description = "the effect could not be committed: retry")))]
pub async fn standard(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> AppResult<HttpResponse> {
    ingest(&state, Provider::Standard, &req, body).await
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1/webhooks")
            .app_data(web::PayloadConfig::new(BODY_LIMIT))
            .service(web::resource("/stripe").route(web::post().to(stripe)))
            .service(web::resource("/standard").route(web::post().to(standard)))
            .service(
                web::resource("/apple").route(web::post().to(super::platforms::apple_notification)),
            ),
    );
}
