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
    published_at: Option<NaiveDateTime>,
    created_by: Option<String>,
    // Only the unique indexes read these two.
    #[allow(dead_code)]
    idempotency_key: Option<String>,
    #[allow(dead_code)]
    dedup_key: Option<String>,
    schedule_id: Option<String>,
    fire_at: Option<NaiveDateTime>,
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
    pub published_at: Option<NaiveDateTime>,
    pub seq: i64,
    pub created_at: NaiveDateTime,
    pub started_at: Option<NaiveDateTime>,
    pub finished_at: Option<NaiveDateTime>,
    /// The user who created it (none while access control is off).
    pub created_by: Option<String>,
    /// The schedule that fired it, and for which tick.
    pub schedule_id: Option<String>,
    pub fire_at: Option<NaiveDateTime>,
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
            published_at: row.published_at,
            seq: row.seq,
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            created_by: row.created_by,
            schedule_id: row.schedule_id,
            fire_at: row.fire_at,
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
}

/// A job to record, queued and due now.
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
    };
    let (now, published) = (clock::now(conn), clock::now_nullable(conn));
    // Marked published as it is inserted: the accepting handler publishes it next, and
    // one commit per accepted job is half the cost of two. If that publish fails, the
    // handler unmarks it ([`unpublish_queued`]); if the process dies first, the
    // reconciler finds the broker without it within `ROSTER_REDELIVER_SECS`
    // ([`stale_published`]) and publishes it then.
    let row: JobRow = on_backend!(conn, |c| diesel::insert_into(jobs::table)
        .values((
            &row,
            jobs::run_after.eq(now),
            jobs::created_at.eq(now),
            jobs::published_at.eq(published)
        ))
        .returning(jobs::all_columns)
        .get_result(c))?;
    Job::try_from(row)
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

impl std::str::FromStr for Cursor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || "is not a cursor this service gave out".to_owned();
        let (micros, id) = s.split_once('_').ok_or_else(bad)?;
        let created_at = micros
            .parse::<i64>()
            .ok()
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

/// What a person's retry did.
#[derive(Debug)]
pub enum RetryOutcome {
    /// Back in the queue, with `budget` more attempts.
    Queued(Job),
    /// Only a failed or cancelled job can be retried.
    NotRetryable(Job),
    NotFound,
}

/// Puts a failed or cancelled job that `owner` may see back in the queue with a fresh
/// budget of attempts (numbers go on from the last one). Its checkpoint stays: work an
/// attempt committed (an import's batches) is not done twice.
pub fn retry(
    conn: &mut DbConnection,
    id: &JobId,
    owner: Option<&str>,
    budget: i32,
) -> QueryResult<RetryOutcome> {
    let now = clock::now(conn);
    let retried = transition!(
        conn,
        JobStatus::Queued,
        jobs::id
            .eq(id.to_string())
            .and(jobs::status.eq_any([JobStatus::Failed.as_str(), JobStatus::Cancelled.as_str()]))
            .and(visible_to!(owner)),
        (
            jobs::max_attempts.eq(jobs::attempts + budget),
            jobs::cancel_requested.eq(false),
            jobs::error.eq(None::<String>),
            jobs::result.eq(None::<String>),
            jobs::finished_at.eq(None::<NaiveDateTime>),
            jobs::run_after.eq(now),
            jobs::published_at.eq(None::<NaiveDateTime>),
        )
    )?;
    Ok(match retried.into_iter().next() {
        Some(job) => RetryOutcome::Queued(job),
        None => match find_visible(conn, id, owner)? {
            Some(job) => RetryOutcome::NotRetryable(job),
            None => RetryOutcome::NotFound,
        },
    })
}

/// What a delete did.
#[derive(Debug)]
pub enum DeleteOutcome {
    /// Gone, with its attempts (its files are the caller's to remove).
    Deleted(Job),
    /// Still queued or running.
    Active(Job),
    NotFound,
}

fn ended() -> Vec<&'static str> {
    JobStatus::ALL
        .into_iter()
        .filter(|s| s.is_terminal())
        .map(JobStatus::as_str)
        .collect()
}

/// Deletes an ended job that `owner` may see.
pub fn delete(
    conn: &mut DbConnection,
    id: &JobId,
    owner: Option<&str>,
) -> QueryResult<DeleteOutcome> {
    let row: Option<JobRow> = on_backend!(conn, |c| diesel::delete(
        jobs::table
            .filter(jobs::id.eq(id.to_string()))
            .filter(jobs::status.eq_any(ended()))
            .filter(visible_to!(owner))
    )
    .returning(jobs::all_columns)
    .get_result(c)
    .optional())?;
    Ok(match typed_one(row)? {
        Some(job) => DeleteOutcome::Deleted(job),
        None => match find_visible(conn, id, owner)? {
            Some(job) => DeleteOutcome::Active(job),
            None => DeleteOutcome::NotFound,
        },
    })
}

/// Deletes up to `limit` jobs that ended longer than `retention` ago; returns them.
pub fn prune_ended(
    conn: &mut DbConnection,
    retention: Duration,
    limit: i64,
) -> QueryResult<Vec<Job>> {
    let before = clock::before_nullable(conn, retention);
    let ids: Vec<String> = jobs::table
        .filter(jobs::status.eq_any(ended()))
        .filter(jobs::finished_at.lt(before))
        .order(jobs::finished_at)
        .limit(limit)
        .select(jobs::id)
        .load(conn)?;
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let rows: Vec<JobRow> = on_backend!(conn, |c| diesel::delete(
        jobs::table
            .filter(jobs::id.eq_any(&ids))
            .filter(jobs::status.eq_any(ended()))
    )
    .returning(jobs::all_columns)
    .get_results(c))?;
    typed(rows)
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

/// Notes that the broker holds the job's current queued stint (published it, or was
/// seen to hold it). `attempts` pins the stint: a job that ran and was requeued since
/// stays as it is.
pub fn mark_published(conn: &mut DbConnection, jobs_: &[(JobId, i32)]) -> QueryResult<usize> {
    // One commit for the whole sweep's worth, not one each: a backlog of queued jobs has
    // the reconciler mark hundreds a second.
    conn.transaction(|conn| mark_each_published(conn, jobs_))
}

fn mark_each_published(conn: &mut DbConnection, jobs_: &[(JobId, i32)]) -> QueryResult<usize> {
    let mut marked = 0;
    for (id, attempts) in jobs_ {
        let now = clock::now_nullable(conn);
        marked += diesel::update(
            jobs::table
                .filter(jobs::id.eq(id.to_string()))
                .filter(jobs::status.eq(JobStatus::Queued.as_str()))
                .filter(jobs::attempts.eq(attempts)),
        )
        .set(jobs::published_at.eq(now))
        .execute(conn)?;
    }
    Ok(marked)
}

/// Queued jobs that are due and that the broker was never told about: (id, attempts).
/// `settle` leaves alone new jobs the accepting handler is still publishing.
pub fn due_unpublished(
    conn: &mut DbConnection,
    settle: Duration,
    limit: i64,
) -> QueryResult<Vec<(JobId, i32)>> {
    let (now, settled) = (clock::now(conn), clock::before(conn, settle));
    let rows: Vec<(String, i32)> = jobs::table
        .filter(jobs::status.eq(JobStatus::Queued.as_str()))
        .filter(jobs::published_at.is_null())
        .filter(jobs::run_after.le(now))
        .filter(BoolExpressionMethods::or(
            jobs::created_at.lt(settled),
            jobs::attempts.gt(0),
        ))
        .order(jobs::run_after)
        .limit(limit)
        .select((jobs::id, jobs::attempts))
        .load(conn)?;
    parse_ids(rows)
}

/// Queued, due jobs published longer than `after` ago and still not running, longest
/// published first: the reconciler asks the broker whether it still holds them.
pub fn stale_published(
    conn: &mut DbConnection,
    after: Duration,
    limit: i64,
) -> QueryResult<Vec<(JobId, i32)>> {
    let (now, stale) = (clock::now(conn), clock::before_nullable(conn, after));
    let rows: Vec<(String, i32)> = jobs::table
        .filter(jobs::status.eq(JobStatus::Queued.as_str()))
        .filter(jobs::published_at.lt(stale))
        .filter(jobs::run_after.le(now))
        .order(jobs::published_at)
        .limit(limit)
        .select((jobs::id, jobs::attempts))
        .load(conn)?;
    parse_ids(rows)
}

fn parse_ids(rows: Vec<(String, i32)>) -> QueryResult<Vec<(JobId, i32)>> {
    rows.into_iter()
        .map(|(id, n)| Ok((id.parse().map_err(|e| corrupt("id", e))?, n)))
        .collect()
}

/// Marks queued jobs (those in `only`, or all) as not published, so that the reconciler
/// publishes them again: after the broker lost its queue, or for deliveries handed back
/// at shutdown.
pub fn unpublish_queued(conn: &mut DbConnection, only: Option<&[JobId]>) -> QueryResult<usize> {
    let mut query = diesel::update(jobs::table)
        .filter(jobs::status.eq(JobStatus::Queued.as_str()))
        .into_boxed();
    if let Some(ids) = only {
        query = query.filter(jobs::id.eq_any(ids.iter().map(JobId::to_string)));
    }
    query
        .set(jobs::published_at.eq(None::<NaiveDateTime>))
        .execute(conn)
}

/// Due queued jobs, oldest first, leaving out `exclude` (deliveries in flight).
pub fn next_due(
    conn: &mut DbConnection,
    exclude: &[String],
    limit: i64,
) -> QueryResult<Vec<JobId>> {
    let now = clock::now(conn);
    let ids: Vec<String> = jobs::table
        .filter(jobs::status.eq(JobStatus::Queued.as_str()))
        .filter(jobs::run_after.le(now))
        .filter(jobs::id.ne_all(exclude))
        .order((jobs::run_after, jobs::created_at))
        .limit(limit)
        .select(jobs::id)
        .load(conn)?;
    ids.into_iter()
        .map(|id| id.parse().map_err(|e| corrupt("id", e)))
        .collect()
}

/// Moves a due queued job to running under a fresh lease owned by a new attempt of
/// `node`. `None` when the job is not there to take: running elsewhere, ended, or not
/// yet due.
pub fn claim(
    conn: &mut DbConnection,
    id: &JobId,
    node: &str,
    lease: Duration,
) -> QueryResult<Option<(Job, AttemptToken)>> {
    let owner = LeaseOwner::new_attempt(node);
    match conn {
        DbConnection::Pg(c) => Ok(typed_one(pg::claim(c, id, owner.as_str(), lease)?)?.map(
            |job| {
                let token = token_of_claim(&job, owner);
                (job, token)
            },
        )),
        DbConnection::Sqlite(_) => claim_in_transaction(conn, id, owner, lease),
    }
}

/// [`claim`] as diesel writes it: the job's transition, then its attempt's record.
fn claim_in_transaction(
    conn: &mut DbConnection,
    id: &JobId,
    owner: LeaseOwner,
    lease: Duration,
) -> QueryResult<Option<(Job, AttemptToken)>> {
    conn.write_transaction(|conn| {
        let (now, started, until) = (
            clock::now(conn),
            clock::now_nullable(conn),
            clock::after_nullable(conn, lease),
        );
        let claimed = transition!(
            conn,
            JobStatus::Running,
            BoolExpressionMethods::and(
                jobs::id
                    .eq(id.to_string())
                    .and(jobs::cancel_requested.eq(false)),
                jobs::run_after.le(now)
            ),
            (
                jobs::lease_owner.eq(owner.as_str()),
                jobs::lease_expires_at.eq(until),
                jobs::attempts.eq(jobs::attempts + 1),
                jobs::started_at.eq(started),
                jobs::published_at.eq(None::<NaiveDateTime>),
            )
        )?;
        let Some(job) = claimed.into_iter().next() else {
            return Ok(None);
        };
        let token = token_of_claim(&job, owner);
        attempt::begin(conn, &token)?;
        Ok(Some((job, token)))
    })
}

/// What an attempt records as it goes.
#[derive(Debug, Clone, Default)]
pub struct Beat<'a> {
    /// Progress to record (bumps `seq`: it is an event).
    pub progress: Option<Progress>,
    /// The kind's checkpoint to record with it.
    pub checkpoint: Option<&'a serde_json::Value>,
}

/// Renews the attempt's lease on the database's clock, recording `beat`. `None` when the
/// attempt no longer holds the job.
pub fn renew(
    conn: &mut DbConnection,
    token: &AttemptToken,
    lease: Duration,
    beat: &Beat<'_>,
) -> QueryResult<Option<Job>> {
    let until = clock::after_nullable(conn, lease);
    let held = fenced!(token).and(jobs::status.eq(JobStatus::Running.as_str()));
    let row: Option<JobRow> = match (beat.progress, beat.checkpoint) {
        (None, _) => on_backend!(conn, |c| Prepared(
            diesel::update(jobs::table)
                .filter(held)
                .set(jobs::lease_expires_at.eq(until))
                .returning(jobs::all_columns)
        )
        .get_result(c)
        .optional())?,
        (Some(p), checkpoint) => {
            let checkpoint = checkpoint.map(|c| c.to_string());
            on_backend!(conn, |c| Prepared(
                diesel::update(jobs::table)
                    .filter(held)
                    .set((
                        jobs::lease_expires_at.eq(until),
                        jobs::progress_done.eq(p.done),
                        jobs::progress_total.eq(p.total),
                        jobs::seq.eq(jobs::seq + 1),
                        checkpoint.map(|c| jobs::checkpoint.eq(c)),
                    ))
                    .returning(jobs::all_columns)
            )
            .get_result(c)
            .optional())?
        }
    };
    typed_one(row)
}

/// How an attempt ended, as far as the jobs table is concerned.
#[derive(Debug, Clone)]
pub enum Ending {
    Succeeded {
        result: String,
        /// The job's effects were committed before this ending (an import's rows): a
        /// cancel requested since came too late to stop anything, and does not win.
        committed: bool,
    },
    /// No attempt can succeed, or none is left; `result` is what the job produced
    /// anyway (an import's rejects report).
    Failed {
        error: String,
        result: Option<String>,
    },
    Cancelled,
    /// Try again after `backoff`.
    Retry {
        error: String,
        backoff: Duration,
    },
    /// Hand the job back without using up an attempt (shutdown); its checkpoint stays
    /// for the next attempt.
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

/// Ends the attempt `token` holds. A requested cancel wins over any other ending (but a
/// success whose work is already committed): the job ends `cancelled`. `None` when the attempt no longer holds the job.
pub fn finish(
    conn: &mut DbConnection,
    token: &AttemptToken,
    ending: &Ending,
) -> QueryResult<Option<Job>> {
    debug_assert!(JobStatus::Running.can_become(ending.status()));
    if let (DbConnection::Pg(c), Ending::Succeeded { result, committed }) = (&mut *conn, ending) {
        if let Some(row) = pg::succeed(c, token, result, *committed)? {
            return typed_one(Some(row));
        }
        // Not held as asked: a cancel won, or the job is no longer the attempt's; the
        // transaction below records which.
    }
    conn.write_transaction(|conn| {
        limit_idle(conn)?;
        let ended = end_attempt(conn, token, ending)?;
        if let Some(job) = &ended {
            let (outcome, error) = match ending {
                _ if job.status == JobStatus::Cancelled => (Outcome::Cancelled, None),
                Ending::Succeeded { .. } => (Outcome::Succeeded, None),
                Ending::Failed { error, .. } => (Outcome::Failed, Some(error.as_str())),
                Ending::Retry { error, .. } => (Outcome::Retry, Some(error.as_str())),
                Ending::Release => (Outcome::Released, None),
                Ending::Cancelled => (Outcome::Cancelled, None),
            };
            attempt::end(conn, &token.job, token.owner.as_str(), outcome, error)?;
        }
        Ok(ended)
    })
}

fn end_attempt(
    conn: &mut DbConnection,
    token: &AttemptToken,
    ending: &Ending,
) -> QueryResult<Option<Job>> {
    let ended = match ending {
        Ending::Cancelled => vec![],
        _ => end_unless_cancelled(conn, token, ending)?,
    };
    if let Some(job) = ended.into_iter().next() {
        return Ok(Some(job));
    }
    // Either a cancel was requested (it wins) or the attempt lost the job.
    let finished = clock::now_nullable(conn);
    let cancelled = transition!(
        conn,
        JobStatus::Cancelled,
        fenced!(token),
        (
            jobs::lease_owner.eq(None::<String>),
            jobs::lease_expires_at.eq(None::<NaiveDateTime>),
            jobs::finished_at.eq(finished),
        )
    )?;
    Ok(cancelled.into_iter().next())
}

fn end_unless_cancelled(
    conn: &mut DbConnection,
    token: &AttemptToken,
    ending: &Ending,
) -> QueryResult<Vec<Job>> {
    // A cancel wins, unless the attempt's work is committed already: it cannot be undone.
    let committed = matches!(
        ending,
        Ending::Succeeded {
            committed: true,
            ..
        }
    );
    let held = fenced!(token).and(BoolExpressionMethods::or(
        jobs::cancel_requested.eq(false),
        jobs::cancel_requested.eq(committed),
    ));
    let released = (
        jobs::lease_owner.eq(None::<String>),
        jobs::lease_expires_at.eq(None::<NaiveDateTime>),
    );
    let finished = clock::now_nullable(conn);
    match ending {
        Ending::Succeeded { result, .. } => transition!(
            conn,
            JobStatus::Succeeded,
            held,
            (
                released,
                jobs::result.eq(Some(result.as_str())),
                jobs::error.eq(None::<String>),
                jobs::progress_done.eq(jobs::progress_total),
                jobs::finished_at.eq(finished),
                jobs::checkpoint.eq(None::<String>),
            )
        ),
        Ending::Failed { error, result } => transition!(
            conn,
            JobStatus::Failed,
            held,
            (
                released,
                jobs::error.eq(Some(error.as_str())),
                jobs::result.eq(result.as_deref()),
                jobs::finished_at.eq(finished),
            )
        ),
        Ending::Retry { error, backoff } => {
            let run_after = clock::after(conn, *backoff);
            transition!(
                conn,
                JobStatus::Queued,
                held,
                (
                    released,
                    jobs::error.eq(Some(error.as_str())),
                    jobs::run_after.eq(run_after),
                    jobs::published_at.eq(None::<NaiveDateTime>),
                )
            )
        }
        Ending::Release => {
            let now = clock::now(conn);
            transition!(
                conn,
                JobStatus::Queued,
                held,
                (
                    released,
                    jobs::attempts.eq(jobs::attempts - 1),
                    jobs::run_after.eq(now),
                    jobs::published_at.eq(None::<NaiveDateTime>),
                )
            )
        }
        Ending::Cancelled => unreachable!("a cancel is recorded by `finish` itself"),
    }
}

/// What a cancel request did.
#[derive(Debug)]
pub enum CancelOutcome {
    /// It was queued and is now cancelled.
    Cancelled(Job),
    /// It is running; its worker will stop it (or, if the worker is gone, whoever
    /// ends the attempt ends the job `cancelled`).
    Requested(Job),
    /// It had already ended.
    AlreadyFinished(Job),
    NotFound,
}

/// Cancels a job that `owner` may see: a queued one at once, a running one by asking
/// its attempt to stop.
pub fn request_cancel(
    conn: &mut DbConnection,
    id: &JobId,
    owner: Option<&str>,
) -> QueryResult<CancelOutcome> {
    // The status can change between two statements; each is conditional, so try again
    // with what the row says now (ownership cannot change).
    loop {
        let Some(job) = find_visible(conn, id, owner)? else {
            return Ok(CancelOutcome::NotFound);
        };
        match job.status {
            JobStatus::Queued => {
                let finished = clock::now_nullable(conn);
                let done = transition!(
                    conn,
                    JobStatus::Cancelled,
                    jobs::id
                        .eq(id.to_string())
                        .and(jobs::status.eq(JobStatus::Queued.as_str())),
                    (
                        jobs::cancel_requested.eq(true),
                        jobs::finished_at.eq(finished),
                    )
                )?;
                if let Some(job) = done.into_iter().next() {
                    return Ok(CancelOutcome::Cancelled(job));
                }
            }
            JobStatus::Running => {
                // Not a change of status, but a change of the job: an event of its own.
                let row: Option<JobRow> = on_backend!(conn, |c| diesel::update(jobs::table)
                    .filter(jobs::id.eq(id.to_string()))
                    .filter(jobs::status.eq(JobStatus::Running.as_str()))
                    .set((jobs::cancel_requested.eq(true), jobs::seq.eq(jobs::seq + 1)))
                    .returning(jobs::all_columns)
                    .get_result(c)
                    .optional())?;
                if let Some(job) = typed_one(row)? {
                    return Ok(CancelOutcome::Requested(job));
                }
            }
            _ => return Ok(CancelOutcome::AlreadyFinished(job)),
        }
    }
}

/// Running jobs whose lease ran out on the database's clock (their worker died or
/// stalled): cancelled when a cancel was requested, failed when they have no attempt
/// left, else back to the queue with their checkpoint kept for the next attempt, due
/// after `retry_delay(attempts)` (the retry policy's backoff, as after any failed attempt).
///
/// On PostgreSQL, a job whose row another transaction holds is left for the next pass
/// (its holder, say a paused process in the middle of recording the job's end, may be
/// gone for seconds): recovering every other job does not wait for it. And this pass's
/// own transaction is ended by the server if it stands idle for [`HOLDER_IDLE_LIMIT`]:
/// a sweeping process paused inside it would otherwise hold every expired job it locked
/// from the other processes' sweeps for as long as it is paused (the chaos run saw jobs
/// back in the queue 9 s after their worker's kill, behind a sweeper under SIGSTOP).
pub fn recover_expired(
    conn: &mut DbConnection,
    retry_delay: impl Fn(i32) -> Duration,
) -> QueryResult<Vec<Job>> {
    conn.transaction(|conn| match conn {
        DbConnection::Pg(_) => {
            let expired = lock_expired(conn)?;
            if expired.is_empty() {
                return Ok(Vec::new());
            }
            let (ids, owners): (Vec<String>, Vec<Option<String>>) = expired.into_iter().unzip();
            let owners: Vec<String> = owners.into_iter().flatten().collect();
            attempt::end_lost(conn, &ids, &owners)?;
            recover_expired_jobs(conn, Expired::Locked(&ids), &retry_delay)
        }
        // One writer at a time: nothing to skip, and the write lock is taken first.
        DbConnection::Sqlite(_) => {
            attempt::end_expired(conn)?;
            recover_expired_jobs(conn, Expired::All, &retry_delay)
        }
    })
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

/// Locks the running jobs whose lease ran out and no other transaction holds (on
/// PostgreSQL); their ids and lease owners.
fn lock_expired(conn: &mut DbConnection) -> QueryResult<Vec<(String, Option<String>)>> {
    let expired = jobs::table
        .filter(jobs::status.eq(JobStatus::Running.as_str()))
        .filter(jobs::lease_expires_at.lt(clock::now_nullable(conn)))
        .select((jobs::id, jobs::lease_owner));
    limit_idle(conn)?;
    match conn {
        DbConnection::Pg(c) => expired.for_update().skip_locked().load(c),
        DbConnection::Sqlite(c) => expired.load(c),
    }
}

/// Which expired jobs a recovery takes.
enum Expired<'a> {
    /// Those it locked.
    Locked(&'a [String]),
    /// Every one (SQLite: the transaction holds the write lock).
    All,
}

fn recover_expired_jobs(
    conn: &mut DbConnection,
    which: Expired<'_>,
    retry_delay: &dyn Fn(i32) -> Duration,
) -> QueryResult<Vec<Job>> {
    // One statement text either way, so that it is prepared once: a list of ids would
    // be a new statement for each length on SQLite, which writes one parameter each.
    let (ids, all) = match which {
        Expired::Locked(ids) => (ids, false),
        Expired::All => (&[][..], true),
    };
    let now = clock::now_nullable(conn);
    let expired = || {
        jobs::id
            .eq_any(ids.to_vec())
            .or(all.into_sql::<diesel::sql_types::Bool>())
            .and(
                jobs::status
                    .eq(JobStatus::Running.as_str())
                    .and(jobs::lease_expires_at.lt(now)),
            )
    };
    let released = || {
        (
            jobs::lease_owner.eq(None::<String>),
            jobs::lease_expires_at.eq(None::<NaiveDateTime>),
        )
    };
    let (e1, e2) = (expired(), expired());
    let finished = now;
    let mut changed = transition!(
        conn,
        JobStatus::Cancelled,
        e1.and(jobs::cancel_requested.eq(true)),
        (released(), jobs::finished_at.eq(finished),)
    )?;
    changed.extend(transition!(
        conn,
        JobStatus::Failed,
        e2.and(jobs::attempts.ge(jobs::max_attempts)),
        (
            released(),
            jobs::error.eq("the worker running it was lost (lease expired) on its last attempt"),
            jobs::finished_at.eq(finished),
        )
    )?);
    // A cancel committed after the first statement must not be requeued here (this is
    // read committed: each statement sees the rows anew); the next sweep cancels it.
    // Each attempt number backs off its own delay: one statement per number in use.
    let numbers: Vec<i32> = on_backend!(conn, |c| jobs::table
        .filter(expired().and(jobs::cancel_requested.eq(false)))
        .select(jobs::attempts)
        .distinct()
        .load(c))?;
    for number in numbers {
        let run_after = clock::after(conn, retry_delay(number));
        changed.extend(transition!(
            conn,
            JobStatus::Queued,
            expired()
                .and(jobs::cancel_requested.eq(false))
                .and(jobs::attempts.eq(number)),
            (
                released(),
                jobs::error.eq("the worker running it was lost (lease expired)"),
                jobs::run_after.eq(run_after),
                jobs::published_at.eq(None::<NaiveDateTime>),
            )
        )?);
    }
    Ok(changed)
}
