//! The broker: a queue that tells consumers which jobs to run.
//!
//! The jobs table is the record of truth; a broker only carries job ids, at least once.
//! Two implementations stand behind one trait: [`redis::RedisBroker`] (a Redis stream
//! with a consumer group, shared by many processes) and [`local::LocalBroker`] (the
//! embedded default: the jobs table itself, read by one process).

pub mod local;
pub mod redis;

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;

use crate::config::{Settings, StartupError};
use crate::db::Pool;
use crate::domain::job::JobId;

/// One job handed to this process; acknowledge it once the job's end is recorded.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// `None` when the message did not carry a valid job id (it is acknowledged and dropped).
    pub job_id: Option<JobId>,
    /// The broker's own handle on the message.
    pub tag: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The broker's queue is gone (Redis restarted empty): every queued job must be
    /// published again.
    #[error("the broker lost its queue")]
    QueueLost,
    #[error(transparent)]
    Unavailable(#[from] anyhow::Error),
}

/// Queue depth as the broker sees it, for metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueStats {
    /// Published and not yet delivered.
    pub waiting: u64,
    /// Delivered and not yet acknowledged.
    pub pending: u64,
}

/// A queue, a broker: publishes job ids and delivers them to consumers.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// `redis` or `in-process`, for logs.
    fn name(&self) -> &'static str;

    /// Announces a committed, due job to the consumers.
    async fn publish(&self, job: &JobId) -> Result<(), BrokerError>;

    /// Up to `max` deliveries; waits about a second when there are none.
    async fn receive(&self, max: usize) -> Result<Vec<Delivery>, BrokerError>;

    /// Done with these deliveries: they will not be delivered again.
    async fn ack(&self, deliveries: &[Delivery]) -> Result<(), BrokerError>;

    /// Which of `jobs` the broker still holds (published and not yet acknowledged):
    /// the reconciler publishes again those it lost.
    async fn holds(&self, jobs: &[JobId]) -> Result<HashSet<JobId>, BrokerError>;

    /// Whether the broker answers.
    async fn ping(&self) -> anyhow::Result<()>;

    async fn stats(&self) -> anyhow::Result<QueueStats>;
}

/// The broker `settings` name (Redis at `BROKER_URL`, else the in-process one), and for
/// Redis the link that carries events to other processes. `node` names this process.
/// A Redis that does not answer is a [`StartupError`] naming `BROKER_URL` and its address.
pub async fn connect(
    settings: &Settings,
    pool: &Pool,
    node: &str,
) -> anyhow::Result<(Arc<dyn Broker>, Option<EventChannel>)> {
    let Some(url) = &settings.broker_url else {
        return Ok((
            Arc::new(local::LocalBroker::new(pool.clone(), settings.redeliver())),
            None,
        ));
    };
    let redis = redis::RedisBroker::connect(
        url.as_str(),
        &settings.queue,
        node.to_owned(),
        settings.lease() * 2,
    )
    .await
    // The root cause alone: the redis error repeats the OS error it wraps.
    .map_err(|e| StartupError::broker(url, e.root_cause()))?;
    let events = EventChannel {
        client: redis.client().clone(),
        manager: redis.manager(),
        channel: redis.keys().events.clone(),
    };
    Ok((Arc::new(redis), Some(events)))
}

/// The Redis pub/sub channel of the broker's queue, on which job events reach the other
/// processes. The broker only names it; the event registry's link carries the events.
#[derive(Clone)]
pub struct EventChannel {
    pub client: ::redis::Client,
    pub manager: ::redis::aio::ConnectionManager,
    pub channel: String,
}
