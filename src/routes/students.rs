//! `/api/students`: list, create, read, replace, change and delete students.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use serde_json::{Map, Value};

use super::input::{self, Body, Fields, Query};
use super::with_conn;
use crate::access::Caller;
use crate::domain::student::{age_range, Age, StudentName, MAX_NAME_CHARS};
use crate::error::ApiError;
use crate::models::job::now;
use crate::models::student::{self, NewStudent, StudentChanges, StudentFilter, StudentView};
use crate::routes::AppState;

pub const MAX_PER_PAGE: i64 = 1000;
pub const DEFAULT_PER_PAGE: i64 = 50;

#[derive(Serialize)]
struct Page {
    items: Vec<StudentView>,
    page: i64,
    per_page: i64,
    total: i64,
}

/// A student id from the path; anything that is not one names no student.
fn student_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or(ApiError::NotFound("student"))
}

pub async fn list(
    _caller: Caller,
    state: web::Data<AppState>,
    query: Query,
) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::default();
    fields.only_params(&query, &["page", "per_page", "min_age", "max_age", "q"]);
    let param = |name: &str| query.get(name).map(|raw| input::int_param(raw));
    let page = fields
        .check(
            "page",
            param("page").unwrap_or(Ok(1)).and_then(|p| {
                (1..=1_000_000)
                    .contains(&p)
                    .then_some(p)
                    .ok_or_else(|| "must be an integer from 1 to 1000000".to_owned())
            }),
        )
        .unwrap_or(1);
    let per_page = fields
        .check(
            "per_page",
            param("per_page")
                .unwrap_or(Ok(DEFAULT_PER_PAGE))
                .and_then(|p| {
                    (1..=MAX_PER_PAGE)
                        .contains(&p)
                        .then_some(p)
                        .ok_or_else(|| format!("must be an integer from 1 to {MAX_PER_PAGE}"))
                }),
        )
        .unwrap_or(DEFAULT_PER_PAGE);
    let (min_age, max_age) = age_range(&mut fields, param("min_age"), param("max_age"));
    let name_contains = query
        .get("q")
        .map(|q| q.trim().to_owned())
        .filter(|q| !q.is_empty());
    if name_contains
        .as_ref()
        .is_some_and(|q| q.chars().count() > MAX_NAME_CHARS)
    {
        fields.fail("q", format!("must be at most {MAX_NAME_CHARS} characters"));
    }
    if name_contains
        .as_ref()
        .is_some_and(|q| q.chars().any(char::is_control))
    {
        // No name has one, and PostgreSQL refuses a NUL in any text.
        fields.fail("q", "must not contain control characters");
    }
    fields.finish()?;

    let filter = StudentFilter {
        min_age,
        max_age,
        name_contains,
    };
    let counts = state.student_counts.clone();
    let (items, total) = with_conn(&state, move |conn| {
        let total = counts.get_or_count(&filter, || student::count(conn, &filter))?;
        let items = student::page(conn, &filter, page, per_page)?;
        Ok((items, total))
    })
    .await?;
    Ok(HttpResponse::Ok().json(Page {
        items: items.into_iter().map(StudentView::from).collect(),
        page,
        per_page,
        total,
    }))
}

/// The name and age fields of a body; `required` for create and replace.
fn student_fields(
    body: &Map<String, Value>,
    required: bool,
) -> Result<(Option<StudentName>, Option<Age>), ApiError> {
    let mut fields = Fields::default();
    fields.only(body, &["name", "age"]);
    let name = body
        .get("name")
        .and_then(|v| fields.check("name", input::string(v).and_then(StudentName::parse)));
    let age = body.get("age").and_then(|v| {
        fields.check(
            "age",
            input::integer(v)
                .map_err(|_| format!("must be an integer from {} to {}", Age::MIN, Age::MAX))
                .and_then(Age::new),
        )
    });
    let (name, age) = if required {
        (fields.require("name", name), fields.require("age", age))
    } else {
        (name, age)
    };
    fields.finish()?;
    Ok((name, age))
}

pub async fn create(
    _caller: Caller,
    state: web::Data<AppState>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let (Some(name), Some(age)) = student_fields(&body, true)? else {
        unreachable!("required fields are checked");
    };
    let created = with_conn(&state, move |conn| {
        Ok(student::insert(conn, &NewStudent::new(name, age, now()))?)
    })
    .await?;
    state.student_counts.invalidate();
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/students/{}", created.id)))
        .json(StudentView::from(created)))
}

pub async fn get(
    _caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = student_id(&path)?;
    let found = with_conn(&state, move |conn| Ok(student::find(conn, id)?)).await?;
    let found = found.ok_or(ApiError::NotFound("student"))?;
    Ok(HttpResponse::Ok().json(StudentView::from(found)))
}

/// PUT replaces (both fields required); PATCH changes the fields given.
async fn change(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Body,
    replace: bool,
) -> Result<HttpResponse, ApiError> {
    let id = student_id(&path)?;
    let (name, age) = student_fields(&body, replace)?;
    let changes = StudentChanges {
        name: name.map(StudentName::into_inner),
        age: age.map(Age::get),
        updated_at: Some(now()),
    };
    let updated = with_conn(&state, move |conn| Ok(student::update(conn, id, &changes)?))
        .await?
        .ok_or(ApiError::NotFound("student"))?;
    state.student_counts.invalidate();
    Ok(HttpResponse::Ok().json(StudentView::from(updated)))
}

pub async fn replace(
    _caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    change(state, path, body, true).await
}

pub async fn patch(
    _caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    change(state, path, body, false).await
}

pub async fn delete(
    _caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = student_id(&path)?;
    if with_conn(&state, move |conn| Ok(student::delete(conn, id)?)).await? {
        state.student_counts.invalidate();
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound("student"))
    }
}
