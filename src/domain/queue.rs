//! Where and when a job runs: its queue, its priority, and when it is due. Parsed once at
//! the edge (a request's body or query, a schedule), so the runtime only ever sees valid
//! values.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::fields::{FieldErrors, Fields};

/// A queue's name: 1 to 64 letters, digits, `-`, `_` or `.` (it names Redis keys).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct QueueName(String);

impl TryFrom<String> for QueueName {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        raw.parse()
    }
}

impl From<QueueName> for String {
    fn from(q: QueueName) -> String {
        q.0
    }
}

impl QueueName {
    pub fn default_queue() -> Self {
        Self("default".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for QueueName {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err("must be 1 to 64 letters, digits, '-', '_' or '.'".to_owned())
        }
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// A job's priority: 0 runs first, 9 last.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "i64", into = "i64")]
pub struct Priority(u8);

impl TryFrom<i64> for Priority {
    type Error = String;
    fn try_from(value: i64) -> Result<Self, String> {
        Priority::new(value)
    }
}

impl From<Priority> for i64 {
    fn from(p: Priority) -> i64 {
        i64::from(p.0)
    }
}

impl Priority {
    pub const HIGHEST: Priority = Priority(0);
    pub const LOWEST: Priority = Priority(9);

    pub fn new(value: i64) -> Result<Self, String> {
        match u8::try_from(value) {
            Ok(p) if p <= Self::LOWEST.0 => Ok(Self(p)),
            _ => Err("must be an integer from 0 (first) to 9 (last)".to_owned()),
        }
    }

    pub fn get(self) -> i32 {
        i32::from(self.0)
    }
}

impl Default for Priority {
    fn default() -> Self {
        Self(5)
    }
}

/// The furthest ahead a job may be put off.
pub const MAX_DELAY: Duration = Duration::from_secs(30 * 24 * 3600);

/// Where and when a job runs, as asked. Unset fields take the defaults at accept: the
/// kind's queue, else the accepting process's first queue; priority 5; due at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dispatch {
    pub queue: Option<QueueName>,
    pub priority: Priority,
    /// Not before then.
    pub run_at: Option<DateTime<Utc>>,
}

/// The request fields that say where and when a job runs.
pub const DISPATCH_FIELDS: [&str; 4] = ["queue", "priority", "run_at", "run_in"];

impl Dispatch {
    /// Takes `queue`, `priority`, `run_at` (RFC 3339) and `run_in` (seconds) out of a
    /// request's fields (a JSON body, or a query string made JSON), leaving the kind's
    /// own parameters. At most one of `run_at` and `run_in`; neither more than
    /// [`MAX_DELAY`] ahead of `now`.
    pub fn take(fields: &mut Map<String, Value>, now: DateTime<Utc>) -> Result<Self, FieldErrors> {
        let mut check = Fields::default();
        let mut dispatch = Dispatch::default();
        if let Some(v) = fields.remove("queue").filter(|v| !v.is_null()) {
            dispatch.queue = check.check("queue", text(&v).and_then(|s| s.parse()));
        }
        if let Some(v) = fields.remove("priority").filter(|v| !v.is_null()) {
            if let Some(p) = check.check("priority", integer(&v).and_then(Priority::new)) {
                dispatch.priority = p;
            }
        }
        let run_at = fields.remove("run_at").filter(|v| !v.is_null());
        let run_in = fields.remove("run_in").filter(|v| !v.is_null());
        let latest = now + chrono::Duration::from_std(MAX_DELAY).expect("30 days fit");
        match (run_at, run_in) {
            (Some(_), Some(_)) => check.fail("run_in", "give run_at or run_in, not both"),
            (Some(at), None) => {
                let parsed = text(&at).and_then(|s| {
                    DateTime::parse_from_rfc3339(s)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|_| {
                            "must be a date and time in RFC 3339 (2026-12-08T09:30:00-04:00)"
                                .to_owned()
                        })
                });
                dispatch.run_at = check.check(
                    "run_at",
                    parsed.and_then(|t| match t > latest {
                        true => Err("must be at most 30 days ahead".to_owned()),
                        false => Ok(t),
                    }),
                );
            }
            (None, Some(secs)) => {
                let parsed = integer(&secs).and_then(|s| match s {
                    s if s < 0 => Err("must not be negative".to_owned()),
                    s if s as u64 > MAX_DELAY.as_secs() => {
                        Err("must be at most 2592000 seconds (30 days)".to_owned())
                    }
                    s => Ok(now + chrono::Duration::seconds(s)),
                });
                dispatch.run_at = check.check("run_in", parsed);
            }
            (None, None) => {}
        }
        check.finish().map(|()| dispatch)
    }
}

fn text(value: &Value) -> Result<&str, String> {
    value.as_str().ok_or_else(|| "must be a string".to_owned())
}

/// An integer, or a string of one (query strings carry only strings).
fn integer(value: &Value) -> Result<i64, String> {
    match value {
        Value::Number(n) => n.as_i64().ok_or_else(|| "must be an integer".to_owned()),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| "must be an integer".to_owned()),
        _ => Err("must be an integer".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn take(body: Value) -> Result<Dispatch, FieldErrors> {
        let mut map = body.as_object().unwrap().clone();
        Dispatch::take(&mut map, Utc::now())
    }

    #[test]
    fn dispatch_fields_are_taken_out_and_the_rest_left_to_the_kind() {
        let mut map = json!({"queue": "imports", "priority": 0, "run_in": 60, "format": "csv"})
            .as_object()
            .unwrap()
            .clone();
        let d = Dispatch::take(&mut map, Utc::now()).unwrap();
        assert_eq!(d.queue.unwrap().as_str(), "imports");
        assert_eq!(d.priority, Priority::HIGHEST);
        assert!(d.run_at.unwrap() > Utc::now() + chrono::Duration::seconds(50));
        assert_eq!(map, *json!({"format": "csv"}).as_object().unwrap());
    }

    #[test]
    fn bad_dispatch_fields_are_reported_each_by_name() {
        let errors = take(json!({"queue": "a b", "priority": 10, "run_in": -1})).unwrap_err();
        assert_eq!(
            errors.keys().collect::<Vec<_>>(),
            ["priority", "queue", "run_in"]
        );
        assert!(take(json!({"run_at": "tomorrow"})).is_err());
        assert!(take(json!({"run_in": 2_592_001})).is_err());
        assert!(take(json!({"run_at": "2026-12-08T09:30:00Z", "run_in": 5})).is_err());
        assert!(
            take(json!({"priority": "3"})).is_ok(),
            "a query string's text"
        );
    }
}
