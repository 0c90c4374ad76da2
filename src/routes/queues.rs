//! `GET /api/queues`, and pausing and resuming a queue (admins): a paused queue accepts
//! jobs and starts none, in every process that serves it; running jobs finish.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::with_conn;
use crate::access::Caller;
use crate::domain::queue::QueueName;
use crate::error::ApiError;
use crate::models::job::{self, QueueView};
use crate::models::worker;
use crate::routes::AppState;

/// `GET /api/queues` → `{items: [{name, due, delayed, running, paused, paused_at,
/// oldest_wait_secs}]}`: every queue a live process serves, has active jobs or is paused.
/// Counts are over every user's jobs: a queue is shared.
pub async fn list(_caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let queues = with_conn(&state, |conn| {
        let served = served(conn)?;
        Ok(job::queues(conn, &served)?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "items": queues })))
}

/// `POST /api/queues/{name}/pause` (admins) → 200, the queue.
pub async fn pause(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_paused(caller, state, &path, true).await
}

/// `POST /api/queues/{name}/resume` (admins) → 200, the queue; its consumers look at once.
pub async fn resume(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_paused(caller, state, &path, false).await
}

async fn set_paused(
    caller: Caller,
    state: web::Data<AppState>,
    raw: &str,
    paused: bool,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let queue = queue_name(raw)?;
    let by = caller.created_by();
    let view = with_conn(&state, {
        let queue = queue.clone();
        move |conn| {
            let changed = match paused {
                true => job::pause(conn, &queue, by.as_deref())?,
                false => job::resume(conn, &queue)?,
            };
            if changed {
                let done = if paused { "paused" } else { "resumed" };
                log::info!("queue {queue} {done} by {}", by.as_deref().unwrap_or("-"));
            }
            Ok(one(conn, &queue)?)
        }
    })
    .await?;
    if !paused {
        state.jobs.wake(&queue).await;
    }
    Ok(HttpResponse::Ok().json(view))
}

fn queue_name(raw: &str) -> Result<QueueName, ApiError> {
    raw.parse()
        .map_err(|e: String| ApiError::invalid("name", e))
}

/// The queues the live worker processes serve.
fn served(conn: &mut crate::db::DbConnection) -> diesel::QueryResult<Vec<QueueName>> {
    let mut served: Vec<QueueName> = worker::live(conn)?
        .iter()
        .flat_map(|w| w.process.queues())
        .filter_map(|q| q.parse().ok())
        .collect();
    served.sort();
    served.dedup();
    Ok(served)
}

/// `queue` as `GET /api/queues` shows it (empty when nothing knows it).
fn one(conn: &mut crate::db::DbConnection, queue: &QueueName) -> diesel::QueryResult<QueueView> {
    let found = job::queues(conn, std::slice::from_ref(queue))?;
    Ok(found
        .into_iter()
        .find(|q| q.name == *queue)
        .expect("a queue asked for is listed"))
}
