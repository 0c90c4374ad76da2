//! Queues and dispatch: a job runs only where its queue is served; priorities, owners'
//! turns and caps decide what a claim takes; delayed jobs wait; a paused queue starts
//! nothing; a dead process's jobs come back in seconds, not at their lease's end.

use std::time::{Duration, Instant};

use awc::http::StatusCode;
use serde_json::json;

use roster::domain::job::{JobId, JobKind};
use roster::domain::queue::{Priority, QueueName};
use roster::models::job::{self, ClaimLimits, NewJob};
use roster::startup::Hooks;

use crate::each_deployment;
use crate::helpers::{self, web_only, Deployment, Sandbox};
use crate::process::{seed, Roster};

/// Jobs of `owner` in `queue` at `priority`, inserted as accepting would.
fn insert(
    app: &helpers::TestApp,
    queue: &QueueName,
    owner: Option<&str>,
    priority: u8,
    n: usize,
) -> Vec<JobId> {
    let mut conn = app.pool.get().unwrap();
    (0..n)
        .map(|_| {
            let new = NewJob {
                created_by: owner.map(str::to_owned),
                queue: queue.clone(),
                priority: Priority::new(priority.into()).unwrap(),
                ..helpers::new_job(JobKind::StudentsByAge, 3)
            };
            // Due times a millisecond apart, as requests are (SQLite's clock counts ms).
            std::thread::sleep(Duration::from_millis(2));
            job::insert(&mut conn, &new).unwrap().id
        })
        .collect()
}

/// What one claim of up to `max` jobs of `queue` takes, as a consumer would.
fn claim(
    app: &helpers::TestApp,
    queue: &QueueName,
    max: usize,
    limits: &ClaimLimits,
) -> Vec<JobId> {
    let mut conn = app.pool.get().unwrap();
    job::claim_due(
        &mut conn,
        queue,
        "test",
        Duration::from_secs(60),
        max,
        limits,
    )
    .unwrap()
    .into_iter()
    .map(|(job, _)| job.id)
    .collect()
}

fn id(job: &serde_json::Value) -> &str {
    job["id"].as_str().unwrap()
}

fn queue(name: &str) -> QueueName {
    name.parse().unwrap()
}

async fn a_job_runs_only_where_its_queue_is_served(deployment: Deployment) {
    let Some(app) = helpers::spawn_app(deployment).await else {
        return;
    };
    let elsewhere = format!("{}-other", app.settings.queue);
    let job = app
        .start_export(json!({ "queue": elsewhere, "min_age": 3 }))
        .await;
    assert_eq!(job["queue"], elsewhere.as_str());
    let home = app.start_export(json!({ "min_age": 4 })).await;
    assert_eq!(
        home["queue"],
        app.settings.queue.as_str(),
        "the process's own queue"
    );
    app.wait_until_ended(id(&home)).await;
    actix_web::rt::time::sleep(Duration::from_secs(2)).await;
    let waiting = app.get(&format!("/api/jobs/{}", id(&job))).await.json();
    assert_eq!(
        waiting["status"], "queued",
        "nobody here serves it: {waiting}"
    );
    let listed = app
        .get(&format!("/api/jobs?queue={elsewhere}"))
        .await
        .json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);

    // A process serving that queue (and not this one's) takes it.
    let other = app.sandbox.sharing();
    let mut settings = other.settings();
    settings.queues = Some(roster::config::QueueSpec::parse(&format!("{elsewhere}:1")).unwrap());
    let _serving = helpers::start_in(other, settings, Hooks::default(), true).await;
    let done = app.wait_until_ended(id(&job)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
}

each_deployment!(a_job_runs_only_where_its_queue_is_served);

async fn priorities_run_first_and_owners_take_turns(deployment: Deployment) {
    let Some(app) = web_only(deployment).await else {
        return;
    };
    let q = queue(&app.settings.queue);
    let none = ClaimLimits::default();
    let low = insert(&app, &q, None, 9, 1);
    let normal = insert(&app, &q, None, 5, 2);
    let urgent = insert(&app, &q, None, 0, 1);
    let order: Vec<JobId> = (0..4).flat_map(|_| claim(&app, &q, 1, &none)).collect();
    assert_eq!(
        order,
        [urgent[0], normal[0], normal[1], low[0]],
        "priority first, then the order they became due"
    );

    // A thousand-job backlog of one owner, then another owner's one job: it is taken
    // second, not a thousandth.
    let backlog = insert(&app, &q, Some("ana"), 5, 30);
    let theirs = insert(&app, &q, Some("bruno"), 5, 1);
    let first_two = claim(&app, &q, 2, &none);
    assert!(first_two.contains(&backlog[0]), "{first_two:?}");
    assert!(
        first_two.contains(&theirs[0]),
        "bruno's job takes its turn: {first_two:?}"
    );
}

each_deployment!(priorities_run_first_and_owners_take_turns);

async fn caps_leave_the_rest_waiting_in_the_queue(deployment: Deployment) {
    let Some(app) = web_only(deployment).await else {
        return;
    };
    let q = queue(&app.settings.queue);
    insert(&app, &q, Some("ana"), 5, 10);
    let bruno = insert(&app, &q, Some("bruno"), 5, 1);
    let per_owner = ClaimLimits {
        per_owner: Some(4),
        per_kind: Vec::new(),
    };
    let taken = claim(&app, &q, 8, &per_owner);
    assert_eq!(taken.len(), 5, "four of ana's and bruno's one: {taken:?}");
    assert!(taken.contains(&bruno[0]));
    assert!(
        claim(&app, &q, 8, &per_owner).is_empty(),
        "ana is at her cap while four of hers run"
    );
    // The rest wait, still queued: a cap is not a refusal.
    let queued = app.get("/api/jobs?status=queued").await.json();
    assert_eq!(queued["items"].as_array().unwrap().len(), 6);

    let per_kind = ClaimLimits {
        per_owner: None,
        per_kind: vec![(JobKind::StudentsByAge, 6)],
    };
    assert_eq!(
        claim(&app, &q, 8, &per_kind).len(),
        1,
        "five of the kind run; one more may"
    );
}

each_deployment!(caps_leave_the_rest_waiting_in_the_queue);

async fn a_delayed_job_waits_for_its_time(deployment: Deployment) {
    let Some(app) = helpers::spawn_app(deployment).await else {
        return;
    };
    let asked = Instant::now();
    let job = app.start_export(json!({ "run_in": 3 })).await;
    let due: chrono::DateTime<chrono::Utc> = job["run_after"].as_str().unwrap().parse().unwrap();
    let ahead = due - chrono::Utc::now();
    assert!(
        ahead > chrono::Duration::milliseconds(2000),
        "due about 3 s from now: {job}"
    );
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    let waiting = app.get(&format!("/api/jobs/{}", id(&job))).await.json();
    assert_eq!(waiting["status"], "queued", "{waiting}");
    let queues = app.get("/api/queues").await.json();
    let mine = queues["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == app.settings.queue.as_str())
        .cloned()
        .unwrap();
    assert_eq!(mine["delayed"], 1, "{queues}");
    assert_eq!(mine["due"], 0, "{queues}");
    let done = app.wait_until_ended(id(&job)).await;
    assert_eq!(done["status"], "succeeded");
    let started: chrono::DateTime<chrono::Utc> =
        done["started_at"].as_str().unwrap().parse().unwrap();
    assert!(started >= due, "not before its time: {done}");
    assert!(
        asked.elapsed() < Duration::from_secs(8),
        "and soon after it"
    );

    let at = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let later = app
        .start_export(json!({ "run_at": at, "min_age": 9 }))
        .await;
    assert_eq!(later["status"], "queued");
}

each_deployment!(a_delayed_job_waits_for_its_time);

async fn bad_dispatch_fields_are_422_and_change_nothing(deployment: Deployment) {
    let Some(app) = web_only(deployment).await else {
        return;
    };
    for body in [
        json!({"priority": 10}),
        json!({"priority": "high"}),
        json!({"queue": "no spaces"}),
        json!({"queue": ""}),
        json!({"run_in": -5}),
        json!({"run_in": 2_592_001}),
        json!({"run_at": "next tuesday"}),
        json!({"run_at": "2099-01-01T00:00:00Z"}),
        json!({"run_in": 5, "run_at": "2026-12-08T00:00:00Z"}),
    ] {
        let reply = app.post("/api/exports", body.clone()).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(reply.json()["error"]["fields"].is_object(), "{body}");
    }
    let reply = app
        .request(awc::http::Method::POST, "/api/imports?priority=12", None)
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply.json()["error"]["fields"]["priority"].is_string());
    let jobs = app.get("/api/jobs").await.json();
    assert_eq!(
        jobs["items"].as_array().unwrap().len(),
        0,
        "nothing accepted"
    );
    let reply = app
        .post("/api/queues/not%20a%20queue/pause", json!({}))
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
}

each_deployment!(bad_dispatch_fields_are_422_and_change_nothing);

/// A queue paused through one process starts nothing in another that serves it; resumed,
/// its jobs start at once.
async fn a_paused_queue_accepts_jobs_and_starts_none(deployment: Deployment) {
    let Some(web) = web_only(deployment).await else {
        return;
    };
    let other = web.sandbox.sharing();
    let settings = other.settings();
    let _worker = helpers::start_in(other, settings, Hooks::default(), true).await;
    let name = web.settings.queue.clone();
    let paused = web
        .post(&format!("/api/queues/{name}/pause"), json!({}))
        .await;
    assert_eq!(paused.status, StatusCode::OK);
    assert_eq!(paused.json()["paused"], true);
    let job = web.start_export(json!({})).await;
    actix_web::rt::time::sleep(Duration::from_secs(2)).await;
    let waiting = web.get(&format!("/api/jobs/{}", id(&job))).await.json();
    assert_eq!(
        waiting["status"], "queued",
        "accepted, not started: {waiting}"
    );
    let queues = web.get("/api/queues").await.json();
    let shown = queues["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == name.as_str())
        .cloned()
        .unwrap();
    assert_eq!(shown["paused"], true, "{queues}");
    assert_eq!(shown["due"], 1, "{queues}");
    let resumed_at = Instant::now();
    let resumed = web
        .post(&format!("/api/queues/{name}/resume"), json!({}))
        .await;
    assert_eq!(resumed.json()["paused"], false);
    let done = web.wait_until_ended(id(&job)).await;
    assert_eq!(done["status"], "succeeded");
    assert!(
        resumed_at.elapsed() < Duration::from_secs(3),
        "started at once: {:?}",
        resumed_at.elapsed()
    );
}

each_deployment!(a_paused_queue_accepts_jobs_and_starts_none);

/// A worker process killed mid-job: its job runs again in another process once the dead
/// process misses its beats (`ROSTER_DEAD_AFTER_SECS`), long before its lease would end.
async fn a_dead_process_s_job_runs_again_within_seconds(deployment: Deployment) {
    let Some(sandbox) = Sandbox::new(deployment) else {
        return;
    };
    seed(&sandbox, 300_000);
    let env = [
        ("ROSTER_EXPORT_BATCH_ROWS", "5"),
        ("ROSTER_CONCURRENCY", "1"),
        ("ROSTER_LEASE_SECS", "300"),
        ("ROSTER_DEAD_AFTER_SECS", "4"),
    ];
    let first = Roster::serve(&sandbox, &env).await;
    // JSON Lines in batches of five: long enough to outlive the second process's start.
    let job = first.post("/api/exports", json!({"format": "jsonl"})).await;
    let job_id = job["id"].as_str().unwrap().to_owned();
    first.wait_for(&job_id, |j| j["status"] == "running").await;
    let second = Roster::serve(&sandbox, &env).await;
    // The second process has beaten long enough to judge others.
    actix_web::rt::time::sleep(Duration::from_secs(5)).await;
    let killed = Instant::now();
    first.kill();
    let again = second
        .wait_for(&job_id, |j| j["attempts"] == 2 && j["status"] == "running")
        .await;
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "running again {took:?} after the kill (lease 300 s): {again}"
    );
    let workers = second.get("/api/workers").await;
    assert_eq!(
        workers["workers"].as_array().unwrap().len(),
        1,
        "the dead process is forgotten once nothing of its runs: {workers}"
    );
    second.stop();
}

each_deployment!(a_dead_process_s_job_runs_again_within_seconds);

#[actix_web::test]
async fn roster_queues_is_parsed_with_errors_that_name_the_entry() {
    use roster::config::QueueSpec;
    let spec = QueueSpec::parse("default:8, imports:2").unwrap();
    assert_eq!(spec.0.len(), 2);
    assert_eq!(spec.0[1], (queue("imports"), 2));
    for bad in ["", "default", "default:0", "a b:1", "x:1,x:2", "x:300"] {
        assert!(QueueSpec::parse(bad).is_err(), "{bad:?}");
    }
}
