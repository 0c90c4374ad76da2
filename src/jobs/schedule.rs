//! Making, changing and removing schedules, the same for the HTTP API and the CLI.
//!
//! - The job a schedule starts is checked by its kind when the schedule is saved
//!   ([`JobTemplate::check`]), so bad parameters are refused then, not at 3 a.m.
//! - Names are unique per owner (by a unique index; a taken name is
//!   [`ScheduleError::NameTaken`]).
//! - A member's schedule ticks at most once a `ROSTER_MIN_SCHEDULE_INTERVAL_SECS`, and a
//!   member owns at most `ROSTER_MAX_SCHEDULES_PER_USER` ([`ScheduleLimits`]).
//! - The next tick is computed on the database's clock whenever what decides it changes
//!   (cron, zone, or being enabled again): a schedule switched back on starts from now
//!   and does not fire for the ticks it spent disabled.

use std::time::Duration;

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use serde_json::{Map, Value};

use super::accept::AcceptError;
use super::kind::Registry;
use crate::config::Settings;
use crate::db::DbConnection;
use crate::domain::job::JobKind;
use crate::domain::queue::{Priority, QueueName};
use crate::domain::schedule::{CronExpr, ScheduleId, ScheduleName, TimeZone};
use crate::error::FieldErrors;
use crate::models::schedule::{self, NewSchedule, Schedule, ScheduleChanges};

/// A kind of job and its parameters, checked by the kind: what every tick accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct JobTemplate {
    kind: JobKind,
    params: Map<String, Value>,
}

impl JobTemplate {
    /// Checks that `kind` exists here and may be scheduled, and that it takes `params`;
    /// errors name the field (`kind`, or `params.<name>`). Keeps the parameters as the
    /// kind normalised them, so a schedule shows what its jobs will get.
    pub fn check(
        kinds: &Registry,
        kind: JobKind,
        params: &Map<String, Value>,
    ) -> Result<Self, FieldErrors> {
        let kind_error = |e: AcceptError| FieldErrors::from([("kind".to_owned(), e.to_string())]);
        let handler = kinds
            .get(kind)
            .ok_or_else(|| kind_error(AcceptError::UnknownKind(kind)))?;
        if !handler.schedulable() {
            return Err(kind_error(AcceptError::NotSchedulable(kind)));
        }
        let checked = handler.accept(params).map_err(|fields| {
            fields
                .into_iter()
                .map(|(field, message)| (format!("params.{field}"), message))
                .collect::<FieldErrors>()
        })?;
        let params = match checked {
            Value::Object(map) => map,
            // A kind whose parameters are not an object takes none from a schedule.
            _ => Map::new(),
        };
        Ok(Self { kind, params })
    }

    pub fn kind(&self) -> JobKind {
        self.kind
    }

    pub fn params(&self) -> &Map<String, Value> {
        &self.params
    }
}

/// What a member's schedules are held to (admins' and the command line's are not).
#[derive(Debug, Clone, Copy)]
pub struct ScheduleLimits {
    /// The shortest interval between two ticks (`ROSTER_MIN_SCHEDULE_INTERVAL_SECS`).
    pub min_interval: Duration,
    /// Schedules one owner may have (`ROSTER_MAX_SCHEDULES_PER_USER`).
    pub max_per_owner: u32,
}

impl ScheduleLimits {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            min_interval: Duration::from_secs(settings.min_schedule_interval_secs),
            max_per_owner: settings.max_schedules_per_user,
        }
    }

    /// Refuses a cron that ticks more often than the shortest interval, looking at its
    /// next ticks from now (a cron's gaps repeat within a few dozen ticks, and every
    /// standard field is at least a minute).
    fn check_interval(&self, cron: &CronExpr, zone: TimeZone) -> Result<(), ScheduleError> {
        const TICKS: usize = 64;
        let Some(mut at) = cron.next_after(zone, chrono::Utc::now()) else {
            return Ok(());
        };
        for _ in 0..TICKS {
            let Some(next) = cron.next_after(zone, at) else {
                return Ok(());
            };
            let gap = (next - at).to_std().unwrap_or_default();
            if gap < self.min_interval {
                return Err(ScheduleError::invalid(
                    "cron",
                    format!(
                        "ticks more often than once every {} s (ROSTER_MIN_SCHEDULE_INTERVAL_SECS)",
                        self.min_interval.as_secs()
                    ),
                ));
            }
            at = next;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("some fields are invalid")]
    Invalid(FieldErrors),
    #[error("you have {0} schedules already (ROSTER_MAX_SCHEDULES_PER_USER); remove one first")]
    TooMany(u32),
    #[error("a schedule named {0} exists already")]
    NameTaken(ScheduleName),
    #[error("no such schedule")]
    NotFound,
    #[error(transparent)]
    Database(#[from] DieselError),
}

impl ScheduleError {
    fn invalid(field: &str, message: impl Into<String>) -> Self {
        ScheduleError::Invalid(FieldErrors::from([(field.to_owned(), message.into())]))
    }

    /// A unique violation on a write that set `name` means the name is taken.
    fn from_write(e: DieselError, name: Option<&ScheduleName>) -> Self {
        match (e, name) {
            (DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _), Some(name)) => {
                ScheduleError::NameTaken(name.clone())
            }
            (e, _) => e.into(),
        }
    }
}

/// The first tick after the database's time now, or why there is none.
fn next_tick(
    conn: &mut DbConnection,
    cron: &CronExpr,
    zone: TimeZone,
) -> Result<chrono::NaiveDateTime, ScheduleError> {
    let now = schedule::now(conn)?;
    cron.next_after(zone, now.and_utc())
        .map(|t| t.naive_utc())
        .ok_or_else(|| ScheduleError::invalid("cron", "never matches a time from now on"))
}

/// A schedule someone asks for.
#[derive(Debug, Clone)]
pub struct ScheduleSpec {
    pub name: ScheduleName,
    pub cron: CronExpr,
    pub timezone: TimeZone,
    pub job: JobTemplate,
    pub enabled: bool,
    pub created_by: Option<String>,
    /// What a member's schedule is held to; `None` for an admin's or the command line's.
    pub limits: Option<ScheduleLimits>,
    /// Where its jobs go (`None`: the firing process's first queue) and their priority.
    pub queue: Option<QueueName>,
    pub priority: Priority,
}

/// Records a new schedule, due at its first tick from now.
pub fn create(conn: &mut DbConnection, spec: ScheduleSpec) -> Result<Schedule, ScheduleError> {
    if let Some(limits) = &spec.limits {
        limits.check_interval(&spec.cron, spec.timezone)?;
        if let Some(owner) = &spec.created_by {
            if schedule::count_owned(conn, owner)? >= i64::from(limits.max_per_owner) {
                return Err(ScheduleError::TooMany(limits.max_per_owner));
            }
        }
    }
    let next_fire_at = next_tick(conn, &spec.cron, spec.timezone)?;
    let new = NewSchedule {
        id: ScheduleId::new(),
        name: spec.name,
        cron: spec.cron,
        timezone: spec.timezone,
        kind: spec.job.kind,
        params: spec.job.params,
        enabled: spec.enabled,
        next_fire_at,
        created_by: spec.created_by,
        queue: spec.queue,
        priority: spec.priority,
    };
    schedule::insert(conn, &new).map_err(|e| ScheduleError::from_write(e, Some(&new.name)))
}

/// A change to a schedule; `None` keeps what is there. Its kind cannot change (its
/// parameters belong to it): make another schedule instead.
#[derive(Debug, Clone, Default)]
pub struct ScheduleEdit {
    pub name: Option<ScheduleName>,
    pub cron: Option<CronExpr>,
    pub timezone: Option<TimeZone>,
    /// Checked by the schedule's kind.
    pub params: Option<Map<String, Value>>,
    pub enabled: Option<bool>,
    /// `Some(None)`: back to the firing process's first queue.
    pub queue: Option<Option<QueueName>>,
    pub priority: Option<Priority>,
}

/// Applies `edit` to the schedule `id`, held to `limits` (a member's); the schedule as it
/// now is.
pub fn change(
    conn: &mut DbConnection,
    kinds: &Registry,
    id: &ScheduleId,
    edit: ScheduleEdit,
    limits: Option<&ScheduleLimits>,
) -> Result<Schedule, ScheduleError> {
    let current = schedule::find(conn, id)?.ok_or(ScheduleError::NotFound)?;
    if let (Some(limits), true) = (limits, edit.cron.is_some() || edit.timezone.is_some()) {
        let cron = edit.cron.as_ref().unwrap_or(&current.cron);
        limits.check_interval(cron, edit.timezone.unwrap_or(current.timezone))?;
    }
    let mut changes = ScheduleChanges::default();
    if let Some(params) = &edit.params {
        let job =
            JobTemplate::check(kinds, current.kind, params).map_err(ScheduleError::Invalid)?;
        changes = changes.params(job.params());
    }
    if let Some(name) = &edit.name {
        changes = changes.name(name);
    }
    if let Some(cron) = &edit.cron {
        changes = changes.cron(cron);
    }
    if let Some(zone) = edit.timezone {
        changes = changes.timezone(zone);
    }
    changes.enabled = edit.enabled;
    changes.queue = edit
        .queue
        .as_ref()
        .map(|q| q.as_ref().map(|q| q.as_str().to_owned()));
    changes.priority = edit.priority.map(Priority::get);
    let switched_on = edit.enabled == Some(true) && !current.enabled;
    if edit.cron.is_some() || edit.timezone.is_some() || switched_on {
        let cron = edit.cron.as_ref().unwrap_or(&current.cron);
        let zone = edit.timezone.unwrap_or(current.timezone);
        changes.next_fire_at = Some(next_tick(conn, cron, zone)?);
    }
    schedule::update(conn, id, &changes)
        .map_err(|e| ScheduleError::from_write(e, edit.name.as_ref()))?
        .ok_or(ScheduleError::NotFound)
}

/// Removes the schedule `id` (the jobs it fired stay).
pub fn remove(conn: &mut DbConnection, id: &ScheduleId) -> Result<(), ScheduleError> {
    if schedule::delete(conn, id)? {
        Ok(())
    } else {
        Err(ScheduleError::NotFound)
    }
}
