//! The JobConsumer actor (DESIGN's RedisConsumer; it drives the in-process broker too):
//! asks the broker for no more jobs than there are idle workers, hands each to the
//! worker pool, and acknowledges a delivery once the worker is done with it (the jobs
//! table, not the broker, keeps a job that did not end: see `jobs::maintenance`). Acknowledgements
//! go out one request at a time, each carrying all that finished meanwhile: under load a
//! round trip acknowledges many jobs, and idle it costs no wait. When the broker is
//! unreachable it backs off and tries again.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::worker::{AttemptOutcome, JobWorker, RunJob};
use crate::broker::{Broker, BrokerError, Delivery};
use crate::db::Pool;
use crate::domain::job::JobId;
use crate::models::job;

const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// Short: jobs wait for the first read after the broker comes back, and a read of a
/// broker that is down costs a refused connection. (With 10 s, Redis back after 7 s
/// was read from again only 5-6 s later.)
const MAX_BACKOFF: Duration = Duration::from_secs(1);

pub struct JobConsumer {
    broker: Arc<dyn Broker>,
    workers: Addr<JobWorker>,
    pool: Pool,
    capacity: usize,
    in_flight: usize,
    receiving: bool,
    stopping: bool,
    backoff: Duration,
    /// Deliveries done with and not yet acknowledged.
    unacked: Vec<Delivery>,
    /// An acknowledgement is out.
    acking: bool,
}

/// Stop taking jobs (shutdown); the ones running go on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopConsuming;

/// How many jobs this consumer holds now.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct InFlight;

impl JobConsumer {
    pub fn new(
        broker: Arc<dyn Broker>,
        workers: Addr<JobWorker>,
        pool: Pool,
        capacity: usize,
    ) -> Self {
        Self {
            broker,
            workers,
            pool,
            capacity,
            in_flight: 0,
            receiving: false,
            stopping: false,
            backoff: MIN_BACKOFF,
            unacked: Vec::new(),
            acking: false,
        }
    }

    /// Asks for as many jobs as there are idle workers, unless a request is out already.
    fn receive(&mut self, ctx: &mut Context<Self>) {
        let idle = self.capacity - self.in_flight;
        if self.stopping || self.receiving || idle == 0 {
            return;
        }
        self.receiving = true;
        let broker = self.broker.clone();
        async move { broker.receive(idle).await }
            .into_actor(self)
            .map(|received, act, ctx| {
                act.receiving = false;
                match received {
                    Ok(deliveries) if act.stopping => act.give_back(deliveries, ctx),
                    Ok(deliveries) => {
                        act.backoff = MIN_BACKOFF;
                        for delivery in deliveries {
                            act.dispatch(delivery, ctx);
                        }
                        act.receive(ctx);
                    }
                    Err(BrokerError::QueueLost) => {
                        act.republish_all(ctx);
                        act.retry_later(ctx);
                    }
                    Err(BrokerError::Unavailable(e)) => {
                        log::warn!("broker unavailable ({e:#}); retrying in {:?}", act.backoff);
                        act.retry_later(ctx);
                    }
                }
            })
            .spawn(ctx);
    }

    fn retry_later(&mut self, ctx: &mut Context<Self>) {
        ctx.run_later(self.backoff, |act, ctx| act.receive(ctx));
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// Deliveries that arrived after shutdown began go back to the queue untouched: the
    /// jobs are marked unpublished (so the reconciler publishes them again) and the
    /// messages acknowledged.
    fn give_back(&mut self, deliveries: Vec<Delivery>, ctx: &mut Context<Self>) {
        if deliveries.is_empty() {
            return;
        }
        let pool = self.pool.clone();
        let broker = self.broker.clone();
        let ids: Vec<JobId> = deliveries.iter().filter_map(|d| d.job_id).collect();
        async move {
            let unpublished = actix_web::web::block(move || -> anyhow::Result<usize> {
                Ok(job::unpublish_queued(&mut *pool.get()?, Some(&ids))?)
            })
            .await;
            if matches!(unpublished, Ok(Ok(_))) {
                let _ = broker.ack(&deliveries).await;
            }
        }
        .into_actor(self)
        .spawn(ctx);
    }

    /// The broker forgot its queue: mark every queued job unpublished, and the
    /// reconciler publishes them again.
    fn republish_all(&mut self, ctx: &mut Context<Self>) {
        let pool = self.pool.clone();
        actix_web::web::block(move || -> anyhow::Result<usize> {
            Ok(job::unpublish_queued(&mut *pool.get()?, None)?)
        })
        .into_actor(self)
        .map(|res, _, _| match res {
            Ok(Ok(n)) => log::warn!("broker lost its queue: {n} queued job(s) will be republished"),
            Ok(Err(e)) => log::error!("could not mark queued jobs for republishing: {e:#}"),
            Err(e) => log::error!("could not mark queued jobs for republishing: {e}"),
        })
        .spawn(ctx);
    }

    fn dispatch(&mut self, delivery: Delivery, ctx: &mut Context<Self>) {
        let Some(job_id) = delivery.job_id else {
            log::warn!(
                "dropping a broker message without a job id ({})",
                delivery.tag
            );
            self.ack(delivery, ctx);
            return;
        };
        self.in_flight += 1;
        self.workers
            .send(RunJob { job_id })
            .into_actor(self)
            .map(move |outcome, act, ctx| {
                act.in_flight -= 1;
                if matches!(outcome, Ok(AttemptOutcome::Crashed) | Err(_)) {
                    // The claim or the ending was not recorded. The table decides what
                    // happens next: a job still queued is delivered again by the
                    // reconciler, a running one when its lease expires.
                    log::warn!("job {job_id}: attempt crashed; the table will redeliver it");
                }
                act.ack(delivery, ctx);
                act.receive(ctx);
            })
            .spawn(ctx);
    }

    fn ack(&mut self, delivery: Delivery, ctx: &mut Context<Self>) {
        self.unacked.push(delivery);
        self.send_acks(ctx);
    }

    /// Acknowledges every delivery done with, unless an acknowledgement is out (those
    /// done meanwhile go when it is back).
    fn send_acks(&mut self, ctx: &mut Context<Self>) {
        if self.acking || self.unacked.is_empty() {
            return;
        }
        self.acking = true;
        let deliveries = std::mem::take(&mut self.unacked);
        let broker = self.broker.clone();
        async move {
            if let Err(e) = broker.ack(&deliveries).await {
                // Unacknowledged, they are delivered again; the jobs' status makes the
                // second delivery a no-op.
                log::warn!("could not acknowledge {} deliveries: {e}", deliveries.len());
            }
        }
        .into_actor(self)
        .map(|(), act, ctx| {
            act.acking = false;
            act.send_acks(ctx);
        })
        .spawn(ctx);
    }
}

impl Actor for JobConsumer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        log::info!(
            "consumer started: {} broker, {} workers",
            self.broker.name(),
            self.capacity
        );
        self.receive(ctx);
    }
}

impl Handler<StopConsuming> for JobConsumer {
    type Result = ();
    fn handle(&mut self, _: StopConsuming, _ctx: &mut Context<Self>) {
        self.stopping = true;
    }
}

impl Handler<InFlight> for JobConsumer {
    type Result = usize;
    fn handle(&mut self, _: InFlight, _ctx: &mut Context<Self>) -> usize {
        self.in_flight
    }
}
