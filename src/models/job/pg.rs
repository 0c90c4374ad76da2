//! A job's success on PostgreSQL in one statement: the job's transition and its
//! attempt's record together, in one round trip and without a transaction around
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
