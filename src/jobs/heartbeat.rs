//! Worker heartbeats: the jobs running in this process ([`RunningJobs`], kept by the
//! workers as they claim and end attempts) and the [`Heartbeat`] actor that registers the
//! process in the `workers` table at start, beats every [`HEARTBEAT_INTERVAL`] with what
//! runs here, and deletes the row on a graceful shutdown ([`Leave`]).
//!
//! A beat runs on the blocking pool and never waits for a worker; a beat that fails (the
//! database is away) is logged once, not once per beat, and the next one tries again.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::db::Pool;
use crate::domain::job::JobId;
use crate::models::worker::{self, Beat, Process};

/// How often a process records that it is alive, and what runs in it.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);

/// The jobs running in this process now.
#[derive(Clone, Default)]
pub struct RunningJobs(Arc<Mutex<BTreeSet<JobId>>>);

impl RunningJobs {
    fn set(&self) -> std::sync::MutexGuard<'_, BTreeSet<JobId>> {
        // The set is whole after any panic: each change is one insert or remove.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes that `job` runs here until the returned guard is dropped.
    pub fn enter(&self, job: JobId) -> RunningGuard {
        self.set().insert(job);
        RunningGuard {
            jobs: self.clone(),
            job,
        }
    }

    /// The jobs running now, in id order.
    pub fn now(&self) -> Vec<JobId> {
        self.set().iter().copied().collect()
    }
}

/// A job running here; it leaves [`RunningJobs`] when this is dropped.
pub struct RunningGuard {
    jobs: RunningJobs,
    job: JobId,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.jobs.set().remove(&self.job);
    }
}

/// Whether this process's beats go through, and since when: a process judges others dead
/// only while its own beats have gone through for as long (see `maintenance`).
#[derive(Clone, Default)]
pub struct BeatHealth(Arc<Mutex<Option<Instant>>>);

impl BeatHealth {
    fn record(&self, ok: bool) {
        let mut since = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match ok {
            true => {
                since.get_or_insert_with(Instant::now);
            }
            false => *since = None,
        }
    }

    /// How long the beats have gone through without a failure (zero while failing).
    pub fn healthy_for(&self) -> Duration {
        let since = self.0.lock().unwrap_or_else(|p| p.into_inner());
        since.map_or(Duration::ZERO, |at| at.elapsed())
    }
}

/// The process stops: delete its row (after its running jobs are done with). Answered
/// once the row is gone or the delete failed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave;

pub struct Heartbeat {
    pool: Pool,
    /// Who this process is.
    me: Process,
    running: RunningJobs,
    health: BeatHealth,
    /// The last beat failed (and that was logged).
    failing: bool,
    leaving: bool,
}

impl Heartbeat {
    pub fn new(pool: Pool, me: Process, running: RunningJobs, health: BeatHealth) -> Self {
        Self {
            pool,
            me,
            running,
            health,
            failing: false,
            leaving: false,
        }
    }

    /// One beat. The actor waits for it, so beats never overlap and [`Leave`] comes
    /// after any beat under way (which could otherwise register the process again).
    fn beat(&mut self, ctx: &mut Context<Self>) {
        if self.leaving {
            return;
        }
        let pool = self.pool.clone();
        let beat = Beat {
            process: self.me.clone(),
            running: self.running.now(),
        };
        actix_web::web::block(move || -> anyhow::Result<()> {
            Ok(worker::beat(&mut *pool.get()?, &beat)?)
        })
        .into_actor(self)
        .map(
            |result, act, _ctx| match result.map_err(anyhow::Error::from).and_then(|r| r) {
                Ok(()) if act.failing => {
                    act.health.record(true);
                    log::info!("worker heartbeat recorded again");
                    act.failing = false;
                }
                Ok(()) => act.health.record(true),
                Err(e) if !act.failing => {
                    act.health.record(false);
                    log::warn!("could not record the worker heartbeat ({e:#}); will keep trying");
                    act.failing = true;
                }
                Err(e) => {
                    act.health.record(false);
                    log::debug!("worker heartbeat failed again: {e:#}")
                }
            },
        )
        .wait(ctx);
    }
}

impl Actor for Heartbeat {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.beat(ctx);
        ctx.run_interval(HEARTBEAT_INTERVAL, |act, ctx| act.beat(ctx));
    }
}

impl Handler<Leave> for Heartbeat {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Leave, _ctx: &mut Context<Self>) -> Self::Result {
        self.leaving = true;
        let (pool, id) = (self.pool.clone(), self.me.id.clone());
        Box::pin(
            actix_web::web::block(move || -> anyhow::Result<usize> {
                Ok(worker::remove(&mut *pool.get()?, &id)?)
            })
            .into_actor(self)
            .map(|result, _act, ctx| {
                match result.map_err(anyhow::Error::from).and_then(|r| r) {
                    Ok(_) => log::info!("worker deregistered"),
                    Err(e) => log::warn!(
                        "could not deregister the worker ({e:#}); its row is forgotten once stale"
                    ),
                }
                ctx.stop();
            }),
        )
    }
}
