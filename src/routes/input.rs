//! Turning untrusted request input (JSON bodies, query strings) into typed values, with
//! every problem reported against the field it concerns.

use std::collections::HashMap;

use actix_web::error::{JsonPayloadError, QueryPayloadError};
use actix_web::{web, HttpRequest};
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Request bodies larger than this are refused with 413.
pub const JSON_LIMIT: usize = 64 * 1024;

/// The JSON extractor's settings: size limit, and errors in the API's shape.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(JSON_LIMIT)
        .error_handler(|err, _req: &HttpRequest| {
            match err {
                JsonPayloadError::ContentType => ApiError::UnsupportedMediaType("application/json"),
                JsonPayloadError::Overflow { .. }
                | JsonPayloadError::OverflowKnownLength { .. } => {
                    ApiError::TooLarge { limit: JSON_LIMIT }
                }
                JsonPayloadError::Deserialize(e) if e.is_data() => {
                    ApiError::Malformed("the body must be a JSON object".into())
                }
                JsonPayloadError::Deserialize(e) => {
                    ApiError::Malformed(format!("the body is not valid JSON: {e}"))
                }
                JsonPayloadError::Payload(e) => crate::routes::limits::body_error(e),
                other => ApiError::Malformed(format!("could not read the body: {other}")),
            }
            .into()
        })
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req| {
        ApiError::Malformed(format!("malformed query string: {err}")).into()
    })
}

/// A JSON object body, read field by field.
pub type Body = web::Json<Map<String, Value>>;

/// A query string, read parameter by parameter.
pub type Query = web::Query<HashMap<String, String>>;

pub use crate::domain::fields::{bool_param, int_param, integer, string, Fields};
