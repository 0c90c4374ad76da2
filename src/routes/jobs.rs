//! `/api/exports` and `/api/jobs`: start an export; list, follow, cancel, retry, delete
//! and download jobs of every kind.

use actix_files::NamedFile;
use actix_web::http::header::{ContentDisposition, DispositionParam, DispositionType};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::{Map, Value};

use super::input::{self, Fields, Query, JSON_LIMIT};
use super::with_conn;
use crate::access::Caller;
use crate::domain::job::{JobId, JobKind, JobStatus};
use crate::domain::queue::{Dispatch, QueueName};
use crate::error::ApiError;
use crate::jobs::accept::{Accepted, JobRequest, MAX_IDEMPOTENCY_KEY};
use crate::jobs::store::ResultFile;
use crate::models::attempt;
use crate::models::job::{
    self, CancelOutcome, Cursor, DeleteOutcome, Job, JobFilter, RetryOutcome,
};
use crate::routes::AppState;

pub const MAX_LIST_LIMIT: i64 = 500;

/// A job id from a path; anything else is no job (404).
pub(crate) fn job_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound("job"))
}

/// An optional JSON object body: empty means `{}`; anything else must be JSON.
async fn optional_object(
    req: &HttpRequest,
    mut payload: web::Payload,
) -> Result<Map<String, Value>, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(crate::routes::limits::body_error)?;
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
        return Err(ApiError::UnsupportedMediaType("application/json"));
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::Malformed("the body must be a JSON object".into())),
        Err(e) => Err(ApiError::Malformed(format!(
            "the body is not valid JSON: {e}"
        ))),
    }
}

/// The `Idempotency-Key` header, if the request has one.
pub fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(raw) = req.headers().get("Idempotency-Key") else {
        return Ok(None);
    };
    let key = raw.to_str().unwrap_or_default().trim();
    let visible = key.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || !visible {
        return Err(ApiError::invalid(
            "Idempotency-Key",
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
        ));
    }
    Ok(Some(key.to_owned()))
}

/// 202 and the job's location for a new job; 200 and the same for the job a request
/// repeats.
pub fn accepted_response(accepted: &Accepted) -> HttpResponse {
    let mut response = match accepted {
        Accepted::New(_) => HttpResponse::Accepted(),
        Accepted::Existing(_) => HttpResponse::Ok(),
    };
    let job = accepted.job();
    response
        .insert_header(("Location", format!("/api/jobs/{}", job.id)))
        .json(job.view())
}

/// `POST /api/exports` `{kind?, format?, min_age?, max_age?, queue?, priority?, run_at?,
/// run_in?}`.
pub async fn create_export(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    let mut params = optional_object(&req, payload).await?;
    let kind = match params.remove("kind") {
        None => JobKind::StudentsByAge,
        Some(kind) => input::string(&kind)
            .and_then(|k| k.parse::<JobKind>())
            .and_then(|k| {
                // `noop` (benchmarks) reaches the registry, which refuses it unless
                // ROSTER_BENCH_KINDS registered it.
                matches!(k, JobKind::StudentsByAge | JobKind::Noop)
                    .then_some(k)
                    .ok_or_else(|| "must be students_by_age".to_owned())
            })
            .map_err(|e| ApiError::invalid("kind", e))?,
    };
    let dispatch = Dispatch::take(&mut params, chrono::Utc::now())?;
    let request = JobRequest {
        created_by: caller.created_by(),
        // A client that names its requests says itself which ones are the same.
        dedupe: key.is_none(),
        idempotency_key: key,
        dispatch,
        ..JobRequest::new(kind, params)
    };
    let accepted = state.jobs.accept(request).await?;
    Ok(accepted_response(&accepted))
}

/// `GET /api/jobs?status=&kind=&queue=&q=&mine=&limit=&cursor=`: newest first, a page at
/// a time.
/// `mine=true` narrows an admin's listing to the jobs they made themselves (a member only
/// ever sees their own).
pub async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    query: Query,
) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::default();
    fields.only_params(
        &query,
        &["status", "kind", "queue", "q", "mine", "limit", "cursor"],
    );
    let queue = query
        .get("queue")
        .and_then(|q| fields.check("queue", q.parse::<QueueName>()));
    let status = query
        .get("status")
        .and_then(|s| fields.check("status", s.parse::<JobStatus>()));
    let kind = query
        .get("kind")
        .and_then(|k| fields.check("kind", k.parse::<JobKind>()));
    let id_prefix = query
        .get("q")
        .map(|q| q.trim().to_owned())
        .filter(|q| !q.is_empty());
    if id_prefix
        .as_ref()
        .is_some_and(|q| q.chars().any(char::is_control))
    {
        // PostgreSQL refuses a NUL in any text; no id or error text needs one.
        fields.fail("q", "must not contain control characters");
    }
    let mine = query
        .get("mine")
        .and_then(|m| fields.check("mine", input::bool_param(m)))
        .unwrap_or(false);
    let cursor = query
        .get("cursor")
        .and_then(|c| fields.check("cursor", c.parse::<Cursor>()));
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
    let filter = JobFilter {
        status,
        kind,
        queue,
        id_prefix,
        created_by: match mine {
            true => caller.created_by(),
            false => caller.owner_filter(),
        },
    };
    let (jobs, next) = with_conn(&state, move |conn| {
        Ok(job::list(conn, &filter, cursor.as_ref(), limit)?)
    })
    .await?;
    let items: Vec<_> = jobs.iter().map(Job::view).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "items": items,
        "next_cursor": next.map(|c| c.to_string()),
    })))
}

/// The job, if the caller may see it: another member's job is "not found", like one that
/// does not exist, so that ids cannot be probed.
pub(crate) async fn load(state: &AppState, caller: &Caller, id: JobId) -> Result<Job, ApiError> {
    let owner = caller.owner_filter();
    with_conn(state, move |conn| {
        Ok(job::find_visible(conn, &id, owner.as_deref())?)
    })
    .await?
    .ok_or(ApiError::NotFound("job"))
}

pub async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let found = load(&state, &caller, job_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(found.view()))
}

/// `GET /api/jobs/{id}/attempts`: each attempt, first first.
pub async fn attempts(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = load(&state, &caller, job_id(&path)?).await?.id;
    let items = with_conn(&state, move |conn| Ok(attempt::for_job(conn, &id)?)).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items })))
}

pub async fn cancel(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (id, owner) = (job_id(&path)?, caller.owner_filter());
    let outcome = with_conn(&state, move |conn| {
        Ok(job::request_cancel(conn, &id, owner.as_deref())?)
    })
    .await?;
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

/// `POST /api/jobs/{id}/retry`: a failed or cancelled job back to the queue, through
/// admission like a new job.
pub async fn retry(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = job_id(&path)?;
    match state.jobs.retry(id, caller.owner_filter()).await? {
        RetryOutcome::Queued(job) => Ok(HttpResponse::Accepted().json(job.view())),
        RetryOutcome::NotRetryable(job) => Err(ApiError::Conflict(format!(
            "only a failed or cancelled job can be retried; this one is {}",
            job.status
        ))),
        RetryOutcome::NotFound => Err(ApiError::NotFound("job")),
    }
}

/// `DELETE /api/jobs/{id}`: an ended job, its history and its files.
pub async fn delete(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (id, owner) = (job_id(&path)?, caller.owner_filter());
    let outcome = with_conn(&state, move |conn| {
        Ok(job::delete(conn, &id, owner.as_deref())?)
    })
    .await?;
    match outcome {
        DeleteOutcome::Deleted(job) => {
            let files = state.files.clone();
            web::block(move || files.remove_job_files(&job)).await?;
            log::info!("job {id} deleted");
            Ok(HttpResponse::NoContent().finish())
        }
        DeleteOutcome::Active(job) => Err(ApiError::Conflict(format!(
            "the job is {}; cancel it first",
            job.status
        ))),
        DeleteOutcome::NotFound => Err(ApiError::NotFound("job")),
    }
}

/// `GET /api/jobs/{id}/download`: the file the job's result names.
pub async fn download(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = job_id(&path)?;
    let found = load(&state, &caller, id).await?;
    let Some(result) = found.result.as_ref().and_then(ResultFile::of) else {
        return Err(ApiError::Conflict(format!(
            "there is nothing to download: the job is {}",
            found.status
        )));
    };
    if result.is_expired() {
        return Err(ApiError::Gone("the file has expired".into()));
    }
    // Only the file the result names: never one rebuilt from the id.
    let path = state
        .files
        .path_of(&result)
        .ok_or_else(|| anyhow::anyhow!("job {id}: its result names no file of ours"))?;
    let file = NamedFile::open_async(&path)
        .await
        .map_err(|_| ApiError::Gone("the file is no longer available".into()))?;
    let filename = format!(
        "{}-{id}.{}",
        found.kind.as_str().replace('_', "-"),
        result.extension()
    );
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
