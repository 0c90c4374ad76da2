//! A job's claim and its success on PostgreSQL, one statement each: the job's transition
//! and its attempt's record together, in one round trip and without a transaction around
//! them (a statement is atomic). Through diesel each was a transaction of four round
//! trips (BEGIN, the job's UPDATE, the attempt's INSERT or UPDATE, COMMIT), and in a
//! drain of no-op jobs the round trips, not the work, were most of both processes' time.
//!
//! The statements say what `transition!` and `attempt::{begin, end}` say, with the
//! statuses bound from [`JobStatus`] as there; SQLite, and every other ending, go the way
//! of those. The tests run both backends through the same behaviour.

use std::time::Duration;

use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Text};

use super::{AttemptToken, JobRow};
use crate::domain::job::{JobId, JobKind, JobStatus};
use crate::models::attempt::Outcome;
use crate::models::prepared::Prepared;

/// The columns of `JobRow`, named: a prepared statement may not change the columns it
/// returns, and `*` would, for every connection open when a migration adds a column.
macro_rules! job_columns {
    () => {
        "id, kind, params, status, progress_done, progress_total, attempts, max_attempts, \
         error, result, cancel_requested, lease_owner, lease_expires_at, run_after, seq, \
         created_at, started_at, finished_at, checkpoint, published_at, created_by, \
         idempotency_key, dedup_key, schedule_id, fire_at"
    };
}

/// Moves job `$1` to running under lease owner `$2`, as `job::claim`, and records the
/// attempt it begins. Only a job of a kind this build knows (`$6`): one it could not
/// read back would be left running, the claim committed, until its lease ran out.
const CLAIM: &str = concat!(
    "WITH claimed AS (
    UPDATE jobs
    SET status = $3, seq = seq + 1, lease_owner = $2,
        lease_expires_at = (CURRENT_TIMESTAMP AT TIME ZONE 'UTC') + $5 * INTERVAL '1 millisecond',
        attempts = attempts + 1,
        started_at = (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'),
        published_at = NULL
    WHERE id = $1 AND status = ANY($4) AND cancel_requested = false
        AND run_after <= (CURRENT_TIMESTAMP AT TIME ZONE 'UTC') AND kind = ANY($6)
    RETURNING ",
    job_columns!(),
    "
), began AS (
    INSERT INTO job_attempts (job_id, worker, number, started_at)
    SELECT id, lease_owner, attempts, started_at FROM claimed
)
SELECT ",
    job_columns!(),
    " FROM claimed"
);

/// Ends the attempt (`$1`, `$2`, `$3`) `succeeded` with result `$6`, as `job::finish`
/// does unless a cancel wins (`$7`: the job's effects are committed, and a cancel does
/// not win), and records the attempt's outcome.
const SUCCEED: &str = concat!(
    "WITH ended AS (
    UPDATE jobs
    SET status = $4, seq = seq + 1, lease_owner = NULL, lease_expires_at = NULL,
        result = $6, error = NULL, progress_done = progress_total,
        finished_at = (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'), checkpoint = NULL
    WHERE id = $1 AND lease_owner = $2 AND attempts = $3 AND status = ANY($5)
        AND (cancel_requested = false OR cancel_requested = $7)
    RETURNING ",
    job_columns!(),
    "
), recorded AS (
    UPDATE job_attempts
    SET ended_at = (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'), outcome = $8, error = NULL
    WHERE job_id = $1 AND worker = $2 AND EXISTS (SELECT 1 FROM ended)
)
SELECT ",
    job_columns!(),
    " FROM ended"
);

pub(super) fn claim(
    conn: &mut PgConnection,
    id: &JobId,
    owner: &str,
    lease: Duration,
) -> QueryResult<Option<JobRow>> {
    let to = JobStatus::Running;
    Prepared(
        diesel::sql_query(CLAIM)
            .bind::<Text, _>(id.to_string())
            .bind::<Text, _>(owner)
            .bind::<Text, _>(to.as_str())
            .bind::<Array<Text>, _>(JobStatus::sources(to))
            .bind::<BigInt, _>(lease.as_millis() as i64)
            .bind::<Array<Text>, _>(JobKind::ALL.map(JobKind::as_str).to_vec()),
    )
    .get_result(conn)
    .optional()
}

/// `None` when the attempt does not hold the job as asked: a cancel won, or the job is
/// no longer the attempt's; `job::finish` then sees which.
pub(super) fn succeed(
    conn: &mut PgConnection,
    token: &AttemptToken,
    result: &str,
    committed: bool,
) -> QueryResult<Option<JobRow>> {
    let to = JobStatus::Succeeded;
    Prepared(
        diesel::sql_query(SUCCEED)
            .bind::<Text, _>(token.job.to_string())
            .bind::<Text, _>(token.owner.as_str())
            .bind::<Integer, _>(token.number)
            .bind::<Text, _>(to.as_str())
            .bind::<Array<Text>, _>(JobStatus::sources(to))
            .bind::<Text, _>(result)
            .bind::<Bool, _>(committed)
            .bind::<Text, _>(Outcome::Succeeded.as_str()),
    )
    .get_result(conn)
    .optional()
}
