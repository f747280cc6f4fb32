//! The OpenAPI 3.1 document (`GET /openapi.json`, `shopd openapi`): the routes' own annotations, and two
//! passes over them: the security schemes, and every problem response as `application/problem+json` with the
//! `code` values a client can meet there (the route's own, and those every route of its kind can answer).

use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, Response};

use super::edge::is_attested;
use super::{auth, me, ops, orders, passkeys, platforms, problem, products, staff, webhooks};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "shopd",
        description = "The HTTP API of shopd, the backend of a mobile shop."
    ),
    paths(
        ops::healthz, ops::readyz, ops::openapi,
        auth::signup, auth::verify, auth::resend, auth::login, auth::login_verify, auth::refresh, auth::logout,
        auth::sessions, auth::end_session, auth::password_reset, auth::password_reset_verify, auth::jwks,
        platforms::nonce, platforms::apple, platforms::google,
        me::get, me::patch, me::export, me::erase, me::start_phone, me::verify_phone,
        platforms::list, platforms::link, platforms::unlink,
        passkeys::register_begin, passkeys::register_finish, passkeys::list, passkeys::rename, passkeys::delete,
        passkeys::sign_in_begin, passkeys::sign_in_finish, passkeys::apple_app_site_association, passkeys::asset_links,
        staff::login, staff::refresh, staff::logout, staff::audit_log, staff::customer_contact,
        staff::customer_erase, staff::orders, staff::order, staff::transition, staff::clear_flag, staff::order_address,
        staff::create_product, staff::update_product,
        webhooks::stripe, webhooks::standard, platforms::apple_notification,
        products::list, products::get,
        orders::place, orders::list, orders::get, orders::shipping_address, orders::cancel,
    ),
    components(schemas(problem::ProblemBody)),
    tags(
        (name = "operations", description = "Liveness, readiness and this document: for the platform, not the app."),
        (name = "identity", description = "Signup with a texted code, login, Sign in with Apple and Google, passkeys, token refresh, logout, sessions, password reset and the token keys."),
        (name = "profile", description = "The signed-in customer's own profile, phone, linked sign-in providers, passkeys, data export and erasure."),
        (name = "catalogue", description = "The products for sale; no sign-in needed."),
        (name = "orders", description = "The signed-in customer's orders: placing one (idempotent), reading, cancelling."),
        (name = "webhooks", description = "Signed callbacks of the payment provider and of Apple: never called by the app."),
        (name = "staff", description = "The store staff's API: sign-in, the orders queue and actions, products, customers, audit log; each route needs a role."),
    ),
    modifiers(&SecuritySchemes, &Problems)
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
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

/// Every problem response typed, described and listing its codes; the responses every route of a kind can
/// give added where its annotation leaves them out; the attestation header required where it applies.
struct Problems;

/// The codes of a status every route can answer with, when its annotation names none.
fn default_codes(status: &str) -> &'static str {
    match status {
        "400" => "malformed_json",
        "401" => "invalid_token, session_ended",
        "403" => "forbidden",
        "404" => "not_found",
        "409" => "conflict",
        "413" => "payload_too_large",
        "415" => "unsupported_media_type",
        "422" => "invalid_field",
        "429" => "too_many_requests",
        "502" => "bad_gateway",
        "503" => "service_unavailable",
        _ => "internal",
    }
}

fn reason(status: &str) -> &'static str {
    match status {
        "400" => "The body is not JSON, or a header is missing or malformed",
        "401" => "Not signed in, or the credentials are not valid",
        "403" => "The signed-in role may not do this",
        "404" => "There is no such thing, or it is someone else's",
        "409" => "The request conflicts with the state of the resource",
        "413" => "The body is too large",
        "415" => "The body is not sent as application/json",
        "422" => "The body is JSON, but a field is invalid",
        "429" => "Too many requests: wait `Retry-After` seconds",
        "502" => "An outside provider failed",
        "503" => "Unavailable for now: retry after `Retry-After` seconds",
        _ => {
            "An unexpected error: nothing of its cause is said; `X-Request-Id` finds it in the log"
        }
    }
}

/// Adds `codes` to the problem response `status` of `operation`, making it when absent.
fn add_codes(operation: &mut Operation, status: &str, codes: &str) {
    let responses = &mut operation.responses.responses;
    let existing = match responses.get(status) {
        Some(RefOr::T(response)) => Some(response.description.clone()),
        _ => None,
    };
    let listed = match existing {
        Some(description) if !description.is_empty() && !description.contains(codes) => {
            format!("{description}, {codes}")
        }
        Some(description) if !description.is_empty() => description,
        _ => codes.to_owned(),
    };
    responses.insert(status.to_owned(), RefOr::T(Response::new(listed)));
}

fn is_json_body(operation: &Operation) -> bool {
    matches!(&operation.request_body, Some(RefOr::T(body)) if body.content.contains_key("application/json"))
}

/// The attestation header on a customer route: needed once the shop sets `ATTESTATION_MODE=enforce`, so a
/// parameter a generated client can fill, and, beside the bearer token, the `attestation` scheme. (A route
/// without the bearer token keeps no security requirement: generators would then demand credentials.)
fn attested(operation: &mut Operation, bearer: bool) {
    let header = ParameterBuilder::new()
        .name("Approov-Token")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "The app's attestation token; required when the shop enforces attestation (the `attestation` \
             scheme).",
        ))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build();
    operation
        .parameters
        .get_or_insert_with(Vec::new)
        .push(header.into());
    if bearer {
        let both = SecurityRequirement::new("bearer", Vec::<String>::new())
            .add("attestation", Vec::<String>::new());
        let bearer_alone = SecurityRequirement::new("bearer", Vec::<String>::new());
        operation.security = Some(vec![both, bearer_alone]);
    }
}

impl utoipa::Modify for Problems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let v1 = path.starts_with("/v1/");
            let webhook = path.starts_with("/v1/webhooks/");
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                let bearer = operation.security.as_ref().is_some_and(|s| {
                    serde_json::to_value(s).is_ok_and(|v| v.to_string().contains("bearer"))
                });
                // Codes every route of its kind can answer, beside its own.
                let mut kinds: Vec<(&str, &str)> = vec![("500", "internal")];
                if v1 {
                    kinds.push(("429", "too_many_requests"));
                    kinds.push(("503", "service_unavailable"));
                }
                if bearer {
                    kinds.push(("401", "invalid_token, session_ended"));
                }
                if is_json_body(operation) && !webhook {
                    kinds.push(("400", "malformed_json"));
                    kinds.push(("413", "payload_too_large"));
                    kinds.push(("415", "unsupported_media_type"));
                    kinds.push(("422", "invalid_field"));
                }
                if is_attested(path) {
                    kinds.push(("401", "attestation_failed"));
                    attested(operation, bearer);
                }
                for (status, codes) in kinds {
                    add_codes(operation, status, codes);
                }
                let problem_json = ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ProblemBody")))
                    .build();
                for (status, response) in operation.responses.responses.iter_mut() {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    if !status.starts_with('4') && !status.starts_with('5') {
                        continue;
                    }
                    let codes = if response.description.is_empty() {
                        default_codes(status).to_owned()
                    } else {
                        response.description.clone()
                    };
                    response.description = format!("{}. `code`: {codes}", reason(status));
                    response.content.clear();
                    response.content.insert(
                        "application/problem+json".to_owned(),
                        problem_json.clone().into(),
                    );
                }
            }
        }
    }
}
