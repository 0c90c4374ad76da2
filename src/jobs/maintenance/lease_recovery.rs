//! Lease recovery: running jobs whose lease ran out on the database's clock (their process
//! died or stalled), or whose process has missed its beats for `ROSTER_DEAD_AFTER_SECS`,
//! are due again after the retry policy's backoff, or end as the state machine says
//! (cancelled when a cancel was requested, failed on their last attempt).
//!
//! A process is judged dead only by a process whose own beats have gone through for at
//! least that long: after an outage of the database every process's last beat is old,
//! and none of them is dead.

use std::time::Duration;

use crate::db::Pool;
use crate::events::Events;
use crate::jobs::heartbeat::BeatHealth;
use crate::jobs::retry::RetryPolicy;
use crate::models::job::{self, Job};
use crate::models::worker;

pub struct LeaseRecovery {
    pool: Pool,
    events: Events,
    retry: RetryPolicy,
    /// With workers here: how long a process may miss its beats, and this process's own.
    judge: Option<(Duration, BeatHealth)>,
}

impl LeaseRecovery {
    pub fn new(pool: Pool, events: Events, retry: RetryPolicy) -> Self {
        Self {
            pool,
            events,
            retry,
            judge: None,
        }
    }

    /// Also ends the leases of processes that missed their beats for `dead_after`, while
    /// `health` (this process's beats) has gone through for as long.
    pub fn judging_dead(mut self, dead_after: Duration, health: BeatHealth) -> Self {
        self.judge = Some((dead_after, health));
        self
    }

    /// One pass; the jobs it changed (each announced once committed).
    pub async fn run_once(&self) -> anyhow::Result<Vec<Job>> {
        let (pool, retry) = (self.pool.clone(), self.retry);
        let judge = self
            .judge
            .as_ref()
            .filter(|(after, health)| health.healthy_for() >= *after)
            .map(|(after, _)| *after);
        let recovered = actix_web::web::block(move || -> anyhow::Result<_> {
            let mut conn = pool.get()?;
            let dead = match judge {
                Some(after) => worker::dead(&mut conn, after)?,
                None => Vec::new(),
            };
            let recovered =
                job::recover_expired(&mut conn, &dead, |attempts| retry.delay(attempts))?;
            if !dead.is_empty() {
                log::warn!("worker processes without a heartbeat, judged dead: {dead:?}");
                // Forgotten once nothing of theirs runs, so that a row the recovery had
                // to skip is ended at the next pass, not at its lease's end.
                let mut gone = Vec::new();
                for process in dead {
                    if !job::holds_any(&mut conn, &process)? {
                        gone.push(process);
                    }
                }
                worker::forget_named(&mut conn, &gone)?;
            }
            Ok(recovered)
        })
        .await??;
        for job in &recovered {
            log::warn!(
                "job {} lost its worker (lease expired or process dead); now {}",
                job.id,
                job.status
            );
            self.events.status(job);
        }
        Ok(recovered)
    }
}
