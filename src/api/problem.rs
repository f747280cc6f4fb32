//! Rendering errors as RFC 9457 `application/problem+json`, for our own errors and for everything actix
//! answers by itself (unknown routes, wrong methods, extractor failures).

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::db::RETRY_AFTER_UNAVAILABLE;
use crate::error::{AppError, Problem};

pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Serialize, utoipa::ToSchema)]
pub struct ProblemBody<'a> {
    /// A URI naming the kind of problem: `urn:shopd:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'a str,
    pub status: u16,
    pub detail: &'a str,
    /// A stable snake_case word the app can switch on.
    pub code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
}

pub fn problem_response(problem: &Problem) -> HttpResponse {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = ProblemBody {
        kind: format!("urn:shopd:problem:{}", problem.code),
        title: problem.title,
        status: status.as_u16(),
        detail: &problem.detail,
        code: problem.code,
        field: problem.field.as_deref(),
    };
    let mut response = HttpResponse::build(status);
    response.content_type(PROBLEM_JSON);
    if status == StatusCode::UNAUTHORIZED {
        response.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"shopd\""));
    }
    if let Some(after) = problem.retry_after {
        response.insert_header((header::RETRY_AFTER, after.as_secs().max(1).to_string()));
    }
    response.body(serde_json::to_vec(&body).expect("problem bodies serialise"))
}

/// The problem a bare status maps to, for responses actix made without a body of ours.
pub fn problem_for_status(status: StatusCode) -> Problem {
    let (code, title, detail) = match status.as_u16() {
        400 => (
            "bad_request",
            "Bad request",
            "The request could not be understood.",
        ),
        401 => (
            "unauthorized",
            "Unauthorized",
            "Authentication is required.",
        ),
        403 => ("forbidden", "Forbidden", "This action is not allowed."),
        404 => (
            "not_found",
            "Not found",
            "There is nothing at this address.",
        ),
        405 => (
            "method_not_allowed",
            "Method not allowed",
            "This address does not take that method.",
        ),
        406 => (
            "not_acceptable",
            "Not acceptable",
            "No acceptable representation.",
        ),
        408 => (
            "request_timeout",
            "Request timeout",
            "The request took too long to arrive.",
        ),
        413 => (
            "payload_too_large",
            "Payload too large",
            "The request body is too large.",
        ),
        414 => (
            "uri_too_long",
            "URI too long",
            "The request address is too long.",
        ),
        415 => (
            "unsupported_media_type",
            "Unsupported media type",
            "Send application/json.",
        ),
        431 => (
            "headers_too_large",
            "Request header fields too large",
            "The request headers are too large.",
        ),
        s if s >= 500 => (
            "internal_error",
            "Internal error",
            "An unexpected error occurred.",
        ),
        _ => ("client_error", "Client error", "The request was refused."),
    };
    Problem::new(status.as_u16(), code, title, detail)
}

pub fn not_found() -> Problem {
    problem_for_status(StatusCode::NOT_FOUND)
}

/// The 503 of a database that is down or a transaction that kept losing: try again after `Retry-After`.
fn briefly_unavailable() -> Problem {
    Problem {
        retry_after: Some(RETRY_AFTER_UNAVAILABLE),
        ..Problem::new(
            503,
            "service_unavailable",
            "Service unavailable",
            "The service is briefly unavailable; try again shortly.",
        )
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Problem(p) => {
                StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Unavailable(_) | Self::Contended => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Problem(p) => problem_response(p),
            Self::NotFound => problem_response(&not_found()),
            Self::Contended => {
                tracing::warn!(
                    "a write transaction lost to concurrent ones, and again when run again"
                );
                problem_response(&briefly_unavailable())
            }
            Self::Unavailable(cause) => {
                tracing::warn!(%cause, "database unavailable");
                problem_response(&briefly_unavailable())
            }
            Self::Internal(cause) => {
                tracing::error!(cause = format!("{cause:#}"), "request failed");
                problem_response(&Problem::new(
                    500,
                    "internal_error",
                    "Internal error",
                    "An unexpected error occurred. Quote the X-Request-Id header when reporting it.",
                ))
            }
        }
    }
}

fn is_problem(response: &HttpResponse<impl MessageBody>) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()))
}

fn is_html(response: &HttpResponse<impl MessageBody>) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"))
}

/// For `ErrorHandlers::default_handler`: any error response that is not problem+json yet becomes one.
pub fn ensure_problem_json<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    // The staff console's own pages say what went wrong in HTML.
    if is_problem(res.response()) || is_html(res.response()) {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let allow = res.headers().get(header::ALLOW).cloned();
    let (req, _) = res.into_parts();
    let mut response = problem_response(&problem_for_status(status));
    if let Some(allow) = allow {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    let response: HttpResponse<EitherBody<B>> = response.map_into_right_body();
    Ok(ErrorHandlerResponse::Response(ServiceResponse::new(
        req, response,
    )))
}

pub fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}
