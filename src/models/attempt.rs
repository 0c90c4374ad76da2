//! The `job_attempts` table: one row per attempt of a job. Rows are written only by the
//! job's fenced transitions (in `models::job`), in the same transaction, so the history
//! cannot disagree with the job.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use super::clock;
use super::prepared::Prepared;
use crate::db::DbConnection;
pub use crate::domain::job::Outcome;
use crate::domain::job::{AttemptToken, JobId, JobStatus, LeaseOwner};
use crate::on_backend;
use crate::schema::{job_attempts, jobs};

/// One attempt, as `GET /api/jobs/{id}/attempts` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct AttemptView {
    pub number: i32,
    pub worker: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub outcome: Option<Outcome>,
    pub error: Option<String>,
    pub resumed_from: Option<i64>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = job_attempts)]
struct AttemptRow {
    number: i32,
    worker: String,
    started_at: NaiveDateTime,
    ended_at: Option<NaiveDateTime>,
    outcome: Option<String>,
    error: Option<String>,
    resumed_from: Option<i64>,
}

/// Records the attempts a claim began (`owner`'s, on `jobs`), in one statement: each
/// from its job's row as the claim left it.
pub(super) fn begin_all(
    conn: &mut DbConnection,
    owner: &LeaseOwner,
    jobs_: &[JobId],
) -> QueryResult<()> {
    if jobs_.is_empty() {
        return Ok(());
    }
    let claimed = jobs::table
        .filter(jobs::id.eq_any(jobs_.iter().map(JobId::to_string).collect::<Vec<_>>()))
        .filter(jobs::lease_owner.eq(owner.as_str()))
        .select((
            jobs::id,
            jobs::lease_owner.assume_not_null(),
            jobs::attempts,
            jobs::started_at.assume_not_null(),
        ));
    diesel::insert_into(job_attempts::table)
        .values(claimed)
        .into_columns((
            job_attempts::job_id,
            job_attempts::worker,
            job_attempts::number,
            job_attempts::started_at,
        ))
        .execute(conn)
        .map(drop)
}

/// Records that the attempt `token` went on from where an earlier one got to (`done`,
/// in the kind's unit of progress), as the kind itself found when it resumed.
pub fn resumed(conn: &mut DbConnection, token: &AttemptToken, done: i64) -> QueryResult<()> {
    diesel::update(
        job_attempts::table
            .filter(job_attempts::job_id.eq(token.job.to_string()))
            .filter(job_attempts::worker.eq(token.owner.as_str())),
    )
    .set(job_attempts::resumed_from.eq(done))
    .execute(conn)
    .map(drop)
}

/// Records how the attempt of `worker` ended (with the transition that ended it).
pub(super) fn end(
    conn: &mut DbConnection,
    job: &JobId,
    worker: &str,
    outcome: Outcome,
    error: Option<&str>,
) -> QueryResult<()> {
    let now = clock::now_nullable(conn);
    on_backend!(conn, |c| Prepared(
        diesel::update(
            job_attempts::table
                .filter(job_attempts::job_id.eq(job.to_string()))
                .filter(job_attempts::worker.eq(worker)),
        )
        .set((
            job_attempts::ended_at.eq(now),
            job_attempts::outcome.eq(outcome.as_str()),
            job_attempts::error.eq(error),
        ))
        .returning(job_attempts::number),
    )
    .load::<i32>(c))
    .map(drop)
}

/// What a lost attempt's record is set to, ended at `$ended`.
macro_rules! lost {
    ($ended:expr) => {
        (
            job_attempts::ended_at.eq($ended),
            job_attempts::outcome.eq(Outcome::Lost.as_str()),
            job_attempts::error.eq("the worker running it was lost (lease expired)"),
        )
    };
}

/// Records as lost the attempts of `owners` (lease owners whose lease ran out) on jobs
/// `ids`, before those jobs are recovered.
pub(super) fn end_lost(
    conn: &mut DbConnection,
    ids: &[String],
    owners: &[String],
) -> QueryResult<()> {
    let ended = clock::now_nullable(conn);
    diesel::update(
        job_attempts::table
            .filter(job_attempts::job_id.eq_any(ids))
            .filter(job_attempts::ended_at.is_null())
            .filter(job_attempts::worker.eq_any(owners)),
    )
    .set(lost!(ended))
    .execute(conn)
    .map(drop)
}

/// Records as lost the attempts whose lease ran out, before their jobs are recovered: a
/// write first, so that SQLite takes its write lock before anything is read (a read
/// first would fail the transaction if another writer commits before its first write).
pub(super) fn end_expired(conn: &mut DbConnection) -> QueryResult<()> {
    let (now, ended) = (clock::now_nullable(conn), clock::now_nullable(conn));
    let expired = jobs::table
        .filter(jobs::status.eq(JobStatus::Running.as_str()))
        .filter(jobs::lease_expires_at.lt(now))
        .select(jobs::lease_owner);
    diesel::update(
        job_attempts::table
            .filter(job_attempts::ended_at.is_null())
            .filter(job_attempts::worker.nullable().eq_any(expired)),
    )
    .set(lost!(ended))
    .execute(conn)
    .map(drop)
}

/// A job's attempts, first first.
pub fn for_job(conn: &mut DbConnection, job: &JobId) -> QueryResult<Vec<AttemptView>> {
    let rows = job_attempts::table
        .filter(job_attempts::job_id.eq(job.to_string()))
        .order((job_attempts::started_at, job_attempts::number))
        .select(AttemptRow::as_select())
        .load(conn)?;
    rows.into_iter()
        .map(|r| {
            let outcome = r
                .outcome
                .map(|o| o.parse::<Outcome>())
                .transpose()
                .map_err(|e| diesel::result::Error::DeserializationError(e.into()))?;
            Ok(AttemptView {
                number: r.number,
                worker: r.worker,
                started_at: r.started_at.and_utc(),
                ended_at: r.ended_at.map(|t| t.and_utc()),
                outcome,
                error: r.error,
                resumed_from: r.resumed_from,
            })
        })
        .collect()
}
