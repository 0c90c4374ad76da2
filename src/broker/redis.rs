//! The Redis broker: a stream per queue with one consumer group shared by every roster
//! process. Entries carry a job id; a consumer acknowledges (and deletes) an entry once
//! the job's end is recorded. Entries left pending by a consumer that died are claimed
//! again with XAUTOCLAIM; whether the job may run is still decided by its lease in the
//! jobs table, never by the entry's age.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamRangeReply, StreamReadReply};
use redis::{AsyncConnectionConfig, Client};
use tokio::sync::Mutex;

use super::{Broker, BrokerError, Delivery, QueueStats};
use crate::domain::job::JobId;

/// How long one XREADGROUP waits for new entries.
const BLOCK: Duration = Duration::from_millis(1000);
/// Replies slower than this count as Redis being down (except the blocking read).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The Redis keys of one queue.
#[derive(Debug, Clone)]
pub struct Keys {
    pub stream: String,
    pub group: String,
    pub events: String,
}

impl Keys {
    pub fn for_queue(queue: &str) -> Self {
        Self {
            stream: format!("roster:{queue}:jobs"),
            group: format!("roster:{queue}:workers"),
            events: format!("roster:{queue}:events"),
        }
    }
}

pub struct RedisBroker {
    client: Client,
    /// Publishing, acknowledging, pings: reconnects by itself.
    manager: ConnectionManager,
    /// The blocking reads: a connection of their own without a reply timeout, made anew
    /// after any error.
    reader: Mutex<Option<MultiplexedConnection>>,
    keys: Keys,
    consumer: String,
    /// Entries pending longer than this with a consumer are claimed by this one.
    claim_idle: Duration,
    last_claim: Mutex<Instant>,
}

impl RedisBroker {
    /// Connects, and creates the stream and its consumer group when they are missing.
    pub async fn connect(
        url: &str,
        queue: &str,
        consumer: String,
        claim_idle: Duration,
    ) -> anyhow::Result<Self> {
        let client = Client::open(url).with_context(|| "BROKER_URL is not a Redis URL")?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let manager = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .with_context(|| "cannot connect to Redis")?;
        let broker = Self {
            client,
            manager,
            reader: Mutex::new(None),
            keys: Keys::for_queue(queue),
            consumer,
            claim_idle,
            last_claim: Mutex::new(Instant::now()),
        };
        broker.ensure_group().await?;
        Ok(broker)
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

    async fn ensure_group(&self) -> anyhow::Result<()> {
        let mut conn = self.manager.clone();
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.keys.stream)
            .arg(&self.keys.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(e).context("creating the consumer group"),
        }
    }

    async fn reader(&self) -> anyhow::Result<MultiplexedConnection> {
        let mut slot = self.reader.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(None);
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .context("connecting the stream reader to Redis")?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    fn delivery(entry: &StreamId) -> Delivery {
        let job_id = entry
            .map
            .get("job")
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
            .and_then(|s| s.parse().ok());
        Delivery {
            job_id,
            tag: entry.id.clone(),
        }
    }

    /// Claims entries that a consumer (usually a dead one) has held for too long.
    async fn reclaim(
        &self,
        conn: &mut MultiplexedConnection,
        max: usize,
    ) -> redis::RedisResult<Vec<Delivery>> {
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&self.keys.stream)
            .arg(&self.keys.group)
            .arg(&self.consumer)
            .arg(self.claim_idle.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(max)
            .query_async(conn)
            .await?;
        if !reply.claimed.is_empty() {
            log::info!(
                "reclaimed {} stream entries left pending by other consumers",
                reply.claimed.len()
            );
        }
        Ok(reply.claimed.iter().map(Self::delivery).collect())
    }

    async fn read(&self, max: usize) -> Result<Vec<Delivery>, BrokerError> {
        let mut conn = self.reader().await?;
        let claim_due = {
            let mut last = self.last_claim.lock().await;
            let due = last.elapsed() >= self.claim_idle / 2;
            if due {
                *last = Instant::now();
            }
            due
        };
        let result: redis::RedisResult<Vec<Delivery>> = async {
            if claim_due {
                let claimed = self.reclaim(&mut conn, max).await?;
                if !claimed.is_empty() {
                    return Ok(claimed);
                }
            }
            let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(&self.keys.group)
                .arg(&self.consumer)
                .arg("COUNT")
                .arg(max)
                .arg("BLOCK")
                .arg(BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&self.keys.stream)
                .arg(">")
                .query_async(&mut conn)
                .await?;
            Ok(reply
                .into_iter()
                .flat_map(|r| r.keys)
                .flat_map(|k| k.ids)
                .map(|entry| Self::delivery(&entry))
                .collect())
        }
        .await;
        match result {
            Ok(deliveries) => Ok(deliveries),
            Err(e) if e.code() == Some("NOGROUP") => {
                log::warn!("the Redis stream or its group is gone; recreating it");
                self.ensure_group().await?;
                Err(BrokerError::QueueLost)
            }
            Err(e) => {
                // Drop the reader so that the next call reconnects.
                *self.reader.lock().await = None;
                Err(BrokerError::Unavailable(
                    anyhow::Error::new(e).context("reading the Redis stream"),
                ))
            }
        }
    }
}

#[async_trait]
impl Broker for RedisBroker {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn publish(&self, job: &JobId) -> Result<(), BrokerError> {
        let mut conn = self.manager.clone();
        let _: String = redis::cmd("XADD")
            .arg(&self.keys.stream)
            .arg("*")
            .arg("job")
            .arg(job.to_string())
            .query_async(&mut conn)
            .await
            .context("publishing a job to Redis")?;
        Ok(())
    }

    async fn receive(&self, max: usize) -> Result<Vec<Delivery>, BrokerError> {
        self.read(max).await
    }

    async fn ack(&self, deliveries: &[Delivery]) -> Result<(), BrokerError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let tags: Vec<&str> = deliveries.iter().map(|d| d.tag.as_str()).collect();
        let mut conn = self.manager.clone();
        let _: (i64, i64) = redis::pipe()
            .atomic()
            .cmd("XACK")
            .arg(&self.keys.stream)
            .arg(&self.keys.group)
            .arg(&tags)
            .cmd("XDEL")
            .arg(&self.keys.stream)
            .arg(&tags)
            .query_async(&mut conn)
            .await
            .context("acknowledging stream entries")?;
        Ok(())
    }

    /// Reads the whole stream: it only holds entries not yet acknowledged (acknowledged
    /// ones are deleted), so it is as long as the queue.
    async fn holds(&self, jobs: &[JobId]) -> Result<HashSet<JobId>, BrokerError> {
        const PAGE: usize = 1000;
        let wanted: HashSet<JobId> = jobs.iter().copied().collect();
        let mut held = HashSet::new();
        let mut conn = self.manager.clone();
        let mut start = "-".to_owned();
        loop {
            let page: StreamRangeReply = redis::cmd("XRANGE")
                .arg(&self.keys.stream)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(PAGE)
                .query_async(&mut conn)
                .await
                .context("reading the Redis stream")?;
            for entry in &page.ids {
                if let Some(id) = Self::delivery(entry)
                    .job_id
                    .filter(|id| wanted.contains(id))
                {
                    held.insert(id);
                }
            }
            match page.ids.last() {
                Some(last) if page.ids.len() == PAGE => start = format!("({}", last.id),
                _ => return Ok(held),
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

    async fn stats(&self) -> anyhow::Result<QueueStats> {
        let mut conn = self.manager.clone();
        let groups: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&self.keys.stream)
            .query_async(&mut conn)
            .await?;
        let group = groups
            .into_iter()
            .find(|g| {
                g.get("name")
                    .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
                    .as_deref()
                    == Some(self.keys.group.as_str())
            })
            .context("the consumer group is missing")?;
        let number = |field: &str| {
            group
                .get(field)
                .and_then(|v| redis::from_redis_value_ref::<u64>(v).ok())
                .unwrap_or(0)
        };
        Ok(QueueStats {
            waiting: number("lag"),
            pending: number("pending"),
        })
    }
}
