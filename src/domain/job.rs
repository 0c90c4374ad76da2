//! The job state machine and the values every job carries (id, kind, status), and the
//! format of a file of students. Every status change in the database is guarded by [`JobStatus::sources`], so
//! the table below is the only place that says which transitions exist.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// Every allowed transition; anything else is refused.
const TRANSITIONS: &[(JobStatus, JobStatus)] = {
    use JobStatus::*;
    &[
        (Queued, Running),   // a worker claims it
        (Queued, Cancelled), // cancelled before it started
        (Running, Succeeded),
        (Running, Failed),    // out of attempts, or timed out
        (Running, Cancelled), // the worker saw the cancel request
        (Running, Queued),    // retry after an error, an expired lease or a shutdown
        (Failed, Queued),     // a person retries it
        (Cancelled, Queued),  // a person retries it
    ]
};

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }

    /// Whether a person may put a job in this status back in the queue: an ended job the
    /// table lets go back to `queued`.
    pub fn is_retryable(self) -> bool {
        self.is_terminal() && self.can_become(JobStatus::Queued)
    }

    pub fn can_become(self, next: JobStatus) -> bool {
        TRANSITIONS.contains(&(self, next))
    }

    /// The statuses from which a job may move to `target`, as stored strings: the guard
    /// of every conditional update.
    pub fn sources(target: JobStatus) -> Vec<&'static str> {
        TRANSITIONS
            .iter()
            .filter(|(_, to)| *to == target)
            .map(|(from, _)| from.as_str())
            .collect()
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        JobStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                "must be one of queued, running, succeeded, failed, cancelled".to_owned()
            })
    }
}

/// Who holds a running job's lease: one attempt of one process, stored as `{node}/{tag}`
/// (the process, then a tag no other attempt has; the tag also names the attempt's files).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseOwner(String);

impl LeaseOwner {
    /// The owner of a new attempt of process `node`.
    pub fn new_attempt(node: &str) -> Self {
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
        Self(format!("{node}/{tag}"))
    }

    /// An owner as a row stores it.
    pub fn stored(raw: String) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part unique to this attempt.
    pub fn tag(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for LeaseOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The fencing token of one attempt: the job, the attempt's number and its lease owner
/// (unique to the attempt). Every write of the attempt is conditional on all three.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptToken {
    pub job: JobId,
    pub number: i32,
    pub owner: LeaseOwner,
}

impl AttemptToken {
    /// The part of the owner unique to this attempt (used in its file names).
    pub fn tag(&self) -> &str {
        self.owner.tag()
    }
}

/// How an attempt ended, as its history records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Succeeded,
    Failed,
    Cancelled,
    /// Failed, to be tried again.
    Retry,
    /// Handed back at shutdown, without using up an attempt.
    Released,
    /// Its lease expired or its process was found dead: the worker died, stalled or was
    /// cut off.
    Lost,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Succeeded,
        Outcome::Failed,
        Outcome::Cancelled,
        Outcome::Retry,
        Outcome::Released,
        Outcome::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
            Outcome::Retry => "retry",
            Outcome::Released => "released",
            Outcome::Lost => "lost",
        }
    }
}

impl FromStr for Outcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| format!("no attempt outcome {s:?}"))
    }
}

/// A job's id: a UUID, stored as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(uuid::Uuid);

impl JobId {
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4())
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl FromStr for JobId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, uuid::Error> {
        uuid::Uuid::parse_str(s).map(Self)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_hyphenated().fmt(f)
    }
}

/// What a job does: the name of its kind (the kinds themselves are in `jobs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Every student, ordered by age then id, into a file.
    StudentsByAge,
    /// Students from an uploaded file.
    StudentsImport,
    /// Does nothing: the runtime's overhead alone, for benchmarks. Registered only when
    /// `ROSTER_BENCH_KINDS` is set (see `kinds::noop`); elsewhere it is refused as unknown.
    Noop,
}

impl JobKind {
    pub const ALL: [JobKind; 3] = [
        JobKind::StudentsByAge,
        JobKind::StudentsImport,
        JobKind::Noop,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::StudentsByAge => "students_by_age",
            JobKind::StudentsImport => "students_import",
            JobKind::Noop => "noop",
        }
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        JobKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| "must be one of students_by_age, students_import".into())
    }
}

/// The format of a file of students (an export, an import).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    #[default]
    Csv,
    Jsonl,
}

impl FileFormat {
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Csv => "csv",
            FileFormat::Jsonl => "jsonl",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            FileFormat::Csv => "text/csv; charset=utf-8",
            FileFormat::Jsonl => "application/x-ndjson",
        }
    }
}

impl FromStr for FileFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "csv" => Ok(FileFormat::Csv),
            "jsonl" | "ndjson" => Ok(FileFormat::Jsonl),
            _ => Err("must be csv or jsonl".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobStatus::*;

    #[test]
    fn every_transition_is_allowed_or_refused_as_the_table_says() {
        // (from, to, allowed)
        let table = [
            (Queued, Queued, false),
            (Queued, Running, true),
            (Queued, Succeeded, false),
            (Queued, Failed, false),
            (Queued, Cancelled, true),
            (Running, Queued, true),
            (Running, Running, false),
            (Running, Succeeded, true),
            (Running, Failed, true),
            (Running, Cancelled, true),
            (Succeeded, Queued, false),
            (Succeeded, Running, false),
            (Succeeded, Succeeded, false),
            (Succeeded, Failed, false),
            (Succeeded, Cancelled, false),
            (Failed, Queued, true),
            (Failed, Running, false),
            (Failed, Succeeded, false),
            (Failed, Failed, false),
            (Failed, Cancelled, false),
            (Cancelled, Queued, true),
            (Cancelled, Running, false),
            (Cancelled, Succeeded, false),
            (Cancelled, Failed, false),
            (Cancelled, Cancelled, false),
        ];
        assert_eq!(table.len(), 25, "every pair is listed");
        for (from, to, allowed) in table {
            assert_eq!(from.can_become(to), allowed, "{from} -> {to}");
        }
    }

    #[test]
    fn an_ended_job_can_only_go_back_to_the_queue_and_only_if_it_did_not_succeed() {
        for from in JobStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in JobStatus::ALL {
                let retry = to == Queued && from != Succeeded;
                assert_eq!(from.can_become(to), retry, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn sources_guard_the_updates() {
        assert_eq!(JobStatus::sources(Running), vec!["queued"]);
        assert_eq!(JobStatus::sources(Cancelled), vec!["queued", "running"]);
        assert_eq!(
            JobStatus::sources(Queued),
            vec!["running", "failed", "cancelled"]
        );
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for st in JobStatus::ALL {
            assert_eq!(st.as_str().parse::<JobStatus>(), Ok(st));
            assert_eq!(
                serde_json::to_string(&st).unwrap(),
                format!("\"{}\"", st.as_str())
            );
        }
        assert!("done".parse::<JobStatus>().is_err());
    }
}
