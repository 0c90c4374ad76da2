//! Leases: renewals keep a claimed job (recording progress and checkpoints), and recovery
//! takes back the jobs whose lease ran out or whose process is dead. (Claims are in
//! `queue`.)

use super::*;

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
///
/// The attempts of `dead` processes (named as in their lease owners) lose their lease
/// first, in the same transaction: a dead process's jobs are due again without waiting
/// for their leases, and a process that was only paused finds, when it wakes, that its
/// attempts no longer hold their jobs.
pub fn recover_expired(
    conn: &mut DbConnection,
    dead: &[String],
    retry_delay: impl Fn(i32) -> Duration,
) -> QueryResult<Vec<Job>> {
    conn.transaction(|conn| {
        for process in dead {
            end_leases_of(conn, process)?;
        }
        recover_expired_in(conn, &retry_delay)
    })
}

/// The LIKE pattern of the lease owners of `process`'s attempts (`process/attempt`).
/// Process names are made of letters, digits, '-' and '.': nothing LIKE reads.
fn attempts_of(process: &str) -> String {
    format!("{process}/%")
}

/// Whether an attempt of `process` still holds a running job (a row its lease recovery
/// skipped, locked by another transaction).
pub fn holds_any(conn: &mut DbConnection, process: &str) -> QueryResult<bool> {
    let found: Option<String> = jobs::table
        .filter(jobs::status.eq(JobStatus::Running.as_str()))
        .filter(jobs::lease_owner.like(attempts_of(process)))
        .select(jobs::id)
        .first(conn)
        .optional()?;
    Ok(found.is_some())
}

/// Ends the leases of the running attempts of `process` (a lease owner is
/// `process/attempt`). On PostgreSQL, a row another transaction holds is left for the
/// next pass, as in [`lock_expired`].
fn end_leases_of(conn: &mut DbConnection, process: &str) -> QueryResult<usize> {
    let pattern = attempts_of(process);
    match conn {
        DbConnection::Pg(c) => diesel::sql_query(
            "UPDATE jobs SET lease_expires_at = (CURRENT_TIMESTAMP AT TIME ZONE 'UTC') \
             - INTERVAL '1 millisecond' WHERE id IN (SELECT id FROM jobs \
             WHERE status = $1 AND lease_owner LIKE $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind::<diesel::sql_types::Text, _>(JobStatus::Running.as_str())
        .bind::<diesel::sql_types::Text, _>(pattern)
        .execute(c),
        DbConnection::Sqlite(_) => {
            let ended = clock::before_nullable(conn, Duration::from_millis(1));
            diesel::update(
                jobs::table
                    .filter(jobs::status.eq(JobStatus::Running.as_str()))
                    .filter(jobs::lease_owner.like(pattern)),
            )
            .set(jobs::lease_expires_at.eq(ended))
            .execute(conn)
        }
    }
}

fn recover_expired_in(
    conn: &mut DbConnection,
    retry_delay: &dyn Fn(i32) -> Duration,
) -> QueryResult<Vec<Job>> {
    match conn {
        DbConnection::Pg(_) => {
            let expired = lock_expired(conn)?;
            if expired.is_empty() {
                return Ok(Vec::new());
            }
            let (ids, owners): (Vec<String>, Vec<Option<String>>) = expired.into_iter().unzip();
            let owners: Vec<String> = owners.into_iter().flatten().collect();
            attempt::end_lost(conn, &ids, &owners)?;
            recover_expired_jobs(conn, Expired::Locked(&ids), retry_delay)
        }
        // One writer at a time: nothing to skip, and the write lock is taken first.
        DbConnection::Sqlite(_) => {
            attempt::end_expired(conn)?;
            recover_expired_jobs(conn, Expired::All, retry_delay)
        }
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
            )
        )?);
    }
    Ok(changed)
}
