//! The in-process broker of the embedded default: one notification per queue. The jobs
//! table is the queue; a wake-up only saves a consumer the rest of its poll interval.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{Broker, BrokerError};
use crate::domain::queue::QueueName;

#[derive(Default)]
pub struct LocalBroker {
    queues: Mutex<HashMap<QueueName, Arc<Notify>>>,
}

impl LocalBroker {
    fn of(&self, queue: &QueueName) -> Arc<Notify> {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        queues.entry(queue.clone()).or_default().clone()
    }
}

#[async_trait]
impl Broker for LocalBroker {
    fn name(&self) -> &'static str {
        "in-process"
    }

    async fn announce(&self, queue: &QueueName) -> Result<(), BrokerError> {
        // Only queues a consumer here waits on have an entry: names that clients make up
        // leave nothing behind. Stored when the consumer is busy: its next wait returns
        // at once.
        let queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(notify) = queues.get(queue) {
            notify.notify_one();
        }
        Ok(())
    }

    async fn wait(&self, queue: &QueueName, timeout: Duration) -> Result<(), BrokerError> {
        let notify = self.of(queue);
        let _ = tokio::time::timeout(timeout, notify.notified()).await;
        Ok(())
    }

    async fn ping(&self) -> anyhow::Result<()> {
        Ok(())
    }
}
