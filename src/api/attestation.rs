//! App attestation (DESIGN section 8) as middleware on the customer routes (`edge::ATTESTED_PREFIXES`).
//! `ATTESTATION_MODE=off` looks at nothing; `report` checks, counts each failure by reason and lets the
//! request through; `enforce` answers 401 `attestation_failed`. The token and the Authorization header
//! never reach a log: only the reason does.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName};
use actix_web::middleware::Next;
use actix_web::web;

use super::edge::{is_attested, routing_path};
use super::problem::problem_response;
use crate::config::AttestationMode;
use crate::crypto::attestation::{self, Authorization};
use crate::error::Problem;
use crate::state::AppState;

pub const APPROOV_TOKEN: HeaderName = HeaderName::from_static("approov-token");

/// Checks the attestation of `req`, if its route and the mode call for it: `Err(reason)` on failure.
fn verdict(state: &AppState, req: &ServiceRequest) -> Option<Result<(), attestation::Failure>> {
    let settings = &state.config.edge.attestation;
    if settings.mode == AttestationMode::Off || !is_attested(routing_path(req)) {
        return None;
    }
    let key = settings.key.as_ref()?;
    let mut tokens = req.headers().get_all(&APPROOV_TOKEN);
    let token = match (tokens.next(), tokens.next()) {
        (Some(one), None) => Some(one.as_bytes()),
        _ => None,
    };
    let mut values = req.headers().get_all(header::AUTHORIZATION);
    let authorization = match (values.next(), values.next()) {
        (None, _) => Authorization::None,
        (Some(one), None) => Authorization::One(one.as_bytes()),
        (Some(_), Some(_)) => Authorization::Several,
    };
    Some(attestation::check(
        key,
        token,
        authorization,
        settings.binding,
    ))
}

pub async fn attest(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let mut refuse = false;
    if let Some(state) = req.app_data::<web::Data<AppState>>() {
        match verdict(state, &req) {
            None => {}
            Some(Ok(())) => state.metrics.attestation_passed(),
            Some(Err(failure)) => {
                state.metrics.attestation_failed(failure.reason());
                let enforce = state.config.edge.attestation.mode == AttestationMode::Enforce;
                tracing::info!(
                    reason = failure.reason(),
                    enforced = enforce,
                    "app attestation failed"
                );
                refuse = enforce;
            }
        }
    }
    if refuse {
        let problem = Problem::unauthorized(
            "attestation_failed",
            "This request did not come with a valid attestation of the shop's app.",
        );
        return Ok(req
            .into_response(problem_response(&problem))
            .map_into_right_body());
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}
