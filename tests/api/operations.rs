//! What an operator's dashboard reads (issue 13): the live workers and what they run
//! (`/api/workers`), the last minutes of jobs (`/api/stats`), a job's event stream
//! (`/api/jobs/{id}/events`, Server-Sent Events), and every method answered in the API's
//! shape (HEAD as GET, a JSON 405 with `Allow`).

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::{header::HeaderMap, Method, StatusCode};
use actix_web::web::Bytes;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use futures_util::{Stream, StreamExt};
use roster::config::AuthSetting;
use roster::domain::user::Role;
use roster::models::job::{self, Ending};
use roster::schema::{job_attempts, jobs, workers};
use serde_json::{json, Value};

use crate::access::add_user;
use crate::helpers::{
    self, instead_of_export, spawn_with, web_only, Deployment, Gate, Sandbox, TestApp,
};
use crate::process::Roster;
use crate::{both_deployments, each_deployment};

fn id(job: &Value) -> String {
    job["id"].as_str().unwrap().to_owned()
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

/// Tokens of an admin and of two members.
struct People {
    admin: String,
    ada: String,
    bob: String,
}

/// [`gated`], with signing in required and [`People`].
async fn gated_with_people(deployment: Deployment) -> Option<(TestApp, Arc<AtomicBool>, People)> {
    let (app, gate) = gated(deployment, 0, |s| s.auth = AuthSetting::Required).await?;
    let people = People {
        admin: add_user(&app, "root", Role::Admin),
        ada: add_user(&app, "ada", Role::Member),
        bob: add_user(&app, "bob", Role::Member),
    };
    Some((app, gate, people))
}

/// A process with workers whose exports wait for `gate` (then report `steps` steps).
async fn gated(
    deployment: Deployment,
    steps: u64,
    configure: impl FnOnce(&mut roster::config::Settings),
) -> Option<(TestApp, Arc<AtomicBool>)> {
    let open = Arc::new(AtomicBool::new(false));
    let hooks = instead_of_export(Gate {
        open: open.clone(),
        steps,
    });
    let app = spawn_with(deployment, configure, hooks).await?;
    Some((app, open))
}

/// Polls `GET /api/workers` as `token` until `done` holds; returns that answer.
async fn workers_until(app: &TestApp, token: Option<&str>, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = app.call(token, Method::GET, "/api/workers", None).await;
        assert_eq!(reply.status, StatusCode::OK);
        let workers = reply.json();
        if done(&workers) {
            return workers;
        }
        assert!(Instant::now() < deadline, "never got there: {workers}");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

fn listed(workers: &Value) -> &Vec<Value> {
    workers["workers"].as_array().unwrap()
}

// ---- /api/workers ----

async fn a_process_with_workers_is_listed_with_the_jobs_it_runs(deployment: Deployment) {
    let Some((app, gate)) = gated(deployment, 0, |_| {}).await else {
        return;
    };
    let idle = workers_until(&app, None, |w| listed(w).len() == 1).await;
    let me = &idle["workers"][0];
    assert_eq!(me["pid"], std::process::id(), "{me}");
    assert_eq!(me["queue"], app.settings.queue.as_str());
    assert_eq!(me["concurrency"], 2);
    assert_eq!(
        (me["busy"].clone(), me["running"].clone()),
        (json!(0), json!([]))
    );
    assert!(me["node"].as_str().is_some_and(|n| !n.is_empty()));
    assert!(me["id"].as_str().unwrap().parse::<uuid::Uuid>().is_ok());
    assert!(time(&me["started_at"]) <= time(&me["last_seen"]));
    assert_eq!(idle["last_seen"], me["last_seen"]);
    assert_eq!(idle["live_after_secs"], 10);

    let job = app.start_export(json!({})).await;
    let busy = workers_until(&app, None, |w| w["workers"][0]["busy"] == 1).await;
    assert_eq!(busy["workers"][0]["running"], json!([id(&job)]));
    assert!(
        time(&busy["workers"][0]["last_seen"]) > time(&me["last_seen"]),
        "it beats"
    );
    let metrics = String::from_utf8(app.get("/metrics").await.body).unwrap();
    assert!(metrics.contains("roster_workers_live 1"), "{metrics}");

    gate.store(true, Ordering::SeqCst);
    app.wait_until_ended(&id(&job)).await;
    workers_until(&app, None, |w| {
        w["workers"][0]["busy"] == 0 && w["workers"][0]["running"] == json!([])
    })
    .await;
}

each_deployment!(a_process_with_workers_is_listed_with_the_jobs_it_runs);

async fn a_worker_process_is_gone_from_the_list_after_a_graceful_stop(deployment: Deployment) {
    let Some(sandbox) = Sandbox::new(deployment) else {
        return;
    };
    let other = sandbox.sharing();
    let settings = sandbox.settings();
    let web = helpers::start_in(sandbox, settings, Default::default(), false).await;
    assert_eq!(
        listed(&web.get("/api/workers").await.json()).len(),
        0,
        "serving without workers is no worker"
    );
    let mut worker = Roster::worker(&other, &[], "worker.log");
    let pid = worker.child.id();
    let running = workers_until(&web, None, |w| listed(w).iter().any(|w| w["pid"] == pid)).await;
    assert_eq!(listed(&running).len(), 1, "{running}");
    assert!(worker.terminate().success());
    let after = web.get("/api/workers").await.json();
    assert_eq!(after["workers"], json!([]), "{after}");
    assert!(after["last_seen"].is_null(), "its row was deleted: {after}");
}

each_deployment!(a_worker_process_is_gone_from_the_list_after_a_graceful_stop);

both_deployments!(
    a_silent_worker_is_not_live_and_is_forgotten_after_an_hour,
    |app| async move {
        let mine = workers_until(&app, None, |w| listed(w).len() == 1).await;
        let mut conn = app.pool.get().unwrap();
        let ghost = roster::models::worker::Beat {
            process: roster::models::worker::Process {
                id: "ghost".into(),
                node: "elsewhere".into(),
                name: "elsewhere-1-abc".into(),
                pid: 1,
                queue: app.settings.queue.clone(),
                concurrency: 4,
            },
            running: vec![],
        };
        roster::models::worker::beat(&mut conn, &ghost).unwrap();
        let back = |ago: chrono::Duration| {
            diesel::update(workers::table.find("ghost"))
                .set(workers::last_seen.eq(Utc::now().naive_utc() - ago))
                .execute(&mut *app.pool.get().unwrap())
                .unwrap()
        };
        back(chrono::Duration::seconds(11));
        let now = app.get("/api/workers").await.json();
        assert_eq!(listed(&now).len(), 1, "not live: {now}");
        assert_eq!(now["workers"][0]["id"], mine["workers"][0]["id"]);
        back(chrono::Duration::minutes(59));
        assert_eq!(
            roster::jobs::maintenance::Housekeeping::run_once(
                &roster::jobs::maintenance::ForgetWorkers::new(app.pool.clone())
            )
            .unwrap(),
            0
        );
        back(chrono::Duration::minutes(61));
        assert_eq!(
            roster::jobs::maintenance::Housekeeping::run_once(
                &roster::jobs::maintenance::ForgetWorkers::new(app.pool.clone())
            )
            .unwrap(),
            1
        );
        let left: i64 = workers::table.count().get_result(&mut *conn).unwrap();
        assert_eq!(left, 1, "the live one stays");
    }
);

async fn a_member_sees_every_worker_but_only_their_own_running_jobs(deployment: Deployment) {
    let Some((app, gate, People { admin, ada, bob })) = gated_with_people(deployment).await else {
        return;
    };
    let mut jobs = Vec::new();
    for token in [&ada, &bob] {
        let reply = app
            .call(Some(token), Method::POST, "/api/exports", Some(json!({})))
            .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED);
        jobs.push(id(&reply.json()));
    }
    let all = workers_until(&app, Some(&admin), |w| w["workers"][0]["busy"] == 2).await;
    let ids: HashSet<&str> = all["workers"][0]["running"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(ids, jobs.iter().map(String::as_str).collect());
    for (token, theirs) in [(&ada, &jobs[0]), (&bob, &jobs[1])] {
        let seen = workers_until(&app, Some(token), |_| true).await;
        assert_eq!(seen["workers"][0]["busy"], 2, "every job counts: {seen}");
        assert_eq!(seen["workers"][0]["running"], json!([theirs]));
    }
    let anonymous = app.call(None, Method::GET, "/api/workers", None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    gate.store(true, Ordering::SeqCst);
}

each_deployment!(a_member_sees_every_worker_but_only_their_own_running_jobs);

// ---- /api/stats ----

fn total(stats: &Value, field: &str) -> i64 {
    stats["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m[field].as_i64().unwrap())
        .sum()
}

/// Claims a queued job by hand (the test plays the worker).
fn claim(app: &TestApp, job: &Value) -> job::AttemptToken {
    let mut conn = app.pool.get().unwrap();
    crate::helpers::claim(
        &mut conn,
        &id(job).parse().unwrap(),
        "test",
        Duration::from_secs(60),
    )
    .unwrap()
    .expect("claimable")
    .1
}

fn finish(app: &TestApp, token: &job::AttemptToken, ending: Ending) {
    let mut conn = app.pool.get().unwrap();
    job::finish(&mut conn, token, &ending).unwrap().unwrap();
}

async fn stats_count_ended_jobs_queue_and_waits(deployment: Deployment) {
    let Some(web) = web_only(deployment).await else {
        return;
    };
    let mut made = Vec::new();
    for age in 1..=5 {
        made.push(web.start_export(json!({ "min_age": age })).await);
    }
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    let succeeded = claim(&web, &made[0]);
    finish(
        &web,
        &succeeded,
        Ending::Succeeded {
            result: "{}".into(),
            committed: false,
        },
    );
    let failed = claim(&web, &made[1]);
    finish(
        &web,
        &failed,
        Ending::Failed {
            error: "no".into(),
            result: None,
        },
    );
    assert_eq!(web.cancel(&id(&made[2])).await.status, StatusCode::ACCEPTED);
    claim(&web, &made[4]); // stays running; made[3] stays queued

    let stats = web.get("/api/stats").await;
    assert_eq!(stats.status, StatusCode::OK);
    let stats = stats.json();
    assert_eq!(stats["minutes"], 60);
    let series = stats["series"].as_array().unwrap();
    assert_eq!(series.len(), 60);
    for pair in series.windows(2) {
        assert_eq!(
            time(&pair[1]["minute"]) - time(&pair[0]["minute"]),
            chrono::Duration::minutes(1)
        );
    }
    let (last, now) = (time(&series[59]["minute"]), time(&stats["now"]));
    assert!(
        last <= now && now < last + chrono::Duration::minutes(1),
        "{stats}"
    );
    assert_eq!(total(&stats, "succeeded"), 1);
    assert_eq!(total(&stats, "failed"), 1);
    assert_eq!(total(&stats, "cancelled"), 1);
    assert_eq!(
        (stats["queue_depth"].clone(), stats["running"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(
        series[59]["queue_depth"], 1,
        "rebuilt as now: {}",
        series[59]
    );
    let longest = series
        .iter()
        .filter_map(|m| m["wait_p95_ms"].as_f64())
        .fold(0.0, f64::max);
    assert!((300.0..60_000.0).contains(&longest), "{stats}");
    assert!(series.iter().any(|m| m["wait_p50_ms"].is_number()));
    assert!(series
        .iter()
        .all(|m| m["wait_p50_ms"].as_f64() <= m["wait_p95_ms"].as_f64()));

    let short = web.get("/api/stats?minutes=5").await.json();
    assert_eq!(short["series"].as_array().unwrap().len(), 5);
    for bad in [
        "minutes=0",
        "minutes=1441",
        "minutes=abc",
        "minutes=-5",
        "hours=1",
    ] {
        let reply = web.get(&format!("/api/stats?{bad}")).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(reply.code(), "invalid");
        assert!(reply.json()["error"]["fields"].is_object(), "{bad}");
    }
}

each_deployment!(stats_count_ended_jobs_queue_and_waits);

async fn stats_rebuild_each_minute_from_the_timestamps(deployment: Deployment) {
    let Some(web) = web_only(deployment).await else {
        return;
    };
    let job = web.start_export(json!({})).await;
    let token = claim(&web, &job);
    finish(
        &web,
        &token,
        Ending::Succeeded {
            result: "{}".into(),
            committed: false,
        },
    );
    // Its life, moved into the window: created in minute 10, started in 15, ended in 16.
    let first = web.get("/api/stats?minutes=30").await.json();
    let minute = |i: usize| time(&first["series"][i]["minute"]);
    let at = |i: usize| (minute(i) + chrono::Duration::seconds(30)).naive_utc();
    {
        let mut conn = web.pool.get().unwrap();
        diesel::update(jobs::table.find(id(&job)))
            .set((
                jobs::created_at.eq(at(10)),
                jobs::run_after.eq(at(10)),
                jobs::started_at.eq(Some(at(15))),
                jobs::finished_at.eq(Some(at(16))),
            ))
            .execute(&mut *conn)
            .unwrap();
        diesel::update(job_attempts::table.filter(job_attempts::job_id.eq(id(&job))))
            .set((
                job_attempts::started_at.eq(at(15)),
                job_attempts::ended_at.eq(Some::<NaiveDateTime>(at(16))),
            ))
            .execute(&mut *conn)
            .unwrap();
    }
    let stats = web.get("/api/stats?minutes=30").await.json();
    // Found by time: the window may have moved on by a minute meanwhile.
    for i in 0..30 {
        let Some(m) = stats["series"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| time(&m["minute"]) == minute(i))
        else {
            continue;
        };
        let queued = (10..15).contains(&i);
        assert_eq!(m["queue_depth"], i64::from(queued), "minute {i}: {m}");
        assert_eq!(m["succeeded"], i64::from(i == 16), "minute {i}: {m}");
        let wait = (i == 15).then_some(5.0 * 60_000.0);
        assert_eq!(m["wait_p50_ms"].as_f64(), wait, "minute {i}: {m}");
        assert_eq!(m["wait_p95_ms"].as_f64(), wait, "minute {i}: {m}");
    }
    assert_eq!(total(&stats, "succeeded"), 1);
}

each_deployment!(stats_rebuild_each_minute_from_the_timestamps);

async fn a_member_gets_the_stats_of_their_own_jobs(deployment: Deployment) {
    let Some((app, gate, People { admin, ada, bob })) = gated_with_people(deployment).await else {
        return;
    };
    let start = |token: String| {
        let app = &app;
        async move {
            let reply = app
                .call(Some(&token), Method::POST, "/api/exports", Some(json!({})))
                .await;
            id(&reply.json())
        }
    };
    let (adas, bobs) = (start(ada.clone()).await, start(bob.clone()).await);
    let path = format!("/api/jobs/{adas}/cancel");
    let cancelled = app.call(Some(&ada), Method::POST, &path, None).await;
    assert_eq!(cancelled.status, StatusCode::ACCEPTED);
    gate.store(true, Ordering::SeqCst);
    for (token, job) in [(&ada, &adas), (&bob, &bobs)] {
        let path = format!("/api/jobs/{job}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while app.call(Some(token), Method::GET, &path, None).await.json()["finished_at"].is_null()
        {
            assert!(Instant::now() < deadline, "{job} never ended");
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let stats = |token: String| {
        let app = &app;
        async move {
            let reply = app
                .call(Some(&token), Method::GET, "/api/stats", None)
                .await;
            assert_eq!(reply.status, StatusCode::OK);
            let stats = reply.json();
            (total(&stats, "succeeded"), total(&stats, "cancelled"))
        }
    };
    assert_eq!(stats(ada).await, (0, 1));
    assert_eq!(stats(bob).await, (1, 0));
    assert_eq!(stats(admin).await, (1, 1));
    let anonymous = app.call(None, Method::GET, "/api/stats", None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

each_deployment!(a_member_gets_the_stats_of_their_own_jobs);

// ---- /api/jobs/{id}/events ----

/// One event of a stream.
#[derive(Debug)]
pub(crate) struct Event {
    pub event: String,
    pub id: i64,
    pub data: Value,
}

/// A Server-Sent Events response, read event by event.
pub(crate) struct EventStream {
    status: StatusCode,
    headers: HeaderMap,
    body: Pin<Box<dyn Stream<Item = Result<Bytes, awc::error::PayloadError>>>>,
    buffer: Vec<u8>,
}

impl EventStream {
    pub async fn open(app: &TestApp, job: &str, token: Option<&str>, last: Option<i64>) -> Self {
        let mut req = app
            .client
            .get(format!("{}/api/jobs/{job}/events", app.address));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(last) = last {
            req = req.insert_header(("Last-Event-ID", last.to_string()));
        }
        let res = req.send().await.expect("request sent");
        Self {
            status: res.status(),
            headers: res.headers().clone(),
            body: Box::pin(res),
            buffer: Vec::new(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The next event (comments skipped); `None` once the server ended the stream.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (None, None, None);
                for line in std::str::from_utf8(&block).unwrap().lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v).unwrap());
                    } else {
                        let comment = line.is_empty() || line.starts_with(':');
                        assert!(comment, "not an event stream line: {line:?}");
                    }
                }
                if let (Some(event), Some(id), Some(data)) = (event, id, data) {
                    return Some(Event { event, id, data });
                }
                continue;
            }
            let chunk = actix_web::rt::time::timeout(Duration::from_secs(30), self.body.next())
                .await
                .expect("an event in time");
            match chunk {
                Some(Ok(bytes)) => self.buffer.extend_from_slice(&bytes),
                Some(Err(e)) => panic!("event stream broke: {e}"),
                None => {
                    assert!(self.buffer.is_empty(), "a partial event at the end");
                    return None;
                }
            }
        }
    }

    /// Every event until the server ends the stream.
    pub async fn rest(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        events
    }
}

/// Checks that `events` are live events after `after`, in order, each with its `seq`
/// as its id, ending with the job's terminal status.
fn assert_live_until_the_end(events: &[Event], after: i64, status: &str) {
    let mut last = after;
    for e in events {
        assert!(e.id > last, "in order, once: {events:?}");
        assert_eq!(e.data["seq"], e.id);
        assert_eq!(e.data["type"].as_str(), Some(e.event.as_str()));
        last = e.id;
    }
    let end = events.last().expect("events");
    assert_eq!(
        (end.event.as_str(), end.data["status"].as_str()),
        ("status", Some(status))
    );
}

async fn the_event_stream_is_the_snapshot_then_every_event_then_the_end(deployment: Deployment) {
    let Some((app, gate)) = gated(deployment, 3, |_| {}).await else {
        return;
    };
    let job = app.start_export(json!({})).await;
    app.wait_for(&id(&job), Duration::from_secs(30), |j| {
        j["status"] == "running"
    })
    .await;
    let mut stream = EventStream::open(&app, &id(&job), None, None).await;
    assert_eq!(stream.status, StatusCode::OK);
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    assert_eq!(stream.header("cache-control"), Some("no-store"));
    assert_eq!(stream.header("x-accel-buffering"), Some("no"));
    let snapshot = stream.next().await.unwrap();
    assert_eq!(snapshot.event, "snapshot");
    assert_eq!(snapshot.data["type"], "snapshot");
    assert_eq!(snapshot.data["job"]["id"], id(&job).as_str());
    assert_eq!(snapshot.data["job"]["status"], "running");
    assert_eq!(snapshot.id, snapshot.data["job"]["seq"].as_i64().unwrap());

    gate.store(true, Ordering::SeqCst);
    let events = stream.rest().await;
    assert_live_until_the_end(&events, snapshot.id, "succeeded");
    let progress: Vec<i64> = events
        .iter()
        .filter(|e| e.event == "progress")
        .map(|e| e.data["done"].as_i64().unwrap())
        .collect();
    assert_eq!(progress, [1, 2, 3], "every step, live: {events:?}");
    let ended = app.get(&format!("/api/jobs/{}", id(&job))).await.json();
    assert_eq!(events.last().unwrap().id, ended["seq"].as_i64().unwrap());
}

each_deployment!(the_event_stream_is_the_snapshot_then_every_event_then_the_end);

async fn a_resumed_event_stream_has_the_snapshot_only_if_the_job_changed(deployment: Deployment) {
    let Some((app, gate)) = gated(deployment, 2, |_| {}).await else {
        return;
    };
    let job = app.start_export(json!({})).await;
    let running = app
        .wait_for(&id(&job), Duration::from_secs(30), |j| {
            j["status"] == "running"
        })
        .await;
    let seq = running["seq"].as_i64().unwrap();
    // Up to date: no snapshot, the events from the next one on.
    let mut stream = EventStream::open(&app, &id(&job), None, Some(seq)).await;
    gate.store(true, Ordering::SeqCst);
    let mut events = stream.rest().await;
    // Under load the job may change between the read above and the stream's start (a
    // lease that ran out, say): then, and only then, the snapshot comes first.
    if events[0].event == "snapshot" {
        assert!(events[0].id > seq, "a snapshot of nothing new: {events:?}");
        events.remove(0);
    } else {
        assert_eq!(events[0].event, "progress", "{events:?}");
        assert_eq!(events[0].id, seq + 1);
    }
    assert_live_until_the_end(&events, seq, "succeeded");

    let end = app.wait_until_ended(&id(&job)).await["seq"]
        .as_i64()
        .unwrap();
    let resumed = |last: Option<i64>| {
        let (app, job) = (&app, id(&job));
        async move { EventStream::open(app, &job, None, last).await.rest().await }
    };
    assert!(
        resumed(Some(end)).await.is_empty(),
        "it has seen the end: the stream ends at once"
    );
    for last in [Some(end - 1), Some(0), None] {
        let events = resumed(last).await;
        assert_eq!(events.len(), 1, "{last:?}: {events:?}");
        assert_eq!((events[0].event.as_str(), events[0].id), ("snapshot", end));
        assert_eq!(events[0].data["job"]["status"], "succeeded");
    }
}

each_deployment!(a_resumed_event_stream_has_the_snapshot_only_if_the_job_changed);

async fn event_streams_follow_the_access_rules_of_jobs(deployment: Deployment) {
    let Some((app, gate, People { admin, ada, bob })) = gated_with_people(deployment).await else {
        return;
    };
    let job = app
        .call(Some(&ada), Method::POST, "/api/exports", Some(json!({})))
        .await
        .json();
    let path = format!("/api/jobs/{}/events", id(&job));
    let theirs = app.call(Some(&bob), Method::GET, &path, None).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND, "another member's job");
    assert_eq!(theirs.code(), "not_found");
    let anonymous = app.call(None, Method::GET, &path, None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(anonymous.header("www-authenticate").is_some());
    for missing in [
        "/api/jobs/00000000-0000-4000-8000-000000000000/events",
        "/api/jobs/nope/events",
    ] {
        let reply = app.call(Some(&admin), Method::GET, missing, None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{missing}");
    }
    for token in [&ada, &admin] {
        let mut stream = EventStream::open(&app, &id(&job), Some(token), None).await;
        assert_eq!(stream.status, StatusCode::OK);
        assert_eq!(stream.next().await.unwrap().event, "snapshot");
    }
    gate.store(true, Ordering::SeqCst);
}

each_deployment!(event_streams_follow_the_access_rules_of_jobs);

// ---- methods ----

both_deployments!(
    head_answers_as_get_without_a_body_and_other_methods_get_a_json_405_with_allow,
    |app| async move {
        app.seed(3);
        let job = id(&app.start_export(json!({})).await);
        app.wait_until_ended(&job).await;
        for path in [
            format!("/api/jobs/{job}"),
            format!("/api/jobs/{job}/download"),
            "/api/students".into(),
            "/api/stats?minutes=2".into(),
            "/healthz".into(),
        ] {
            let get = app.get(&path).await;
            let head = app.request(Method::HEAD, &path, None).await;
            assert_eq!(head.status, StatusCode::OK, "{path}");
            assert!(head.body.is_empty(), "{path}");
            assert_eq!(
                head.header("content-type"),
                get.header("content-type"),
                "{path}"
            );
            if !path.contains("stats") {
                let length = get.body.len().to_string();
                assert_eq!(head.header("content-length"), Some(length), "{path}");
            }
        }
        let events = format!("/api/jobs/{job}/events");
        let head = app.request(Method::HEAD, &events, None).await;
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(
            head.header("content-type").as_deref(),
            Some("text/event-stream")
        );
        assert!(head.body.is_empty());

        let job_path = format!("/api/jobs/{job}");
        for (method, path, allow) in [
            (Method::PUT, job_path.as_str(), "DELETE, GET, HEAD"),
            (Method::POST, "/api/jobs", "GET, HEAD"),
            (Method::GET, "/api/exports", "POST"),
            (Method::DELETE, "/api/workers", "GET, HEAD"),
            (Method::OPTIONS, "/api/students", "GET, HEAD, POST"),
            (Method::PATCH, "/healthz", "GET, HEAD"),
        ] {
            let reply = app.request(method.clone(), path, None).await;
            assert_eq!(
                reply.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            assert_eq!(reply.code(), "method_not_allowed", "{method} {path}");
            let mut methods: Vec<String> = reply
                .header("allow")
                .unwrap_or_default()
                .split(',')
                .map(|m| m.trim().to_owned())
                .collect();
            methods.sort();
            assert_eq!(methods.join(", "), allow, "{method} {path}");
        }
        let head = app.request(Method::HEAD, "/api/exports", None).await;
        assert_eq!(head.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(head.header("allow").as_deref(), Some("POST"));
        assert!(head.body.is_empty());
        for path in ["/api/nope", "/api/jobs/x/y/z", "/nope"] {
            let reply = app.get(path).await;
            assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(reply.code(), "not_found", "{path}");
        }
    }
);
