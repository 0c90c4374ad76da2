//! The `jobs` table: the durable record of every job, and the conditional updates that
//! move a job through its life. Each update is guarded by the state machine in
//! `domain::job` and bumps the job's `seq`, so every change is one event.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use crate::db::DbConnection;
use crate::domain::job::{ExportParams, JobId, JobKind, JobStatus};
use crate::on_backend;
use crate::schema::jobs;

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = jobs)]
pub struct Job {
    pub id: String,
    pub kind: String,
    pub params: String,
    pub status: String,
    pub progress_done: i64,
    pub progress_total: i64,
    pub attempts: i32,
    pub max_attempts: i32,
    pub error: Option<String>,
    pub result: Option<String>,
    pub cancel_requested: bool,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<NaiveDateTime>,
    pub run_after: NaiveDateTime,
    pub published: bool,
    pub seq: i64,
    pub created_at: NaiveDateTime,
    pub started_at: Option<NaiveDateTime>,
    pub finished_at: Option<NaiveDateTime>,
}

impl Job {
    pub fn status(&self) -> JobStatus {
        // Only this module writes the column, always from a JobStatus.
        self.status.parse().unwrap_or(JobStatus::Failed)
    }

    pub fn job_id(&self) -> JobId {
        self.id.parse().expect("job ids are written as UUIDs")
    }

    pub fn export_params(&self) -> Result<ExportParams, serde_json::Error> {
        serde_json::from_str(&self.params)
    }

    pub fn view(&self) -> JobView {
        JobView {
            id: self.id.clone(),
            kind: self.kind.clone(),
            params: serde_json::from_str(&self.params).unwrap_or(serde_json::Value::Null),
            status: self.status(),
            progress: Progress {
                done: self.progress_done,
                total: self.progress_total,
            },
            attempts: self.attempts,
            max_attempts: self.max_attempts,
            error: self.error.clone(),
            result: self
                .result
                .as_deref()
                .and_then(|r| serde_json::from_str(r).ok()),
            cancel_requested: self.cancel_requested,
            seq: self.seq,
            created_at: self.created_at.and_utc(),
            run_after: self.run_after.and_utc(),
            started_at: self.started_at.map(|t| t.and_utc()),
            finished_at: self.finished_at.map(|t| t.and_utc()),
        }
    }
}

/// A job as the API and the WebSocket show it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct JobView {
    pub id: String,
    pub kind: String,
    pub params: serde_json::Value,
    pub status: JobStatus,
    pub progress: Progress,
    pub attempts: i32,
    pub max_attempts: i32,
    pub error: Option<String>,
    pub result: Option<serde_json::Value>,
    pub cancel_requested: bool,
    pub seq: i64,
    pub created_at: DateTime<Utc>,
    pub run_after: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Progress {
    pub done: i64,
    pub total: i64,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = jobs)]
struct NewJob<'a> {
    id: String,
    kind: &'a str,
    params: String,
    status: &'a str,
    max_attempts: i32,
    run_after: NaiveDateTime,
    seq: i64,
    created_at: NaiveDateTime,
}

pub fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
}

/// Records a new queued export job (seq 1: its creation is its first event).
pub fn insert_export(
    conn: &mut DbConnection,
    params: &ExportParams,
    max_attempts: u16,
) -> QueryResult<Job> {
    let now = now();
    let new = NewJob {
        id: JobId::new().to_string(),
        kind: JobKind::StudentsByAge.as_str(),
        params: serde_json::to_string(params).expect("params serialize"),
        status: JobStatus::Queued.as_str(),
        max_attempts: i32::from(max_attempts),
        run_after: now,
        seq: 1,
        created_at: now,
    };
    on_backend!(conn, |c| diesel::insert_into(jobs::table)
        .values(&new)
        .returning(jobs::all_columns)
        .get_result(c))
}

pub fn find(conn: &mut DbConnection, id: &JobId) -> QueryResult<Option<Job>> {
    jobs::table
        .find(id.to_string())
        .select(Job::as_select())
        .first(conn)
        .optional()
}

/// The newest jobs first.
pub fn recent(
    conn: &mut DbConnection,
    status: Option<JobStatus>,
    limit: i64,
) -> QueryResult<Vec<Job>> {
    let mut query = jobs::table.into_boxed();
    if let Some(status) = status {
        query = query.filter(jobs::status.eq(status.as_str()));
    }
    query
        .order((jobs::created_at.desc(), jobs::id.desc()))
        .limit(limit)
        .select(Job::as_select())
        .load(conn)
}

/// Jobs of each kind in each status, for metrics.
pub fn count_by_kind_and_status(
    conn: &mut DbConnection,
) -> QueryResult<Vec<(String, String, i64)>> {
    jobs::table
        .group_by((jobs::kind, jobs::status))
        .select((jobs::kind, jobs::status, diesel::dsl::count_star()))
        .load(conn)
}

/// Notes that the broker was told about a queued job. `attempts` pins the queued stint
/// that was published: a job that ran and was requeued since then stays unpublished.
pub fn mark_published(conn: &mut DbConnection, id: &str, attempts: i32) -> QueryResult<bool> {
    diesel::update(
        jobs::table
            .filter(jobs::id.eq(id))
            .filter(jobs::status.eq(JobStatus::Queued.as_str()))
            .filter(jobs::attempts.eq(attempts)),
    )
    .set(jobs::published.eq(true))
    .execute(conn)
    .map(|n| n > 0)
}

/// Queued jobs that are due and that the broker was not told about: (id, attempts).
/// `settled_before` leaves alone jobs the accepting handler is still publishing.
pub fn due_unpublished(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    settled_before: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<(String, i32)>> {
    jobs::table
        .filter(jobs::status.eq(JobStatus::Queued.as_str()))
        .filter(jobs::published.eq(false))
        .filter(jobs::run_after.le(now))
        .filter(jobs::created_at.lt(settled_before).or(jobs::attempts.gt(0)))
        .order(jobs::run_after)
        .limit(limit)
        .select((jobs::id, jobs::attempts))
        .load(conn)
}

/// Marks queued jobs (those in `only`, or all) as not published, so that the reconciler
/// publishes them again: after the broker lost its queue (Redis restarted empty), or for
/// deliveries handed back at shutdown.
pub fn unpublish_queued(conn: &mut DbConnection, only: Option<&[String]>) -> QueryResult<usize> {
    let mut query = diesel::update(jobs::table)
        .filter(jobs::status.eq(JobStatus::Queued.as_str()))
        .into_boxed();
    if let Some(ids) = only {
        query = query.filter(jobs::id.eq_any(ids));
    }
    query.set(jobs::published.eq(false)).execute(conn)
}

/// Due queued jobs, oldest first, leaving out `exclude` (the in-process broker's queue).
pub fn next_due(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    exclude: &[String],
    limit: i64,
) -> QueryResult<Vec<String>> {
    jobs::table
        .filter(jobs::status.eq(JobStatus::Queued.as_str()))
        .filter(jobs::run_after.le(now))
        .filter(jobs::id.ne_all(exclude))
        .order((jobs::run_after, jobs::created_at))
        .limit(limit)
        .select(jobs::id)
        .load(conn)
}

/// Moves a due queued job to running under a fresh lease held by `owner`. `None` when the
/// job is not there to take: running elsewhere, finished, cancelled or not yet due.
pub fn claim(
    conn: &mut DbConnection,
    id: &JobId,
    owner: &str,
    lease_until: NaiveDateTime,
) -> QueryResult<Option<Job>> {
    let now = now();
    on_backend!(conn, |c| diesel::update(
        jobs::table
            .filter(jobs::id.eq(id.to_string()))
            .filter(jobs::status.eq_any(JobStatus::sources(JobStatus::Running)))
            .filter(jobs::run_after.le(now))
            .filter(jobs::cancel_requested.eq(false))
    )
    .set((
        jobs::status.eq(JobStatus::Running.as_str()),
        jobs::lease_owner.eq(owner),
        jobs::lease_expires_at.eq(lease_until),
        jobs::attempts.eq(jobs::attempts + 1),
        jobs::started_at.eq(now),
        jobs::progress_done.eq(0),
        jobs::published.eq(false),
        jobs::seq.eq(jobs::seq + 1),
    ))
    .returning(jobs::all_columns)
    .get_result(c)
    .optional())
}

/// Records progress and renews the lease. `None` when `owner` no longer holds the job.
pub fn heartbeat(
    conn: &mut DbConnection,
    id: &JobId,
    owner: &str,
    done: i64,
    total: i64,
    lease_until: NaiveDateTime,
) -> QueryResult<Option<Job>> {
    on_backend!(conn, |c| diesel::update(held(id, owner))
        .set((
            jobs::progress_done.eq(done),
            jobs::progress_total.eq(total),
            jobs::lease_expires_at.eq(lease_until),
            jobs::seq.eq(jobs::seq + 1),
        ))
        .returning(jobs::all_columns)
        .get_result(c)
        .optional())
}

/// How an attempt ended, as far as the jobs table is concerned.
#[derive(Debug, Clone)]
pub enum Ending {
    Succeeded {
        result: String,
        rows: i64,
    },
    Failed {
        error: String,
    },
    Cancelled,
    /// Try again at `run_after`.
    Retry {
        error: String,
        run_after: NaiveDateTime,
    },
    /// Hand the job back without using up an attempt (shutdown).
    Release,
}

impl Ending {
    pub fn status(&self) -> JobStatus {
        match self {
            Ending::Succeeded { .. } => JobStatus::Succeeded,
            Ending::Failed { .. } => JobStatus::Failed,
            Ending::Cancelled => JobStatus::Cancelled,
            Ending::Retry { .. } | Ending::Release => JobStatus::Queued,
        }
    }
}

type HeldBy = diesel::dsl::Filter<
    diesel::dsl::Filter<
        diesel::dsl::Filter<jobs::table, diesel::dsl::Eq<jobs::id, String>>,
        diesel::dsl::Eq<jobs::status, &'static str>,
    >,
    diesel::dsl::Eq<jobs::lease_owner, String>,
>;

/// The job, if it is running under `owner`'s lease.
fn held(id: &JobId, owner: &str) -> HeldBy {
    jobs::table
        .filter(jobs::id.eq(id.to_string()))
        .filter(jobs::status.eq(JobStatus::Running.as_str()))
        .filter(jobs::lease_owner.eq(owner.to_owned()))
}

/// Ends the attempt `owner` holds. `None` when the lease was lost meanwhile.
pub fn finish(
    conn: &mut DbConnection,
    id: &JobId,
    owner: &str,
    ending: &Ending,
) -> QueryResult<Option<Job>> {
    debug_assert!(JobStatus::Running.can_become(ending.status()));
    let now = now();
    let target = held(id, owner);
    let no_owner: Option<String> = None;
    let no_lease: Option<NaiveDateTime> = None;
    let release = (
        jobs::status.eq(ending.status().as_str()),
        jobs::lease_owner.eq(no_owner),
        jobs::lease_expires_at.eq(no_lease),
        jobs::seq.eq(jobs::seq + 1),
    );
    on_backend!(conn, |c| {
        let update = diesel::update(target);
        match ending {
            Ending::Succeeded { result, rows } => update
                .set((
                    release,
                    jobs::result.eq(Some(result.as_str())),
                    jobs::error.eq(None::<String>),
                    jobs::progress_done.eq(rows),
                    jobs::progress_total.eq(rows),
                    jobs::finished_at.eq(now),
                ))
                .returning(jobs::all_columns)
                .get_result(c),
            Ending::Failed { error } => update
                .set((
                    release,
                    jobs::error.eq(Some(error.as_str())),
                    jobs::finished_at.eq(now),
                ))
                .returning(jobs::all_columns)
                .get_result(c),
            Ending::Cancelled => update
                .set((release, jobs::finished_at.eq(now)))
                .returning(jobs::all_columns)
                .get_result(c),
            Ending::Retry { error, run_after } => update
                .set((
                    release,
                    jobs::error.eq(Some(error.as_str())),
                    jobs::run_after.eq(run_after),
                    jobs::published.eq(false),
                ))
                .returning(jobs::all_columns)
                .get_result(c),
            Ending::Release => update
                .set((
                    release,
                    jobs::attempts.eq(jobs::attempts - 1),
                    jobs::run_after.eq(now),
                    jobs::published.eq(false),
                ))
                .returning(jobs::all_columns)
                .get_result(c),
        }
        .optional()
    })
}

/// What a cancel request did.
#[derive(Debug)]
pub enum CancelOutcome {
    /// It was queued and is now cancelled.
    Cancelled(Job),
    /// It is running; its worker will stop it.
    Requested(Job),
    /// It had already ended.
    AlreadyFinished(Job),
    NotFound,
}

pub fn request_cancel(conn: &mut DbConnection, id: &JobId) -> QueryResult<CancelOutcome> {
    // The status can change between two statements; each is conditional, so try again
    // with what the row says now.
    loop {
        let Some(job) = find(conn, id)? else {
            return Ok(CancelOutcome::NotFound);
        };
        match job.status() {
            JobStatus::Queued => {
                let now = now();
                let done: Option<Job> = on_backend!(conn, |c| diesel::update(
                    jobs::table
                        .filter(jobs::id.eq(&job.id))
                        .filter(jobs::status.eq(JobStatus::Queued.as_str()))
                )
                .set((
                    jobs::status.eq(JobStatus::Cancelled.as_str()),
                    jobs::cancel_requested.eq(true),
                    jobs::finished_at.eq(now),
                    jobs::seq.eq(jobs::seq + 1),
                ))
                .returning(jobs::all_columns)
                .get_result(c)
                .optional())?;
                if let Some(job) = done {
                    return Ok(CancelOutcome::Cancelled(job));
                }
            }
            JobStatus::Running => {
                let done: Option<Job> = on_backend!(conn, |c| diesel::update(
                    jobs::table
                        .filter(jobs::id.eq(&job.id))
                        .filter(jobs::status.eq(JobStatus::Running.as_str()))
                )
                .set(jobs::cancel_requested.eq(true))
                .returning(jobs::all_columns)
                .get_result(c)
                .optional())?;
                if let Some(job) = done {
                    return Ok(CancelOutcome::Requested(job));
                }
            }
            _ => return Ok(CancelOutcome::AlreadyFinished(job)),
        }
    }
}

/// Running jobs whose lease ran out (their worker died): back to the queue, or `failed`
/// when they have no attempt left.
pub fn recover_expired(conn: &mut DbConnection) -> QueryResult<Vec<Job>> {
    let now = now();
    let expired = jobs::lease_expires_at.lt(now);
    let running = jobs::status.eq(JobStatus::Running.as_str());
    let no_owner: Option<String> = None;
    let no_lease: Option<NaiveDateTime> = None;
    let mut changed: Vec<Job> = on_backend!(conn, |c| diesel::update(
        jobs::table
            .filter(running)
            .filter(expired)
            .filter(jobs::attempts.ge(jobs::max_attempts))
    )
    .set((
        jobs::status.eq(JobStatus::Failed.as_str()),
        jobs::error.eq("the worker running it was lost (lease expired) on its last attempt"),
        jobs::finished_at.eq(now),
        jobs::lease_owner.eq(&no_owner),
        jobs::lease_expires_at.eq(no_lease),
        jobs::seq.eq(jobs::seq + 1),
    ))
    .returning(jobs::all_columns)
    .get_results(c))?;
    let requeued: Vec<Job> = on_backend!(conn, |c| diesel::update(
        jobs::table.filter(running).filter(expired)
    )
    .set((
        jobs::status.eq(JobStatus::Queued.as_str()),
        jobs::error.eq("the worker running it was lost (lease expired)"),
        jobs::run_after.eq(now),
        jobs::published.eq(false),
        jobs::lease_owner.eq(&no_owner),
        jobs::lease_expires_at.eq(no_lease),
        jobs::seq.eq(jobs::seq + 1),
    ))
    .returning(jobs::all_columns)
    .get_results(c))?;
    changed.extend(requeued);
    Ok(changed)
}
