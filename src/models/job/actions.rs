//! What a person does to a job: retry, cancel, delete; and the retention's prune.

use super::*;

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
