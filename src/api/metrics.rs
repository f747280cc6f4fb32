//! `GET /metrics`: the Prometheus text of this instance. Served on `METRICS_BIND` when set (and then not on
//! the public address), else on the public address only when `METRICS_TOKEN` is set; with a token, a
//! request needs `Authorization: Bearer <METRICS_TOKEN>`, compared in constant time. With neither
//! variable set there is no `/metrics` at all.

use actix_web::http::header::{CACHE_CONTROL, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use sha2::{Digest, Sha256};

use super::authn::bearer;
use crate::error::{AppError, AppResult, Problem};
use crate::state::AppState;
use crate::telemetry::metrics::CONTENT_TYPE;

/// Mounts `/metrics`.
pub fn route(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/metrics").route(web::get().to(metrics)));
}

fn refused() -> AppError {
    Problem::unauthorized("invalid_token", "The metrics need their bearer token.").into()
}

/// Compares digests, so that neither the content nor the length of the token leaks through timing.
fn authorised(req: &HttpRequest, expected: &str) -> AppResult<()> {
    let given = bearer(req).map_err(|_| refused())?;
    let (given, expected) = (Sha256::digest(given), Sha256::digest(expected));
    if crate::crypto::constant_time_eq(&given, &expected) {
        Ok(())
    } else {
        Err(refused())
    }
}

pub async fn metrics(state: web::Data<AppState>, req: HttpRequest) -> AppResult<HttpResponse> {
    if let Some(token) = &state.config.edge.metrics.token {
        authorised(&req, token.expose())?;
    }
    let (connections, idle, max) = state.db.pool_state();
    state.metrics.db_pool(connections, idle, max);
    state.metrics.outbox(&state.outbox.snapshot());
    let mut response = HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(state.metrics.render());
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
