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

both_deployments!(
    metrics_describe_jobs_queue_sessions_and_http,
    |app| async move {
        let job = app.start_export(serde_json::json!({})).await;
        app.wait_until_ended(job["id"].as_str().unwrap()).await;
        let reply = app.get("/metrics").await;
        assert_eq!(reply.status, StatusCode::OK);
        let text = String::from_utf8(reply.body).unwrap();
        for expected in [
            "roster_jobs{kind=\"students_by_age\",status=\"succeeded\"} 1",
            "roster_http_requests_total{method=\"POST\",route=\"/api/exports\",status=\"202\"}",
            "roster_job_duration_seconds_count{kind=\"students_by_age\",outcome=\"succeeded\"}",
            "roster_jobs_in_flight",
            "roster_job_retries_total",
            "roster_queue_waiting",
            "roster_queue_pending",
            "roster_websocket_sessions",
            "roster_events_sent_total",
            "roster_events_coalesced_total",
        ] {
            assert!(text.contains(expected), "missing {expected}:\n{text}");
        }
    }
);
