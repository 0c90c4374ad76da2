//! The broker: wake-ups that tell consumers a queue may have jobs due.
//!
//! The jobs table decides what runs next (priorities, owners' turns, pauses, caps: see
//! `models::job::queue`); a broker only carries "look now" per queue, so that a job
//! accepted in one process starts in another at once instead of at the consumer's next
//! look (every [`POLL_INTERVAL`] at most). A lost wake-up delays a job by at most that
//! interval; nothing a broker loses or repeats can lose, strand or duplicate a job.
//!
//! Two implementations stand behind one trait: [`redis::RedisBroker`] (a Redis stream per
//! queue with a consumer group, shared by many processes) and [`local::LocalBroker`] (the
//! embedded default: one process, a notification per queue).

pub mod local;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::{Settings, StartupError};
use crate::db::Pool;
use crate::domain::queue::QueueName;

/// How long a consumer with idle workers waits for a wake-up before it looks at the table
/// anyway (delayed jobs coming due, retries after their backoff, a lost wake-up).
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Unavailable(#[from] anyhow::Error),
}

/// Wake-ups per queue.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// `redis` or `in-process`, for logs.
    fn name(&self) -> &'static str;

    /// Says that jobs of `queue` may be due (one was accepted, retried, resumed).
    async fn announce(&self, queue: &QueueName) -> Result<(), BrokerError>;

    /// Returns when `queue` is announced, or after `timeout`.
    async fn wait(&self, queue: &QueueName, timeout: Duration) -> Result<(), BrokerError>;

    /// Whether the broker answers.
    async fn ping(&self) -> anyhow::Result<()>;
}

/// The broker `settings` name (Redis at `BROKER_URL`, else the in-process one), and for
/// Redis the link that carries events to other processes. Redis keys and channels are
/// scoped to the deployment (the processes that share `pool`'s database), so that two
/// deployments on one Redis never see each other's wake-ups or events. A Redis that does
/// not answer is a [`StartupError`] naming `BROKER_URL` and its address.
pub async fn connect(
    settings: &Settings,
    pool: &Pool,
) -> anyhow::Result<(Arc<dyn Broker>, Option<EventChannel>)> {
    let Some(url) = &settings.broker_url else {
        return Ok((Arc::new(local::LocalBroker::default()), None));
    };
    let pool = pool.clone();
    let deployment = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        Ok(crate::models::setting::deployment(&mut *pool.get()?)?)
    })
    .await??;
    let redis = redis::RedisBroker::connect(url.as_str(), &deployment)
        .await
        // The root cause alone: the redis error repeats the OS error it wraps.
        .map_err(|e| StartupError::broker(url, e.root_cause()))?;
    let events = EventChannel {
        client: redis.client().clone(),
        manager: redis.manager(),
        channel: redis.keys().events(),
    };
    Ok((Arc::new(redis), Some(events)))
}

/// The Redis pub/sub channel on which job events reach the other processes of the
/// deployment. The broker only names it; the event registry's link carries the events.
#[derive(Clone)]
pub struct EventChannel {
    pub client: ::redis::Client,
    pub manager: ::redis::aio::ConnectionManager,
    pub channel: String,
}
