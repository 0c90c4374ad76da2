//! `/api/exports` and `/api/jobs`: start an export, follow, cancel and download jobs.

use actix_files::NamedFile;
use actix_web::http::header::{ContentDisposition, DispositionParam, DispositionType};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize as _;
use serde_json::{Map, Value};

use super::input::{self, Fields, Query, JSON_LIMIT};
use super::students::age_range;
use super::with_conn;
use crate::domain::job::{ExportFormat, ExportParams, ExportResult, JobId, JobKind, JobStatus};
use crate::error::ApiError;
use crate::jobs::store::ExportStore;
use crate::models::attempt;
use crate::models::job::{self, CancelOutcome, Job};
use crate::startup::AppState;

pub const MAX_LIST_LIMIT: i64 = 500;

fn job_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound("job"))
}

/// An optional JSON object body: empty means `{}`; anything else must be JSON.
async fn optional_object(
    req: &HttpRequest,
    mut payload: web::Payload,
) -> Result<Map<String, Value>, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::Malformed(format!("could not read the body: {e}")))?;
        if body.len() + chunk.len() > JSON_LIMIT {
            return Err(ApiError::TooLarge { limit: JSON_LIMIT });
        }
        body.extend_from_slice(&chunk);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let is_json = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|m| m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::Malformed("the body must be a JSON object".into())),
        Err(e) => Err(ApiError::Malformed(format!(
            "the body is not valid JSON: {e}"
        ))),
    }
}

/// Reads `{kind?, format?, min_age?, max_age?}`.
fn export_params(body: &Map<String, Value>) -> Result<ExportParams, ApiError> {
    let mut fields = Fields::default();
    fields.only(body, &["kind", "format", "min_age", "max_age"]);
    if let Some(kind) = body.get("kind") {
        fields.check(
            "kind",
            input::string(kind).and_then(|k| k.parse::<JobKind>()),
        );
    }
    let format = body
        .get("format")
        .and_then(|f| {
            fields.check(
                "format",
                input::string(f).and_then(|f| f.parse::<ExportFormat>()),
            )
        })
        .unwrap_or_default();
    let age = |name: &str| body.get(name).filter(|v| !v.is_null()).map(input::integer);
    let (min_age, max_age) = age_range(&mut fields, age("min_age"), age("max_age"));
    fields.finish()?;
    ExportParams::new(format, min_age, max_age).map_err(|e| ApiError::invalid("min_age", e))
}

pub async fn create_export(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let params = export_params(&optional_object(&req, payload).await?)?;
    let max_attempts = state.settings.max_attempts;
    // Durable accept: the row is committed before anything else happens.
    let created = with_conn(&state, move |conn| {
        Ok(job::insert_export(conn, &params, max_attempts)?)
    })
    .await?;
    log::info!(
        "job {} queued: kind={} params={}",
        created.id,
        created.kind.as_str(),
        created.params
    );
    state.events.status(&created);
    publish(&state, &created).await;
    Ok(HttpResponse::Accepted()
        .insert_header(("Location", format!("/api/jobs/{}", created.id)))
        .json(created.view()))
}

/// Tells the broker about a committed job. If that fails the job stays unpublished and
/// the sweeper's reconciler publishes it: the request still succeeds.
async fn publish(state: &AppState, created: &Job) {
    match state.broker.publish(&created.id).await {
        Ok(()) => {
            let id = created.id;
            let marked = with_conn(state, move |conn| {
                Ok(job::mark_published(conn, &[(id, 0)])?)
            })
            .await;
            if let Err(e) = marked {
                log::warn!("job {}: published, but not marked so: {e}", created.id);
            }
        }
        Err(e) => log::warn!(
            "job {}: could not publish it now ({e}); the reconciler will",
            created.id
        ),
    }
}

pub async fn list(state: web::Data<AppState>, query: Query) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::default();
    fields.only_params(&query, &["status", "limit"]);
    let status = query
        .get("status")
        .and_then(|s| fields.check("status", s.parse::<JobStatus>()));
    let limit = query
        .get("limit")
        .map(|l| {
            input::int_param(l).and_then(|l| {
                (1..=MAX_LIST_LIMIT)
                    .contains(&l)
                    .then_some(l)
                    .ok_or_else(|| format!("must be an integer from 1 to {MAX_LIST_LIMIT}"))
            })
        })
        .and_then(|l| fields.check("limit", l))
        .unwrap_or(50);
    fields.finish()?;
    let jobs = with_conn(&state, move |conn| Ok(job::recent(conn, status, limit)?)).await?;
    let items: Vec<_> = jobs.iter().map(Job::view).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items })))
}

async fn load(state: &AppState, id: JobId) -> Result<Job, ApiError> {
    with_conn(state, move |conn| Ok(job::find(conn, &id)?))
        .await?
        .ok_or(ApiError::NotFound("job"))
}

pub async fn get(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let found = load(&state, job_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(found.view()))
}

/// `GET /api/jobs/{id}/attempts`: each attempt, first first.
pub async fn attempts(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = job_id(&path)?;
    let found = with_conn(&state, move |conn| {
        Ok(match job::find(conn, &id)? {
            Some(_) => Some(attempt::for_job(conn, &id)?),
            None => None,
        })
    })
    .await?;
    let items = found.ok_or(ApiError::NotFound("job"))?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items })))
}

pub async fn cancel(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = job_id(&path)?;
    let outcome = with_conn(&state, move |conn| Ok(job::request_cancel(conn, &id)?)).await?;
    match outcome {
        CancelOutcome::Cancelled(job) => {
            log::info!("job {} cancelled before it started", job.id);
            state.events.status(&job);
            Ok(HttpResponse::Accepted().json(job.view()))
        }
        CancelOutcome::Requested(job) => {
            log::info!("job {}: cancel requested while running", job.id);
            state.events.status(&job);
            Ok(HttpResponse::Accepted().json(job.view()))
        }
        CancelOutcome::AlreadyFinished(job) => Err(ApiError::Conflict(format!(
            "the job has already ended ({})",
            job.status
        ))),
        CancelOutcome::NotFound => Err(ApiError::NotFound("job")),
    }
}

pub async fn download(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = job_id(&path)?;
    let found = load(&state, id).await?;
    if found.status != JobStatus::Succeeded {
        return Err(ApiError::Conflict(format!(
            "the export is not ready: the job is {}",
            found.status
        )));
    }
    let result = found
        .result
        .as_ref()
        .and_then(|r| ExportResult::deserialize(r).ok())
        .ok_or_else(|| anyhow::anyhow!("job {id} succeeded without a readable result"))?;
    if ExportStore::is_expired(&result) {
        return Err(ApiError::Gone("the export has expired".into()));
    }
    let params = found
        .export_params()
        .map_err(|e| anyhow::anyhow!("job {id}: unreadable params: {e}"))?;
    // Only the file the result names: never one rebuilt from the id.
    let path = state
        .exports
        .path_of(&result)
        .ok_or_else(|| anyhow::anyhow!("job {id}: its result names no export file"))?;
    let file = NamedFile::open_async(&path)
        .await
        .map_err(|_| ApiError::Gone("the export file is no longer available".into()))?;
    let filename = format!("students-by-age-{id}.{}", params.format.extension());
    let content_type = result
        .content_type
        .parse()
        .unwrap_or(mime::APPLICATION_OCTET_STREAM);
    Ok(file
        .set_content_type(content_type)
        .set_content_disposition(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(filename)],
        })
        .use_etag(true)
        .into_response(&req))
}
