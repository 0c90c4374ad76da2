//! The `jobs` table: the durable record of every job and the only truth about it.
//!
//! - Rows are read into typed fields here, at the model's edge ([`Job`]).
//! - Every change of status goes through [`transition!`], whose filter comes from the
//!   state machine's table ([`JobStatus::sources`]) and which bumps the job's `seq`, so
//!   every change is one event.
//! - Every write an attempt makes is fenced by its [`AttemptToken`]: it changes the row
//!   only while that attempt still holds the job.
//! - Every time that decides something (leases, due times, redelivery) is the
//!   database's ([`clock`]), never a host's.
//! - A cancel always wins: an attempt that ends in any way while a cancel is requested
//!   ends the job `cancelled`.
//!
//! This file holds the row, its typed reading, the guarded statements' macros, the insert
//! and the reads; by concern: `lease` (claim, renewal, recovery), `ending` (an attempt's
//! fenced end), `queue` (what the broker was told), `actions` (a person's retry, cancel
//! and delete; retention), `pg` (PostgreSQL's one-statement claim and success).

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use serde::Serialize;

use super::attempt::{self, Outcome};
use super::clock;
use super::prepared::Prepared;
use crate::db::DbConnection;
pub use crate::domain::job::AttemptToken;
use crate::domain::job::{JobId, JobKind, JobStatus, LeaseOwner};
use crate::domain::queue::{Priority, QueueName};
use crate::on_backend;
use crate::schema::jobs;

mod pg;

/// A job as stored, column for column; only [`Job`] leaves this module.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = jobs)]
struct JobRow {
    id: String,
    kind: String,
    params: String,
    status: String,
    progress_done: i64,
    progress_total: i64,
    attempts: i32,
    max_attempts: i32,
    error: Option<String>,
    result: Option<String>,
    cancel_requested: bool,
    lease_owner: Option<String>,
    lease_expires_at: Option<NaiveDateTime>,
    run_after: NaiveDateTime,
    seq: i64,
    created_at: NaiveDateTime,
    started_at: Option<NaiveDateTime>,
    finished_at: Option<NaiveDateTime>,
    checkpoint: Option<String>,
    created_by: Option<String>,
    // Only the unique indexes read these two.
    #[allow(dead_code)]
    idempotency_key: Option<String>,
    #[allow(dead_code)]
    dedup_key: Option<String>,
    schedule_id: Option<String>,
    fire_at: Option<NaiveDateTime>,
    queue: String,
    priority: i32,
    // Only claims read it, in their ORDER BY.
    #[allow(dead_code)]
    turn: i64,
}

/// A job, read into typed fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub kind: JobKind,
    pub params: serde_json::Value,
    pub status: JobStatus,
    pub progress: Progress,
    pub attempts: i32,
    pub max_attempts: i32,
    pub error: Option<String>,
    pub result: Option<serde_json::Value>,
    pub cancel_requested: bool,
    /// Who runs it, while it runs.
    pub lease_owner: Option<LeaseOwner>,
    pub lease_expires_at: Option<NaiveDateTime>,
    /// How far the last attempt got (the kind's own JSON), for the next one to resume.
    pub checkpoint: Option<serde_json::Value>,
    pub run_after: NaiveDateTime,
    pub seq: i64,
    pub created_at: NaiveDateTime,
    pub started_at: Option<NaiveDateTime>,
    pub finished_at: Option<NaiveDateTime>,
    /// The user who created it (none while access control is off).
    pub created_by: Option<String>,
    /// The schedule that fired it, and for which tick.
    pub schedule_id: Option<String>,
    pub fire_at: Option<NaiveDateTime>,
    pub queue: QueueName,
    pub priority: Priority,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(format!("a job row's {what}: {e}").into())
}

fn json(what: &str, raw: &str) -> QueryResult<serde_json::Value> {
    serde_json::from_str(raw).map_err(|e| corrupt(what, e))
}

impl TryFrom<JobRow> for Job {
    type Error = diesel::result::Error;

    fn try_from(row: JobRow) -> QueryResult<Job> {
        Ok(Job {
            id: row.id.parse().map_err(|e| corrupt("id", e))?,
            kind: row.kind.parse().map_err(|e| corrupt("kind", e))?,
            params: json("params", &row.params)?,
            status: row.status.parse().map_err(|e| corrupt("status", e))?,
            progress: Progress {
                done: row.progress_done,
                total: row.progress_total,
            },
            attempts: row.attempts,
            max_attempts: row.max_attempts,
            error: row.error,
            result: row
                .result
                .as_deref()
                .map(|r| json("result", r))
                .transpose()?,
            cancel_requested: row.cancel_requested,
            lease_owner: row.lease_owner.map(LeaseOwner::stored),
            lease_expires_at: row.lease_expires_at,
            checkpoint: row
                .checkpoint
                .as_deref()
                .map(|c| json("checkpoint", c))
                .transpose()?,
            run_after: row.run_after,
            seq: row.seq,
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            created_by: row.created_by,
            schedule_id: row.schedule_id,
            fire_at: row.fire_at,
            queue: row.queue.parse().map_err(|e| corrupt("queue", e))?,
            priority: Priority::new(row.priority.into()).map_err(|e| corrupt("priority", e))?,
        })
    }
}

fn typed(rows: Vec<JobRow>) -> QueryResult<Vec<Job>> {
    rows.into_iter().map(Job::try_from).collect()
}

fn typed_one(row: Option<JobRow>) -> QueryResult<Option<Job>> {
    row.map(Job::try_from).transpose()
}

impl Job {
    pub fn view(&self) -> JobView {
        JobView {
            id: self.id,
            kind: self.kind,
            params: self.params.clone(),
            status: self.status,
            progress: self.progress,
            attempts: self.attempts,
            max_attempts: self.max_attempts,
            error: self.error.clone(),
            result: self.result.clone(),
            cancel_requested: self.cancel_requested,
            seq: self.seq,
            created_at: self.created_at.and_utc(),
            run_after: self.run_after.and_utc(),
            started_at: self.started_at.map(|t| t.and_utc()),
            finished_at: self.finished_at.map(|t| t.and_utc()),
            created_by: self.created_by.clone(),
            schedule_id: self.schedule_id.clone(),
            queue: self.queue.clone(),
            priority: self.priority,
        }
    }
}

/// A job as the API and the WebSocket show it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct JobView {
    pub id: JobId,
    pub kind: JobKind,
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
    #[serde(default)]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<String>,
    /// Where it runs, and before whom (0 first). `run_after` says when it is due.
    #[serde(default = "QueueName::default_queue")]
    pub queue: QueueName,
    #[serde(default)]
    pub priority: Priority,
}

#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Progress {
    pub done: i64,
    pub total: i64,
}

/// The token of the attempt that `owner`'s claim of `job` began.
fn token_of_claim(job: &Job, owner: LeaseOwner) -> AttemptToken {
    AttemptToken {
        job: job.id,
        number: job.attempts,
        owner,
    }
}

/// Moves the jobs matching `$filter` whose status may become `$to` (per the state
/// machine's table) to `$to`, bumping `seq` and applying `$changes`; returns the rows it
/// changed. The only statement that changes a job's status.
macro_rules! transition {
    ($conn:expr, $to:expr, $filter:expr, $changes:expr) => {{
        let to: JobStatus = $to;
        let rows: QueryResult<Vec<JobRow>> = on_backend!($conn, |c| Prepared(
            diesel::update(jobs::table)
                .filter(jobs::status.eq_any(JobStatus::sources(to)))
                .filter($filter)
                .set((
                    jobs::status.eq(to.as_str()),
                    jobs::seq.eq(jobs::seq + 1),
                    $changes,
                ))
                .returning(jobs::all_columns)
        )
        .get_results(c));
        rows.and_then(typed)
    }};
}

/// The rows a caller may act on: with `Some(name)`, only the jobs `name` created; with
/// `None`, every job. Part of each conditional statement, so that ownership costs no
/// extra read.
macro_rules! visible_to {
    ($owner:expr) => {{
        let owner: Option<&str> = $owner;
        jobs::created_by
            .eq(owner.unwrap_or_default().to_owned())
            .or(diesel::IntoSql::into_sql::<diesel::sql_types::Bool>(
                owner.is_none(),
            ))
    }};
}

/// The rows an attempt holds: its job, under its lease owner, at its number.
macro_rules! fenced {
    ($token:expr) => {
        jobs::id
            .eq($token.job.to_string())
            .and(jobs::lease_owner.eq($token.owner.as_str().to_owned()))
            .and(jobs::attempts.eq($token.number))
    };
}

// `None` as a bound NULL rather than `DEFAULT`: diesel prepares an insert with DEFAULT
// afresh each time, and accepting a job is the hottest insert there is.
#[derive(Debug, Insertable)]
#[diesel(table_name = jobs, treat_none_as_default_value = false)]
struct JobInsert<'a> {
    id: String,
    kind: &'a str,
    params: String,
    status: &'a str,
    max_attempts: i32,
    seq: i64,
    created_by: Option<&'a str>,
    idempotency_key: Option<&'a str>,
    dedup_key: Option<&'a str>,
    schedule_id: Option<&'a str>,
    fire_at: Option<NaiveDateTime>,
    queue: &'a str,
    priority: i32,
}

/// A job to record, queued.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: JobId,
    pub kind: JobKind,
    /// The kind's parameters, as its `accept` checked them.
    pub params: serde_json::Value,
    pub max_attempts: i32,
    pub created_by: Option<String>,
    /// Scoped to the creator (see `jobs::accept`).
    pub idempotency_key: Option<String>,
    /// Set when no identical job may be queued or running at once.
    pub dedup_key: Option<String>,
    /// The schedule and tick that fired it: at most one job per tick.
    pub tick: Option<(String, NaiveDateTime)>,
    pub queue: QueueName,
    pub priority: Priority,
    /// Not due for this long (zero: due now). A delay, not a time: it is added to the
    /// database's clock, as every due time is.
    pub delay: Duration,
}

/// The host's clock, for what only people read (students' timestamps).
pub fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
}

/// Records a new queued job (seq 1: its creation is its first event). Fails with a
/// unique violation when its idempotency key, dedup key or tick is taken.
pub fn insert(conn: &mut DbConnection, new: &NewJob) -> QueryResult<Job> {
    let row = JobInsert {
        id: new.id.to_string(),
        kind: new.kind.as_str(),
        params: new.params.to_string(),
        status: JobStatus::Queued.as_str(),
        max_attempts: new.max_attempts,
        seq: 1,
        created_by: new.created_by.as_deref(),
        idempotency_key: new.idempotency_key.as_deref(),
        dedup_key: new.dedup_key.as_deref(),
        schedule_id: new.tick.as_ref().map(|(s, _)| s.as_str()),
        fire_at: new.tick.as_ref().map(|(_, at)| *at),
        queue: new.queue.as_str(),
        priority: new.priority.get(),
    };
    let (now, due) = (clock::now(conn), clock::after(conn, new.delay));
    let turn = turn_for(conn, new)?;
    let row: JobRow = on_backend!(conn, |c| diesel::insert_into(jobs::table)
        .values((
            &row,
            jobs::run_after.eq(due),
            jobs::created_at.eq(now),
            jobs::turn.eq(turn),
        ))
        .returning(jobs::all_columns)
        .get_result(c))?;
    Job::try_from(row)
}

/// Where a new job stands among its queue's jobs of its priority: one turn past its
/// owner's last queued job, and never before the oldest turn still queued. So owners take
/// turns: a user's thousandth queued job comes after another user's first. Jobs without
/// an owner (access control off) all share the oldest turn, and run in the order they
/// became due.
fn turn_for(conn: &mut DbConnection, new: &NewJob) -> QueryResult<i64> {
    let queued = || {
        jobs::status
            .eq(JobStatus::Queued.as_str())
            .and(jobs::queue.eq(new.queue.as_str().to_owned()))
            .and(jobs::priority.eq(new.priority.get()))
    };
    // ORDER BY … LIMIT 1, not min()/max(): one step down the claim's index (or the
    // owner's), whatever the planner knows of the table. An aggregate read every queued
    // row of the priority where statistics were stale (autovacuum off): 4-8 ms an accept.
    let oldest: Option<i64> = on_backend!(conn, |c| jobs::table
        .filter(queued())
        .order(jobs::turn.asc())
        .select(jobs::turn)
        .first(c)
        .optional())?;
    let Some(owner) = &new.created_by else {
        return Ok(oldest.unwrap_or(0));
    };
    let last: Option<i64> = on_backend!(conn, |c| jobs::table
        .filter(queued().and(jobs::created_by.eq(owner)))
        .order(jobs::turn.desc())
        .select(jobs::turn)
        .first(c)
        .optional())?;
    Ok(oldest.unwrap_or(0).max(last.map_or(0, |t| t + 1)))
}

/// The job created with this (scoped) idempotency key within `window`; an older holder
/// of the key lets go of it, so that the key can be used again.
pub fn by_idempotency_key(
    conn: &mut DbConnection,
    key: &str,
    window: Duration,
) -> QueryResult<Option<Job>> {
    let since = clock::before(conn, window);
    diesel::update(jobs::table)
        .filter(jobs::idempotency_key.eq(key))
        .filter(jobs::created_at.lt(since))
        .set(jobs::idempotency_key.eq(None::<String>))
        .execute(conn)?;
    let row = jobs::table
        .filter(jobs::idempotency_key.eq(key))
        .select(JobRow::as_select())
        .first(conn)
        .optional()?;
    typed_one(row)
}

/// How many jobs `user` has queued or running.
pub fn active_count(conn: &mut DbConnection, user: &str) -> QueryResult<i64> {
    jobs::table
        .filter(jobs::created_by.eq(user))
        .filter(jobs::status.eq_any([JobStatus::Queued.as_str(), JobStatus::Running.as_str()]))
        .count()
        .get_result(conn)
}

/// Jobs waiting in the queue (status queued), counted on the (status, run_after) index.
pub fn count_queued(conn: &mut DbConnection) -> QueryResult<i64> {
    jobs::table
        .filter(jobs::status.eq(JobStatus::Queued.as_str()))
        .count()
        .get_result(conn)
}

/// The queued or running job with this dedup key.
pub fn active_by_dedup_key(conn: &mut DbConnection, key: &str) -> QueryResult<Option<Job>> {
    let row = jobs::table
        .filter(jobs::dedup_key.eq(key))
        .filter(jobs::status.eq_any([JobStatus::Queued.as_str(), JobStatus::Running.as_str()]))
        .select(JobRow::as_select())
        .first(conn)
        .optional()?;
    typed_one(row)
}

pub fn find(conn: &mut DbConnection, id: &JobId) -> QueryResult<Option<Job>> {
    find_visible(conn, id, None)
}

/// The job, if `owner` may see it (see [`visible_to!`]): another user's job reads as
/// missing.
pub fn find_visible(
    conn: &mut DbConnection,
    id: &JobId,
    owner: Option<&str>,
) -> QueryResult<Option<Job>> {
    let row = jobs::table
        .find(id.to_string())
        .filter(visible_to!(owner))
        .select(JobRow::as_select())
        .first(conn)
        .optional()?;
    typed_one(row)
}

/// The jobs with these ids (those that exist).
pub fn find_many(conn: &mut DbConnection, ids: &[JobId]) -> QueryResult<Vec<Job>> {
    let ids: Vec<String> = ids.iter().map(JobId::to_string).collect();
    let rows = jobs::table
        .filter(jobs::id.eq_any(ids))
        .select(JobRow::as_select())
        .load(conn)?;
    typed(rows)
}

/// Which jobs a listing shows.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub kind: Option<JobKind>,
    pub queue: Option<QueueName>,
    /// A prefix of the id.
    pub id_prefix: Option<String>,
    /// Only jobs this user created.
    pub created_by: Option<String>,
}

/// Where a page of a listing starts: after the job created at `created_at` with `id`
/// (newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: NaiveDateTime,
    pub id: JobId,
}

impl Cursor {
    fn of(job: &Job) -> Self {
        Self {
            created_at: job.created_at,
            id: job.id,
        }
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let micros = self.created_at.and_utc().timestamp_micros();
        write!(f, "{micros}_{}", self.id)
    }
}

/// The latest time a cursor may name: 9999-12-31T23:59:59Z, in microseconds.
const CURSOR_MAX_MICROS: i64 = 253_402_300_799_000_000;

impl std::str::FromStr for Cursor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || "is not a cursor this service gave out".to_owned();
        let (micros, id) = s.split_once('_').ok_or_else(bad)?;
        // Only times a job can have: PostgreSQL's timestamps end in the year 294276, and a
        // cursor beyond them would fail the query (500) instead of being refused (422).
        let created_at = micros
            .parse::<i64>()
            .ok()
            .filter(|m| (0..=CURSOR_MAX_MICROS).contains(m))
            .and_then(DateTime::from_timestamp_micros)
            .ok_or_else(bad)?
            .naive_utc();
        Ok(Self {
            created_at,
            id: id.parse().map_err(|_| bad())?,
        })
    }
}

/// A page of jobs, newest first, and the cursor of the next page when there is one.
pub fn list(
    conn: &mut DbConnection,
    filter: &JobFilter,
    after: Option<&Cursor>,
    limit: i64,
) -> QueryResult<(Vec<Job>, Option<Cursor>)> {
    let mut query = jobs::table.into_boxed();
    if let Some(status) = filter.status {
        query = query.filter(jobs::status.eq(status.as_str()));
    }
    if let Some(queue) = &filter.queue {
        query = query.filter(jobs::queue.eq(queue.as_str().to_owned()));
    }
    if let Some(kind) = filter.kind {
        query = query.filter(jobs::kind.eq(kind.as_str()));
    }
    if let Some(prefix) = &filter.id_prefix {
        // Ids are lowercase hex and dashes; anything else matches nothing.
        let prefix = prefix.to_ascii_lowercase();
        if !prefix.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Ok((vec![], None));
        }
        query = query.filter(jobs::id.like(format!("{prefix}%")));
    }
    if let Some(user) = &filter.created_by {
        query = query.filter(jobs::created_by.eq(user.clone()));
    }
    if let Some(cursor) = after {
        let at = clock::literal(conn, cursor.created_at);
        query = query.filter(BoolExpressionMethods::or(
            jobs::created_at.lt(at.clone()),
            jobs::created_at
                .eq(at)
                .and(jobs::id.lt(cursor.id.to_string())),
        ));
    }
    let mut rows = typed(
        query
            .order((jobs::created_at.desc(), jobs::id.desc()))
            .limit(limit + 1)
            .select(JobRow::as_select())
            .load(conn)?,
    )?;
    let next = (rows.len() as i64 > limit).then(|| {
        rows.truncate(limit as usize);
        Cursor::of(rows.last().expect("a full page"))
    });
    Ok((rows, next))
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

/// How long a transaction that holds jobs' rows (a recovery, an ending) may stand idle
/// before PostgreSQL ends it: its process is paused or stuck, and the sweeps of the
/// others skip what it holds meanwhile. Nothing the transactions do between their
/// statements takes this long.
const HOLDER_IDLE_LIMIT: Duration = Duration::from_secs(1);

/// Has PostgreSQL end this transaction if it stands idle for [`HOLDER_IDLE_LIMIT`].
fn limit_idle(conn: &mut DbConnection) -> QueryResult<()> {
    match conn {
        DbConnection::Pg(c) => c.batch_execute(&format!(
            "SET LOCAL idle_in_transaction_session_timeout = {}",
            HOLDER_IDLE_LIMIT.as_millis()
        )),
        DbConnection::Sqlite(_) => Ok(()),
    }
}

mod actions;
mod ending;
mod lease;
mod queue;

pub use actions::*;
pub use ending::*;
pub use lease::*;
pub use queue::*;
