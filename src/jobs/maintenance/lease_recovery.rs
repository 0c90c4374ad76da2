//! Lease recovery: running jobs whose lease ran out on the database's clock (their process
//! died or stalled) are due again after the retry policy's backoff, or end as the state
//! machine says (cancelled when a cancel was requested, failed on their last attempt).

use crate::db::Pool;
use crate::events::Events;
use crate::jobs::retry::RetryPolicy;
use crate::models::job::{self, Job};

pub struct LeaseRecovery {
    pool: Pool,
    events: Events,
    retry: RetryPolicy,
}

impl LeaseRecovery {
    pub fn new(pool: Pool, events: Events, retry: RetryPolicy) -> Self {
        Self {
            pool,
            events,
            retry,
        }
    }

    /// One pass; the jobs it changed (each announced once committed).
    pub async fn run_once(&self) -> anyhow::Result<Vec<Job>> {
        let (pool, retry) = (self.pool.clone(), self.retry);
        let recovered = actix_web::web::block(move || -> anyhow::Result<_> {
            Ok(job::recover_expired(&mut *pool.get()?, |attempts| {
                retry.delay(attempts)
            })?)
        })
        .await??;
        for job in &recovered {
            log::warn!(
                "job {} lost its worker (lease expired); now {}",
                job.id,
                job.status
            );
            self.events.status(job);
        }
        Ok(recovered)
    }
}
