//! Successes on PostgreSQL in one statement, one job's or a batch's: each job's transition
//! and its attempt's record together, in one round trip and without a transaction around
//! them (a statement is atomic). Through diesel each was a transaction of four round
//! trips (BEGIN, the job's UPDATE, the attempt's INSERT or UPDATE, COMMIT), and in a
//! drain of no-op jobs the round trips, not the work, were most of both processes' time.
//!
//! The statements say what `transition!` and `attempt::end` say, with the
//! statuses bound from [`JobStatus`] as there; SQLite, and every other ending, go the way
//! of those. The tests run both backends through the same behaviour.

use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Integer, Text};

use super::{AttemptToken, JobRow};
use crate::domain::job::JobStatus;
use crate::models::attempt::Outcome;
use crate::models::prepared::Prepared;

/// The columns of `JobRow`, named: a prepared statement may not change the columns it
/// returns, and `*` would, for every connection open when a migration adds a column.
macro_rules! job_columns {
    () => {
        "id, kind, params, status, progress_done, progress_total, attempts, max_attempts, \
         error, result, cancel_requested, lease_owner, lease_expires_at, run_after, seq, \
         created_at, started_at, finished_at, checkpoint, created_by, \
         idempotency_key, dedup_key, schedule_id, fire_at, queue, priority, turn"
    };
}

/// The same columns, of `jobs` (in a statement where other tables have columns of the
/// same names).
macro_rules! jobs_columns {
    () => {
        "jobs.id, jobs.kind, jobs.params, jobs.status, jobs.progress_done, \
         jobs.progress_total, jobs.attempts, jobs.max_attempts, jobs.error, jobs.result, \
         jobs.cancel_requested, jobs.lease_owner, jobs.lease_expires_at, jobs.run_after, \
         jobs.seq, jobs.created_at, jobs.started_at, jobs.finished_at, jobs.checkpoint, \
         jobs.created_by, jobs.idempotency_key, jobs.dedup_key, jobs.schedule_id, \
         jobs.fire_at, jobs.queue, jobs.priority, jobs.turn"
    };
}

/// Ends the attempts (`$1` jobs, `$2` lease owners, `$3` numbers) `succeeded` with their
/// results (`$4`), as `job::finish` does each unless a cancel wins (`$5`: that job's
/// effects are committed, and a cancel does not win), and records each attempt's outcome:
/// a batch of endings in one statement, each still fenced by its own token.
const SUCCEED_ALL: &str = concat!(
    "WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::int4[], $4::text[], $5::bool[])
        AS i(id, owner, number, result, committed)
), ended AS (
    UPDATE jobs
    SET status = $6, seq = jobs.seq + 1, lease_owner = NULL, lease_expires_at = NULL,
        result = input.result, error = NULL, progress_done = jobs.progress_total,
        finished_at = (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'), checkpoint = NULL
    FROM input
    WHERE jobs.id = input.id AND jobs.lease_owner = input.owner
        AND jobs.attempts = input.number AND jobs.status = ANY($7)
        AND (jobs.cancel_requested = false OR jobs.cancel_requested = input.committed)
    RETURNING ",
    jobs_columns!(),
    ", input.owner AS ended_by
), recorded AS (
    UPDATE job_attempts
    SET ended_at = (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'), outcome = $8, error = NULL
    FROM ended
    WHERE job_attempts.job_id = ended.id AND job_attempts.worker = ended.ended_by
)
SELECT ",
    job_columns!(),
    " FROM ended"
);

/// A success to record: the attempt, its result, whether its effects are committed.
pub struct Success<'a> {
    pub token: &'a AttemptToken,
    pub result: &'a str,
    pub committed: bool,
}

/// The jobs whose successes were recorded. One missing was not held as asked: a cancel
/// won, or the job is no longer the attempt's; `job::finish` then sees which.
pub(super) fn succeed_all(
    conn: &mut PgConnection,
    successes: &[Success<'_>],
) -> QueryResult<Vec<JobRow>> {
    let to = JobStatus::Succeeded;
    Prepared(
        diesel::sql_query(SUCCEED_ALL)
            .bind::<Array<Text>, _>(
                successes
                    .iter()
                    .map(|s| s.token.job.to_string())
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Text>, _>(
                successes
                    .iter()
                    .map(|s| s.token.owner.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Integer>, _>(successes.iter().map(|s| s.token.number).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(successes.iter().map(|s| s.result).collect::<Vec<_>>())
            .bind::<Array<Bool>, _>(successes.iter().map(|s| s.committed).collect::<Vec<_>>())
            .bind::<Text, _>(to.as_str())
            .bind::<Array<Text>, _>(JobStatus::sources(to))
            .bind::<Text, _>(Outcome::Succeeded.as_str()),
    )
    .get_results(conn)
}
