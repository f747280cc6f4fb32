//! Operations routes: liveness, readiness and the OpenAPI document.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::OpenApi;

use crate::error::{AppError, AppResult, Problem};
use crate::state::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Status {
    status: &'static str,
}

/// Alive: the process answers.
#[utoipa::path(get, path = "/healthz", operation_id = "getHealth", tag = "operations",
    responses((status = 200, description = "The process is alive", body = Status)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Status { status: "ok" })
}

/// Ready: the database is reachable and every migration is applied.
#[utoipa::path(get, path = "/readyz", operation_id = "getReadiness", tag = "operations", responses(
    (status = 200, description = "Ready to serve", body = Status),
    (status = 503, description = "The database is unreachable or not migrated",
        content_type = "application/problem+json", body = super::problem::ProblemBody)))]
pub async fn readyz(state: web::Data<AppState>) -> AppResult<HttpResponse> {
    match state.db.check_ready().await {
        Ok(()) => Ok(HttpResponse::Ok().json(Status { status: "ready" })),
        Err(cause) => {
            tracing::warn!(%cause, "not ready");
            Err(AppError::Problem(Problem {
                retry_after: Some(crate::db::RETRY_AFTER_UNAVAILABLE),
                ..Problem::new(
                    503,
                    "not_ready",
                    "Not ready",
                    "The database is unreachable or not fully migrated.",
                )
            }))
        }
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", operation_id = "getOpenApiDocument", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3 document of this API")))]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(super::openapi::ApiDoc::openapi())
}
