//! The one error type of the HTTP API and its mapping to responses.
//!
//! Error policy:
//! - the models (`models::*`) return diesel's `QueryResult`;
//! - jobs, broker and start-up code return `anyhow::Result` with context;
//! - handlers return [`ApiError`], which alone decides status codes and bodies. An
//!   unexpected failure is logged with its whole cause chain and answered with a 500 that
//!   says only that something failed.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

pub use crate::domain::fields::FieldErrors;

impl From<FieldErrors> for ApiError {
    fn from(fields: FieldErrors) -> Self {
        ApiError::Invalid(fields)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Malformed(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The route does not take this method; `allow` lists those it takes (the `Allow`
    /// header).
    #[error("this route takes {allow}")]
    MethodNotAllowed { allow: String },
    /// No (valid) credentials: sign in, or send `Authorization: Bearer <token>`.
    #[error(
        "sign in first: a session cookie (POST /api/session) or Authorization: Bearer <token>"
    )]
    Unauthorized,
    /// Credentials were sent and do not work (401): says which, so a script with a revoked
    /// token is not told to sign in.
    #[error("{0}")]
    CredentialRejected(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Gone(String),
    #[error("request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// The body's content type is not one the route takes (which it names).
    #[error("expected Content-Type: {0}")]
    UnsupportedMediaType(&'static str),
    #[error("some fields are invalid")]
    Invalid(FieldErrors),
    #[error("range not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    #[error("{0} is unavailable")]
    Unavailable(&'static str),
    /// Too many requests of this client (429): try again after `retry_after`.
    #[error("{message}")]
    TooMany {
        message: String,
        retry_after: Duration,
    },
    /// The service is at capacity (503, e.g. the queue is full): try again after `retry_after`.
    #[error("{message}")]
    Busy {
        message: String,
        retry_after: Duration,
    },
    /// Not enough free disk space for the work asked for (507).
    #[error("{0}")]
    InsufficientStorage(String),
    /// The request (its body) did not arrive in time (408).
    #[error("{0}")]
    Timeout(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// One invalid field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::Invalid(BTreeMap::from([(field.to_owned(), message.into())]))
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Malformed(_) => "malformed",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Unauthorized | ApiError::CredentialRejected(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Conflict(_) => "conflict",
            ApiError::Gone(_) => "gone",
            ApiError::TooLarge { .. } => "too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Invalid(_) => "invalid",
            ApiError::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::TooMany { .. } => "too_many_requests",
            ApiError::Busy { .. } => "busy",
            ApiError::InsufficientStorage(_) => "insufficient_storage",
            ApiError::Timeout(_) => "timeout",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind as Kind, Error};
        // The database going away (a restart, a failover, a lock held past the timeout)
        // is a dependency down, not a bug: 503, so that clients and balancers retry.
        let gone = match &e {
            Error::DatabaseError(Kind::ClosedConnection | Kind::UnableToSendCommand, _) => true,
            Error::DatabaseError(_, info) => {
                let message = info.message();
                message.starts_with("terminating connection")
                    || message.contains("the database system is")
                    || message.starts_with("database is locked")
            }
            _ => false,
        };
        if gone {
            log::warn!("database unavailable: {e}");
            return ApiError::Unavailable("the database");
        }
        ApiError::Internal(anyhow::Error::new(e).context("database query"))
    }
}

impl From<r2d2::Error> for ApiError {
    fn from(e: r2d2::Error) -> Self {
        log::warn!("no database connection: {e}");
        ApiError::Unavailable("the database")
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        ApiError::Internal(anyhow::anyhow!("blocking task failed: {e}"))
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<&'a FieldErrors>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Malformed(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized | ApiError::CredentialRejected(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            ApiError::Internal(cause) => {
                log::error!("request failed: {cause:#}");
                "something went wrong on our side; it has been logged".to_owned()
            }
            other => other.to_string(),
        };
        let fields = match self {
            ApiError::Invalid(fields) => Some(fields),
            _ => None,
        };
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::RangeNotSatisfiable { size } => {
                response.insert_header(("Content-Range", format!("bytes */{size}")));
            }
            ApiError::Unauthorized | ApiError::CredentialRejected(_) => {
                response.insert_header(("WWW-Authenticate", "Bearer realm=\"roster\""));
            }
            ApiError::MethodNotAllowed { allow } => {
                response.insert_header(("Allow", allow.as_str()));
            }
            _ => {}
        }
        if let ApiError::TooMany { retry_after, .. } | ApiError::Busy { retry_after, .. } = self {
            let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            response.insert_header(("Retry-After", secs.to_string()));
        }
        response.json(Body {
            error: Detail {
                code: self.code(),
                message,
                fields,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    #[test]
    fn a_database_that_went_away_is_unavailable_not_an_internal_error() {
        use diesel::result::{DatabaseErrorKind as Kind, Error};
        let gone = |kind, message: &str| Error::DatabaseError(kind, Box::new(message.to_owned()));
        for e in [
            gone(
                Kind::ClosedConnection,
                "server closed the connection unexpectedly",
            ),
            gone(Kind::UnableToSendCommand, "no connection to the server"),
            gone(
                Kind::Unknown,
                "terminating connection due to administrator command",
            ),
            gone(Kind::Unknown, "database is locked"),
        ] {
            assert_eq!(
                ApiError::from(e).status_code(),
                StatusCode::SERVICE_UNAVAILABLE
            );
        }
        let bug = gone(Kind::Unknown, "syntax error at or near \"FORM\"");
        assert_eq!(
            ApiError::from(bug).status_code(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[actix_web::test]
    async fn internal_errors_do_not_leak_their_cause() {
        let err = ApiError::Internal(anyhow::anyhow!("password=hunter2 in the query"));
        let body = to_bytes(err.error_response().into_body()).await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("\"code\":\"internal\""));
    }

    #[actix_web::test]
    async fn invalid_fields_are_named() {
        let err = ApiError::invalid("age", "must be an integer from 0 to 150");
        assert_eq!(err.status_code(), StatusCode::UNPROCESSABLE_ENTITY);
        let body = to_bytes(err.error_response().into_body()).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json["error"]["fields"]["age"],
            "must be an integer from 0 to 150"
        );
    }
}
