//! The authenticated principal of a request: a bearer access token of the right audience, signed by one of
//! our keys (EdDSA only), unexpired, and naming a session that has not ended.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};

use crate::auth::claims::{Audience, Claims};
use crate::auth::revocations::Known;
use crate::auth::sessions;
use crate::db::DbError;
use crate::error::{AppError, Problem};
use crate::state::AppState;

fn invalid_token(detail: &str) -> AppError {
    Problem::unauthorized("invalid_token", detail.to_owned()).into()
}

/// The one `Authorization: Bearer …` value of a request; two Authorization headers are refused.
pub fn bearer(req: &HttpRequest) -> Result<&str, AppError> {
    let mut values = req.headers().get_all(header::AUTHORIZATION);
    let value = values
        .next()
        .ok_or_else(|| invalid_token("An access token is required (Authorization: Bearer …)."))?;
    if values.next().is_some() {
        return Err(invalid_token("Send one Authorization header."));
    }
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid_token("The Authorization header is not a bearer token."))
}

async fn authenticate(req: HttpRequest, audience: Audience) -> Result<Claims, AppError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("no application state")))?
        .clone();
    let token = bearer(&req)?;
    let identity = &state.identity;
    let claims = identity
        .tokens
        .verify(token, audience)
        .map_err(|e| invalid_token(&format!("The access token is not valid: {e}.")))?;
    let live = match identity.revocations.check(&claims.sid) {
        Known::Ended => false,
        Known::NotEnded => true,
        Known::Unsure => {
            state.metrics.session_checked_in_database();
            let sid = claims.sid.clone();
            state
                .db
                .run(move |conn| {
                    sessions::session_is_live(conn, &sid, audience).map_err(DbError::from)
                })
                .await?
        }
    };
    if !live {
        return Err(
            Problem::unauthorized("session_ended", "The session has ended; log in again.").into(),
        );
    }
    Ok(claims)
}

/// A customer, authenticated.
#[derive(Debug, Clone)]
pub struct CustomerAuth {
    pub customer_id: String,
    pub session_id: String,
    pub auth_time: i64,
}

impl FromRequest for CustomerAuth {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let claims = authenticate(req, Audience::Customer).await?;
            Ok(Self {
                customer_id: claims.sub,
                session_id: claims.sid,
                auth_time: claims.auth_time,
            })
        })
    }
}

/// The client address, for per-address limits: one function, in `api::edge`, for every limiter.
pub use super::edge::client_ip;

pub fn user_agent(req: &HttpRequest) -> String {
    sessions::describe_client(
        req.headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    )
}
