//! HTTP: one module per route group, wire types apart from database rows. Handlers stay thin: parse, call one
//! domain function, map the result.

pub mod json;
pub mod ops;
pub mod problem;
pub mod request_context;

use actix_web::middleware::ErrorHandlers;
use actix_web::{HttpRequest, web};
use utoipa::OpenApi;

use crate::error::AppError;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "shopd",
        description = "The HTTP API of shopd, the backend of a mobile shop."
    ),
    paths(ops::healthz, ops::readyz, ops::openapi),
    components(schemas(problem::ProblemBody))
)]
pub struct ApiDoc;

/// Every route, mounted on an actix `App`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    // `web::resource` (not `App::route`) so that a known path with another method is a 405, not a 404.
    cfg.service(web::resource("/healthz").route(web::get().to(ops::healthz)))
        .service(web::resource("/readyz").route(web::get().to(ops::readyz)))
        .service(web::resource("/openapi.json").route(web::get().to(ops::openapi)));
}

/// Extractor settings that turn path and query errors into problem+json.
pub fn extractor_config(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::PathConfig::default().error_handler(|err, _req: &HttpRequest| {
            AppError::from(crate::error::Problem::new(
                404,
                "not_found",
                "Not found",
                format!("There is nothing at this address ({err})."),
            ))
            .into()
        }),
    )
    .app_data(
        web::QueryConfig::default().error_handler(|err, _req: &HttpRequest| {
            AppError::from(crate::error::Problem::invalid(
                "invalid_query",
                "query",
                err.to_string(),
            ))
            .into()
        }),
    );
}

pub async fn unknown_route() -> Result<actix_web::HttpResponse, AppError> {
    Err(AppError::NotFound)
}

pub fn error_normaliser<B: actix_web::body::MessageBody + 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(problem::ensure_problem_json)
}

pub use request_context::request_context;
