//! `ApiJson<T>`: the JSON body extractor of every route. A body that is not JSON is a 400, JSON of the wrong
//! shape a 422 naming the field, an over-long one a 413, and no content type a 415, all as problem+json.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::web::BytesMut;
use actix_web::{FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::{AppError, Problem};

/// The body size limit of a route, set as app data; 64 KiB when absent.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req.app_data::<BodyLimit>().map_or(64 * 1024, |l| l.0);
        let json_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .is_some_and(|v| v == "application/json" || v.ends_with("+json"));
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if !json_type {
                return Err(Problem::new(
                    415,
                    "unsupported_media_type",
                    "Unsupported media type",
                    "Send the body as application/json.",
                )
                .into());
            }
            if declared.is_some_and(|n| n > limit) {
                return Err(too_large(limit));
            }
            let mut body = BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|_| {
                    AppError::from(Problem::bad_request(
                        "unreadable_body",
                        "The body could not be read.",
                    ))
                })?;
                if body.len() + chunk.len() > limit {
                    return Err(too_large(limit));
                }
                body.extend_from_slice(&chunk);
            }
            parse(&body).map(ApiJson)
        })
    }
}

fn too_large(limit: usize) -> AppError {
    Problem::new(
        413,
        "payload_too_large",
        "Payload too large",
        format!("The body is larger than {limit} bytes."),
    )
    .into()
}

/// Parses a JSON body: syntax errors are 400 `malformed_json`, shape errors 422 `invalid_field`.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, AppError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        // serde stops at the first value of the wrong type, before it meets a syntax error further on (`[1,
        // 2,]`): a body that is not JSON at all is a 400 whatever its first value. Checked on failure only.
        if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
            return malformed();
        }
        let path = e.path().to_string();
        let inner = e.into_inner();
        shape_error(&path, &inner)
    })?;
    de.end().map_err(|e| shape_error(".", &e))?;
    Ok(value)
}

fn malformed() -> AppError {
    Problem::bad_request("malformed_json", "The body is not valid JSON.").into()
}

fn shape_error(path: &str, error: &serde_json::Error) -> AppError {
    use serde_json::error::Category;
    match error.classify() {
        Category::Data => {
            let message = error.to_string();
            // The path of a missing field is its parent's; an unknown field's path names it already.
            let field = match message
                .strip_prefix("missing field `")
                .and_then(|r| r.split('`').next())
            {
                Some(name) if path == "." => name.to_owned(),
                Some(name) => format!("{path}.{name}"),
                None => path.to_owned(),
            };
            let message = message.split(" at line ").next().unwrap_or(&message);
            // serde quotes the offending value ("invalid type: string \"…\""); the detail names only the
            // field and what was expected, so no personal value is echoed back or logged.
            let detail = if missing_or_unknown_field(message).is_some() {
                message.to_owned()
            } else {
                match message.split_once(", expected ") {
                    Some((_, expected)) => format!("`{field}` is invalid: expected {expected}"),
                    None => format!("`{field}` is invalid"),
                }
            };
            Problem::invalid("invalid_field", field, detail).into()
        }
        Category::Syntax | Category::Eof | Category::Io => malformed(),
    }
}

fn missing_or_unknown_field(message: &str) -> Option<&str> {
    let rest = message
        .strip_prefix("missing field `")
        .or_else(|| message.strip_prefix("unknown field `"))?;
    rest.split('`').next()
}
