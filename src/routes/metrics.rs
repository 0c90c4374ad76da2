//! `GET /metrics`: the process's metrics in Prometheus's text format, with the gauges that
//! are read at scrape time (jobs by status and live workers from the database, queue depth
//! from the broker, sessions from the event registry).

use actix_web::{web, HttpResponse};

use super::{with_conn, AppState};
use crate::error::ApiError;
use crate::events::registry::SessionCount;
use crate::metrics::METRICS;

/// `GET /metrics`: Prometheus text.
pub async fn scrape(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let m = &*METRICS;
    let (counts, workers, queues) = with_conn(&state, |conn| {
        Ok((
            crate::models::job::count_by_kind_and_status(conn)?,
            crate::models::worker::live_count(conn)?,
            crate::models::job::queues(conn, &[])?,
        ))
    })
    .await?;
    m.workers_live.set(workers);
    m.jobs.reset();
    for (kind, status, n) in counts {
        m.jobs.with_label_values(&[&kind, &status]).set(n);
    }
    // Totals, not a label per queue: queue names come from clients.
    m.queue_waiting.set(queues.iter().map(|q| q.due).sum());
    m.queue_pending.set(queues.iter().map(|q| q.delayed).sum());
    if let Ok(sessions) = state.events.registry().send(SessionCount).await {
        m.ws_sessions.set(sessions as i64);
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(m.render()))
}
