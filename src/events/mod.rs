//! Job events: every change of a job, numbered by the job's `seq`, and the registry that
//! fans them out to WebSocket sessions in this process and, through Redis pub/sub, in
//! every other process of the same queue.

pub mod registry;

use serde::{Deserialize, Serialize};

use crate::domain::job::{JobId, JobStatus};
use crate::models::job::{Job, JobView};

pub use registry::{EventRegistry, Events};

/// One change of one job, as sent to WebSocket clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum JobEvent {
    Progress {
        job_id: JobId,
        seq: i64,
        done: i64,
        total: i64,
    },
    Status {
        job_id: JobId,
        seq: i64,
        status: JobStatus,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        error: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        result: Option<serde_json::Value>,
        /// The whole job, so that a dashboard can show a job it has not seen before.
        job: Box<JobView>,
    },
}

/// An event with its JSON text rendered once, however many sessions send it.
#[derive(Debug)]
pub struct Rendered {
    pub event: JobEvent,
    pub json: bytestring::ByteString,
}

impl Rendered {
    pub fn new(event: JobEvent) -> Self {
        let json = serde_json::to_string(&event)
            .expect("events serialize")
            .into();
        Self { event, json }
    }
}

impl std::ops::Deref for Rendered {
    type Target = JobEvent;
    fn deref(&self) -> &JobEvent {
        &self.event
    }
}

impl JobEvent {
    pub fn progress(job: &Job) -> Self {
        JobEvent::Progress {
            job_id: job.id,
            seq: job.seq,
            done: job.progress.done,
            total: job.progress.total,
        }
    }

    pub fn status(job: &Job) -> Self {
        let view = job.view();
        JobEvent::Status {
            job_id: job.id,
            seq: job.seq,
            status: view.status,
            error: view.error.clone(),
            result: view.result.clone(),
            job: Box::new(view),
        }
    }

    pub fn job_id(&self) -> JobId {
        match self {
            JobEvent::Progress { job_id, .. } | JobEvent::Status { job_id, .. } => *job_id,
        }
    }

    pub fn seq(&self) -> i64 {
        match self {
            JobEvent::Progress { seq, .. } | JobEvent::Status { seq, .. } => *seq,
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, JobEvent::Status { status, .. } if status.is_terminal())
    }
}
