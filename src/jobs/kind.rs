//! Job kinds and their registry: what the runtime needs to know about a kind, and no more.
//!
//! A kind is a type that names itself ([`Kind::KIND`]), reads and checks its parameters
//! when a job is accepted ([`Kind::params`]), and runs one attempt with the attempt's
//! context ([`Kind::run`]), returning a serde result. The [`Registry`] erases the types
//! behind [`JobHandler`], so that the consumer, the worker pool, retries, leases, events
//! and routes treat every kind alike. Modelled on crates.io's `BackgroundJob` and River's
//! `Worker[T]`: the row stores the kind's name and its parameters as JSON; the registry
//! turns them back into the kind's own types at the edge.

use std::collections::HashMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use super::worker::{Attempt, JobError};
use crate::domain::job::JobKind;
use crate::error::FieldErrors;
use crate::models::job::Job;

/// One kind of job.
pub trait Kind: Send + Sync + 'static {
    /// The name jobs of this kind carry.
    const KIND: JobKind;
    /// Whether a schedule may start jobs of this kind (a kind that needs an upload can't).
    const SCHEDULABLE: bool = true;
    type Params: Serialize + DeserializeOwned;
    type Output: Serialize;

    /// Reads the parameters a client sent (a JSON object), naming each invalid field.
    fn params(raw: &Map<String, Value>) -> Result<Self::Params, FieldErrors>;

    /// Runs one attempt of `job`.
    fn run(
        &self,
        job: &Job,
        params: Self::Params,
        attempt: &mut Attempt<'_>,
    ) -> Result<Self::Output, JobError>;
}

/// A kind with its types erased: what the runtime holds. Implemented for every [`Kind`]
/// through the registry; tests may implement it directly to stand in for a kind.
pub trait JobHandler: Send + Sync + 'static {
    fn kind(&self) -> JobKind;

    fn schedulable(&self) -> bool {
        true
    }

    /// The parameters a client sent, checked and normalised into what the row stores.
    fn accept(&self, raw: &Map<String, Value>) -> Result<Value, FieldErrors>;

    /// Runs one attempt; returns the result to record.
    fn run(&self, job: &Job, attempt: &mut Attempt<'_>) -> Result<Value, JobError>;
}

/// A [`Kind`] behind the erased interface.
struct Erased<K>(K);

impl<K: Kind> JobHandler for Erased<K> {
    fn kind(&self) -> JobKind {
        K::KIND
    }

    fn schedulable(&self) -> bool {
        K::SCHEDULABLE
    }

    fn accept(&self, raw: &Map<String, Value>) -> Result<Value, FieldErrors> {
        let params = K::params(raw)?;
        Ok(serde_json::to_value(params).expect("parameters serialize"))
    }

    fn run(&self, job: &Job, attempt: &mut Attempt<'_>) -> Result<Value, JobError> {
        // The row's parameters were written by `accept`; unreadable ones (a row from a
        // newer version, say) cannot succeed on any attempt.
        let params = K::Params::deserialize(&job.params)
            .map_err(|e| JobError::Abort(anyhow::anyhow!("unreadable parameters: {e}")))?;
        let output = self.0.run(job, params, attempt)?;
        Ok(serde_json::to_value(output).expect("results serialize"))
    }
}

use serde::Deserialize as _;

/// Every kind this process can accept and run, by name.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: HashMap<JobKind, Arc<dyn JobHandler>>,
}

impl Registry {
    /// Adds `kind`, replacing any kind of the same name.
    pub fn register<K: Kind>(&mut self, kind: K) -> &mut Self {
        self.register_handler(Arc::new(Erased(kind)))
    }

    /// Adds an erased kind, replacing any of the same name (tests stand in for kinds).
    pub fn register_handler(&mut self, handler: Arc<dyn JobHandler>) -> &mut Self {
        self.kinds.insert(handler.kind(), handler);
        self
    }

    pub fn get(&self, kind: JobKind) -> Option<&Arc<dyn JobHandler>> {
        self.kinds.get(&kind)
    }

    /// The kinds registered, by name.
    pub fn kinds(&self) -> impl Iterator<Item = JobKind> + '_ {
        self.kinds.keys().copied()
    }
}
