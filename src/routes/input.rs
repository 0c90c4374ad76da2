//! Turning untrusted request input (JSON bodies, query strings) into typed values, with
//! every problem reported against the field it concerns.

use std::collections::HashMap;

use actix_web::error::{JsonPayloadError, QueryPayloadError};
use actix_web::{web, HttpRequest};
use serde_json::{Map, Value};

use crate::error::{ApiError, FieldErrors};

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
                JsonPayloadError::Payload(e) => crate::limits::body_error(e),
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

/// Collects field errors while fields are parsed, then fails with all of them at once.
#[derive(Default)]
pub struct Fields {
    errors: FieldErrors,
}

impl Fields {
    /// Refuses fields other than `known`.
    pub fn only(&mut self, body: &Map<String, Value>, known: &[&str]) {
        for key in body.keys().filter(|k| !known.contains(&k.as_str())) {
            self.errors
                .insert(key.clone(), "is not a known field".into());
        }
    }

    pub fn only_params(&mut self, query: &HashMap<String, String>, known: &[&str]) {
        for key in query.keys().filter(|k| !known.contains(&k.as_str())) {
            self.errors
                .insert(key.clone(), "is not a known parameter".into());
        }
    }

    /// Records the outcome of parsing one field; `None` when it failed.
    pub fn check<T>(&mut self, field: &str, parsed: Result<T, String>) -> Option<T> {
        match parsed {
            Ok(v) => Some(v),
            Err(message) => {
                self.errors.insert(field.to_owned(), message);
                None
            }
        }
    }

    pub fn require<T>(&mut self, field: &str, value: Option<T>) -> Option<T> {
        if value.is_none() && !self.errors.contains_key(field) {
            self.errors.insert(field.to_owned(), "is required".into());
        }
        value
    }

    pub fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.errors.insert(field.to_owned(), message.into());
    }

    pub fn finish(self) -> Result<(), ApiError> {
        self.into_result().map_err(ApiError::Invalid)
    }

    /// The errors collected, if any.
    pub fn into_result(self) -> Result<(), FieldErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

/// A JSON string field.
pub fn string(value: &Value) -> Result<&str, String> {
    value.as_str().ok_or_else(|| "must be a string".to_owned())
}

/// A JSON integer field.
pub fn integer(value: &Value) -> Result<i64, String> {
    value
        .as_i64()
        .ok_or_else(|| "must be an integer".to_owned())
}

/// A boolean query parameter: `true` or `false` (also `1` and `0`).
pub fn bool_param(raw: &str) -> Result<bool, String> {
    match raw.trim() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err("must be true or false".to_owned()),
    }
}

/// An integer query parameter.
pub fn int_param(raw: &str) -> Result<i64, String> {
    raw.trim()
        .parse()
        .map_err(|_| "must be an integer".to_owned())
}
