//! The in-process broker of the embedded default: the jobs table is the queue.
//!
//! Publishing only wakes the consumer; receiving reads the oldest due queued jobs that
//! are not already handed out. Nothing lives only in memory, so a restart loses nothing.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

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
    /// Job ids delivered and not yet acknowledged.
    handed_out: Mutex<HashSet<String>>,
}

impl LocalBroker {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            wake: Notify::new(),
            handed_out: Mutex::new(HashSet::new()),
        }
    }

    async fn due(&self, max: usize) -> Result<Vec<Delivery>, BrokerError> {
        let exclude: Vec<String> = self.handed_out.lock().unwrap().iter().cloned().collect();
        let pool = self.pool.clone();
        let ids = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
            let mut conn = pool.get()?;
            Ok(job::next_due(&mut conn, job::now(), &exclude, max as i64)?)
        })
        .await
        .map_err(anyhow::Error::from)??;
        let mut handed_out = self.handed_out.lock().unwrap();
        Ok(ids
            .into_iter()
            .filter(|id| handed_out.insert(id.clone()))
            .map(|id| Delivery {
                job_id: id.parse().ok(),
                tag: id,
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

    async fn ack(&self, delivery: &Delivery) -> Result<(), BrokerError> {
        self.handed_out.lock().unwrap().remove(&delivery.tag);
        Ok(())
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
