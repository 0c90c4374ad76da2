//! The JobConsumer actor (DESIGN's RedisConsumer; it drives the in-process broker too), one
//! per queue a process serves: when it has idle workers it claims up to that many due jobs
//! from the table in one statement (priority, owners' turns, pauses and caps are the
//! claim's: see `models::job::queue`) and hands each to its worker pool. While nothing is
//! due it waits for a wake-up from the broker, or [`POLL_INTERVAL`] at most, and looks
//! again. A claim that came back full is followed by another as soon as a worker is free.
//!
//! The broker only shortens the wait: with Redis down, jobs still start, at the next look.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::worker::{AttemptOutcome, JobWorker, RunJob};
use crate::broker::{Broker, POLL_INTERVAL};
use crate::db::Pool;
use crate::domain::queue::QueueName;
use crate::models::job::{self, AttemptToken, ClaimLimits, Job};

const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// What a consumer claims with.
#[derive(Clone)]
pub struct ClaimSettings {
    pub queue: QueueName,
    /// This process, in lease owners.
    pub node: String,
    pub lease: Duration,
    pub limits: ClaimLimits,
}

pub struct JobConsumer {
    broker: Arc<dyn Broker>,
    workers: Addr<JobWorker>,
    pool: Pool,
    claim: Arc<ClaimSettings>,
    capacity: usize,
    in_flight: usize,
    claiming: bool,
    waiting: bool,
    stopping: bool,
    backoff: Duration,
    /// The broker's last wait failed (and that was logged).
    broker_failing: bool,
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
        claim: ClaimSettings,
        capacity: usize,
    ) -> Self {
        Self {
            broker,
            workers,
            pool,
            claim: Arc::new(claim),
            capacity,
            in_flight: 0,
            claiming: false,
            waiting: false,
            stopping: false,
            backoff: MIN_BACKOFF,
            broker_failing: false,
        }
    }

    /// Claims as many due jobs as there are idle workers, unless a claim is out already.
    fn fill(&mut self, ctx: &mut Context<Self>) {
        let idle = self.capacity - self.in_flight;
        if self.stopping || self.claiming || idle == 0 {
            return;
        }
        self.claiming = true;
        let (pool, claim) = (self.pool.clone(), self.claim.clone());
        actix_web::web::block(move || -> anyhow::Result<Vec<(Job, AttemptToken)>> {
            let mut conn = pool.get()?;
            Ok(job::claim_due(
                &mut conn,
                &claim.queue,
                &claim.node,
                claim.lease,
                idle,
                &claim.limits,
            )?)
        })
        .into_actor(self)
        .map(move |claimed, act, ctx| {
            act.claiming = false;
            match claimed.map_err(anyhow::Error::from).and_then(|c| c) {
                Ok(claimed) => {
                    act.backoff = MIN_BACKOFF;
                    let full = claimed.len() == idle;
                    // Claimed jobs run even when a shutdown began meanwhile: they are this
                    // process's now, and the shutdown's grace covers them.
                    for (job, token) in claimed {
                        act.dispatch(job, token, ctx);
                    }
                    match full {
                        true => act.fill(ctx),
                        false => act.listen(ctx),
                    }
                }
                Err(e) => {
                    log::warn!(
                        "queue {}: could not claim jobs ({e:#}); trying again in {:?}",
                        act.claim.queue,
                        act.backoff
                    );
                    ctx.run_later(act.backoff, |act, ctx| act.fill(ctx));
                    act.backoff = (act.backoff * 2).min(MAX_BACKOFF);
                }
            }
        })
        .spawn(ctx);
    }

    /// Waits for a wake-up (or the poll interval), then looks at the table again.
    fn listen(&mut self, ctx: &mut Context<Self>) {
        if self.stopping || self.waiting {
            return;
        }
        self.waiting = true;
        let (broker, queue) = (self.broker.clone(), self.claim.queue.clone());
        let started = std::time::Instant::now();
        async move { broker.wait(&queue, POLL_INTERVAL).await }
            .into_actor(self)
            .map(move |waited, act, ctx| {
                act.waiting = false;
                match waited {
                    Ok(()) => {
                        if act.broker_failing {
                            log::info!("broker answers again");
                            act.broker_failing = false;
                        }
                        act.fill(ctx);
                    }
                    Err(e) => {
                        if !act.broker_failing {
                            log::warn!("broker unavailable ({e:#}); looking at the table every {POLL_INTERVAL:?}");
                            act.broker_failing = true;
                        }
                        // A broker that fails at once must not make this a busy loop.
                        let rest = POLL_INTERVAL.saturating_sub(started.elapsed());
                        ctx.run_later(rest, |act, ctx| act.fill(ctx));
                    }
                }
            })
            .spawn(ctx);
    }

    fn dispatch(&mut self, job: Job, token: AttemptToken, ctx: &mut Context<Self>) {
        self.in_flight += 1;
        let job_id = job.id;
        self.workers
            .send(RunJob { job, token })
            .into_actor(self)
            .map(move |outcome, act, ctx| {
                act.in_flight -= 1;
                if matches!(outcome, Ok(AttemptOutcome::Crashed) | Err(_)) {
                    // The ending was not recorded: the job is running under a lease
                    // nobody renews, and lease recovery takes it back.
                    log::warn!("job {job_id}: attempt crashed; lease recovery will take it back");
                }
                act.fill(ctx);
            })
            .spawn(ctx);
    }
}

impl Actor for JobConsumer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        log::info!(
            "consumer of queue {} started: {} broker, {} workers",
            self.claim.queue,
            self.broker.name(),
            self.capacity
        );
        self.fill(ctx);
        self.listen(ctx);
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
