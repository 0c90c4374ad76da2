//! Liveness and readiness.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::error::ApiError;
use crate::routes::AppState;

/// The process is up and serving.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The process can do its work: the database and the broker answer.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let pool = state.pool.clone();
    let database = web::block(move || crate::db::ping(&pool))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .and_then(|r| r);
    let broker = state.broker.ping().await;
    // Anyone may ask: the answer says which dependency is down, never the driver's text
    // (host, port, database name); that goes to the log.
    let check = |what: &str, r: &anyhow::Result<()>| match r {
        Ok(()) => json!("ok"),
        Err(e) => {
            log::warn!("readyz: the {what} is down: {e:#}");
            json!("down")
        }
    };
    let body = json!({
        "status": if database.is_ok() && broker.is_ok() { "ready" } else { "unavailable" },
        "database": check("database", &database),
        "broker": check("broker", &broker),
    });
    if database.is_ok() && broker.is_ok() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Any path no route matched.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("route"))
}
