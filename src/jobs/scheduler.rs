//! The Scheduler actor: fires the jobs of schedules whose tick has come, as Celery beat
//! does, but safe with any number of processes running it.
//!
//! Every process runs one. For each due schedule a pass accepts one job through the
//! [`Acceptor`] (the one way a job comes to exist), marked with the schedule and the tick.
//! The jobs table holds at most one job per tick (a unique index), so when two processes
//! fire the same tick one of them gets [`AcceptError::TickTaken`] and lets it be. Then the
//! schedule moves on, only if it is still at the tick just fired ([`schedule::advance`]):
//! to the tick after it, unless that one is more than [`MISSED_AFTER`] past, in which
//! case to the first tick strictly after the database's time now. So ticks missed while
//! no process ran fire once on recovery, not once each; yet a pass that comes a moment
//! late to a schedule with a seconds field does not swallow the next second's tick.
//!
//! A tick whose job could not be accepted for want of the database (or the pool) stays
//! due and is tried again on the next pass; a tick whose job its kind refuses (a kind
//! gone from this build, parameters it no longer takes) is skipped with a warning, since
//! no retry could succeed. [`fire_due`] is one pass, for tests to call.

use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};

use super::accept::{AcceptError, Accepted, Acceptor, JobRequest};
use crate::db::Pool;
use crate::domain::queue::Dispatch;
use crate::domain::schedule::{CronExpr, ScheduleId, TimeZone};
use crate::models::schedule::{self, Schedule};

/// How often a process looks for due schedules: well under a second, so a schedule with
/// a seconds field fires each second even when a pass runs late.
pub const SCHEDULER_INTERVAL: Duration = Duration::from_millis(500);
/// A tick this far past when its turn comes was missed (no process ran): it is not
/// fired on its own. Anything later is only a late pass, and fires in its turn.
pub const MISSED_AFTER: Duration = Duration::from_secs(5);
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

/// The due schedules, their owners taking turns: each owner's longest overdue first, then
/// each one's next, so one owner's many due schedules do not go before everyone else's.
fn in_turns(due: Vec<Schedule>) -> Vec<Schedule> {
    let mut owners: Vec<(Option<String>, std::collections::VecDeque<Schedule>)> = Vec::new();
    for schedule in due {
        match owners.iter_mut().find(|(o, _)| *o == schedule.created_by) {
            Some((_, theirs)) => theirs.push_back(schedule),
            None => owners.push((schedule.created_by.clone(), [schedule].into())),
        }
    }
    let mut turns = Vec::new();
    while owners.iter().any(|(_, theirs)| !theirs.is_empty()) {
        for (_, theirs) in &mut owners {
            turns.extend(theirs.pop_front());
        }
    }
    turns
}

/// When each schedule's refused tick was last logged as a warning: a schedule whose job
/// is refused tick after tick (its owner at a cap) says so once a minute, not once a tick.
struct RefusalLog(std::sync::Mutex<std::collections::HashMap<ScheduleId, std::time::Instant>>);

impl RefusalLog {
    const EVERY: Duration = Duration::from_secs(60);

    fn first_this_minute(&self, id: ScheduleId) -> bool {
        let mut logged = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded by the schedules there are; forget what is a minute old.
        logged.retain(|_, at| at.elapsed() < Self::EVERY);
        match logged.contains_key(&id) {
            true => false,
            false => {
                logged.insert(id, std::time::Instant::now());
                true
            }
        }
    }
}

static REFUSALS_LOGGED: std::sync::LazyLock<RefusalLog> =
    std::sync::LazyLock::new(|| RefusalLog(Default::default()));

/// One pass: fires every due schedule once and moves it on. Returns how many jobs this
/// process created (ticks another process took are not counted).
pub async fn fire_due(pool: &Pool, jobs: &Acceptor) -> anyhow::Result<usize> {
    let db = pool.clone();
    let due = actix_web::web::block(move || -> anyhow::Result<Vec<Schedule>> {
        Ok(schedule::due(&mut *db.get()?, DUE_BATCH)?)
    })
    .await??;
    let mut fired = 0;
    for schedule in in_turns(due) {
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
        dispatch: Dispatch {
            queue: schedule.queue.clone(),
            priority: schedule.priority,
            run_at: None,
        },
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
            | AcceptError::KeyReused
            | AcceptError::Duplicate
            | AcceptError::TooManyActive { .. }
            | AcceptError::QueueFull { .. }
            | AcceptError::DiskFull { .. }),
        ) => {
            let detail = match &e {
                AcceptError::Invalid(fields) => format!(": {fields:?}"),
                _ => String::new(),
            };
            let message = format!(
                "schedule {} ({}): tick {tick}Z skipped, its job is refused: {e}{detail}",
                schedule.name, schedule.id
            );
            match REFUSALS_LOGGED.first_this_minute(schedule.id) {
                true => log::warn!("{message} (said once a minute per schedule)"),
                false => log::debug!("{message}"),
            }
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

/// Moves `schedule` from the tick just fired to the next tick it owes.
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
        let next =
            owed_after(&cron, zone, fired_at.and_utc(), now.and_utc()).map(|t| t.naive_utc());
        if next.is_none() {
            log::warn!("schedule {name}: no tick after {now}Z; disabling it");
        }
        schedule::advance(&mut conn, &id, fired_at, next)?;
        Ok(())
    })
    .await?
}

/// The tick a schedule owes after firing `fired`, at `now`: the next one, unless that is
/// more than [`MISSED_AFTER`] past; then the first one after `now`.
fn owed_after(
    cron: &CronExpr,
    zone: TimeZone,
    fired: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let missed_before = now - chrono::Duration::from_std(MISSED_AFTER).expect("a few seconds");
    match cron.next_after(zone, fired) {
        Some(next) if next >= missed_before => Some(next),
        // Ticks went by while no process ran: not owed one by one.
        _ => cron.next_after(zone, now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, h, m, s).unwrap()
    }

    #[test]
    fn a_late_pass_still_owes_the_next_tick() {
        let every_second = CronExpr::parse("* * * * * *").unwrap();
        // Tick 12:00:00 fired at 12:00:01.5: 12:00:01 is still owed.
        let now = at(12, 0, 1) + chrono::Duration::milliseconds(500);
        assert_eq!(
            owed_after(&every_second, TimeZone::UTC, at(12, 0, 0), now),
            Some(at(12, 0, 1))
        );
    }

    #[test]
    fn missed_ticks_are_not_owed_one_by_one() {
        let hourly = CronExpr::parse("0 * * * *").unwrap();
        // Down from 09:00 to 12:30: the 09:00 tick fires, then 13:00 is next.
        assert_eq!(
            owed_after(&hourly, TimeZone::UTC, at(9, 0, 0), at(12, 30, 0)),
            Some(at(13, 0, 0))
        );
        // On time: the next hour.
        assert_eq!(
            owed_after(&hourly, TimeZone::UTC, at(9, 0, 0), at(9, 0, 0)),
            Some(at(10, 0, 0))
        );
        let every_second = CronExpr::parse("* * * * * *").unwrap();
        assert_eq!(
            owed_after(&every_second, TimeZone::UTC, at(12, 0, 0), at(12, 1, 0)),
            Some(at(12, 1, 1))
        );
    }
}
