//! `/api/schedules`: list, create, read, change and delete periodic jobs.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use serde_json::{Map, Value};

use super::input::{self, Body, Fields};
use super::with_conn;
use crate::access::Caller;
use crate::domain::job::JobKind;
use crate::domain::queue::{Dispatch, Priority, QueueName};
use crate::domain::schedule::{CronExpr, ScheduleId, ScheduleName, TimeZone};
use crate::error::ApiError;
use crate::jobs::schedule::{
    self as rules, JobTemplate, ScheduleEdit, ScheduleLimits, ScheduleSpec,
};
use crate::models::schedule::{self, ScheduleView};
use crate::routes::AppState;

#[derive(Serialize)]
struct Items {
    items: Vec<ScheduleView>,
}

/// A schedule id from the path; anything that is not one names no schedule.
fn schedule_id(raw: &str) -> Result<ScheduleId, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound("schedule"))
}

/// The fields a body may set, each read if present.
struct Given {
    name: Option<ScheduleName>,
    cron: Option<CronExpr>,
    timezone: Option<TimeZone>,
    kind: Option<JobKind>,
    params: Option<Map<String, Value>>,
    enabled: Option<bool>,
    /// `Some(None)`: `null`, the firing process's first queue.
    queue: Option<Option<QueueName>>,
    priority: Option<Priority>,
}

/// The fields a schedule's body may have (`kind` only when it is made).
const SCHEDULE_FIELDS: [&str; 8] = [
    "name", "cron", "timezone", "kind", "params", "enabled", "queue", "priority",
];

/// A string field of `body`, parsed into its type if present.
fn text<T>(
    fields: &mut Fields,
    body: &Map<String, Value>,
    name: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Option<T> {
    body.get(name)
        .and_then(|v| fields.check(name, input::string(v).and_then(&parse)))
}

fn given(fields: &mut Fields, body: &Map<String, Value>) -> Given {
    let params = match body.get("params") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map.clone()),
        Some(_) => {
            fields.fail("params", "must be a JSON object");
            None
        }
    };
    let enabled = body.get("enabled").and_then(|v| {
        fields.check(
            "enabled",
            v.as_bool()
                .ok_or_else(|| "must be true or false".to_owned()),
        )
    });
    // Queue and priority as a job request's, by the same rules.
    let mut dispatch_fields = body.clone();
    dispatch_fields.retain(|k, _| k == "queue" || k == "priority");
    let dispatch = fields
        .check_all(Dispatch::take(&mut dispatch_fields, chrono::Utc::now()))
        .unwrap_or_default();
    let queue = match body.get("queue") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(_) => dispatch.queue.map(Some),
    };
    Given {
        queue,
        priority: body.contains_key("priority").then_some(dispatch.priority),
        name: text(fields, body, "name", ScheduleName::parse),
        cron: text(fields, body, "cron", CronExpr::parse),
        timezone: text(fields, body, "timezone", TimeZone::parse),
        kind: text(fields, body, "kind", str::parse::<JobKind>),
        params,
        enabled,
    }
}

/// A schedule, if the caller may see it: another member's is "not found".
async fn load(
    state: &AppState,
    caller: &Caller,
    raw: &str,
) -> Result<schedule::Schedule, ApiError> {
    let id = schedule_id(raw)?;
    with_conn(state, move |conn| Ok(schedule::find(conn, &id)?))
        .await?
        .filter(|s| caller.may_see(s.created_by.as_deref()))
        .ok_or(ApiError::NotFound("schedule"))
}

pub async fn list(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let owner = caller.owner_filter();
    let visible = with_conn(&state, move |conn| {
        Ok(schedule::list_visible(conn, owner.as_deref())?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(Items {
        items: visible.iter().map(|s| s.view()).collect(),
    }))
}

/// What the caller's schedules are held to: none for those who see all (admins).
fn limits(caller: &Caller, state: &AppState) -> Option<ScheduleLimits> {
    (!caller.sees_all()).then(|| ScheduleLimits::from_settings(&state.settings))
}

/// `POST /api/schedules` `{name, cron, timezone?, kind, params?, enabled?, queue?, priority?}`.
pub async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::default();
    fields.only(&body, &SCHEDULE_FIELDS);
    let given = given(&mut fields, &body);
    let name = fields.require("name", given.name);
    let cron = fields.require("cron", given.cron);
    let kind = fields.require("kind", given.kind);
    let job = kind.and_then(|kind| {
        let params = given.params.unwrap_or_default();
        fields.check_all(JobTemplate::check(state.jobs.kinds(), kind, &params))
    });
    fields.finish()?;
    let (Some(name), Some(cron), Some(job)) = (name, cron, job) else {
        unreachable!("required fields are checked");
    };
    let spec = ScheduleSpec {
        name,
        cron,
        timezone: given.timezone.unwrap_or(state.settings.timezone),
        job,
        enabled: given.enabled.unwrap_or(true),
        created_by: caller.created_by(),
        limits: limits(&caller, &state),
        queue: given.queue.flatten(),
        priority: given.priority.unwrap_or_default(),
    };
    let created = with_conn(&state, move |conn| Ok(rules::create(conn, spec)?)).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/schedules/{}", created.id)))
        .json(created.view()))
}

pub async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let found = load(&state, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(found.view()))
}

/// `PATCH /api/schedules/{id}` with any of `{name, cron, timezone, params, enabled, queue,
/// priority}`.
pub async fn patch(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let id = load(&state, &caller, &path).await?.id;
    let mut fields = Fields::default();
    fields.only(&body, &SCHEDULE_FIELDS);
    let given = given(&mut fields, &body);
    if body.contains_key("kind") {
        fields.fail(
            "kind",
            "cannot be changed (the parameters belong to it); make another schedule",
        );
    }
    fields.finish()?;
    let edit = ScheduleEdit {
        name: given.name,
        cron: given.cron,
        timezone: given.timezone,
        params: given.params,
        enabled: given.enabled,
        queue: given.queue,
        priority: given.priority,
    };
    let kinds = state.jobs.kinds().clone();
    let limits = limits(&caller, &state);
    let changed = with_conn(&state, move |conn| {
        Ok(rules::change(conn, &kinds, &id, edit, limits.as_ref())?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(changed.view()))
}

pub async fn delete(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = load(&state, &caller, &path).await?.id;
    with_conn(&state, move |conn| Ok(rules::remove(conn, &id)?)).await?;
    Ok(HttpResponse::NoContent().finish())
}
