//! The one application error. Feature modules return it; `api::problem` renders it as problem+json.
//! A missing row is a 404, an unavailable database a 503, and anything unexpected an opaque 500 whose cause
//! goes only to the log.

use std::time::Duration;

use crate::db::DbError;

/// An error the client is meant to see: an HTTP status, a stable snake_case `code`, and a detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub status: u16,
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
    /// The request field at fault, for 422s.
    pub field: Option<String>,
    pub retry_after: Option<Duration>,
}

impl Problem {
    pub fn new(
        status: u16,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            title,
            detail: detail.into(),
            field: None,
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(400, code, "Bad request", detail)
    }

    /// A well-formed request with an invalid value in `field`.
    pub fn invalid(
        code: &'static str,
        field: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::new(422, code, "Invalid request", detail)
        }
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(409, code, "Conflict", detail)
    }

    pub fn unauthorized(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(401, code, "Unauthorized", detail)
    }

    pub fn too_many(retry_after: Duration, detail: impl Into<String>) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(429, "too_many_requests", "Too many requests", detail)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{}: {}", .0.code, .0.detail)]
    Problem(Problem),
    #[error("not found")]
    NotFound,
    /// The database cannot be reached or the pool is exhausted: the client may retry.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The transaction lost to a concurrent one (PostgreSQL's SQLSTATE 40001) even after `Db::write` ran it
    /// again: a 503 with Retry-After, as `Unavailable`.
    #[error("the transaction lost to a concurrent one")]
    Contended,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<Problem> for AppError {
    fn from(problem: Problem) -> Self {
        Self::Problem(problem)
    }
}

impl From<DbError> for AppError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Unavailable(cause) => Self::Unavailable(cause),
            DbError::Query(diesel::result::Error::NotFound) => Self::NotFound,
            // The connection died under the query (the server restarted, the network went): retryable.
            DbError::Query(diesel::result::Error::DatabaseError(
                kind @ (diesel::result::DatabaseErrorKind::ClosedConnection
                | diesel::result::DatabaseErrorKind::UnableToSendCommand),
                _,
            )) => Self::Unavailable(format!("{kind:?}")),
            DbError::Query(e) if crate::db::is_serialization_failure(&e) => Self::Contended,
            other => Self::Internal(other.into()),
        }
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(error: diesel::result::Error) -> Self {
        DbError::Query(error).into()
    }
}

pub type AppResult<T> = Result<T, AppError>;

impl crate::db::Contention for AppError {
    fn is_contention(&self) -> bool {
        matches!(self, Self::Contended)
    }
}

#[cfg(test)]
mod tests {
    use diesel::result::{DatabaseErrorKind, Error};

    use super::*;

    #[test]
    fn a_lost_serializable_transaction_is_contended_not_internal() {
        let lost = Error::DatabaseError(
            DatabaseErrorKind::SerializationFailure,
            Box::new("could not serialize access due to concurrent update".to_owned()),
        );
        assert!(matches!(AppError::from(lost), AppError::Contended));
        let other = Error::DatabaseError(
            DatabaseErrorKind::CheckViolation,
            Box::new("new row violates check constraint".to_owned()),
        );
        assert!(matches!(AppError::from(other), AppError::Internal(_)));
    }
}
