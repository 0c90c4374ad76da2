//! Several real roster processes on one Redis and PostgreSQL: events across processes,
//! scale-out, and graceful shutdown with real signals (guarantee 7).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{Deployment, Sandbox};
use crate::process::{seed, Roster};
use crate::websocket::WsClient;

fn id(job: &Value) -> String {
    job["id"].as_str().unwrap().to_owned()
}

fn log_of(sandbox: &Sandbox, name: &str) -> String {
    std::fs::read_to_string(sandbox.dir.path().join(name)).unwrap_or_default()
}

#[actix_web::test]
async fn a_browser_on_one_process_sees_every_event_of_a_job_run_by_another() {
    let Some(sandbox) = Sandbox::new(Deployment::Production) else {
        return;
    };
    seed(&sandbox, 50_000);
    let web = Roster::start(&sandbox, &["serve", "--no-workers"], &[]).await;
    let _worker = Roster::worker(&sandbox, &[("ROSTER_EXPORT_BATCH_ROWS", "5")], "worker.log");
    let job = web.post("/api/exports", json!({})).await;
    let mut ws = WsClient::connect(&web.address, &format!("/ws/jobs/{}", id(&job))).await;
    let frames = ws.until_closed().await;
    assert_eq!(frames[0]["type"], "snapshot");
    let mut seq = frames[0]["job"]["seq"].as_i64().unwrap();
    for frame in &frames[1..] {
        let next = frame["seq"].as_i64().unwrap();
        assert_eq!(next, seq + 1, "every event, in order: {frame}");
        seq = next;
    }
    let last = frames.last().unwrap();
    assert_eq!(last["status"], "succeeded", "{last}");
    assert!(
        frames.iter().any(|f| f["type"] == "progress"),
        "progress crossed processes"
    );
    assert!(log_of(&sandbox, "worker.log").contains(&format!("job {} succeeded", id(&job))));
}

#[actix_web::test]
async fn two_workers_share_two_hundred_jobs_each_run_once_and_survive_a_kill() {
    let Some(sandbox) = Sandbox::new(Deployment::Production) else {
        return;
    };
    seed(&sandbox, 200_000);
    let web = Roster::start(&sandbox, &["serve", "--no-workers"], &[]).await;
    let env = [
        ("ROSTER_CONCURRENCY", "4"),
        ("ROSTER_EXPORT_BATCH_ROWS", "10"),
    ];
    let first = Roster::worker(&sandbox, &env, "worker-1.log");
    let _second = Roster::worker(&sandbox, &env, "worker-2.log");
    let mut jobs = Vec::new();
    for i in 0..200 {
        let age = 5 + i % 80;
        let job = web
            .post("/api/exports", json!({"min_age": age, "max_age": age}))
            .await;
        jobs.push(id(&job));
    }
    for job in &jobs {
        let done = web.wait_for(job, |j| j["status"] == "succeeded").await;
        assert_eq!(done["attempts"], 1, "exactly once: {done}");
    }
    let (one, two) = (
        log_of(&sandbox, "worker-1.log"),
        log_of(&sandbox, "worker-2.log"),
    );
    let ran = |log: &str| {
        jobs.iter()
            .filter(|j| log.contains(&format!("job {j} succeeded")))
            .count()
    };
    let (by_one, by_two) = (ran(&one), ran(&two));
    assert_eq!(by_one + by_two, 200, "each job ran in one worker");
    assert!(
        by_one > 0 && by_two > 0,
        "both took a share: {by_one} / {by_two}"
    );

    // A big export; kill whichever worker runs it.
    let big = web.post("/api/exports", json!({})).await;
    web.wait_for(&id(&big), |j| {
        j["status"] == "running" && j["progress"]["done"].as_i64() > Some(0)
    })
    .await;
    let started = format!("job {} started", id(&big));
    let survivor_log = if log_of(&sandbox, "worker-1.log").contains(&started) {
        first.kill();
        "worker-2.log"
    } else {
        drop(_second);
        "worker-1.log"
    };
    let done = web
        .wait_for(&id(&big), |j| j["status"] == "succeeded")
        .await;
    assert_eq!(done["attempts"], 2, "{done}");
    assert_eq!(done["result"]["rows"], 200_000);
    assert!(log_of(&sandbox, survivor_log).contains(&format!("job {} succeeded", id(&big))));
}

#[actix_web::test]
async fn sigterm_lets_a_running_export_finish_within_the_grace_period() {
    for deployment in [Deployment::Embedded, Deployment::Production] {
        let Some(sandbox) = Sandbox::new(deployment) else {
            continue;
        };
        seed(&sandbox, 200_000);
        let env = [
            ("ROSTER_EXPORT_BATCH_ROWS", "5"),
            ("ROSTER_SHUTDOWN_GRACE_SECS", "60"),
        ];
        let mut server = Roster::serve(&sandbox, &env).await;
        let job = server.post("/api/exports", json!({})).await;
        server
            .wait_for(&id(&job), |j| {
                j["status"] == "running" && j["progress"]["done"].as_i64() > Some(0)
            })
            .await;
        server.signal_term();
        let status = server.wait_exit(Duration::from_secs(60)).expect("exits");
        assert!(status.success(), "{deployment:?}: {status}");
        let restarted = Roster::serve(&sandbox, &[]).await;
        let done = restarted.get(&format!("/api/jobs/{}", id(&job))).await;
        assert_eq!(
            done["status"], "succeeded",
            "{deployment:?}: finished before exiting: {done}"
        );
        assert_eq!(done["attempts"], 1);
        restarted.stop();
    }
}

#[actix_web::test]
async fn sigterm_with_a_short_grace_exits_in_time_and_the_job_runs_on_the_next_start() {
    let Some(sandbox) = Sandbox::new(Deployment::Production) else {
        return;
    };
    seed(&sandbox, 400_000);
    let env = [
        ("ROSTER_EXPORT_BATCH_ROWS", "5"),
        ("ROSTER_SHUTDOWN_GRACE_SECS", "1"),
    ];
    let mut server = Roster::serve(&sandbox, &env).await;
    let job = server.post("/api/exports", json!({})).await;
    let queued_behind = server
        .post("/api/exports", json!({"min_age": 9, "max_age": 9}))
        .await;
    server
        .wait_for(&id(&job), |j| {
            j["status"] == "running" && j["progress"]["done"].as_i64() > Some(0)
        })
        .await;
    let asked = Instant::now();
    server.signal_term();
    let status = server.wait_exit(Duration::from_secs(15)).expect("exits");
    assert!(
        asked.elapsed() < Duration::from_secs(8),
        "took {:?}",
        asked.elapsed()
    );
    assert!(status.success(), "{status}");

    let restarted = Roster::serve(&sandbox, &[("ROSTER_EXPORT_BATCH_ROWS", "5000")]).await;
    let done = restarted
        .wait_for(&id(&job), |j| j["status"] == "succeeded")
        .await;
    assert_eq!(
        done["attempts"], 1,
        "a released job does not use up an attempt: {done}"
    );
    assert_eq!(done["result"]["rows"], 400_000);
    assert!(
        done["result"]["resumed_rows"].as_i64() > Some(0),
        "the next start resumes where the released attempt stopped: {done}"
    );
    let other = restarted
        .wait_for(&id(&queued_behind), |j| j["status"] == "succeeded")
        .await;
    assert_eq!(other["attempts"], 1);
    let files: Vec<String> = std::fs::read_dir(sandbox.dir.path().join("exports"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files.iter().all(|f| !f.starts_with('.')),
        "no temporary file: {files:?}"
    );
    restarted.stop();
}

#[actix_web::test]
async fn a_second_signal_stops_serve_and_worker_at_once_without_waiting_out_the_grace() {
    let Some(sandbox) = Sandbox::new(Deployment::Embedded) else {
        return;
    };
    seed(&sandbox, 200_000);
    let slow = [
        ("ROSTER_EXPORT_BATCH_ROWS", "5"),
        ("ROSTER_SHUTDOWN_GRACE_SECS", "60"),
    ];
    // The web process takes the jobs; `serve` or `worker` runs them (sharing the
    // database, as the in-process broker allows).
    let web = Roster::start(&sandbox, &["serve", "--no-workers"], &[]).await;
    for (n, (args, signal, status)) in [
        (&["worker"][..], libc::SIGTERM, 143),
        (&["serve"][..], libc::SIGINT, 130),
        (&["worker"][..], libc::SIGINT, 130),
    ]
    .into_iter()
    .enumerate()
    {
        let mut runner = Roster::spawn(&sandbox, args, &slow, &format!("runner-{n}.log"));
        let job = web.post("/api/exports", json!({"min_age": n})).await;
        web.wait_for(&id(&job), |j| {
            j["status"] == "running" && j["progress"]["done"].as_i64() > Some(0)
        })
        .await;
        let asked = Instant::now();
        // The second comes before the runtime has looked at the first.
        runner.signal_twice(signal);
        let exited = runner.wait_exit(Duration::from_secs(20)).expect("exits");
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "{args:?}: took {:?} with a grace of 60 s",
            asked.elapsed()
        );
        assert_eq!(exited.code(), Some(status), "{args:?}: {exited}");
    }
    web.stop();
}

#[actix_web::test]
async fn sigterm_closes_websockets_as_going_away_and_exits_promptly() {
    let Some(sandbox) = Sandbox::new(Deployment::Embedded) else {
        return;
    };
    let mut server = Roster::serve(&sandbox, &[("ROSTER_SHUTDOWN_GRACE_SECS", "30")]).await;
    let mut ws = WsClient::connect(&server.address, "/ws").await;
    ws.send(json!({"subscribe": "*"})).await;
    let asked = Instant::now();
    server.signal_term();
    while ws.next(Duration::from_secs(10)).await.is_some() {}
    assert_eq!(ws.closed, Some(Some(awc::ws::CloseCode::Away)));
    let status = server.wait_exit(Duration::from_secs(20)).expect("exits");
    assert!(status.success());
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "an open WebSocket did not hold the shutdown up: {:?}",
        asked.elapsed()
    );
}
