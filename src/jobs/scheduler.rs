//! The Scheduler actor: fires the jobs of schedules whose tick has come, as Celery beat
//! does, but safe with any number of processes running it.
//!
//! Every process runs one. For each due schedule a pass accepts one job through the
//! [`Acceptor`] (the one way a job comes to exist), marked with the schedule and the tick.
//! The jobs table holds at most one job per tick (a unique index), so when two processes
//! fire the same tick one of them gets [`AcceptError::TickTaken`] and lets it be. Then the
//! schedule moves to its first tick strictly after the database's time now, and only if
//! it is still at the tick just fired ([`schedule::advance`]): ticks missed while no
//! process ran fire once on recovery, not once each.
//!
//! A tick whose job could not be accepted for want of the database (or the pool) stays
//! due and is tried again on the next pass; a tick whose job its kind refuses (a kind
//! gone from this build, parameters it no longer takes) is skipped with a warning, since
//! no retry could succeed. [`fire_due`] is one pass, for tests to call.

use std::time::Duration;

use actix::prelude::*;

use super::accept::{AcceptError, Accepted, Acceptor, JobRequest};
use crate::db::Pool;
use crate::models::schedule::{self, Schedule};

/// How often a process looks for due schedules: well under a second, so a schedule with
/// a seconds field fires each second even when a pass runs late.
pub const SCHEDULER_INTERVAL: Duration = Duration::from_millis(500);
/// Due schedules fired per pass at most; the rest are next.
const DUE_BATCH: i64 = 100;

pub struct Scheduler {
    pool: Pool,
    jobs: Acceptor,
    busy: bool,
}

impl Scheduler {
    pub fn new(pool: Pool, jobs: Acceptor) -> Self {
        Self {
            pool,
            jobs,
            busy: false,
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        // A slow pass (a database under load) is not overlapped by the next one.
        if self.busy {
            return;
        }
        self.busy = true;
        let (pool, jobs) = (self.pool.clone(), self.jobs.clone());
        async move {
            if let Err(e) = fire_due(&pool, &jobs).await {
                log::warn!("scheduler pass failed: {e:#}");
            }
        }
        .into_actor(self)
        .map(|_, act, _| act.busy = false)
        .spawn(ctx);
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(SCHEDULER_INTERVAL, |act, ctx| act.tick(ctx));
    }
}

/// One pass: fires every due schedule once and moves it on. Returns how many jobs this
/// process created (ticks another process took are not counted).
pub async fn fire_due(pool: &Pool, jobs: &Acceptor) -> anyhow::Result<usize> {
    let db = pool.clone();
    let due = actix_web::web::block(move || -> anyhow::Result<Vec<Schedule>> {
        Ok(schedule::due(&mut *db.get()?, DUE_BATCH)?)
    })
    .await??;
    let mut fired = 0;
    for schedule in due {
        if fire(jobs, &schedule).await? {
            fired += 1;
        }
        advance(pool, &schedule).await?;
    }
    Ok(fired)
}

/// Accepts the job of `schedule`'s due tick; whether this call created it. An error
/// means the tick must stay due.
async fn fire(jobs: &Acceptor, schedule: &Schedule) -> anyhow::Result<bool> {
    let tick = schedule.next_fire_at;
    let request = JobRequest {
        created_by: schedule.created_by.clone(),
        tick: Some((schedule.id.to_string(), tick)),
        ..JobRequest::new(schedule.kind, schedule.params.clone())
    };
    match jobs.accept(request).await {
        Ok(Accepted::New(job) | Accepted::Existing(job)) => {
            log::info!(
                "schedule {} ({}) fired job {} for its tick {}Z",
                schedule.name,
                schedule.id,
                job.id,
                tick
            );
            Ok(true)
        }
        Err(AcceptError::TickTaken) => {
            log::debug!(
                "schedule {}: tick {tick}Z fired by another process",
                schedule.name
            );
            Ok(false)
        }
        Err(
            e @ (AcceptError::UnknownKind(_)
            | AcceptError::NotSchedulable(_)
            | AcceptError::Invalid(_)
            | AcceptError::KeyReused),
        ) => {
            let detail = match &e {
                AcceptError::Invalid(fields) => format!(": {fields:?}"),
                _ => String::new(),
            };
            log::warn!(
                "schedule {} ({}): tick {tick}Z skipped, its job is refused: {e}{detail}",
                schedule.name,
                schedule.id
            );
            Ok(false)
        }
        Err(e @ (AcceptError::Database(_) | AcceptError::Pool(_) | AcceptError::Blocking(_))) => {
            Err(anyhow::Error::new(e).context(format!(
                "firing schedule {} for its tick {tick}Z (it stays due)",
                schedule.name
            )))
        }
    }
}

/// Moves `schedule` from the tick just fired to its first tick after now.
async fn advance(pool: &Pool, schedule: &Schedule) -> anyhow::Result<()> {
    let pool = pool.clone();
    let (id, fired_at, cron, zone) = (
        schedule.id,
        schedule.next_fire_at,
        schedule.cron.clone(),
        schedule.timezone,
    );
    let name = schedule.name.clone();
    actix_web::web::block(move || -> anyhow::Result<()> {
        let mut conn = pool.get()?;
        let now = schedule::now(&mut conn)?;
        let next = cron.next_after(zone, now.and_utc()).map(|t| t.naive_utc());
        if next.is_none() {
            log::warn!("schedule {name}: no tick after {now}Z; disabling it");
        }
        schedule::advance(&mut conn, &id, fired_at, next)?;
        Ok(())
    })
    .await?
}
