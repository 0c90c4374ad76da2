//! `POST /api/imports`: a file of students as the request body, streamed to disk (never
//! held in memory) and checked as it arrives; then a `students_import` job for it.

use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::{json, Map};
use sha2::{Digest, Sha256};

use super::input::{Fields, Query};
use super::jobs::{accepted_response, idempotency_key};
use crate::access::Caller;
use crate::domain::job::{FileFormat, JobId, JobKind};
use crate::domain::queue::{Dispatch, DISPATCH_FIELDS};
use crate::error::ApiError;
use crate::jobs::accept::{Accepted, JobRequest};
use crate::jobs::store::TempFile;
use crate::kinds::import::{ImportMode, UploadCheck, UploadError};
use crate::routes::AppState;

const CONTENT_TYPES: &str = "text/csv or application/x-ndjson";
/// Bytes gathered before each write to the file.
const WRITE_BUFFER: usize = 1024 * 1024;

/// The format a content type names.
fn upload_format(req: &HttpRequest) -> Result<FileFormat, ApiError> {
    let mime = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .ok_or(ApiError::UnsupportedMediaType(CONTENT_TYPES))?;
    match (mime.type_().as_str(), mime.subtype().as_str()) {
        ("text", "csv") => Ok(FileFormat::Csv),
        ("application", "x-ndjson" | "ndjson" | "jsonl" | "x-jsonlines") => Ok(FileFormat::Jsonl),
        _ => Err(ApiError::UnsupportedMediaType(CONTENT_TYPES)),
    }
}

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::TooLarge { limit } => ApiError::TooLarge {
                limit: usize::try_from(limit).unwrap_or(usize::MAX),
            },
            UploadError::Invalid(message) => ApiError::invalid("file", message),
        }
    }
}

/// `POST /api/imports?mode=all_or_nothing|skip_invalid&queue=&priority=&run_at=&run_in=`,
/// the file as the body.
pub async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
    query: Query,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::default();
    let mut known = vec!["mode"];
    known.extend(DISPATCH_FIELDS);
    fields.only_params(&query, &known);
    let mode = query
        .get("mode")
        .and_then(|m| fields.check("mode", m.parse::<ImportMode>()))
        .unwrap_or_default();
    let mut asked: Map<String, serde_json::Value> = query
        .iter()
        .filter(|(k, _)| DISPATCH_FIELDS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let dispatch = fields
        .check_all(Dispatch::take(&mut asked, chrono::Utc::now()))
        .unwrap_or_default();
    fields.finish()?;
    let key = idempotency_key(&req)?;
    let format = upload_format(&req)?;
    let limit = state.settings.max_import_bytes;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(UploadError::TooLarge { limit }.into());
    }
    // Admission before the body: refused (429, 503, 507) before a byte of it is stored;
    // accepting admits again once it is. Its room is held while it streams, and checked
    // at every write, so parallel uploads cannot together go below the disk's floor.
    state
        .jobs
        .admit_ahead(caller.created_by(), key.clone())
        .await?;
    let mut space = state.jobs.limits().reserve_upload(declared.unwrap_or(0))?;

    let id = JobId::new();
    let files = state.files.clone();
    let mut upload = web::block(move || files.create_upload(id, format.extension()))
        .await?
        .map_err(anyhow::Error::from)?;
    let mut file = Some(upload.take_file().expect("a fresh upload is open"));
    let mut check = UploadCheck::new(format, limit);
    let mut buffer = Vec::with_capacity(WRITE_BUFFER);
    let mut hasher = Sha256::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(crate::routes::limits::body_error)?;
        let accepted = check.feed(&chunk)?;
        hasher.update(accepted);
        buffer.extend_from_slice(accepted);
        if buffer.len() >= WRITE_BUFFER {
            let n = buffer.len() as u64;
            buffer = write(&mut file, buffer, false).await?;
            space.wrote(n)?;
        }
    }
    let bytes = check.finish()?;
    write(&mut file, buffer, true).await?;
    drop(space);
    let name = commit(&state, upload).await?;

    let sha256 = hex::encode(hasher.finalize());
    let params = json!({
        "mode": mode, "format": format, "upload": name, "bytes": bytes, "sha256": sha256,
    });
    let request = JobRequest {
        id: Some(id),
        created_by: caller.created_by(),
        idempotency_key: key,
        dispatch,
        ..JobRequest::new(JobKind::StudentsImport, to_map(params))
    };
    let accepted = state.jobs.accept(request).await;
    if !matches!(accepted, Ok(Accepted::New(_))) {
        // A repeated request (or a refused one) does not keep this copy of the file.
        let path = state.files.dir().join(&name);
        let _ = web::block(move || std::fs::remove_file(path)).await;
    }
    Ok(accepted_response(&accepted?))
}

fn to_map(value: serde_json::Value) -> Map<String, serde_json::Value> {
    match value {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("an object"),
    }
}

/// Writes `buffer` to the upload on the blocking pool (and syncs it when `last`); hands
/// the emptied buffer back.
async fn write(
    file: &mut Option<std::fs::File>,
    mut buffer: Vec<u8>,
    last: bool,
) -> Result<Vec<u8>, ApiError> {
    use std::io::Write as _;
    let mut f = file.take().expect("the upload is open");
    let (f, buffer) = web::block(move || -> std::io::Result<_> {
        f.write_all(&buffer)?;
        if last {
            f.sync_all()?;
        }
        buffer.clear();
        Ok((f, buffer))
    })
    .await?
    .map_err(|e| anyhow::anyhow!("writing the upload: {e}"))?;
    *file = Some(f);
    Ok(buffer)
}

/// Gives the complete upload its final name (the one the job's `upload` names).
async fn commit(state: &AppState, upload: TempFile) -> Result<String, ApiError> {
    let files = state.files.clone();
    let (name, _) = web::block(move || files.commit(upload))
        .await?
        .map_err(anyhow::Error::from)?;
    Ok(name)
}
