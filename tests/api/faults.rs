//! Faults that used to lose, strand or corrupt a job (each test here failed on the code
//! before its fix): a paused attempt resuming after another finished the job, a cancel
//! meeting a retry, a shutdown or a crash, a delivery whose claim failed, a broker that
//! lost its queue, a job that makes no progress for longer than its lease, a worker whose
//! clock is wrong, files the sweeper must and must not delete, a second SIGTERM, a paused
//! transaction holding an expired job, and an ending whose connection the database
//! dropped.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use roster::config::Settings;
use roster::domain::job::{JobId, JobStatus};
use roster::jobs::store::FileStore;
use roster::jobs::{Attempt, JobError};

use crate::helpers::StandIn;
use roster::models::attempt;
use roster::models::job::{self, Ending, Job};
use roster::startup::Hooks;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::{self, Deployment, Sandbox, TestApp};
use crate::process::{seed, Roster};

/// A lost lease's job due again at once: these tests are about who recovers what, not
/// when (the retry policy's own tests cover the backoff).
fn no_backoff(_attempts: i32) -> Duration {
    Duration::ZERO
}

fn id(job: &Value) -> JobId {
    job["id"].as_str().unwrap().parse().unwrap()
}

/// roster served without workers: the test plays the worker.
async fn web_only(deployment: Deployment) -> Option<TestApp> {
    let sandbox = Sandbox::new(deployment)?;
    let mut settings = sandbox.settings();
    settings.redeliver_secs = 1;
    Some(helpers::start_in(sandbox, settings, Hooks::default(), false).await)
}

/// Files in a directory, by name.
fn files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[actix_web::test]
async fn a_cancel_that_meets_any_other_ending_ends_the_job_cancelled_on_sqlite() {
    cancel_meets_every_ending(Deployment::Embedded).await;
}

#[actix_web::test]
async fn a_cancel_that_meets_any_other_ending_ends_the_job_cancelled_on_postgres() {
    cancel_meets_every_ending(Deployment::Production).await;
}

async fn cancel_meets_every_ending(deployment: Deployment) {
    let Some(web) = web_only(deployment).await else {
        return;
    };
    let endings = [
        Ending::Retry {
            error: "disk full".into(),
            backoff: Duration::ZERO,
        },
        Ending::Release,
        Ending::Failed {
            error: "bad".into(),
            result: None,
        },
        Ending::Succeeded {
            result: "{}".into(),
            committed: false,
        },
    ];
    for (i, ending) in endings.into_iter().enumerate() {
        let accepted = web.start_export(json!({ "min_age": 150 - i })).await;
        let mut conn = web.pool.get().unwrap();
        let (running, token) =
            crate::helpers::claim(&mut conn, &id(&accepted), "test", Duration::from_secs(30))
                .unwrap()
                .expect("claimed by hand before any worker");
        let cancel = web.cancel(&id(&accepted).to_string()).await;
        assert_eq!(cancel.status, StatusCode::ACCEPTED);
        assert!(
            cancel.json()["seq"].as_i64() > Some(running.seq),
            "the request is an event of its own"
        );
        let ended = job::finish(&mut conn, &token, &ending).unwrap().unwrap();
        assert_eq!(
            ended.status,
            JobStatus::Cancelled,
            "{ending:?} met a cancel"
        );
        assert!(ended.result.is_none() && ended.finished_at.is_some());
        let history = attempt::for_job(&mut conn, &ended.id).unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].outcome, Some(attempt::Outcome::Cancelled));
    }
    // A crash: the lease runs out with the cancel requested.
    let accepted = web.start_export(json!({"min_age": 150})).await;
    let mut conn = web.pool.get().unwrap();
    crate::helpers::claim(&mut conn, &id(&accepted), "gone", Duration::from_millis(1))
        .unwrap()
        .unwrap();
    web.cancel(&id(&accepted).to_string()).await;
    actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    let recovered = job::recover_expired(&mut conn, &[], no_backoff).unwrap();
    let ours = recovered.iter().find(|j| j.id == id(&accepted)).unwrap();
    assert_eq!(ours.status, JobStatus::Cancelled, "{ours:?}");
}

#[actix_web::test]
async fn jobs_a_redis_that_lost_its_queue_forgot_run_once_the_workers_start() {
    let Some(sandbox) = Sandbox::new(Deployment::Production) else {
        return;
    };
    let settings = sandbox.settings();
    let web = helpers::start_in(sandbox, settings, Hooks::default(), false).await;
    let mut accepted = Vec::new();
    for i in 0..3 {
        accepted.push(
            web.start_export(json!({"min_age": 30, "max_age": 30 + i}))
                .await,
        );
    }
    // Redis restarted empty (or a replica without the last writes took over): the stream
    // and its group are gone, and the workers that start now create them afresh, so
    // no consumer ever sees NOGROUP.
    let mut redis = redis::Client::open(helpers::redis_url())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(format!("roster:{}:jobs", web.sandbox.queue))
        .query(&mut redis)
        .unwrap();
    let mut settings = web.sandbox.settings();
    settings.redeliver_secs = 1;
    let workers = helpers::start_in(web.sandbox.sharing(), settings, Hooks::default(), true).await;
    for job in &accepted {
        let id = job["id"].as_str().unwrap();
        let done = workers
            .wait_for(id, Duration::from_secs(20), |j| j["status"] == "succeeded")
            .await;
        assert_eq!(done["attempts"], 1);
    }
}

/// Sleeps longer than several leases without reporting progress, then succeeds.
struct Silent(Duration);

impl StandIn for Silent {
    fn run(&self, _job: &Job, _attempt: &mut Attempt<'_>) -> Result<Value, JobError> {
        std::thread::sleep(self.0);
        Ok(json!({"rows": 0}))
    }
}

#[actix_web::test]
async fn a_job_that_reports_no_progress_for_several_leases_keeps_its_lease_on_sqlite() {
    silent_jobs_keep_their_leases(Deployment::Embedded).await;
}

#[actix_web::test]
async fn a_job_that_reports_no_progress_for_several_leases_keeps_its_lease_on_postgres() {
    silent_jobs_keep_their_leases(Deployment::Production).await;
}

/// Two silent jobs, one after the other on the one worker: its lease keeper (a thread
/// for the worker's life) keeps the second attempt's lease as it kept the first's.
async fn silent_jobs_keep_their_leases(deployment: Deployment) {
    let hooks = helpers::instead_of_export(Silent(Duration::from_millis(3_000)));
    let one_worker = |s: &mut Settings| {
        s.lease_secs = 1;
        s.concurrency = 1;
    };
    let Some(quiet) = helpers::spawn_with(deployment, one_worker, hooks).await else {
        return;
    };
    let first = quiet.start_export(json!({})).await;
    let second = quiet.start_export(json!({"min_age": 1})).await;
    for job in [first, second] {
        let done = quiet
            .wait_for(&id(&job).to_string(), Duration::from_secs(30), |j| {
                j["status"] == "succeeded"
            })
            .await;
        assert_eq!(done["attempts"], 1, "never taken for dead: {done}");
    }
}

/// Where Debian's libfaketime lives, if it is installed.
fn libfaketime() -> Option<PathBuf> {
    let found = ["x86_64-linux-gnu", "aarch64-linux-gnu"]
        .iter()
        .map(|arch| PathBuf::from(format!("/usr/lib/{arch}/faketime/libfaketime.so.1")))
        .find(|p| p.exists());
    if found.is_none() && std::env::var("ROSTER_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
        panic!("libfaketime is required (apt-get install faketime)");
    }
    found
}

#[actix_web::test]
async fn a_worker_whose_clock_is_a_minute_slow_keeps_its_lease() {
    let Some(sandbox) = Sandbox::new(Deployment::Production) else {
        return;
    };
    let Some(faketime) = libfaketime() else {
        eprintln!("skipped: libfaketime is not installed");
        return;
    };
    seed(&sandbox, 100_000);
    let faketime = faketime.display().to_string();
    let slow_clock = [
        ("LD_PRELOAD", faketime.as_str()),
        ("FAKETIME", "-60s"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ("ROSTER_EXPORT_BATCH_ROWS", "500"),
        ("ROSTER_CONCURRENCY", "1"),
    ];
    let _worker = Roster::worker(&sandbox, &slow_clock, "slow-clock.log");
    // This process's sweeper reads leases with the right time.
    let settings = sandbox.settings();
    let web = helpers::start_in(sandbox, settings, Hooks::default(), false).await;
    let job = web.start_export(json!({})).await;
    let done = web
        .wait_for(&id(&job).to_string(), Duration::from_secs(60), |j| {
            matches!(j["status"].as_str(), Some("succeeded" | "failed"))
        })
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        done["attempts"], 1,
        "no live lease taken for expired: {done}"
    );
}

#[actix_web::test]
async fn an_attempt_paused_past_its_lease_cannot_touch_the_finished_export() {
    let Some(sandbox) = Sandbox::new(Deployment::Production) else {
        return;
    };
    seed(&sandbox, 300_000);
    let slow = [
        ("ROSTER_EXPORT_BATCH_ROWS", "1000"),
        ("ROSTER_CONCURRENCY", "1"),
    ];
    let paused = Roster::serve(&sandbox, &slow).await;
    let job = paused.post("/api/exports", json!({})).await;
    let job_id = job["id"].as_str().unwrap().to_owned();
    paused
        .wait_for(&job_id, |j| j["progress"]["done"].as_i64() > Some(0))
        .await;
    unsafe { libc::kill(paused.child.id() as i32, libc::SIGSTOP) };
    // The rows change meanwhile, so the two attempts' bytes differ from here on: a
    // stale write into the new attempt's file could not go unnoticed.
    {
        use diesel::{Connection, RunQueryDsl};
        let mut db = diesel::PgConnection::establish(&sandbox.database_url_string()).unwrap();
        diesel::sql_query("UPDATE students SET name = name || ' Jr'")
            .execute(&mut db)
            .unwrap();
    }
    let other = Roster::serve(&sandbox, &slow).await;
    let done = other
        .wait_for(&job_id, |j| j["status"] == "succeeded")
        .await;
    assert_eq!(done["attempts"], 2, "{done}");
    unsafe { libc::kill(paused.child.id() as i32, libc::SIGCONT) };
    // The paused attempt wakes with buffered rows to write; give it time to try.
    actix_web::rt::time::sleep(Duration::from_secs(3)).await;

    let dir = sandbox.dir.path().join("exports");
    let result = &done["result"];
    let file = std::fs::read(dir.join(result["file"].as_str().unwrap())).unwrap();
    assert_eq!(result["bytes"], file.len());
    assert_eq!(result["sha256"], hex::encode(Sha256::digest(&file)));
    let rows: Vec<(i64, String, i32)> = csv::Reader::from_reader(file.as_slice())
        .deserialize()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 300_000);
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<HashSet<_>>().len(),
        300_000
    );
    let after = other.get(&format!("/api/jobs/{job_id}")).await;
    assert_eq!(
        after["seq"], done["seq"],
        "the paused attempt changed nothing"
    );
    assert_eq!(
        files(&dir),
        vec![result["file"].as_str().unwrap().to_owned()],
        "the paused attempt removed its own temporary file and nothing else"
    );
    other.stop();
}

#[actix_web::test]
async fn the_sweeper_deletes_only_roster_s_files_that_no_attempt_can_own() {
    let web = web_only(Deployment::Embedded).await.unwrap();
    let dir = web.settings.export_dir.clone();
    std::fs::create_dir_all(&dir).unwrap();
    let store = FileStore::new(dir.clone(), Duration::from_secs(60));
    let queued = id(&web.start_export(json!({"min_age": 150})).await);
    let running = id(&web.start_export(json!({"min_age": 149})).await);
    let mut conn = web.pool.get().unwrap();
    let (_, token) = crate::helpers::claim(&mut conn, &running, "node", Duration::from_secs(30))
        .unwrap()
        .unwrap();
    let tag = token.tag().to_owned();
    let gone = JobId::new();
    let keep = [
        "notes.txt".to_owned(),
        ".bashrc".to_owned(),
        format!("{running}.csv"), // an old-style name: not roster's any more
        format!(".{running}.1.{tag}.csv.part"),
        format!("{running}.1.{tag}.csv"),
    ];
    let drop = [
        format!(".{queued}.1.deadbeef.csv.part"), // an attempt no checkpoint names
        format!(".{running}.1.deadbeef.csv.part"), // an earlier attempt's
        format!(".{gone}.1.deadbeef.csv.part"),   // a job that is gone
        format!("{gone}.1.deadbeef.jsonl"),
    ];
    for name in keep.iter().chain(&drop) {
        std::fs::write(dir.join(name), "x").unwrap();
    }
    let swept = store.sweep(&mut conn, Duration::ZERO).unwrap();
    assert_eq!(swept.orphans, drop.len());
    let mut left = files(&dir);
    left.sort();
    let mut expected = keep.to_vec();
    expected.sort();
    assert_eq!(left, expected);

    // Ended: only a succeeded job's unexpired result stays, and it goes once expired.
    std::fs::remove_file(dir.join(format!(".{running}.1.{tag}.csv.part"))).unwrap();
    let finished = store.create_temp(&token, "csv").unwrap();
    let (name, path) = store.commit(finished).unwrap();
    let result = |expires_at: chrono::DateTime<chrono::Utc>| Ending::Succeeded {
        result: json!({"rows": 0, "bytes": 1, "sha256": "", "file": name,
            "content_type": "text/csv", "expires_at": expires_at})
        .to_string(),
        committed: false,
    };
    let past = chrono::Utc::now() - chrono::Duration::seconds(1);
    job::finish(&mut conn, &token, &result(past))
        .unwrap()
        .unwrap();
    let download = web.get(&format!("/api/jobs/{running}/download")).await;
    assert_eq!(download.status, StatusCode::GONE);
    let swept = store.sweep(&mut conn, Duration::ZERO).unwrap();
    assert_eq!(swept.expired, 1);
    assert!(!path.exists());
    let left = files(&dir);
    assert!(
        left.iter().all(|f| !f.contains(&tag)),
        "the ended job's files are gone: {left:?}"
    );
    assert!(left.contains(&"notes.txt".to_owned()));
}

#[actix_web::test]
async fn a_second_sigterm_stops_at_once_and_the_job_runs_again() {
    let sandbox = Sandbox::new(Deployment::Embedded).unwrap();
    seed(&sandbox, 300_000);
    let env = [
        // Five rows a query: the export lasts far longer than the test waits.
        ("ROSTER_EXPORT_BATCH_ROWS", "5"),
        ("ROSTER_SHUTDOWN_GRACE_SECS", "120"),
    ];
    let mut server = Roster::serve(&sandbox, &env).await;
    let job = server.post("/api/exports", json!({})).await;
    let job_id = job["id"].as_str().unwrap().to_owned();
    server
        .wait_for(&job_id, |j| j["progress"]["done"].as_i64() > Some(0))
        .await;
    server.signal_term();
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    assert!(
        server.wait_exit(Duration::ZERO).is_none(),
        "still in its grace"
    );
    let asked = Instant::now();
    server.signal_term();
    server
        .wait_exit(Duration::from_secs(3))
        .expect("the second SIGTERM stops it at once");
    assert!(asked.elapsed() < Duration::from_secs(3));

    let restarted = Roster::serve(&sandbox, &[("ROSTER_EXPORT_BATCH_ROWS", "5000")]).await;
    let done = restarted
        .wait_for(&job_id, |j| j["status"] == "succeeded")
        .await;
    assert_eq!(done["result"]["rows"], 300_000);
    restarted.stop();
}

/// A process paused inside a transaction that holds an expired job delays that job
/// alone: a worker stopped while recording the job's end holds its row, and the other
/// expired jobs are recovered at once; a sweeper stopped inside its own recovery has its
/// transaction ended by the server within a second, and the jobs it locked are recovered
/// by the others.
#[test]
fn a_paused_transaction_holding_an_expired_job_holds_back_only_that_job_and_not_for_long() {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    use roster::domain::job::JobKind;

    let Some(sandbox) = Sandbox::new(Deployment::Production) else {
        return;
    };
    let pool = sandbox.migrated_pool(4);
    let expired = |conn: &mut roster::db::DbConnection| {
        let id = job::insert(conn, &helpers::new_job(JobKind::Noop, 3))
            .unwrap()
            .id;
        crate::helpers::claim(conn, &id, "gone", Duration::from_millis(1))
            .unwrap()
            .unwrap();
        id
    };
    let status = |id: &JobId| {
        job::find(&mut pool.get().unwrap(), id)
            .unwrap()
            .unwrap()
            .status
    };
    let mut conn = pool.get().unwrap();
    let (held, free) = (expired(&mut conn), expired(&mut conn));
    std::thread::sleep(Duration::from_millis(20));

    // A worker paused while recording the end of `held`: its transaction holds the row.
    let mut paused = pool.get().unwrap();
    paused
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM jobs WHERE id = '{held}' FOR UPDATE"
        ))
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let sweeping = pool.clone();
    std::thread::spawn(move || {
        let _ =
            tx.send(job::recover_expired(&mut sweeping.get().unwrap(), &[], no_backoff).unwrap());
    });
    let recovered = rx
        .recv_timeout(Duration::from_secs(3))
        .expect("the sweep does not wait for the paused transaction");
    let ids: Vec<JobId> = recovered.iter().map(|j| j.id).collect();
    assert_eq!(ids, vec![free], "the free job recovered, the held one left");
    assert_eq!(status(&held), JobStatus::Running);
    paused.batch_execute("ROLLBACK").unwrap();

    // A sweeper paused inside its recovery, with `held` locked: the server ends its
    // transaction, and another sweep recovers the job.
    let stalled = pool.clone();
    let (locked, locked_rx) = std::sync::mpsc::channel();
    let stalled = std::thread::spawn(move || {
        let mut conn = stalled.get().unwrap();
        conn.transaction(|c| {
            let mine = job::recover_expired(c, &[], no_backoff)?;
            locked.send(mine.len()).unwrap();
            std::thread::sleep(Duration::from_secs(4));
            c.batch_execute("SELECT 1")
        })
    });
    assert_eq!(
        locked_rx.recv().unwrap(),
        1,
        "the stalled sweep took the job"
    );
    let began = Instant::now();
    while status(&held) == JobStatus::Running && began.elapsed() < Duration::from_secs(10) {
        job::recover_expired(&mut conn, &[], no_backoff).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        began.elapsed() < Duration::from_millis(2_500),
        "recovered {:?} after the sweeper stalled",
        began.elapsed()
    );
    assert!(
        stalled.join().unwrap().is_err(),
        "the stalled sweep's transaction was ended by the server"
    );
    assert_eq!(status(&held), JobStatus::Queued);
}

/// The database drops the attempt's connection just as the job returns (a restart): the
/// ending is recorded on a connection of the pool's at the next try, not after tries on
/// the dead one that outlast a lease.
#[actix_web::test]
async fn an_ending_whose_connection_the_database_dropped_is_recorded_at_the_next_try() {
    use diesel::connection::SimpleConnection;
    use std::sync::{Arc, Mutex};

    struct DropsEveryConnection(Arc<Mutex<Option<Instant>>>);
    impl StandIn for DropsEveryConnection {
        fn run(&self, _job: &Job, attempt: &mut Attempt<'_>) -> Result<Value, JobError> {
            let mut conn = attempt
                .pool()
                .get()
                .map_err(|e| JobError::Retry(e.into()))?;
            conn.batch_execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            .map_err(|e| JobError::Retry(e.into()))?;
            *self.0.lock().unwrap() = Some(Instant::now());
            Ok(json!({"rows": 0}))
        }
    }

    let Some(sandbox) = Sandbox::new(Deployment::Production) else {
        return;
    };
    let dropped = Arc::new(Mutex::new(None));
    let hooks = helpers::instead_of_export(DropsEveryConnection(dropped.clone()));
    let settings = sandbox.settings();
    let app = helpers::start_in(sandbox, settings, hooks, true).await;
    let accepted = app.start_export(json!({})).await;
    let id = accepted["id"].as_str().unwrap();
    let ended = app.wait_until_ended(id).await;
    let took = dropped.lock().unwrap().expect("the job ran").elapsed();
    assert_eq!(ended["status"], "succeeded", "{ended}");
    assert!(
        took < Duration::from_millis(1_500),
        "recorded {took:?} after its connection was dropped"
    );
}

async fn a_lost_lease_backs_off_as_a_failed_attempt_does(deployment: Deployment) {
    let Some(sandbox) = Sandbox::new(deployment) else {
        return;
    };
    let mut settings = sandbox.settings();
    // The first retry waits 30-60 s: long enough to tell from "due at once".
    settings.retry_backoff_ms = 60_000;
    settings.retry_backoff_max_secs = 600;
    let web = helpers::start_in(sandbox, settings, Hooks::default(), false).await;
    let new = helpers::new_job(roster::domain::job::JobKind::StudentsByAge, 3);
    let mut conn = web.pool.get().unwrap();
    job::insert(&mut conn, &new).unwrap();
    crate::helpers::claim(&mut conn, &new.id, "gone", Duration::from_millis(1))
        .unwrap()
        .unwrap();
    let requeued = web
        .wait_for(&new.id.to_string(), Duration::from_secs(15), |j| {
            j["status"] == "queued"
        })
        .await;
    let run_after: chrono::DateTime<chrono::Utc> =
        requeued["run_after"].as_str().unwrap().parse().unwrap();
    let wait = run_after - chrono::Utc::now();
    assert!(
        wait > chrono::Duration::seconds(20),
        "due again after {wait}: the retry policy's backoff was skipped"
    );
    assert_eq!(requeued["attempts"], 1);
}

#[actix_web::test]
async fn a_lost_lease_backs_off_as_a_failed_attempt_does_on_sqlite() {
    a_lost_lease_backs_off_as_a_failed_attempt_does(Deployment::Embedded).await
}

#[actix_web::test]
async fn a_lost_lease_backs_off_as_a_failed_attempt_does_on_postgres_and_redis() {
    a_lost_lease_backs_off_as_a_failed_attempt_does(Deployment::Production).await
}
