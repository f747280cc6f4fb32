//! HTTP: one module per route group, wire types apart from database rows. Handlers stay thin: parse, call one
//! domain function, map the result.

pub mod attestation;
pub mod auth;
pub mod authn;
pub mod edge;
pub mod json;
pub mod me;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod orders;
pub mod passkeys;
pub mod platforms;
pub mod problem;
pub mod products;
pub mod request_context;
pub mod staff;
pub mod webhooks;

use actix_web::middleware::ErrorHandlers;
use actix_web::{HttpRequest, web};

use crate::error::AppError;

/// Every route, mounted on an actix `App`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    // `web::resource` (not `App::route`) so that a known path with another method is a 405, not a 404.
    cfg.service(web::resource("/healthz").route(web::get().to(ops::healthz)))
        .service(web::resource("/readyz").route(web::get().to(ops::readyz)))
        .service(web::resource("/openapi.json").route(web::get().to(ops::openapi)))
        .service(web::resource("/.well-known/jwks.json").route(web::get().to(auth::jwks)))
        .service(web::resource("/v1/auth/signup").route(web::post().to(auth::signup)))
        .service(web::resource("/v1/auth/signup/verify").route(web::post().to(auth::verify)))
        .service(web::resource("/v1/auth/otp/resend").route(web::post().to(auth::resend)))
        .service(web::resource("/v1/auth/login").route(web::post().to(auth::login)))
        .service(web::resource("/v1/auth/login/verify").route(web::post().to(auth::login_verify)))
        .service(web::resource("/v1/auth/refresh").route(web::post().to(auth::refresh)))
        .service(web::resource("/v1/auth/logout").route(web::post().to(auth::logout)))
        .service(web::resource("/v1/auth/sessions").route(web::get().to(auth::sessions)))
        .service(web::resource("/v1/auth/sessions/{id}").route(web::delete().to(auth::end_session)))
        .service(
            web::resource("/v1/auth/password-reset").route(web::post().to(auth::password_reset)),
        )
        .service(
            web::resource("/v1/auth/password-reset/verify")
                .route(web::post().to(auth::password_reset_verify)),
        )
        .service(
            web::resource("/v1/me")
                .route(web::get().to(me::get))
                .route(web::patch().to(me::patch))
                .route(web::delete().to(me::erase)),
        )
        .service(web::resource("/v1/me/export").route(web::get().to(me::export)))
        .service(web::resource("/v1/me/phone").route(web::post().to(me::start_phone)))
        .service(web::resource("/v1/me/phone/verify").route(web::post().to(me::verify_phone)))
        .configure(platforms::routes)
        .configure(passkeys::routes)
        .configure(crate::console::routes)
        .configure(staff::routes)
        .configure(webhooks::routes)
        .service(web::resource("/v1/products").route(web::get().to(products::list)))
        .service(web::resource("/v1/products/{id}").route(web::get().to(products::get)))
        .service(
            web::resource("/v1/orders")
                .route(web::get().to(orders::list))
                .route(web::post().to(orders::place)),
        )
        .service(web::resource("/v1/orders/{id}").route(web::get().to(orders::get)))
        .service(
            web::resource("/v1/orders/{id}/shipping-address")
                .route(web::get().to(orders::shipping_address)),
        )
        .service(web::resource("/v1/orders/{id}/cancel").route(web::post().to(orders::cancel)));
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
