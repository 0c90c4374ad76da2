//! The reconciler: the table decides what is queued, the broker only carries wake-ups.
//!
//! - Queued jobs that are due and were never published (the publish after the commit
//!   failed, a retry's backoff ran out, a job handed back) are published.
//! - Every half `ROSTER_REDELIVER_SECS` (at least the accepting handler's grace), the
//!   queued jobs published at least that long ago that the broker no longer holds (Redis
//!   restarted empty or lost its last writes, a delivery dropped after a failed claim) are
//!   published again, over the whole queue at once: a lost job is found about
//!   `ROSTER_REDELIVER_SECS` after its publish however long the queue. Jobs the broker
//!   still holds are not written to: a check costs two reads of the queue (its ids, and
//!   the broker's), not a write per queued job.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::broker::Broker;
use crate::db::Pool;
use crate::domain::job::JobId;
use crate::models::job;

/// A job younger than this is still being published by the handler that accepted it.
pub const PUBLISH_GRACE: Duration = Duration::from_secs(2);
const PUBLISH_BATCH: i64 = 500;
/// Queued jobs one check of the broker covers at most (ten times the default cap on the
/// queue): beyond it, the longest published are checked.
const STALE_BATCH: i64 = 1_000_000;
/// Lost jobs one check publishes again at most, one XADD each: after Redis comes back
/// empty under a large backlog, the pass stays short (the lease recovery of the next
/// sweep waits for it), and the rest are found lost again by the next check.
const REPUBLISH_BATCH: usize = 5_000;

pub struct Reconciler {
    pool: Pool,
    broker: Arc<dyn Broker>,
    redeliver: Duration,
    /// When the broker was last asked which queued jobs it holds.
    stale_checked: Mutex<Option<Instant>>,
}

impl Reconciler {
    pub fn new(pool: Pool, broker: Arc<dyn Broker>, redeliver: Duration) -> Self {
        Self {
            pool,
            broker,
            redeliver,
            stale_checked: Mutex::new(None),
        }
    }

    /// One pass: publishes what is due and unpublished and, when a check of the broker is
    /// due, what it lost. A check that failed (the database or Redis away) is tried again
    /// at the next pass, not a half interval later.
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        // Every half redelivery interval, over jobs published at least that long ago: a
        // job the broker lost is published again about one interval after its publish.
        let stale_after = (self.redeliver / 2).max(PUBLISH_GRACE);
        let check = {
            let mut checked = self.stale_checked.lock().expect("reconciler lock");
            let due = checked.is_none_or(|at| at.elapsed() >= stale_after);
            if due {
                *checked = Some(Instant::now());
            }
            due
        };
        let published = self.publish(check.then_some(stale_after)).await;
        if check && published.is_err() {
            *self.stale_checked.lock().expect("reconciler lock") = None;
        }
        published
    }

    /// Publishes what is due and unpublished, and, given `stale_after`, what the broker
    /// lost of the jobs published that long ago; how many it published.
    pub async fn publish(&self, stale_after: Option<Duration>) -> anyhow::Result<usize> {
        let pool = self.pool.clone();
        let (due, stale) = actix_web::web::block(move || -> anyhow::Result<_> {
            let mut conn = pool.get()?;
            let due = job::due_unpublished(&mut conn, PUBLISH_GRACE, PUBLISH_BATCH)?;
            let stale = match stale_after {
                Some(after) => job::stale_published(&mut conn, after, STALE_BATCH)?,
                None => Vec::new(),
            };
            Ok((due, stale))
        })
        .await??;
        let mut published = Vec::with_capacity(due.len() + stale.len());
        for (id, attempts) in due {
            self.broker
                .publish(&id)
                .await
                .map_err(anyhow::Error::from)?;
            published.push((id, attempts));
        }
        if !published.is_empty() {
            log::info!("reconciler published {} job(s)", published.len());
        }
        if !stale.is_empty() {
            let ids: Vec<JobId> = stale.iter().map(|(id, _)| *id).collect();
            let held: HashSet<JobId> = self.broker.holds(&ids).await?;
            let lost: Vec<_> = stale
                .into_iter()
                .filter(|(id, _)| !held.contains(id))
                .take(REPUBLISH_BATCH)
                .collect();
            for (id, _) in &lost {
                self.broker.publish(id).await.map_err(anyhow::Error::from)?;
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
        let count = published.len();
        if count > 0 {
            let pool = self.pool.clone();
            actix_web::web::block(move || -> anyhow::Result<usize> {
                Ok(job::mark_published(&mut *pool.get()?, &published)?)
            })
            .await??;
        }
        Ok(count)
    }
}
