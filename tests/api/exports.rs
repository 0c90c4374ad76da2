//! Background exports: the job routes, the export file, and guarantees 1, 2, 4, 5 and 6
//! of DESIGN.md on both deployments (3, crash recovery, is in `crash`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::{Method, StatusCode};
use async_trait::async_trait;
use roster::broker::{Broker, BrokerError};
use roster::domain::job::JobKind;
use roster::domain::job::{JobId, JobStatus};
use roster::domain::queue::QueueName;
use roster::jobs::{Attempt, JobError, JobHandler};

use crate::helpers::StandIn;
use roster::models::job::Job;
use roster::startup::Hooks;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::both_deployments;
use crate::helpers::{self, spawn_with, Deployment, TestApp};

async fn download(app: &TestApp, job: &Value) -> Vec<u8> {
    let reply = app
        .get(&format!(
            "/api/jobs/{}/download",
            job["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    reply.body
}

fn id(job: &Value) -> &str {
    job["id"].as_str().unwrap()
}

both_deployments!(
    an_export_writes_every_student_ordered_by_age_then_id,
    |app| async move {
        app.seed(2_500);
        app.create_student("=HYPERLINK(\"http://evil\")", 33).await;
        app.create_student("Smith, \"Jr\"", 33).await;
        app.create_student("-minus", 1).await;
        let job = app.start_export(json!({})).await;
        assert_eq!(job["status"], "queued");
        let done = app.wait_until_ended(id(&job)).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(done["progress"], json!({"done": 2503, "total": 2503}));
        assert_eq!(done["attempts"], 1);

        let file = download(&app, &job).await;
        let result = &done["result"];
        assert_eq!(result["rows"], 2503);
        assert_eq!(result["bytes"], file.len());
        assert_eq!(result["sha256"], hex::encode(Sha256::digest(&file)));

        let mut reader = csv::Reader::from_reader(file.as_slice());
        assert_eq!(reader.headers().unwrap(), vec!["id", "name", "age"]);
        let rows: Vec<(i64, String, i32)> = reader.deserialize().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2503);
        assert!(
            rows.windows(2).all(|w| (w[0].2, w[0].0) < (w[1].2, w[1].0)),
            "ordered by (age, id)"
        );
        let names: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
        assert!(
            names.contains(&"'=HYPERLINK(\"http://evil\")"),
            "formula neutralised"
        );
        assert!(names.contains(&"'-minus"));
        assert!(
            names.contains(&"Smith, \"Jr\""),
            "RFC 4180 quoting round-trips"
        );
        // PostgreSQL's COPY writes the rows there: the file must still be what the CSV
        // writer writes, CRLF line ends and minimal quoting, byte for byte.
        let mut again = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(Vec::new());
        again.write_record(["id", "name", "age"]).unwrap();
        for row in &rows {
            again.serialize(row).unwrap();
        }
        assert!(
            again.into_inner().unwrap() == file,
            "the same bytes on either backend"
        );
    }
);

/// On PostgreSQL a CSV export is a COPY per batch whose SQL leaves out the bounds it does
/// not need (no age range; no key before the first batch): every combination must
/// still hold exactly the students asked for, in order, across batches.
#[actix_web::test]
async fn a_csv_export_of_an_age_range_in_many_batches_holds_exactly_those_students() {
    use diesel::prelude::*;
    use roster::schema::students;

    let Some(app) = spawn_with(
        Deployment::Production,
        |s| s.export_batch_rows = Some(100),
        Hooks::default(),
    )
    .await
    else {
        return;
    };
    app.seed(3_000);
    for (range, (low, high)) in [
        (json!({"min_age": 20, "max_age": 30}), (20, 30)),
        (json!({}), (i32::MIN, i32::MAX)),
    ] {
        let job = app.start_export(range).await;
        let done = app.wait_until_ended(id(&job)).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        let file = download(&app, &job).await;
        let rows: Vec<(i64, i32)> = csv::Reader::from_reader(file.as_slice())
            .deserialize::<(i64, String, i32)>()
            .map(|r| r.map(|(id, _, age)| (id, age)).unwrap())
            .collect();
        let expected: Vec<(i64, i32)> = students::table
            .filter(students::age.between(low, high))
            .order((students::age, students::id))
            .select((students::id, students::age))
            .load(&mut *app.pool.get().unwrap())
            .unwrap();
        assert!(expected.len() > 200, "more than two batches");
        assert_eq!(rows, expected);
    }
}

both_deployments!(a_json_lines_export_of_an_age_range, |app| async move {
    app.seed(1_000);
    let job = app
        .start_export(json!({"format": "jsonl", "min_age": 20, "max_age": 30}))
        .await;
    let done = app.wait_until_ended(id(&job)).await;
    assert_eq!(done["status"], "succeeded");
    let reply = app.get(&format!("/api/jobs/{}/download", id(&job))).await;
    assert_eq!(
        reply.header("content-type").unwrap(),
        "application/x-ndjson"
    );
    assert!(reply
        .header("content-disposition")
        .unwrap()
        .contains("attachment"));
    let lines: Vec<Value> = reply
        .body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines.len() as i64, done["result"]["rows"].as_i64().unwrap());
    assert!(!lines.is_empty());
    assert!(lines
        .iter()
        .all(|l| (20..=30).contains(&l["age"].as_i64().unwrap())));
    let first = reply.body.split(|b| *b == b'\n').next().unwrap();
    assert!(
        first.starts_with(b"{\"id\":"),
        "columns in id, name, age order"
    );
});

both_deployments!(downloads_honour_range_requests, |app| async move {
    app.seed(100);
    let job = app.start_export(json!({})).await;
    app.wait_until_ended(id(&job)).await;
    let whole = download(&app, &job).await;
    let mut res = app
        .client
        .get(format!("{}/api/jobs/{}/download", app.address, id(&job)))
        .insert_header(("Range", "bytes=3-12"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(res.body().await.unwrap().as_ref(), &whole[3..=12]);
    // A range beyond the file is a 416 in the API's error shape, with the file's size.
    let mut beyond = app
        .client
        .get(format!("{}/api/jobs/{}/download", app.address, id(&job)))
        .insert_header(("Range", format!("bytes={}-", whole.len() + 10)))
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        beyond
            .headers()
            .get("content-range")
            .unwrap()
            .to_str()
            .unwrap(),
        format!("bytes */{}", whole.len())
    );
    let body: serde_json::Value = beyond.json().await.unwrap();
    assert!(body["error"]["code"].is_string(), "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
});

both_deployments!(
    bad_export_requests_get_4xx_and_create_no_job,
    |app| async move {
        for (body, field) in [
            (json!({"format": "xml"}), "format"),
            (json!({"kind": "teachers"}), "kind"),
            (json!({"min_age": 200}), "min_age"),
            (json!({"min_age": 50, "max_age": 10}), "min_age"),
            (json!({"max_age": "ten"}), "max_age"),
            (json!({"colour": 1}), "colour"),
        ] {
            let reply = app.post("/api/exports", body.clone()).await;
            assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert!(reply.json()["error"]["fields"][field].is_string(), "{body}");
        }
        let malformed = app
            .send_raw(
                Method::POST,
                "/api/exports",
                "application/json",
                b"{".to_vec(),
            )
            .await;
        assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
        let wrong_type = app
            .send_raw(Method::POST, "/api/exports", "text/csv", b"a,b".to_vec())
            .await;
        assert_eq!(wrong_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let jobs = app.get("/api/jobs").await.json();
        assert_eq!(jobs["items"].as_array().unwrap().len(), 0);
    }
);

both_deployments!(
    unknown_jobs_are_404_and_unready_downloads_409,
    |app| async move {
        for path in [
            "/api/jobs/not-a-uuid",
            "/api/jobs/00000000-0000-4000-8000-000000000000",
            "/api/jobs/00000000-0000-4000-8000-000000000000/download",
        ] {
            assert_eq!(app.get(path).await.status, StatusCode::NOT_FOUND, "{path}");
        }
        let cancel = app
            .request(
                Method::POST,
                "/api/jobs/00000000-0000-4000-8000-000000000000/cancel",
                None,
            )
            .await;
        assert_eq!(cancel.status, StatusCode::NOT_FOUND);
    }
);

both_deployments!(
    jobs_are_listed_newest_first_and_by_status,
    |app| async move {
        let first = app.start_export(json!({})).await;
        // SQLite's clock counts milliseconds: two jobs created within one are listed in
        // the order of their ids, which is not the order they came in.
        actix_web::rt::time::sleep(std::time::Duration::from_millis(5)).await;
        let second = app.start_export(json!({"format": "jsonl"})).await;
        app.wait_until_ended(id(&first)).await;
        app.wait_until_ended(id(&second)).await;
        let listed = app.get("/api/jobs").await.json();
        let ids: Vec<&str> = listed["items"].as_array().unwrap().iter().map(id).collect();
        assert_eq!(ids, [id(&second), id(&first)]);
        let succeeded = app.get("/api/jobs?status=succeeded&limit=1").await.json();
        assert_eq!(succeeded["items"].as_array().unwrap().len(), 1);
        let none = app.get("/api/jobs?status=failed").await.json();
        assert!(none["items"].as_array().unwrap().is_empty());
        for bad in ["status=done", "limit=0", "limit=501", "limit=x"] {
            assert_eq!(
                app.get(&format!("/api/jobs?{bad}")).await.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{bad}"
            );
        }
    }
);

// Guarantee 1: durable accept.

both_deployments!(
    accepted_jobs_are_committed_before_the_202,
    |app| async move {
        let reply = app.post("/api/exports", json!({})).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED);
        let location = reply.header("location").unwrap();
        assert_eq!(
            location,
            format!("/api/jobs/{}", reply.json()["id"].as_str().unwrap())
        );
        let job = app.get(&location).await;
        assert_eq!(
            job.status,
            StatusCode::OK,
            "the job exists as soon as it is accepted"
        );
    }
);

/// A broker whose wake-ups all fail (`silent`: are lost without an error), as when Redis
/// is away or the accepting process dies between its commit and its announcement.
struct LostWakeUps {
    inner: Arc<dyn Broker>,
    silent: bool,
}

#[async_trait]
impl Broker for LostWakeUps {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    async fn announce(&self, _queue: &QueueName) -> Result<(), BrokerError> {
        match self.silent {
            true => Ok(()),
            false => Err(BrokerError::Unavailable(anyhow::anyhow!(
                "injected announce failure"
            ))),
        }
    }
    async fn wait(&self, _queue: &QueueName, timeout: Duration) -> Result<(), BrokerError> {
        // Nothing is ever announced: every wake-up is the consumer's own poll.
        actix_web::rt::time::sleep(timeout).await;
        Ok(())
    }
    async fn ping(&self) -> anyhow::Result<()> {
        self.inner.ping().await
    }
}

/// The table is the queue: a job whose wake-up failed or was lost still starts, at a
/// consumer's next look (every `broker::POLL_INTERVAL`), and only once.
async fn a_job_runs_without_its_wake_up(deployment: Deployment, silent: bool) {
    let hooks = Hooks {
        wrap_broker: Some(Box::new(move |inner| {
            Arc::new(LostWakeUps { inner, silent })
        })),
        ..Hooks::default()
    };
    let Some(app) = spawn_with(deployment, |_| {}, hooks).await else {
        return;
    };
    let started = Instant::now();
    let job = app.start_export(json!({})).await;
    let done = app.wait_until_ended(id(&job)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "found by the next poll, not after a redelivery interval: {:?}",
        started.elapsed()
    );
}

#[actix_web::test]
async fn a_job_whose_wake_up_failed_still_runs() {
    a_job_runs_without_its_wake_up(Deployment::Embedded, false).await;
    a_job_runs_without_its_wake_up(Deployment::Production, false).await;
}

#[actix_web::test]
async fn a_job_whose_wake_up_was_lost_without_an_error_still_runs() {
    a_job_runs_without_its_wake_up(Deployment::Production, true).await;
}

// Guarantee 2: at-least-once delivery, one completion.

both_deployments!(
    more_wake_ups_after_a_job_finished_change_nothing,
    |app| async move {
        app.seed(50);
        let job = app.start_export(json!({})).await;
        let done = app.wait_until_ended(id(&job)).await;
        let broker = app.broker();
        for _ in 0..3 {
            broker.announce(&app.settings.home_queue()).await.unwrap();
        }
        actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
        let after = app.get(&format!("/api/jobs/{}", id(&job))).await.json();
        assert_eq!(after["attempts"], 1, "ran once");
        assert_eq!(after["seq"], done["seq"], "nothing changed");
        assert_eq!(after["finished_at"], done["finished_at"]);
    }
);

both_deployments!(
    many_jobs_announced_twice_to_two_processes_each_run_exactly_once,
    |app| async move {
        app.seed(20);
        // A second process with workers on the same database and queue.
        let other = app.sandbox.sharing();
        let settings = other.settings();
        let _second = helpers::start_in(other, settings, Hooks::default(), true).await;
        let mut ids = Vec::new();
        for i in 0..20 {
            let job = app
                .start_export(json!({"min_age": 5, "max_age": 10 + i}))
                .await;
            app.broker()
                .announce(&app.settings.home_queue())
                .await
                .unwrap();
            ids.push(id(&job).to_owned());
        }
        for job in &ids {
            let done = app.wait_until_ended(job).await;
            assert_eq!(done["status"], "succeeded");
            assert_eq!(done["attempts"], 1, "claimed once: {done}");
        }
    }
);

// Guarantee 4: retries with backoff, then failed with the last error.

both_deployments!(
    failing_attempts_are_retried_then_the_job_fails_with_the_error,
    |app| async move {
        // The export directory (checked at start) becomes a file: every attempt fails
        // to write.
        let dir = &app.settings.export_dir;
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::write(dir, b"not a directory").unwrap();
        let job = app.start_export(json!({})).await;
        let done = app.wait_until_ended(id(&job)).await;
        assert_eq!(done["status"], "failed");
        assert_eq!(done["attempts"], 3, "max_attempts");
        let error = done["error"].as_str().unwrap();
        assert!(
            error.contains(dir.to_str().unwrap()),
            "the last error is kept, and names the path: {error}"
        );
    }
);

/// Panics on the first attempt of every job, then does the real export.
struct PanicsOnce {
    panicked: std::sync::Mutex<HashSet<JobId>>,
    export: Arc<dyn JobHandler>,
}

impl StandIn for PanicsOnce {
    fn run(&self, job: &Job, attempt: &mut Attempt<'_>) -> Result<Value, JobError> {
        if self.panicked.lock().unwrap().insert(job.id) {
            panic!("injected panic in job {}", job.id);
        }
        self.export.run(job, attempt)
    }
}

fn panics_once() -> Hooks {
    let kinds = roster::kinds::standard_kinds(&roster::config::Settings::defaults());
    helpers::instead_of_export(PanicsOnce {
        panicked: Default::default(),
        export: kinds.get(JobKind::StudentsByAge).unwrap().clone(),
    })
}

#[actix_web::test]
async fn a_panicking_job_fails_that_attempt_only_and_the_pool_keeps_its_size() {
    for deployment in [Deployment::Embedded, Deployment::Production] {
        let Some(app) = spawn_with(deployment, |_| {}, panics_once()).await else {
            continue;
        };
        app.seed(30);
        // More jobs than workers, each panicking once: a pool that lost threads would stall.
        let jobs: Vec<Value> = futures_join(&app, 6).await;
        for job in &jobs {
            let done = app.wait_until_ended(id(job)).await;
            assert_eq!(done["status"], "succeeded", "{deployment:?}: {done}");
            assert_eq!(done["attempts"], 2);
            let history = app
                .get(&format!("/api/jobs/{}/attempts", id(job)))
                .await
                .json();
            let history = history["items"].as_array().unwrap();
            let outcomes: Vec<_> = history.iter().map(|a| &a["outcome"]).collect();
            assert_eq!(outcomes, ["retry", "succeeded"], "{history:?}");
            assert!(history[0]["error"]
                .as_str()
                .is_some_and(|e| e.contains("injected panic")));
            assert!(history.iter().all(|a| !a["ended_at"].is_null()));
            assert_ne!(history[0]["worker"], history[1]["worker"]);
        }
    }
}

async fn futures_join(app: &TestApp, n: usize) -> Vec<Value> {
    let mut jobs = Vec::new();
    for i in 0..n {
        // Distinct parameters: an identical export would be the same job.
        jobs.push(app.start_export(json!({"max_age": 150 - i})).await);
    }
    jobs
}

// Guarantee 5: cancellation.

both_deployments!(cancelling_a_finished_job_is_409, |app| async move {
    let job = app.start_export(json!({})).await;
    app.wait_until_ended(id(&job)).await;
    let again = app.cancel(id(&job)).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.code(), "conflict");
    let after = app.get(&format!("/api/jobs/{}", id(&job))).await.json();
    assert_eq!(
        after["status"], "succeeded",
        "a refused cancel changes nothing"
    );
});

#[actix_web::test]
async fn cancelling_a_queued_job_ends_it_without_running_it() {
    for deployment in [Deployment::Embedded, Deployment::Production] {
        let Some(sandbox) = helpers::Sandbox::new(deployment) else {
            continue;
        };
        let settings = sandbox.settings();
        let app = helpers::start_in(sandbox, settings, Hooks::default(), false).await;
        let job = app.start_export(json!({})).await;
        let reply = app.cancel(id(&job)).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED);
        assert_eq!(
            reply.json()["status"],
            "cancelled",
            "{deployment:?}: at once"
        );
        let after = app.get(&format!("/api/jobs/{}", id(&job))).await.json();
        assert_eq!(after["attempts"], 0, "it never ran");
        let again = app.cancel(id(&job)).await;
        assert_eq!(again.status, StatusCode::CONFLICT);
    }
}

/// Settings under which an export of the seeded students takes a while: tiny batches.
fn slow_exports(s: &mut roster::config::Settings) {
    s.export_batch_rows = Some(10);
}

#[actix_web::test]
async fn cancelling_a_running_export_stops_it_within_a_second_and_removes_its_file() {
    for deployment in [Deployment::Embedded, Deployment::Production] {
        let Some(app) = spawn_with(deployment, slow_exports, Hooks::default()).await else {
            continue;
        };
        app.seed(100_000);
        let job = app.start_export(json!({})).await;
        app.wait_for(id(&job), Duration::from_secs(30), |j| {
            j["status"] == "running" && j["progress"]["done"].as_i64() > Some(0)
        })
        .await;
        let asked = Instant::now();
        let reply = app.cancel(id(&job)).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED);
        let done = app.wait_until_ended(id(&job)).await;
        assert_eq!(done["status"], "cancelled", "{deployment:?}: {done}");
        assert!(
            asked.elapsed() < Duration::from_millis(1500),
            "took {:?}",
            asked.elapsed()
        );
        let leftovers: Vec<_> = std::fs::read_dir(&app.settings.export_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(leftovers.is_empty(), "no partial file: {leftovers:?}");
    }
}

// Guarantee 6: time limit.

/// A job that never ends by itself.
struct Endless;

impl StandIn for Endless {
    fn run(&self, _job: &Job, attempt: &mut Attempt<'_>) -> Result<Value, JobError> {
        // "Never" is bounded, so that no test leaves a thread spinning for ever.
        for done in 1..6_000 {
            attempt.progress(done, done + 1, false)?;
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(json!({"rows": 0}))
    }
}

#[actix_web::test]
async fn a_job_past_its_time_limit_fails_as_timed_out() {
    for deployment in [Deployment::Embedded, Deployment::Production] {
        let hooks = helpers::instead_of_export(Endless);
        let Some(app) = spawn_with(deployment, |s| s.job_timeout_secs = 1, hooks).await else {
            continue;
        };
        let job = app.start_export(json!({})).await;
        let done = app.wait_until_ended(id(&job)).await;
        assert_eq!(done["status"], "failed");
        assert!(
            done["error"].as_str().unwrap().contains("timed out"),
            "{done}"
        );
        assert_eq!(done["attempts"], 1, "a time-out is not retried");
    }
}

// Flow control: the consumer never takes more jobs than it has idle workers.

#[actix_web::test]
async fn the_consumer_holds_no_more_jobs_than_idle_workers() {
    let hooks = helpers::instead_of_export(Endless);
    let Some(app) = spawn_with(Deployment::Production, |s| s.concurrency = 2, hooks).await else {
        return;
    };
    for i in 0..10 {
        app.start_export(json!({ "max_age": 150 - i })).await;
    }
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    let running = app.get("/api/jobs?status=running").await.json();
    assert_eq!(
        running["items"].as_array().unwrap().len(),
        2,
        "one per worker"
    );
    let queued = app.get("/api/jobs?status=queued").await.json();
    assert_eq!(
        queued["items"].as_array().unwrap().len(),
        8,
        "the rest wait in the table, not in memory"
    );
}

#[actix_web::test]
async fn an_export_past_its_time_to_live_is_gone() {
    for deployment in [Deployment::Embedded, Deployment::Production] {
        let Some(app) = spawn_with(deployment, |s| s.export_ttl_secs = 1, Hooks::default()).await
        else {
            continue;
        };
        let job = app.start_export(json!({})).await;
        app.wait_until_ended(id(&job)).await;
        assert_eq!(
            app.get(&format!("/api/jobs/{}/download", id(&job)))
                .await
                .status,
            StatusCode::OK
        );
        actix_web::rt::time::sleep(Duration::from_millis(1100)).await;
        let gone = app.get(&format!("/api/jobs/{}/download", id(&job))).await;
        assert_eq!(gone.status, StatusCode::GONE, "{deployment:?}");
        assert_eq!(gone.code(), "gone");
    }
}

both_deployments!(a_job_can_be_claimed_only_once, |app| async move {
    // No workers compete here: claim by hand, as two consumers would.
    let other = app.sandbox.sharing();
    let settings = other.settings();
    let web_only = helpers::start_in(other, settings, Hooks::default(), false).await;
    let job = web_only
        .start_export(json!({"min_age": 1, "max_age": 1}))
        .await;
    let job_id: JobId = id(&job).parse().unwrap();
    let mut conn = web_only.pool.get().unwrap();
    let lease = std::time::Duration::from_secs(30);
    // The app's own workers may take it first; then both hand claims must fail.
    let first = crate::helpers::claim(&mut conn, &job_id, "a", lease).unwrap();
    let second = crate::helpers::claim(&mut conn, &job_id, "b", lease).unwrap();
    assert!(second.is_none(), "a second claim must fail");
    if let Some((claimed, token)) = first {
        assert_eq!(claimed.status, JobStatus::Running);
        assert_eq!(claimed.lease_owner, Some(token.owner.clone()));
        assert!(token.owner.as_str().starts_with("a/"));
    }
});

both_deployments!(
    the_noop_kind_is_refused_unless_benchmarks_ask_for_it,
    |app| async move {
        let reply = app.post("/api/exports", json!({"kind": "noop"})).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(reply.json()["error"]["fields"]["kind"].is_string());
        let jobs = app.get("/api/jobs").await.json();
        assert_eq!(jobs["items"].as_array().unwrap().len(), 0);
    }
);

#[actix_web::test]
async fn with_roster_bench_kinds_a_noop_job_runs_and_succeeds_with_nothing() {
    let app = spawn_with(
        Deployment::Embedded,
        |s| s.bench_kinds = true,
        Hooks::default(),
    )
    .await
    .unwrap();
    let refused = app
        .post("/api/exports", json!({"kind": "noop", "format": "csv"}))
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let reply = app.post("/api/exports", json!({"kind": "noop"})).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    let done = app.wait_until_ended(id(&reply.json())).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["kind"], "noop");
    assert_eq!(done["result"], json!({}));
}

/// diesel reads no final result of a COPY, so a server error in the middle of one ends
/// its stream as if the rows were all there. The export must fail that attempt, not take
/// the short read for the end of the rows (and write a short file that passes for whole).
#[test]
fn a_copy_the_server_ends_with_an_error_fails_instead_of_ending_the_export_early() {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    use roster::kinds::export_copy;
    use roster::models::student::StudentFilter;

    let Some(sandbox) = helpers::Sandbox::new(Deployment::Production) else {
        return;
    };
    crate::process::seed(&sandbox, 1_000_000);
    let pool = roster::db::connect(&sandbox.database_url, 4).unwrap();
    let mut conn = pool.get().unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    // A writer that stalls after the first rows: the server, unable to send, runs past
    // the statement timeout and ends the COPY with an error.
    let writer = std::thread::spawn(move || {
        let _first = rx.recv();
        std::thread::sleep(Duration::from_millis(1500));
        rx.iter().count()
    });
    let read = conn
        .transaction(|c| {
            c.batch_execute("SET LOCAL statement_timeout = '300ms'")?;
            let filter = StudentFilter::default();
            Ok::<_, diesel::result::Error>(export_copy::read(
                c, &pool, &filter, None, 2_000_000, &tx,
            ))
        })
        .unwrap();
    drop(tx);
    writer.join().unwrap();
    let error = read.expect_err("a COPY cut short by the server is an error");
    assert!(
        error.to_string().contains("the COPY did not complete"),
        "{error}"
    );
}
