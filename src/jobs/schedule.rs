//! Making, changing and removing schedules, the same for the HTTP API and the CLI.
//!
//! - The job a schedule starts is checked by its kind when the schedule is saved
//!   ([`JobTemplate::check`]), so bad parameters are refused then, not at 3 a.m.
//! - Names are unique (by a unique index; a taken name is [`ScheduleError::NameTaken`]).
//! - The next tick is computed on the database's clock whenever what decides it changes
//!   (cron, zone, or being enabled again): a schedule switched back on starts from now
//!   and does not fire for the ticks it spent disabled.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use serde_json::{Map, Value};

use super::accept::AcceptError;
use super::kind::Registry;
use crate::db::DbConnection;
use crate::domain::job::JobKind;
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

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("some fields are invalid")]
    Invalid(FieldErrors),
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
}

/// Records a new schedule, due at its first tick from now.
pub fn create(conn: &mut DbConnection, spec: ScheduleSpec) -> Result<Schedule, ScheduleError> {
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
}

/// Applies `edit` to the schedule `id`; the schedule as it now is.
pub fn change(
    conn: &mut DbConnection,
    kinds: &Registry,
    id: &ScheduleId,
    edit: ScheduleEdit,
) -> Result<Schedule, ScheduleError> {
    let current = schedule::find(conn, id)?.ok_or(ScheduleError::NotFound)?;
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
