//! The recent history of the jobs tables, minute by minute, for `GET /api/stats`: jobs
//! ended by status, queue depth, and how long attempts waited to start.
//!
//! Counts are grouped by minute in SQL (the minute of a time is the one backend-specific
//! expression, [`clock::minute_index`]), so the work per request is a few indexed range
//! scans whatever the number of jobs. Percentiles are computed here, from at most
//! [`MAX_WAIT_SAMPLES`] attempts.

use chrono::{DateTime, Duration as Span, DurationRound, NaiveDateTime, Utc};
use diesel::dsl::{count_star, sql};
use diesel::prelude::*;
use diesel::sql_types::{Bool, Nullable};
use serde::Serialize;

use super::clock;
use crate::db::{Db, DbConnection};
use crate::domain::job::JobStatus;
use crate::schema::{job_attempts, jobs};

/// The longest window: a day of minutes.
pub const MAX_MINUTES: u32 = 1440;
/// Waits are measured on at most this many attempts, the newest of the window; beyond
/// that the oldest minutes' percentiles come from fewer attempts (or none), and the
/// answer says `waits_truncated`.
pub const MAX_WAIT_SAMPLES: i64 = 100_000;

/// One minute of the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Minute {
    /// When the minute starts.
    pub minute: DateTime<Utc>,
    /// Jobs whose `finished_at` falls in the minute, by the status they ended in.
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
    /// Jobs queued at the end of the minute (see [`history`] for how it is rebuilt).
    pub queue_depth: i64,
    /// Wait from being due to starting, of the attempts that started in the minute.
    pub wait_p50_ms: Option<f64>,
    pub wait_p95_ms: Option<f64>,
}

/// The window and what happened in it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub minutes: u32,
    /// The database's time.
    pub now: DateTime<Utc>,
    /// Jobs queued now.
    pub queue_depth: i64,
    /// Jobs running now.
    pub running: i64,
    /// Oldest first; the last is the minute under way.
    pub series: Vec<Minute>,
    /// More attempts started in the window than [`MAX_WAIT_SAMPLES`].
    pub waits_truncated: bool,
}

/// Applies the owner filter (a member's own jobs) to a boxed query that reads `jobs`.
macro_rules! owned_by {
    ($query:expr, $owner:expr) => {{
        let query = $query;
        match $owner {
            Some(owner) => query.filter(jobs::created_by.eq(owner.to_owned())),
            None => query,
        }
    }};
}

/// The owner filter as an expression, for the grouped queries (which cannot be boxed).
fn owned(
    owner: Option<&str>,
) -> Box<dyn BoxableExpression<jobs::table, Db, SqlType = Nullable<Bool>>> {
    match owner {
        Some(owner) => Box::new(jobs::created_by.eq(owner.to_owned())),
        None => Box::new(sql::<Nullable<Bool>>("1 = 1")),
    }
}

/// Counts the jobs `$filter` selects per minute of `$column` (`jobs.<name>`, as SQL):
/// `(minute of the window, count)`.
macro_rules! per_minute {
    ($conn:expr, $start:expr, $owner:expr, $column:literal, $filter:expr) => {{
        let minute = clock::minute_index($conn, $column, $start);
        let rows: Vec<(i64, i64)> = jobs::table
            .select((minute.clone(), count_star()))
            .filter($filter)
            .filter(owned($owner))
            .group_by(minute)
            .load($conn)?;
        rows
    }};
}

/// The last `minutes` minutes (the one under way included) of the jobs `owner` created
/// (`None`: everyone's).
///
/// - Ended: jobs whose `finished_at` falls in the minute, by status.
/// - Wait: for each attempt that started in the minute, its start minus the time its job
///   was due: the job's `run_after` for the job's latest attempt (a retry's backoff, a
///   requeue after a lost lease or a shutdown, a person's retry all set it), the job's
///   `created_at` for an earlier first attempt. The due time of an earlier retry is not
///   kept (`run_after` moved on), so those attempts are left out.
/// - Queue depth: rebuilt from timestamps, as the jobs created by the end of the minute
///   that had neither started (`started_at`) nor ended (`finished_at`) by then. This is
///   exact for jobs that ran once; a job that went back to the queue is an approximation:
///   `started_at` is its latest attempt's, so it counts as queued from its creation until
///   its latest start (its earlier runs included), and a failed job a person retried
///   counts as not queued until it starts again. The top-level `queue_depth` is exact.
pub fn history(conn: &mut DbConnection, minutes: u32, owner: Option<&str>) -> QueryResult<Stats> {
    let minutes = minutes.clamp(1, MAX_MINUTES);
    let now = clock::read(conn)?;
    let end = now
        .duration_trunc(Span::minutes(1))
        .expect("a minute divides any time")
        + Span::minutes(1);
    let start = end - Span::minutes(i64::from(minutes));
    let (from, to) = (clock::literal(conn, start), clock::literal(conn, end));
    let mut series: Vec<Minute> = (0..minutes)
        .map(|i| Minute {
            minute: (start + Span::minutes(i64::from(i))).and_utc(),
            ..Minute::default()
        })
        .collect();
    let len = series.len();
    let slot = |i: i64| usize::try_from(i).ok().filter(|&i| i < len);

    // Ended, by status.
    for status in [
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ] {
        let ended = per_minute!(
            conn,
            start,
            owner,
            "jobs.finished_at",
            jobs::status.eq(status.as_str()).and(
                jobs::finished_at
                    .ge(from.clone().nullable())
                    .and(jobs::finished_at.lt(to.clone().nullable()))
            )
        );
        for (i, n) in ended {
            if let Some(m) = slot(i).map(|i| &mut series[i]) {
                *match status {
                    JobStatus::Succeeded => &mut m.succeeded,
                    JobStatus::Failed => &mut m.failed,
                    _ => &mut m.cancelled,
                } += n;
            }
        }
    }

    // Queue depth: those queued as the window opens, then +1 per job created and -1 per
    // job that left the queue (started, or ended without starting) minute by minute.
    let mut depth = queued_at(conn, start, owner)?;
    let mut change = vec![0i64; len];
    let created = per_minute!(
        conn,
        start,
        owner,
        "jobs.created_at",
        jobs::created_at
            .ge(from.clone())
            .and(jobs::created_at.lt(to.clone()))
    );
    let started = per_minute!(
        conn,
        start,
        owner,
        "jobs.started_at",
        jobs::started_at
            .ge(from.clone().nullable())
            .and(jobs::started_at.lt(to.clone().nullable()))
    );
    let ended_unstarted = per_minute!(
        conn,
        start,
        owner,
        "jobs.finished_at",
        jobs::started_at.is_null().and(
            jobs::finished_at
                .ge(from.clone().nullable())
                .and(jobs::finished_at.lt(to.clone().nullable()))
        )
    );
    let departures = started
        .into_iter()
        .chain(ended_unstarted)
        .map(|(i, n)| (i, -n));
    for (i, n) in created.into_iter().chain(departures) {
        if let Some(i) = slot(i) {
            change[i] += n;
        }
    }
    for (m, change) in series.iter_mut().zip(change) {
        depth += change;
        m.queue_depth = depth.max(0);
    }

    // Waits.
    let mut waits: Vec<Vec<f64>> = vec![Vec::new(); len];
    let query = job_attempts::table
        .inner_join(jobs::table)
        .select((
            job_attempts::started_at,
            job_attempts::number,
            jobs::created_at,
            jobs::run_after,
            jobs::attempts,
        ))
        .filter(job_attempts::started_at.ge(from))
        .filter(job_attempts::started_at.lt(to))
        .order(job_attempts::started_at.desc())
        .limit(MAX_WAIT_SAMPLES + 1)
        .into_boxed();
    let mut attempts: Vec<(NaiveDateTime, i32, NaiveDateTime, NaiveDateTime, i32)> =
        owned_by!(query, owner).load(conn)?;
    let waits_truncated = attempts.len() as i64 > MAX_WAIT_SAMPLES;
    attempts.truncate(MAX_WAIT_SAMPLES as usize);
    for (started, number, created, run_after, latest) in attempts {
        let due = if number == latest && run_after <= started {
            run_after
        } else if number == 1 {
            created
        } else {
            continue;
        };
        let i = (started - start).num_seconds().div_euclid(60);
        if let Some(i) = slot(i) {
            let ms = (started - due).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0;
            waits[i].push(ms.max(0.0));
        }
    }
    for (m, mut waits) in series.iter_mut().zip(waits) {
        waits.sort_by(f64::total_cmp);
        m.wait_p50_ms = percentile(&waits, 50);
        m.wait_p95_ms = percentile(&waits, 95);
    }

    let count = |conn: &mut DbConnection, status: JobStatus| -> QueryResult<i64> {
        let query = jobs::table
            .filter(jobs::status.eq(status.as_str()))
            .count()
            .into_boxed();
        owned_by!(query, owner).get_result(conn)
    };
    Ok(Stats {
        minutes,
        now: now.and_utc(),
        queue_depth: count(conn, JobStatus::Queued)?,
        running: count(conn, JobStatus::Running)?,
        series,
        waits_truncated,
    })
}

/// Jobs queued at `at` by the rule of [`history`]: created before it, and neither started
/// nor ended by then. Three disjoint counts, each on an index (started_at, finished_at,
/// status), rather than one scan of every older job.
fn queued_at(conn: &mut DbConnection, at: NaiveDateTime, owner: Option<&str>) -> QueryResult<i64> {
    let before = || jobs::created_at.lt(clock::literal(conn, at));
    let after = || clock::literal(conn, at).nullable();
    let started_since = jobs::table
        .filter(before())
        .filter(jobs::started_at.ge(after()))
        .count()
        .into_boxed();
    let ended_since_unstarted = jobs::table
        .filter(before())
        .filter(jobs::started_at.is_null())
        .filter(jobs::finished_at.ge(after()))
        .count()
        .into_boxed();
    let never_left = jobs::table
        .filter(before())
        .filter(jobs::status.eq(JobStatus::Queued.as_str()))
        .filter(jobs::started_at.is_null())
        .filter(jobs::finished_at.is_null())
        .count()
        .into_boxed();
    let mut queued = 0;
    for query in [started_since, ended_since_unstarted, never_left] {
        let n: i64 = owned_by!(query, owner).get_result(conn)?;
        queued += n;
    }
    Ok(queued)
}

/// The nearest-rank percentile `p` of sorted values; `None` when there are none.
fn percentile(sorted: &[f64], p: usize) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    Some(sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[7.0], 95), Some(7.0));
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&hundred, 50), Some(50.0));
        assert_eq!(percentile(&hundred, 95), Some(95.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50), Some(2.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 95), Some(4.0));
    }
}
