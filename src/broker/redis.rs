//! The Redis broker: a stream per queue, read through one consumer group by every process
//! that serves the queue. An entry is a wake-up ("jobs of this queue may be due"), read
//! with NOACK: there is nothing to acknowledge, since the jobs table, not the entry, says
//! which job runs. Streams are made by their consumers and announced to with NOMKSTREAM,
//! so a queue nobody serves leaves nothing in Redis however many names clients make up;
//! each stream is capped at [`STREAM_LENGTH`] entries.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client};
use tokio::sync::Mutex;

use super::{Broker, BrokerError};
use crate::domain::queue::QueueName;

/// Replies slower than this count as Redis being down (except the blocking read).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Wake-ups a stream keeps at most (about: `MAXLEN ~`).
const STREAM_LENGTH: usize = 1000;
/// Wake-ups one read takes at most: one is enough to look at the table.
const READ_COUNT: usize = 1000;

/// The Redis keys of one deployment (the processes that share a database).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn for_deployment(deployment: &str) -> Self {
        Self {
            prefix: format!("roster:{deployment}"),
        }
    }

    /// The stream of `queue`'s wake-ups.
    pub fn stream(&self, queue: &QueueName) -> String {
        format!("{}:{queue}:wake", self.prefix)
    }

    pub fn group(&self) -> &'static str {
        "workers"
    }

    /// The pub/sub channel of the deployment's job events.
    pub fn events(&self) -> String {
        format!("{}:events", self.prefix)
    }

    /// Every key of the deployment matches this (for cleaning up after tests).
    pub fn pattern(&self) -> String {
        format!("{}:*", self.prefix)
    }
}

pub struct RedisBroker {
    client: Client,
    /// Announcing, pings: reconnects by itself.
    manager: ConnectionManager,
    /// The blocking reads, one connection per queue without a reply timeout (a blocked
    /// read holds its connection), made anew after any error.
    readers: Mutex<HashMap<QueueName, MultiplexedConnection>>,
    keys: Keys,
}

impl RedisBroker {
    pub async fn connect(url: &str, deployment: &str) -> anyhow::Result<Self> {
        let client = Client::open(url).with_context(|| "BROKER_URL is not a Redis URL")?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let manager = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .with_context(|| "cannot connect to Redis")?;
        Ok(Self {
            client,
            manager,
            readers: Mutex::new(HashMap::new()),
            keys: Keys::for_deployment(deployment),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn manager(&self) -> ConnectionManager {
        self.manager.clone()
    }

    /// Makes `queue`'s stream and its group when they are missing.
    async fn ensure_group(&self, queue: &QueueName) -> anyhow::Result<()> {
        let mut conn = self.manager.clone();
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.keys.stream(queue))
            .arg(self.keys.group())
            .arg("$")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(e).context("creating the consumer group"),
        }
    }

    async fn reader(&self, queue: &QueueName) -> anyhow::Result<MultiplexedConnection> {
        let mut readers = self.readers.lock().await;
        if let Some(conn) = readers.get(queue) {
            return Ok(conn.clone());
        }
        self.ensure_group(queue).await?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(None);
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .context("connecting the stream reader to Redis")?;
        readers.insert(queue.clone(), conn.clone());
        Ok(conn)
    }
}

#[async_trait]
impl Broker for RedisBroker {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn announce(&self, queue: &QueueName) -> Result<(), BrokerError> {
        let mut conn = self.manager.clone();
        let _: Option<String> = redis::cmd("XADD")
            .arg(self.keys.stream(queue))
            .arg("NOMKSTREAM")
            .arg("MAXLEN")
            .arg("~")
            .arg(STREAM_LENGTH)
            .arg("*")
            .arg("wake")
            .arg(1)
            .query_async(&mut conn)
            .await
            .context("announcing to Redis")?;
        Ok(())
    }

    async fn wait(&self, queue: &QueueName, timeout: Duration) -> Result<(), BrokerError> {
        let mut conn = self.reader(queue).await?;
        let read: redis::RedisResult<redis::Value> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(self.keys.group())
            .arg("roster")
            .arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(timeout.as_millis().max(1) as u64)
            .arg("NOACK")
            .arg("STREAMS")
            .arg(self.keys.stream(queue))
            .arg(">")
            .query_async(&mut conn)
            .await;
        match read {
            Ok(_) => Ok(()),
            Err(e) => {
                // Redis came back empty (NOGROUP) or the connection broke: the next wait
                // connects again and makes the group anew.
                self.readers.lock().await.remove(queue);
                if e.code() == Some("NOGROUP") {
                    log::warn!("the Redis stream of queue {queue} is gone; making it again");
                    return Ok(());
                }
                Err(BrokerError::Unavailable(
                    anyhow::Error::new(e).context("reading the Redis stream"),
                ))
            }
        }
    }

    async fn ping(&self) -> anyhow::Result<()> {
        let mut conn = self.manager.clone();
        let pong: String = tokio::time::timeout(
            Duration::from_secs(2),
            redis::cmd("PING").query_async(&mut conn),
        )
        .await
        .context("Redis did not answer within 2 s")??;
        anyhow::ensure!(pong == "PONG", "unexpected PING reply {pong:?}");
        Ok(())
    }
}
