//! The in-process broker of the embedded default: the jobs table is the queue.
//!
//! Publishing only wakes the consumer; receiving reads the oldest due queued jobs that
//! are not already handed out. Nothing lives only in memory, so a restart loses nothing,
//! and a delivery that is never acknowledged (a claim that failed) only holds its job
//! back for the redelivery interval.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{Broker, BrokerError, Delivery, QueueStats};
use crate::db::Pool;
use crate::domain::job::JobId;
use crate::models::job;

/// How long `receive` waits for a wake-up before it looks at the table again (due retries).
const POLL_INTERVAL: Duration = Duration::from_millis(500);

pub struct LocalBroker {
    pool: Pool,
    wake: Notify,
    /// Job ids delivered and not yet acknowledged, with when: a delivery older than
    /// `redeliver` no longer holds its job back.
    handed_out: Mutex<HashMap<String, Instant>>,
    redeliver: Duration,
}

impl LocalBroker {
    pub fn new(pool: Pool, redeliver: Duration) -> Self {
        Self {
            pool,
            wake: Notify::new(),
            handed_out: Mutex::new(HashMap::new()),
            redeliver,
        }
    }

    async fn due(&self, max: usize) -> Result<Vec<Delivery>, BrokerError> {
        let exclude: Vec<String> = {
            let mut handed_out = self.handed_out.lock().unwrap();
            handed_out.retain(|_, at| at.elapsed() < self.redeliver);
            handed_out.keys().cloned().collect()
        };
        let pool = self.pool.clone();
        let ids = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<JobId>> {
            let mut conn = pool.get()?;
            Ok(job::next_due(&mut conn, &exclude, max as i64)?)
        })
        .await
        .map_err(anyhow::Error::from)??;
        let mut handed_out = self.handed_out.lock().unwrap();
        let now = Instant::now();
        Ok(ids
            .into_iter()
            .filter(|id| handed_out.insert(id.to_string(), now).is_none())
            .map(|id| Delivery {
                job_id: Some(id),
                tag: id.to_string(),
            })
            .collect())
    }
}

#[async_trait]
impl Broker for LocalBroker {
    fn name(&self) -> &'static str {
        "in-process"
    }

    async fn publish(&self, _job: &JobId) -> Result<(), BrokerError> {
        self.wake.notify_one();
        Ok(())
    }

    async fn receive(&self, max: usize) -> Result<Vec<Delivery>, BrokerError> {
        let found = self.due(max).await?;
        if !found.is_empty() {
            return Ok(found);
        }
        let _ = tokio::time::timeout(POLL_INTERVAL, self.wake.notified()).await;
        self.due(max).await
    }

    async fn ack(&self, deliveries: &[Delivery]) -> Result<(), BrokerError> {
        let mut handed_out = self.handed_out.lock().unwrap();
        for delivery in deliveries {
            handed_out.remove(&delivery.tag);
        }
        Ok(())
    }

    /// The jobs table is the queue: every queued job is held.
    async fn holds(&self, jobs: &[JobId]) -> Result<HashSet<JobId>, BrokerError> {
        Ok(jobs.iter().copied().collect())
    }

    async fn ping(&self) -> anyhow::Result<()> {
        Ok(())
    }

    async fn stats(&self) -> anyhow::Result<QueueStats> {
        Ok(QueueStats {
            waiting: 0,
            pending: self.handed_out.lock().unwrap().len() as u64,
        })
    }
}
