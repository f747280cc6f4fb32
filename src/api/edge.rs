//! The edge of the HTTP API: which routes are which (in one place), the client address, the rate limits
//! (per account for a request with a valid access token, else per address by route class), and the
//! security headers of every response.
//!
//! Paths are classified by their routing form (`match_info().as_str()`: percent-escapes of ordinary
//! characters decoded, as actix decodes them before matching), so `/v1/%6De` is classified as `/v1/me`, the
//! route it reaches. A prefix matches whole segments: `/v1/me` covers `/v1/me` and `/v1/me/export`, not
//! `/v1/merchants`.

use std::net::IpAddr;
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, web};

use super::problem::problem_response;
use crate::auth::claims::Audience;
use crate::error::Problem;
use crate::limits::{Account, AddressLimiter, RouteLimits};
use crate::state::AppState;

/// The customer routes: app attestation applies to these (DESIGN section 8). Webhooks, staff and
/// operations routes are never attested.
pub const ATTESTED_PREFIXES: &[&str] = &["/v1/auth", "/v1/me", "/v1/products", "/v1/orders"];

/// Routes whose every response is personal or carries credentials: `Cache-Control: no-store` even
/// without an Authorization header (token pairs, verification ids).
pub const NO_STORE_PREFIXES: &[&str] = &["/v1/auth", "/v1/staff/auth", "/v1/me"];

/// A group of routes that shares one per-address rate, for requests without a valid access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// Signup, login, refresh, codes, password reset: customer and staff.
    Auth,
    /// Payment provider callbacks (never counted per account).
    Webhooks,
    /// Every other `/v1` route.
    Api,
    /// Health, readiness, metrics, the OpenAPI document, JWKS: not limited.
    Operations,
}

impl RouteClass {
    pub fn label(self) -> &'static str {
        match self {
            RouteClass::Auth => "auth",
            RouteClass::Webhooks => "webhooks",
            RouteClass::Api => "api",
            RouteClass::Operations => "operations",
        }
    }
}

/// Route classes by prefix, the first match wins.
const CLASSES: &[(&str, RouteClass)] = &[
    ("/v1/auth", RouteClass::Auth),
    ("/v1/staff/auth", RouteClass::Auth),
    ("/v1/webhooks", RouteClass::Webhooks),
    ("/v1", RouteClass::Api),
];

/// `path` is `prefix` or lies below it.
pub fn has_prefix(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

pub fn is_attested(path: &str) -> bool {
    ATTESTED_PREFIXES.iter().any(|p| has_prefix(path, p))
}

pub fn route_class(path: &str) -> RouteClass {
    CLASSES
        .iter()
        .find(|(prefix, _)| has_prefix(path, prefix))
        .map_or(RouteClass::Operations, |(_, class)| *class)
}

/// The path as routing sees it.
pub fn routing_path(req: &ServiceRequest) -> &str {
    req.match_info().as_str()
}

/// The client address of a request: the peer, or, when the peer is one of `TRUSTED_PROXIES`, the address
/// its `X-Forwarded-For` names (see `TrustedProxies::client_address`). Every per-address limit uses this.
pub fn client_ip(req: &HttpRequest) -> IpAddr {
    let peer = req
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    let Some(state) = req.app_data::<web::Data<AppState>>() else {
        return peer.to_canonical();
    };
    let proxies = &state.config.edge.trusted_proxies;
    if proxies.is_empty() {
        return peer.to_canonical();
    }
    let forwarded = req
        .headers()
        .get_all(HeaderName::from_static("x-forwarded-for"))
        .filter_map(|v| v.to_str().ok());
    proxies.client_address(peer, forwarded)
}

/// The limiter of a route class, if its rate is not `off`.
fn limiter(limits: &RouteLimits, class: RouteClass) -> Option<&AddressLimiter> {
    match class {
        RouteClass::Auth => limits.auth.as_ref(),
        RouteClass::Webhooks => limits.webhooks.as_ref(),
        RouteClass::Api => limits.api.as_ref(),
        RouteClass::Operations => None,
    }
}

/// The account of a request's access token, when it has a valid one for its routes (a staff token on
/// `/v1/staff`, a customer token elsewhere; signature checked once per token, `auth::verified`). The
/// session is not checked here: an ended session's token is refused by the handler, counted or not.
fn account(state: &AppState, req: &ServiceRequest, path: &str) -> Option<Account> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ")?;
    let staff = has_prefix(path, "/v1/staff");
    let audience = if staff {
        Audience::Staff
    } else {
        Audience::Customer
    };
    let claims = state.identity.tokens.verify(token, audience).ok()?;
    Some(Account {
        staff,
        subject: claims.sub,
    })
}

/// Middleware: a request with a valid access token over its account's rate, or one without over its route
/// class's rate for its client address, gets 429 `too_many_requests` with `Retry-After`. Webhooks are
/// counted per address only.
pub async fn rate_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let refusal = req
        .app_data::<web::Data<AppState>>()
        .and_then(|state| {
            let path = routing_path(&req);
            let class = route_class(path);
            if matches!(class, RouteClass::Operations) {
                return None;
            }
            if class != RouteClass::Webhooks
                && let Some(account) = account(state, &req, path)
            {
                let refused = state.limits.account.as_ref()?.check_account(&account).err();
                return refused.map(|wait| (state, "account", wait));
            }
            let limiter = limiter(&state.limits, class)?;
            let ip = client_ip(req.request());
            limiter
                .check(ip)
                .err()
                .map(|wait| (state, class.label(), wait))
        })
        .map(|(state, label, wait)| {
            state.metrics.rate_limited(label);
            tracing::debug!(class = label, "rate limited");
            too_many(wait)
        });
    match refusal {
        Some(problem) => Ok(req
            .into_response(problem_response(&problem))
            .map_into_right_body()),
        None => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body),
    }
}

fn too_many(wait: Duration) -> Problem {
    Problem::too_many(wait, "Too many requests; wait before trying again.")
}

/// Middleware, outside the error normaliser so that every response gets them:
/// - `X-Content-Type-Options: nosniff` everywhere;
/// - `Cache-Control: no-store` on any request with an Authorization header and on the auth and profile
///   routes (replacing what the handler set);
/// - `Strict-Transport-Security` when shopd serves TLS itself;
/// - no `Server` header; no CORS headers (the client is an app: a preflight gets no special answer).
pub async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let personal = req.headers().contains_key(header::AUTHORIZATION)
        || NO_STORE_PREFIXES
            .iter()
            .any(|p| has_prefix(routing_path(&req), p));
    let tls = req
        .app_data::<web::Data<AppState>>()
        .is_some_and(|s| s.config.edge.tls.is_some());
    let mut res = next.call(req).await?;
    let headers = res.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if personal {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if tls {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    headers.remove(header::SERVER);
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_whole_segments() {
        for attested in [
            "/v1/auth/login",
            "/v1/me",
            "/v1/me/export",
            "/v1/products",
            "/v1/products/7",
            "/v1/orders/1/cancel",
        ] {
            assert!(is_attested(attested), "{attested}");
        }
        for not in [
            "/v1/merchants",
            "/v1/webhooks/stripe",
            "/v1/staff/auth/login",
            "/v1/staff/orders",
            "/healthz",
            "/metrics",
            "/.well-known/jwks.json",
            "/v1/authx",
        ] {
            assert!(!is_attested(not), "{not}");
        }
        assert_eq!(route_class("/v1/auth/login"), RouteClass::Auth);
        assert_eq!(route_class("/v1/staff/auth/login"), RouteClass::Auth);
        assert_eq!(route_class("/v1/orders"), RouteClass::Api);
        assert_eq!(route_class("/v1/webhooks/standard"), RouteClass::Webhooks);
        assert_eq!(route_class("/v1/staff/orders"), RouteClass::Api);
        assert_eq!(route_class("/v1/me"), RouteClass::Api);
        assert_eq!(route_class("/healthz"), RouteClass::Operations);
        assert_eq!(route_class("/v1x"), RouteClass::Operations);
    }
}
