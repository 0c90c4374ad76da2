//! Checking untrusted input field by field: every problem is reported against the field
//! it concerns, and all of them at once. Used wherever input arrives (request bodies,
//! query strings, a job's parameters), so that its rules do not depend on HTTP.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

/// Per-field validation messages, keyed by the field's name.
pub type FieldErrors = BTreeMap<String, String>;

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

    /// Records the outcome of parsing several fields at once (their errors, each by its
    /// field); `None` when any failed.
    pub fn check_all<T>(&mut self, parsed: Result<T, FieldErrors>) -> Option<T> {
        match parsed {
            Ok(v) => Some(v),
            Err(errors) => {
                self.errors.extend(errors);
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

    /// The errors collected, if any (the API answers them as one 422).
    pub fn finish(self) -> Result<(), FieldErrors> {
        self.into_result()
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
