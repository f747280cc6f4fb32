//! HTTP: one module per route group, wire types apart from database rows. Handlers stay thin: parse, call one
//! domain function, map the result.

pub mod attestation;
pub mod auth;
pub mod authn;
pub mod edge;
pub mod json;
pub mod me;
pub mod metrics;
pub mod ops;
pub mod orders;
pub mod problem;
pub mod products;
pub mod request_context;
pub mod staff;
pub mod webhooks;

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
    paths(
        ops::healthz, ops::readyz, ops::openapi,
        auth::signup, auth::verify, auth::resend, auth::login, auth::refresh, auth::logout,
        auth::sessions, auth::end_session, auth::password_reset, auth::password_reset_verify, auth::jwks,
        me::get, me::patch, me::export, me::erase,
        staff::login, staff::refresh, staff::logout, staff::audit_log, staff::customer_contact,
        staff::customer_erase, staff::orders, staff::order, staff::transition, staff::clear_flag, staff::order_address,
        staff::create_product, staff::update_product,
        webhooks::stripe, webhooks::standard,
        products::list, products::get,
        orders::place, orders::list, orders::get, orders::shipping_address, orders::cancel,
    ),
    components(schemas(problem::ProblemBody)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "attestation",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Approov-Token",
                "App attestation token (HS256 JWT from the attestation SDK), on /v1/auth/*, /v1/me*, \
                 /v1/products* and /v1/orders* when the shop turns attestation on; bound to the \
                 Authorization header by its `pay` claim. Refused: 401 attestation_failed.",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

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
