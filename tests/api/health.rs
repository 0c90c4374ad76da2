//! Liveness and readiness.

use actix_web::http::StatusCode;

use crate::both_deployments;

both_deployments!(healthz_and_readyz_answer_when_all_is_up, |app| async move {
    let health = app.get("/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.json());
    assert_eq!(ready.json()["database"], "ok");
    assert_eq!(ready.json()["broker"], "ok");
});
