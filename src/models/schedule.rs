//! The `schedules` table: periodic jobs, each with the tick it fires next.
//!
//! - Rows are read into typed fields here ([`Schedule`]); a row whose cron, zone or kind
//!   no longer parses is a corrupt row, not a schedule.
//! - Whether a tick is due is decided on the database's [`clock`], as leases are.
//! - [`advance`] moves a schedule past a tick only if no one moved it already, so that
//!   many processes running the scheduler agree on every tick.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde_json::{Map, Value};

use super::clock;
use crate::db::DbConnection;
use crate::domain::job::JobKind;
use crate::domain::queue::{Priority, QueueName};
use crate::domain::schedule::{CronExpr, ScheduleId, ScheduleName, TimeZone};
use crate::on_backend;
use crate::schema::schedules;

/// A schedule as stored, column for column; only [`Schedule`] leaves this module.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = schedules)]
struct ScheduleRow {
    id: String,
    name: String,
    cron: String,
    timezone: String,
    kind: String,
    params: String,
    enabled: bool,
    next_fire_at: NaiveDateTime,
    last_fired_at: Option<NaiveDateTime>,
    created_by: Option<String>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    queue: Option<String>,
    priority: i32,
}

/// A schedule, read into typed fields. Times are UTC.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub id: ScheduleId,
    pub name: ScheduleName,
    pub cron: CronExpr,
    pub timezone: TimeZone,
    pub kind: JobKind,
    /// The parameters of every job it starts, as the kind checked them.
    pub params: Map<String, Value>,
    pub enabled: bool,
    /// The tick it fires next.
    pub next_fire_at: NaiveDateTime,
    /// When it last fired a job (the database's time then, not the tick's).
    pub last_fired_at: Option<NaiveDateTime>,
    pub created_by: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    /// Where its jobs go (`None`: the firing process's first queue) and their priority.
    pub queue: Option<QueueName>,
    pub priority: Priority,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(format!("a schedule row's {what}: {e}").into())
}

impl TryFrom<ScheduleRow> for Schedule {
    type Error = diesel::result::Error;

    fn try_from(row: ScheduleRow) -> QueryResult<Schedule> {
        let params = match serde_json::from_str(&row.params) {
            Ok(Value::Object(map)) => map,
            Ok(other) => return Err(corrupt("params", format!("not an object: {other}"))),
            Err(e) => return Err(corrupt("params", e)),
        };
        Ok(Schedule {
            id: row.id.parse().map_err(|e| corrupt("id", e))?,
            name: ScheduleName::parse(&row.name).map_err(|e| corrupt("name", e))?,
            cron: CronExpr::parse(&row.cron).map_err(|e| corrupt("cron", e))?,
            timezone: TimeZone::parse(&row.timezone).map_err(|e| corrupt("timezone", e))?,
            kind: row.kind.parse().map_err(|e| corrupt("kind", e))?,
            params,
            enabled: row.enabled,
            next_fire_at: row.next_fire_at,
            last_fired_at: row.last_fired_at,
            created_by: row.created_by,
            created_at: row.created_at,
            updated_at: row.updated_at,
            queue: row
                .queue
                .map(|q| q.parse().map_err(|e| corrupt("queue", e)))
                .transpose()?,
            priority: Priority::new(row.priority.into()).map_err(|e| corrupt("priority", e))?,
        })
    }
}

fn typed(rows: Vec<ScheduleRow>) -> QueryResult<Vec<Schedule>> {
    rows.into_iter().map(Schedule::try_from).collect()
}

fn typed_one(row: Option<ScheduleRow>) -> QueryResult<Option<Schedule>> {
    row.map(Schedule::try_from).transpose()
}

/// A schedule to record.
#[derive(Debug, Clone)]
pub struct NewSchedule {
    pub id: ScheduleId,
    pub name: ScheduleName,
    pub cron: CronExpr,
    pub timezone: TimeZone,
    pub kind: JobKind,
    pub params: Map<String, Value>,
    pub enabled: bool,
    pub next_fire_at: NaiveDateTime,
    pub created_by: Option<String>,
    pub queue: Option<QueueName>,
    pub priority: Priority,
}

#[derive(Insertable)]
#[diesel(table_name = schedules)]
struct ScheduleInsert<'a> {
    id: String,
    name: &'a str,
    cron: &'a str,
    timezone: &'a str,
    kind: &'a str,
    params: String,
    enabled: bool,
    next_fire_at: NaiveDateTime,
    created_by: Option<&'a str>,
    queue: Option<&'a str>,
    priority: i32,
}

/// The database's time now: the clock every tick is compared with.
pub fn now(conn: &mut DbConnection) -> QueryResult<NaiveDateTime> {
    clock::read(conn)
}

/// Records a schedule. Fails with a unique violation when its name is taken.
pub fn insert(conn: &mut DbConnection, new: &NewSchedule) -> QueryResult<Schedule> {
    let row = ScheduleInsert {
        id: new.id.to_string(),
        name: new.name.as_str(),
        cron: new.cron.as_str(),
        timezone: new.timezone.name(),
        kind: new.kind.as_str(),
        params: Value::Object(new.params.clone()).to_string(),
        enabled: new.enabled,
        next_fire_at: new.next_fire_at,
        created_by: new.created_by.as_deref(),
        queue: new.queue.as_ref().map(QueueName::as_str),
        priority: new.priority.get(),
    };
    let now = clock::now(conn);
    let row: ScheduleRow = on_backend!(conn, |c| diesel::insert_into(schedules::table)
        .values((
            &row,
            schedules::created_at.eq(now),
            schedules::updated_at.eq(now)
        ))
        .returning(schedules::all_columns)
        .get_result(c))?;
    Schedule::try_from(row)
}

/// Every schedule, by name.
pub fn list(conn: &mut DbConnection) -> QueryResult<Vec<Schedule>> {
    list_visible(conn, None)
}

/// The schedules `owner` owns (`None`: every schedule), by name: read from the owner's
/// index, not filtered from everyone's.
pub fn list_visible(conn: &mut DbConnection, owner: Option<&str>) -> QueryResult<Vec<Schedule>> {
    let mut query = schedules::table
        .order(schedules::name.asc())
        .select(ScheduleRow::as_select())
        .into_boxed();
    if let Some(owner) = owner {
        query = query.filter(schedules::created_by.eq(owner.to_owned()));
    }
    typed(query.load(conn)?)
}

/// How many schedules `owner` owns.
pub fn count_owned(conn: &mut DbConnection, owner: &str) -> QueryResult<i64> {
    schedules::table
        .filter(schedules::created_by.eq(owner))
        .count()
        .get_result(conn)
}

pub fn find(conn: &mut DbConnection, id: &ScheduleId) -> QueryResult<Option<Schedule>> {
    typed_one(
        schedules::table
            .find(id.to_string())
            .select(ScheduleRow::as_select())
            .first(conn)
            .optional()?,
    )
}

pub fn find_by_name(conn: &mut DbConnection, name: &ScheduleName) -> QueryResult<Option<Schedule>> {
    typed_one(
        schedules::table
            .filter(schedules::name.eq(name.as_str()))
            .select(ScheduleRow::as_select())
            .first(conn)
            .optional()?,
    )
}

/// What a change sets; `None` leaves a column as it is.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = schedules)]
pub struct ScheduleChanges {
    pub name: Option<String>,
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub params: Option<String>,
    pub enabled: Option<bool>,
    pub next_fire_at: Option<NaiveDateTime>,
    /// `Some(None)` sets it back to the firing process's first queue.
    pub queue: Option<Option<String>>,
    pub priority: Option<i32>,
}

impl ScheduleChanges {
    pub fn name(mut self, name: &ScheduleName) -> Self {
        self.name = Some(name.as_str().to_owned());
        self
    }

    pub fn cron(mut self, cron: &CronExpr) -> Self {
        self.cron = Some(cron.as_str().to_owned());
        self
    }

    pub fn timezone(mut self, zone: TimeZone) -> Self {
        self.timezone = Some(zone.name().to_owned());
        self
    }

    pub fn params(mut self, params: &Map<String, Value>) -> Self {
        self.params = Some(Value::Object(params.clone()).to_string());
        self
    }
}

/// Applies `changes` (and stamps `updated_at`); the schedule as it now is, if it exists.
/// Fails with a unique violation when a new name is taken.
pub fn update(
    conn: &mut DbConnection,
    id: &ScheduleId,
    changes: &ScheduleChanges,
) -> QueryResult<Option<Schedule>> {
    let now = clock::now(conn);
    let row: Option<ScheduleRow> = on_backend!(conn, |c| diesel::update(
        schedules::table.find(id.to_string())
    )
    .set((changes, schedules::updated_at.eq(now)))
    .returning(schedules::all_columns)
    .get_result(c)
    .optional())?;
    typed_one(row)
}

/// Deletes a schedule; whether it existed. The jobs it fired stay.
pub fn delete(conn: &mut DbConnection, id: &ScheduleId) -> QueryResult<bool> {
    Ok(diesel::delete(schedules::table.find(id.to_string())).execute(conn)? > 0)
}

/// Deletes the schedule called `name`; whether there was one.
pub fn delete_by_name(conn: &mut DbConnection, name: &ScheduleName) -> QueryResult<bool> {
    // Names are unique per owner: by name, only the schedules nobody owns (made from the
    // command line, or with access control off).
    let unowned = schedules::table
        .filter(schedules::name.eq(name.as_str()))
        .filter(schedules::created_by.is_null());
    Ok(diesel::delete(unowned).execute(conn)? > 0)
}

/// Up to `limit` enabled schedules whose next tick has come, on the database's clock;
/// the longest overdue first.
pub fn due(conn: &mut DbConnection, limit: i64) -> QueryResult<Vec<Schedule>> {
    let now = clock::now(conn);
    typed(
        schedules::table
            .filter(schedules::enabled.eq(true))
            .filter(schedules::next_fire_at.le(now))
            .order((schedules::next_fire_at.asc(), schedules::id.asc()))
            .limit(limit)
            .select(ScheduleRow::as_select())
            .load(conn)?,
    )
}

/// Moves the schedule past the tick `fired_at`: to `next`, or, when it has no next tick,
/// disabled. Only if the schedule is still at that tick: when several processes fire the
/// same tick, one moves it and the others change nothing (as does a change someone made
/// meanwhile). Returns whether this call moved it.
pub fn advance(
    conn: &mut DbConnection,
    id: &ScheduleId,
    fired_at: NaiveDateTime,
    next: Option<NaiveDateTime>,
) -> QueryResult<bool> {
    let now = clock::now_nullable(conn);
    let at_tick = schedules::table
        .filter(schedules::id.eq(id.to_string()))
        .filter(schedules::next_fire_at.eq(fired_at));
    let moved = match next {
        Some(next) => diesel::update(at_tick)
            .set((
                schedules::next_fire_at.eq(next),
                schedules::last_fired_at.eq(now),
            ))
            .execute(conn)?,
        None => diesel::update(at_tick)
            .set((
                schedules::enabled.eq(false),
                schedules::last_fired_at.eq(now),
            ))
            .execute(conn)?,
    };
    Ok(moved > 0)
}

impl Schedule {
    pub fn view(&self) -> ScheduleView {
        ScheduleView {
            id: self.id,
            name: self.name.clone(),
            cron: self.cron.clone(),
            timezone: self.timezone,
            kind: self.kind,
            params: Value::Object(self.params.clone()),
            enabled: self.enabled,
            next_fire_at: self.next_fire_at.and_utc(),
            last_fired_at: self.last_fired_at.map(|t| t.and_utc()),
            created_by: self.created_by.clone(),
            created_at: self.created_at.and_utc(),
            updated_at: self.updated_at.and_utc(),
            queue: self.queue.clone(),
            priority: self.priority,
        }
    }
}

/// A schedule as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScheduleView {
    pub id: ScheduleId,
    pub name: ScheduleName,
    pub cron: CronExpr,
    pub timezone: TimeZone,
    pub kind: JobKind,
    pub params: Value,
    pub enabled: bool,
    pub next_fire_at: DateTime<Utc>,
    pub last_fired_at: Option<DateTime<Utc>>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub queue: Option<QueueName>,
    pub priority: Priority,
}
