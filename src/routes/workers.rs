//! `GET /api/workers`: the live worker processes, from their heartbeats.

use std::collections::HashSet;

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::with_conn;
use crate::access::Caller;
use crate::domain::job::JobId;
use crate::error::ApiError;
use crate::models::{job, worker};
use crate::routes::AppState;

/// `GET /api/workers` → `{workers, last_seen, live_after_secs}`. A member sees every live
/// worker and how busy it is, but only the ids of their own running jobs.
pub async fn list(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let owner = caller.owner_filter();
    let (mut workers, last_seen, theirs) = with_conn(&state, move |conn| {
        let workers = worker::live(conn)?;
        let last_seen = worker::last_seen(conn)?;
        let theirs = match owner {
            None => None,
            Some(owner) => {
                let running: Vec<JobId> = workers
                    .iter()
                    .flat_map(|w| &w.running)
                    .filter_map(|id| id.parse().ok())
                    .collect();
                let jobs = job::find_many(conn, &running)?;
                Some(
                    jobs.into_iter()
                        .filter(|j| j.created_by.as_ref() == Some(&owner))
                        .map(|j| j.id.to_string())
                        .collect::<HashSet<_>>(),
                )
            }
        };
        Ok((workers, last_seen, theirs))
    })
    .await?;
    if let Some(theirs) = theirs {
        for w in &mut workers {
            w.running.retain(|id| theirs.contains(id));
        }
    }
    Ok(HttpResponse::Ok().json(json!({
        "workers": workers,
        "last_seen": last_seen,
        "live_after_secs": worker::LIVE_AFTER.as_secs(),
    })))
}
