//! The queue's bookkeeping: which queued jobs the broker was told about, which are due,
//! and which the reconciler must publish again.

use super::*;

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
