//! How an attempt ends: its fenced ending, where a requested cancel wins.

use super::*;

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

pub use super::pg::Success;

/// Ends the attempt `token` holds. A requested cancel wins over any other ending (but a
/// success whose work is already committed): the job ends `cancelled`. `None` when the
/// attempt no longer holds the job.
pub fn finish(
    conn: &mut DbConnection,
    token: &AttemptToken,
    ending: &Ending,
) -> QueryResult<Option<Job>> {
    debug_assert!(JobStatus::Running.can_become(ending.status()));
    if let (DbConnection::Pg(c), Ending::Succeeded { result, committed }) = (&mut *conn, ending) {
        let success = Success {
            token,
            result,
            committed: *committed,
        };
        if let Some(row) = pg::succeed_all(c, &[success])?.into_iter().next() {
            return typed_one(Some(row));
        }
        // Not held as asked: a cancel won, or the job is no longer the attempt's; the
        // transaction below records which.
    }
    conn.write_transaction(|conn| finish_in(conn, token, ending))
}

/// Records a batch of successes: on PostgreSQL in one statement, on SQLite in one
/// transaction. The jobs whose ending was recorded, in any order: `succeeded`, or (on
/// SQLite, which goes the whole way of [`finish`]) `cancelled` where a cancel won. An
/// attempt missing from them was not recorded: [`finish`] it alone to learn why.
pub fn succeed_all(conn: &mut DbConnection, successes: &[Success<'_>]) -> QueryResult<Vec<Job>> {
    match conn {
        DbConnection::Pg(c) => typed(pg::succeed_all(c, successes)?),
        DbConnection::Sqlite(_) => conn.write_transaction(|conn| {
            let mut ended = Vec::with_capacity(successes.len());
            for s in successes {
                let ending = Ending::Succeeded {
                    result: s.result.to_owned(),
                    committed: s.committed,
                };
                ended.extend(finish_in(conn, s.token, &ending)?);
            }
            Ok(ended)
        }),
    }
}

/// [`finish`], in a write transaction under way.
fn finish_in(
    conn: &mut DbConnection,
    token: &AttemptToken,
    ending: &Ending,
) -> QueryResult<Option<Job>> {
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
                )
            )
        }
        Ending::Cancelled => unreachable!("a cancel is recorded by `finish` itself"),
    }
}
