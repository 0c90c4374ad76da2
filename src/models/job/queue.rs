//! Dispatch: the table decides what runs next. A claim takes up to n due jobs of a queue
//! at once, in the order priority, owner's turn, due time, leaving out a paused queue, the
//! jobs of owners and kinds at their cap of running jobs, and jobs whose cancel was asked.
//! Pausing and resuming queues, and what `GET /api/queues` shows, live here too.

use std::collections::HashMap;

use super::*;
use crate::domain::queue::QueueName;
use crate::schema::queue_pauses;

/// The caps a claim keeps, across every process.
#[derive(Debug, Clone, Default)]
pub struct ClaimLimits {
    /// Jobs of one owner running at once (`ROSTER_MAX_RUNNING_PER_USER`).
    pub per_owner: Option<usize>,
    /// Jobs of a kind running at once (`ROSTER_KIND_CONCURRENCY`).
    pub per_kind: Vec<(JobKind, usize)>,
}

/// How many more candidates than free slots a claim reads, so that candidates it must
/// pass over (an owner or kind that reaches its cap within the batch) do not leave slots
/// idle.
const CANDIDATES_PER_SLOT: i64 = 4;

/// Claims are taken one at a time across processes (a transaction-scoped advisory lock
/// on PostgreSQL; SQLite has one writer), so that the caps, counted inside the claim,
/// hold however many processes claim at once.
const CLAIM_LOCK: i64 = 0x726f_7374_6572; // "roster"

/// Moves up to `max` due jobs of `queue` to running, each under a fresh lease for a new
/// attempt of `node`, recording each attempt; the jobs and their attempts' tokens.
/// Nothing when the queue is paused or nothing is due.
pub fn claim_due(
    conn: &mut DbConnection,
    queue: &QueueName,
    node: &str,
    lease: Duration,
    max: usize,
    limits: &ClaimLimits,
) -> QueryResult<Vec<(Job, AttemptToken)>> {
    if max == 0 || !any_due(conn, queue)? {
        return Ok(Vec::new());
    }
    conn.write_transaction(|conn| {
        limit_idle(conn)?;
        match conn {
            DbConnection::Pg(c) => {
                diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
                    .bind::<diesel::sql_types::BigInt, _>(CLAIM_LOCK)
                    .execute(c)?;
            }
            // A write first, so that the transaction holds the write lock before it
            // reads: a read first fails the transaction if another writer commits
            // before its first write. (No queue is named '', so this changes nothing.)
            DbConnection::Sqlite(c) => {
                diesel::delete(queue_pauses::table.filter(queue_pauses::queue.eq("")))
                    .execute(c)?;
            }
        }
        if is_paused(conn, queue)? {
            return Ok(Vec::new());
        }
        let picked = pick(conn, queue, max, limits)?;
        if picked.is_empty() {
            return Ok(Vec::new());
        }
        let picked: Vec<JobId> = picked
            .iter()
            .map(|id| id.parse().map_err(|e| corrupt("id", e)))
            .collect::<QueryResult<_>>()?;
        claim_in(conn, &picked, node, lease)
    })
}

/// Moves those of `ids` that are due, queued and not cancelled to running, each under a
/// fresh lease for a new attempt of `node`, and records each attempt; the jobs it took
/// and their attempts' tokens. (A claim's last step; tests play a worker with it.)
pub fn claim(
    conn: &mut DbConnection,
    ids: &[JobId],
    node: &str,
    lease: Duration,
) -> QueryResult<Vec<(Job, AttemptToken)>> {
    conn.write_transaction(|conn| claim_in(conn, ids, node, lease))
}

/// [`claim`], in a write transaction under way.
fn claim_in(
    conn: &mut DbConnection,
    ids: &[JobId],
    node: &str,
    lease: Duration,
) -> QueryResult<Vec<(Job, AttemptToken)>> {
    let owner = LeaseOwner::new_attempt(node);
    let (now, started, until) = (
        clock::now(conn),
        clock::now_nullable(conn),
        clock::after_nullable(conn, lease),
    );
    let claimed = transition!(
        conn,
        JobStatus::Running,
        BoolExpressionMethods::and(
            jobs::id
                .eq_any(ids.iter().map(JobId::to_string).collect::<Vec<_>>())
                .and(jobs::cancel_requested.eq(false)),
            jobs::run_after.le(now)
        ),
        (
            jobs::lease_owner.eq(owner.as_str()),
            jobs::lease_expires_at.eq(until),
            jobs::attempts.eq(jobs::attempts + 1),
            jobs::started_at.eq(started),
        )
    )?;
    let taken: Vec<JobId> = claimed.iter().map(|job| job.id).collect();
    attempt::begin_all(conn, &owner, &taken)?;
    Ok(claimed
        .into_iter()
        .map(|job| {
            let token = token_of_claim(&job, owner.clone());
            (job, token)
        })
        .collect())
}

/// Whether a claim may find something: a read, so that an idle consumer's poll takes no
/// lock.
fn any_due(conn: &mut DbConnection, queue: &QueueName) -> QueryResult<bool> {
    let now = clock::now(conn);
    let found: Option<String> = on_backend!(conn, |c| jobs::table
        .filter(jobs::status.eq(JobStatus::Queued.as_str()))
        .filter(jobs::queue.eq(queue.as_str()))
        .filter(jobs::run_after.le(now))
        .select(jobs::id)
        .first(c)
        .optional())?;
    Ok(found.is_some())
}

/// The jobs a claim takes: due jobs of `queue` in dispatch order, passing over those of
/// owners and kinds at their cap (counting what runs now and what this batch takes).
fn pick(
    conn: &mut DbConnection,
    queue: &QueueName,
    max: usize,
    limits: &ClaimLimits,
) -> QueryResult<Vec<String>> {
    let running: Vec<(Option<String>, String)> = on_backend!(conn, |c| jobs::table
        .filter(jobs::status.eq(JobStatus::Running.as_str()))
        .select((jobs::created_by, jobs::kind))
        .load(c))?;
    let mut by_owner: HashMap<String, usize> = HashMap::new();
    let mut by_kind: HashMap<String, usize> = HashMap::new();
    for (owner, kind) in running {
        if let Some(owner) = owner {
            *by_owner.entry(owner).or_default() += 1;
        }
        *by_kind.entry(kind).or_default() += 1;
    }
    let kind_cap = |kind: &str| {
        limits
            .per_kind
            .iter()
            .find(|(k, _)| k.as_str() == kind)
            .map(|(_, n)| *n)
    };
    let full_owners: Vec<String> = match limits.per_owner {
        Some(cap) => by_owner
            .iter()
            .filter(|(_, n)| **n >= cap)
            .map(|(o, _)| o.clone())
            .collect(),
        None => Vec::new(),
    };
    let open_kinds: Vec<&str> = JobKind::ALL
        .iter()
        .map(|k| k.as_str())
        .filter(|k| kind_cap(k).is_none_or(|cap| by_kind.get(*k).copied().unwrap_or(0) < cap))
        .collect();
    let now = clock::now(conn);
    let candidates: Vec<(String, Option<String>, String)> = on_backend!(conn, |c| jobs::table
        .filter(jobs::status.eq(JobStatus::Queued.as_str()))
        .filter(jobs::queue.eq(queue.as_str()))
        .filter(jobs::run_after.le(now))
        .filter(jobs::cancel_requested.eq(false))
        .filter(jobs::kind.eq_any(&open_kinds))
        .filter(
            jobs::created_by
                .is_null()
                .or(jobs::created_by.ne_all(&full_owners))
        )
        .order((jobs::priority, jobs::turn, jobs::run_after))
        .limit(max as i64 * CANDIDATES_PER_SLOT)
        .select((jobs::id, jobs::created_by, jobs::kind))
        .load(c))?;
    let mut picked = Vec::with_capacity(max);
    for (id, owner, kind) in candidates {
        if picked.len() == max {
            break;
        }
        if let (Some(cap), Some(owner)) = (limits.per_owner, &owner) {
            let n = by_owner.entry(owner.clone()).or_default();
            if *n >= cap {
                continue;
            }
            *n += 1;
        }
        if let Some(cap) = kind_cap(&kind) {
            let n = by_kind.entry(kind).or_default();
            if *n >= cap {
                continue;
            }
            *n += 1;
        }
        picked.push(id);
    }
    Ok(picked)
}

fn is_paused(conn: &mut DbConnection, queue: &QueueName) -> QueryResult<bool> {
    let found: Option<String> = on_backend!(conn, |c| queue_pauses::table
        .find(queue.as_str())
        .select(queue_pauses::queue)
        .first(c)
        .optional())?;
    Ok(found.is_some())
}

/// Pauses `queue` in every process that serves it: jobs are accepted and none starts;
/// running ones finish. `false` when it was paused already.
pub fn pause(conn: &mut DbConnection, queue: &QueueName, by: Option<&str>) -> QueryResult<bool> {
    if is_paused(conn, queue)? {
        return Ok(false);
    }
    let now = clock::now(conn);
    let inserted = on_backend!(conn, |c| diesel::insert_into(queue_pauses::table)
        .values((
            queue_pauses::queue.eq(queue.as_str()),
            queue_pauses::paused_at.eq(now),
            queue_pauses::paused_by.eq(by),
        ))
        .execute(c));
    match inserted {
        Ok(_) => Ok(true),
        // Paused by someone else meanwhile.
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Resumes `queue`; `false` when it was not paused.
pub fn resume(conn: &mut DbConnection, queue: &QueueName) -> QueryResult<bool> {
    let n = on_backend!(conn, |c| diesel::delete(
        queue_pauses::table.filter(queue_pauses::queue.eq(queue.as_str()))
    )
    .execute(c))?;
    Ok(n > 0)
}

/// A queue as `GET /api/queues` shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct QueueView {
    pub name: QueueName,
    /// Queued and due now.
    pub due: i64,
    /// Queued and due later (delayed, or backing off before a retry).
    pub delayed: i64,
    pub running: i64,
    pub paused: bool,
    pub paused_at: Option<DateTime<Utc>>,
    /// How long the job due longest ago has waited, in seconds.
    pub oldest_wait_secs: f64,
}

/// Every queue that has active jobs, is paused, or is one of `served` (the queues the
/// live processes serve), by name.
pub fn queues(conn: &mut DbConnection, served: &[QueueName]) -> QueryResult<Vec<QueueView>> {
    use diesel::dsl::{count_star, min};
    let now = clock::now(conn);
    let queued = || jobs::status.eq(JobStatus::Queued.as_str());
    let due: Vec<(String, i64, Option<NaiveDateTime>)> = on_backend!(conn, |c| jobs::table
        .filter(queued().and(jobs::run_after.le(now)))
        .group_by(jobs::queue)
        .select((jobs::queue, count_star(), min(jobs::run_after)))
        .load(c))?;
    let delayed: Vec<(String, i64)> = on_backend!(conn, |c| jobs::table
        .filter(queued().and(jobs::run_after.gt(now)))
        .group_by(jobs::queue)
        .select((jobs::queue, count_star()))
        .load(c))?;
    let running: Vec<(String, i64)> = on_backend!(conn, |c| jobs::table
        .filter(jobs::status.eq(JobStatus::Running.as_str()))
        .group_by(jobs::queue)
        .select((jobs::queue, count_star()))
        .load(c))?;
    let db_now: NaiveDateTime = on_backend!(conn, |c| diesel::select(now).get_result(c))?;
    let paused: Vec<(String, NaiveDateTime)> = on_backend!(conn, |c| queue_pauses::table
        .select((queue_pauses::queue, queue_pauses::paused_at))
        .load(c))?;
    let mut views = std::collections::BTreeMap::new();
    for q in served {
        view(&mut views, q.as_str())?;
    }
    for (queue, n, oldest) in due {
        let v = view(&mut views, &queue)?;
        v.due = n;
        v.oldest_wait_secs = oldest.map_or(0.0, |t| {
            (db_now - t).num_milliseconds().max(0) as f64 / 1000.0
        });
    }
    for (queue, n) in delayed {
        view(&mut views, &queue)?.delayed = n;
    }
    for (queue, n) in running {
        view(&mut views, &queue)?.running = n;
    }
    for (queue, at) in paused {
        let v = view(&mut views, &queue)?;
        v.paused = true;
        v.paused_at = Some(at.and_utc());
    }
    Ok(views.into_values().collect())
}

/// The view of queue `name` in `views`, made empty if it is not there yet.
fn view<'a>(
    views: &'a mut std::collections::BTreeMap<String, QueueView>,
    name: &str,
) -> QueryResult<&'a mut QueueView> {
    let parsed: QueueName = name.parse().map_err(|e| corrupt("queue", e))?;
    Ok(views.entry(name.to_owned()).or_insert(QueueView {
        name: parsed,
        due: 0,
        delayed: 0,
        running: 0,
        paused: false,
        paused_at: None,
        oldest_wait_secs: 0.0,
    }))
}
