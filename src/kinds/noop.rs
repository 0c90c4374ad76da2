//! The `noop` kind, for benchmarks only: an attempt that does nothing, so that draining
//! such jobs measures the runtime alone (broker, claim, lease, events, ending). It is
//! registered only when `ROSTER_BENCH_KINDS` is set (`Settings::bench_kinds`); without
//! it a request for `noop` is refused like any unknown kind.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::fields::Fields;
use crate::domain::job::JobKind;
use crate::error::FieldErrors;
use crate::jobs::worker::{Attempt, JobError};
use crate::jobs::Kind;
use crate::models::job::Job;

/// A job that does nothing.
pub struct Noop;

/// No parameters, and no output (both `{}`).
#[derive(Debug, Serialize, Deserialize)]
pub struct Nothing {}

impl Kind for Noop {
    const KIND: JobKind = JobKind::Noop;
    type Params = Nothing;
    type Output = Nothing;

    fn params(raw: &Map<String, Value>) -> Result<Nothing, FieldErrors> {
        let mut fields = Fields::default();
        fields.only(raw, &[]);
        fields.into_result().map(|()| Nothing {})
    }

    fn run(&self, _: &Job, _: Nothing, _: &mut Attempt<'_>) -> Result<Nothing, JobError> {
        Ok(Nothing {})
    }
}
