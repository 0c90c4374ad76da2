//! The Sweeper actor: the periodic repairs that make the jobs table the only truth.
//!
//! - running jobs whose lease expired on the database's clock (their process died or
//!   stalled) go back to the queue, or end as the state machine says;
//! - queued jobs that are due and were never published (the publish after the commit
//!   failed, a retry's backoff ran out, a job handed back) are published;
//! - queued jobs published longer than half of `ROSTER_REDELIVER_SECS` ago (at least
//!   the accepting handler's grace) that the broker no longer holds (Redis restarted empty
//!   or lost its last writes, a delivery was dropped after a failed claim) are published
//!   again. This check runs every half `ROSTER_REDELIVER_SECS`, over the whole queue at
//!   once, so a lost job is found about `ROSTER_REDELIVER_SECS` after its publish however
//!   long the queue. Jobs the broker still holds are not written to, only those published
//!   again: a check costs two reads of the queue (its ids, and the broker's), not a
//!   write per queued job;
//! - ended jobs older than `ROSTER_JOB_RETENTION_DAYS` are deleted, with their files;
//! - worker processes not seen for an hour (they died without a graceful shutdown) are
//!   forgotten;
//! - the file store drops expired files and files no attempt can own.
//!
//! Every process runs one; the updates are conditional, so two sweeping at once is fine.
//! [`sweep_once`] is one pass, for tests to call.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::retry::RetryPolicy;
use super::store::FileStore;
use crate::broker::Broker;
use crate::db::Pool;
use crate::domain::job::JobId;
use crate::events::Events;
use crate::models::worker::{self, FORGET_AFTER as WORKER_FORGET_AFTER};
use crate::models::{import_rows, job};

pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// How often the export directory is swept.
pub const FILE_SWEEP_INTERVAL: Duration = Duration::from_secs(10);
/// Files younger than this are left alone by the file sweep, as a margin.
const FILE_MIN_AGE: Duration = Duration::from_secs(2);
/// A job younger than this is still being published by the handler that accepted it.
const PUBLISH_GRACE: Duration = Duration::from_secs(2);
const PUBLISH_BATCH: i64 = 500;
/// Queued jobs one check of the broker covers at most (ten times the default cap on the
/// queue): beyond it, the longest published are checked.
const STALE_BATCH: i64 = 1_000_000;
/// Lost jobs one check publishes again at most, one XADD each: after Redis comes back
/// empty under a large backlog, the pass stays short (the sweep that recovers expired
/// leases waits for it), and the rest are found lost again by the next check.
const REPUBLISH_BATCH: usize = 5_000;

pub struct Sweeper {
    pool: Pool,
    broker: Arc<dyn Broker>,
    events: Events,
    store: FileStore,
    redeliver: Duration,
    retention: Duration,
    retry: RetryPolicy,
    busy: bool,
    /// When the broker was last asked which queued jobs it holds.
    stale_checked: Option<Instant>,
}

impl Sweeper {
    pub fn new(
        pool: Pool,
        broker: Arc<dyn Broker>,
        events: Events,
        store: FileStore,
        redeliver: Duration,
        retention: Duration,
        retry: RetryPolicy,
    ) -> Self {
        Self {
            pool,
            broker,
            events,
            store,
            redeliver,
            retention,
            retry,
            busy: false,
            stale_checked: None,
        }
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        self.busy = true;
        let pool = self.pool.clone();
        let broker = self.broker.clone();
        let events = self.events.clone();
        let retry = self.retry;
        // Every half redelivery interval, over jobs published at least that long ago: a
        // job the broker lost is published again about one interval after its publish.
        // Never sooner than the grace of a handler still publishing the job itself.
        let stale_after = (self.redeliver / 2).max(PUBLISH_GRACE);
        let check_stale = self
            .stale_checked
            .is_none_or(|at| at.elapsed() >= stale_after);
        if check_stale {
            self.stale_checked = Some(Instant::now());
        }
        let stale_after = check_stale.then_some(stale_after);
        async move {
            let swept = sweep_once(pool, broker, events, retry, stale_after).await;
            if let Err(e) = &swept {
                log::warn!("sweep failed: {e:#}");
            }
            swept.is_ok()
        }
        .into_actor(self)
        .map(move |swept, act, _| {
            act.busy = false;
            if check_stale && !swept {
                // A check that failed (the database or Redis away) is tried again on
                // the next sweep, not a half interval later.
                act.stale_checked = None;
            }
        })
        .spawn(ctx);
    }
}

/// One pass: recover expired leases, publish what is due and unpublished, and, given
/// `stale_after`, publish again what the broker lost of the jobs published that long ago.
pub async fn sweep_once(
    pool: Pool,
    broker: Arc<dyn Broker>,
    events: Events,
    retry: RetryPolicy,
    stale_after: Option<Duration>,
) -> anyhow::Result<()> {
    let db = pool.clone();
    let (recovered, due, stale) = actix_web::web::block(move || -> anyhow::Result<_> {
        let mut conn = db.get()?;
        let recovered = job::recover_expired(&mut conn, |attempts| retry.delay(attempts))?;
        // Read after the recovery, so the jobs just requeued are published in this pass.
        let due = job::due_unpublished(&mut conn, PUBLISH_GRACE, PUBLISH_BATCH)?;
        let stale = match stale_after {
            Some(after) => job::stale_published(&mut conn, after, STALE_BATCH)?,
            None => Vec::new(),
        };
        Ok((recovered, due, stale))
    })
    .await??;
    for job in &recovered {
        log::warn!(
            "job {} lost its worker (lease expired); now {}",
            job.id,
            job.status
        );
        events.status(job);
    }
    let mut published = Vec::with_capacity(due.len() + stale.len());
    for (id, attempts) in due {
        broker.publish(&id).await.map_err(anyhow::Error::from)?;
        published.push((id, attempts));
    }
    if !published.is_empty() {
        log::info!("reconciler published {} job(s)", published.len());
    }
    if !stale.is_empty() {
        let ids: Vec<JobId> = stale.iter().map(|(id, _)| *id).collect();
        let held: HashSet<JobId> = broker.holds(&ids).await?;
        let lost: Vec<_> = stale
            .into_iter()
            .filter(|(id, _)| !held.contains(id))
            .take(REPUBLISH_BATCH)
            .collect();
        for (id, _) in &lost {
            broker.publish(id).await.map_err(anyhow::Error::from)?;
        }
        if !lost.is_empty() {
            log::warn!(
                "reconciler published again {} job(s) the broker no longer held",
                lost.len()
            );
        }
        // Those held stay as they are: the next check looks at them again.
        published.extend(lost);
    }
    if !published.is_empty() {
        actix_web::web::block(move || -> anyhow::Result<usize> {
            Ok(job::mark_published(&mut *pool.get()?, &published)?)
        })
        .await??;
    }
    Ok(())
}

/// Deletes jobs that ended longer than `retention` ago, and the files they name (the
/// file sweep removes any other file of theirs as an orphan); returns how many.
pub fn prune(pool: &Pool, store: &FileStore, retention: Duration) -> anyhow::Result<usize> {
    let mut conn = pool.get()?;
    let mut pruned = 0;
    loop {
        let jobs = job::prune_ended(&mut conn, retention, PUBLISH_BATCH)?;
        for job in &jobs {
            store.remove_job_files(job);
        }
        pruned += jobs.len();
        if (jobs.len() as i64) < PUBLISH_BATCH {
            return Ok(pruned);
        }
    }
}

/// Deletes the rows of worker processes not seen for [`WORKER_FORGET_AFTER`] (they died
/// without a graceful shutdown); returns how many.
pub fn forget_workers(pool: &Pool) -> anyhow::Result<usize> {
    Ok(worker::forget_stale(
        &mut *pool.get()?,
        WORKER_FORGET_AFTER,
    )?)
}

/// Deletes the rows staged by imports that are no longer running (an attempt that died
/// between staging and cleaning up); returns how many.
pub fn discard_staged_rows(pool: &Pool) -> anyhow::Result<usize> {
    Ok(import_rows::discard_orphans(&mut *pool.get()?)?)
}

impl Actor for Sweeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.sweep(ctx);
        ctx.run_interval(SWEEP_INTERVAL, |act, ctx| act.sweep(ctx));
        ctx.run_interval(FILE_SWEEP_INTERVAL, |act, _ctx| {
            let (pool, store, retention) = (act.pool.clone(), act.store.clone(), act.retention);
            actix_web::rt::task::spawn_blocking(move || {
                match prune(&pool, &store, retention) {
                    Ok(0) => {}
                    Ok(n) => log::info!("deleted {n} job(s) ended more than {retention:?} ago"),
                    Err(e) => log::warn!("could not delete old jobs: {e:#}"),
                }
                match forget_workers(&pool) {
                    Ok(0) => {}
                    Ok(n) => {
                        log::info!("forgot {n} worker(s) not seen for {WORKER_FORGET_AFTER:?}")
                    }
                    Err(e) => log::warn!("could not forget stale workers: {e:#}"),
                }
                match discard_staged_rows(&pool) {
                    Ok(0) => {}
                    Ok(n) => log::info!("discarded {n} row(s) staged by imports that ended"),
                    Err(e) => log::warn!("could not discard rows staged by ended imports: {e:#}"),
                }
                let swept = pool
                    .get()
                    .map_err(anyhow::Error::from)
                    .and_then(|mut conn| store.sweep(&mut conn, FILE_MIN_AGE));
                match swept {
                    Ok(s) if s.expired + s.orphans > 0 => log::info!(
                        "deleted {} expired export(s) and {} orphaned file(s)",
                        s.expired,
                        s.orphans
                    ),
                    Ok(_) => {}
                    Err(e) => log::warn!(
                        "could not sweep exports in {}: {e:#}",
                        store.dir().display()
                    ),
                }
            });
        });
    }
}
