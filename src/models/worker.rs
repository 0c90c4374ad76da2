//! The `workers` table: the processes that run workers, as their heartbeats last described
//! them. Every time here is the database's ([`clock`]), so hosts whose clocks disagree
//! still agree on which workers are live.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use super::clock;
use crate::db::DbConnection;
use crate::domain::job::JobId;
use crate::schema::workers;

/// A worker whose last beat is at most this old is live.
pub const LIVE_AFTER: Duration = Duration::from_secs(10);
/// A row whose last beat is older than this is deleted by maintenance (its process died
/// without a graceful shutdown).
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Who a worker process is, as it registers.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize, serde::Deserialize)]
#[diesel(table_name = workers)]
pub struct Process {
    /// Fresh at every start of a process.
    pub id: String,
    /// The host name.
    pub node: String,
    /// The process's name in lease owners and attempts.
    pub name: String,
    pub pid: i32,
    /// The queues it serves, comma separated (see [`Process::serves`]).
    pub queue: String,
    pub concurrency: i32,
}

impl Process {
    /// The queues it serves.
    pub fn queues(&self) -> impl Iterator<Item = &str> {
        self.queue.split(',')
    }

    pub fn serves(&self, queue: &str) -> bool {
        self.queues().any(|q| q == queue)
    }
}

/// What a process says of itself when it beats.
#[derive(Debug, Clone)]
pub struct Beat {
    pub process: Process,
    /// The jobs running in the process now.
    pub running: Vec<JobId>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = workers)]
struct WorkerRow {
    #[diesel(embed)]
    process: Process,
    busy: i32,
    running: String,
    started_at: NaiveDateTime,
    last_seen: NaiveDateTime,
}

/// A live worker process, as `GET /api/workers` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct WorkerView {
    #[serde(flatten)]
    pub process: Process,
    /// How many jobs it runs.
    pub busy: i32,
    /// The ids of the jobs it runs (those the caller may see).
    pub running: Vec<String>,
    pub started_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

impl From<WorkerRow> for WorkerView {
    fn from(row: WorkerRow) -> Self {
        Self {
            process: row.process,
            // Written by `beat` alone; an unreadable list shows as none.
            running: serde_json::from_str(&row.running).unwrap_or_default(),
            busy: row.busy,
            started_at: row.started_at.and_utc(),
            last_seen: row.last_seen.and_utc(),
        }
    }
}

/// Records a beat of the process, stamped with the database's time: registers the process
/// at its first beat, and again if its row was forgotten meanwhile (a pause past
/// [`FORGET_AFTER`]).
pub fn beat(conn: &mut DbConnection, beat: &Beat) -> QueryResult<()> {
    let running = serde_json::to_string(
        &beat
            .running
            .iter()
            .map(JobId::to_string)
            .collect::<Vec<_>>(),
    )
    .expect("ids serialize");
    let busy = i32::try_from(beat.running.len()).unwrap_or(i32::MAX);
    let seen = clock::now(conn);
    let me = &beat.process;
    let updated = diesel::update(workers::table.find(&me.id))
        .set((
            workers::busy.eq(busy),
            workers::running.eq(&running),
            workers::last_seen.eq(seen),
        ))
        .execute(conn)?;
    if updated == 0 {
        let (started, seen) = (clock::now(conn), clock::now(conn));
        diesel::insert_into(workers::table)
            .values((
                workers::id.eq(&me.id),
                workers::node.eq(&me.node),
                workers::name.eq(&me.name),
                workers::pid.eq(me.pid),
                workers::queue.eq(&me.queue),
                workers::concurrency.eq(me.concurrency),
                workers::busy.eq(busy),
                workers::running.eq(&running),
                workers::started_at.eq(started),
                workers::last_seen.eq(seen),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Deletes the row of a process that stops.
pub fn remove(conn: &mut DbConnection, id: &str) -> QueryResult<usize> {
    diesel::delete(workers::table.find(id)).execute(conn)
}

/// Deletes the rows not seen for longer than `older_than`; returns how many.
pub fn forget_stale(conn: &mut DbConnection, older_than: Duration) -> QueryResult<usize> {
    let before = clock::before(conn, older_than);
    diesel::delete(workers::table.filter(workers::last_seen.lt(before))).execute(conn)
}

/// The names of the processes whose last beat is older than `after`, on the database's
/// clock: their attempts' leases are ended at the next lease recovery.
pub fn dead(conn: &mut DbConnection, after: Duration) -> QueryResult<Vec<String>> {
    let before = clock::before(conn, after);
    workers::table
        .filter(workers::last_seen.lt(before))
        .select(workers::name)
        .load(conn)
}

/// Deletes the rows of the processes named `names` (judged dead, their leases ended): they
/// leave the list of workers at once, and the next lease recovery does not judge them
/// again. A process that was only paused registers again at its next beat.
pub fn forget_named(conn: &mut DbConnection, names: &[String]) -> QueryResult<usize> {
    if names.is_empty() {
        return Ok(0);
    }
    diesel::delete(workers::table.filter(workers::name.eq_any(names))).execute(conn)
}

/// The live workers (seen within [`LIVE_AFTER`]), by node, then oldest first.
pub fn live(conn: &mut DbConnection) -> QueryResult<Vec<WorkerView>> {
    let since = clock::before(conn, LIVE_AFTER);
    let rows = workers::table
        .filter(workers::last_seen.ge(since))
        .order((workers::node, workers::started_at, workers::id))
        .select(WorkerRow::as_select())
        .load(conn)?;
    Ok(rows.into_iter().map(WorkerView::from).collect())
}

/// How many workers are live, for metrics.
pub fn live_count(conn: &mut DbConnection) -> QueryResult<i64> {
    let since = clock::before(conn, LIVE_AFTER);
    workers::table
        .filter(workers::last_seen.ge(since))
        .count()
        .get_result(conn)
}

/// The newest beat of any worker row, live or not; `None` when there is none.
pub fn last_seen(conn: &mut DbConnection) -> QueryResult<Option<DateTime<Utc>>> {
    let newest: Option<NaiveDateTime> = workers::table
        .select(diesel::dsl::max(workers::last_seen))
        .first(conn)?;
    Ok(newest.map(|t| t.and_utc()))
}
