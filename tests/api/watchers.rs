//! Every watcher learns how a job ended (guarantee 11): events describe committed states
//! only, so an ending that follows a rolled-back write (a cancel seen inside an import's
//! batch, an all-or-nothing import refused) carries a `seq` no watcher has seen yet, and
//! reaches WebSocket and SSE followers alike.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{spawn_with, Deployment, TestApp};
use crate::operations::EventStream;
use crate::websocket::WsClient;

fn id(job: &Value) -> String {
    job["id"].as_str().unwrap().to_owned()
}

/// A CSV of `n` valid students, then `invalid` rows that are not.
fn students_csv(n: usize, invalid: usize) -> String {
    std::iter::once("name,age\n".to_owned())
        .chain((0..n).map(|i| format!("Student {i},{}\n", i % 100)))
        .chain((0..invalid).map(|i| format!("Nobody {i},-1\n")))
        .collect()
}

/// An app whose imports commit in small batches: many transactions, each a chance for a
/// cancel to be seen inside one.
async fn small_batches(deployment: Deployment) -> Option<TestApp> {
    spawn_with(deployment, |s| s.import_batch_rows = 50, Default::default()).await
}

/// Seqs only grow, each sent once, and the last frame is the terminal `status`.
fn assert_ends_with(frames: &[(i64, Value)], status: &str) {
    for pair in frames.windows(2) {
        assert!(
            pair[1].0 > pair[0].0,
            "seq grows: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
    let (_, last) = frames.last().expect("frames");
    assert_eq!(last["type"], "status", "{last}");
    assert_eq!(last["status"], status, "{last}");
}

/// Follows `job` on `/ws/jobs/{id}` and on SSE until each closes; their frames as (seq,
/// frame), the snapshot first.
async fn follow_to_the_end(
    app: &TestApp,
    job: &str,
    until: impl std::future::Future<Output = ()>,
) -> [Vec<(i64, Value)>; 2] {
    let mut ws = WsClient::connect(&app.address, &format!("/ws/jobs/{job}")).await;
    let mut sse = EventStream::open(app, job, None, None).await;
    until.await;
    let ws_frames = ws
        .until_closed()
        .await
        .into_iter()
        .map(|f| {
            let seq = f["seq"].as_i64().or(f["job"]["seq"].as_i64()).unwrap();
            (seq, f)
        })
        .collect();
    let sse_frames = sse
        .rest()
        .await
        .into_iter()
        .map(|e| (e.id, e.data))
        .collect();
    [ws_frames, sse_frames]
}

async fn a_cancel_seen_inside_an_import_batch_reaches_every_watcher(deployment: Deployment) {
    let Some(app) = small_batches(deployment).await else {
        return;
    };
    for mode in ["skip_invalid", "all_or_nothing"] {
        let before = app.student_count().await;
        let job = app
            .import(
                &format!("?mode={mode}"),
                "text/csv",
                students_csv(100_000, 0),
            )
            .await
            .json();
        let job = id(&job);
        let frames = follow_to_the_end(&app, &job, async {
            app.wait_for(&job, Duration::from_secs(60), |j: &Value| {
                j["progress"]["done"].as_i64() > Some(0)
            })
            .await;
            app.cancel(&job).await;
        })
        .await;
        let ended = app.wait_until_ended(&job).await;
        assert_eq!(ended["status"], "cancelled", "{mode}: {ended}");
        for watched in &frames {
            assert_ends_with(watched, "cancelled");
            assert_eq!(watched.last().unwrap().0, ended["seq"].as_i64().unwrap());
        }
        let inserted = app.student_count().await - before;
        match mode {
            "all_or_nothing" => assert_eq!(inserted, 0, "all or nothing: nothing"),
            _ => assert!(inserted < 100_000, "stopped midway: {inserted}"),
        }
    }
}

#[actix_web::test]
async fn a_cancel_seen_inside_an_import_batch_reaches_every_watcher_on_sqlite() {
    a_cancel_seen_inside_an_import_batch_reaches_every_watcher(Deployment::Embedded).await
}

#[actix_web::test]
async fn a_cancel_seen_inside_an_import_batch_reaches_every_watcher_on_postgres_and_redis() {
    a_cancel_seen_inside_an_import_batch_reaches_every_watcher(Deployment::Production).await
}

async fn a_refused_all_or_nothing_import_reaches_every_watcher(deployment: Deployment) {
    let Some(app) = small_batches(deployment).await else {
        return;
    };
    let before = app.student_count().await;
    let job = app
        .import("", "text/csv", students_csv(20_000, 1))
        .await
        .json();
    let job = id(&job);
    let frames = follow_to_the_end(&app, &job, async {}).await;
    let ended = app.wait_until_ended(&job).await;
    assert_eq!(ended["status"], "failed", "{ended}");
    for watched in &frames {
        assert_ends_with(watched, "failed");
    }
    assert_eq!(app.student_count().await, before, "nothing imported");
}

#[actix_web::test]
async fn a_refused_all_or_nothing_import_reaches_every_watcher_on_sqlite() {
    a_refused_all_or_nothing_import_reaches_every_watcher(Deployment::Embedded).await
}

#[actix_web::test]
async fn a_refused_all_or_nothing_import_reaches_every_watcher_on_postgres_and_redis() {
    a_refused_all_or_nothing_import_reaches_every_watcher(Deployment::Production).await
}

async fn a_cancel_stops_an_all_or_nothing_import_within_about_a_second(deployment: Deployment) {
    let Some(app) = spawn_with(deployment, |_| {}, Default::default()).await else {
        return;
    };
    let before = app.student_count().await;
    let job = app
        .import("", "text/csv", students_csv(600_000, 0))
        .await
        .json();
    let job = id(&job);
    app.wait_for(&job, Duration::from_secs(60), |j: &Value| {
        j["progress"]["done"].as_i64() > Some(0)
    })
    .await;
    let asked = Instant::now();
    let cancel = app.cancel(&job).await;
    let ended = app.wait_until_ended(&job).await;
    let took = asked.elapsed();
    assert_eq!(cancel.status, actix_web::http::StatusCode::ACCEPTED);
    assert_eq!(ended["status"], "cancelled", "{ended}");
    assert!(took < Duration::from_secs(3), "the cancel took {took:?}");
    assert_eq!(app.student_count().await, before, "nothing imported");
}

#[actix_web::test]
async fn a_cancel_stops_an_all_or_nothing_import_within_about_a_second_on_sqlite() {
    a_cancel_stops_an_all_or_nothing_import_within_about_a_second(Deployment::Embedded).await
}

#[actix_web::test]
async fn a_cancel_stops_an_all_or_nothing_import_within_about_a_second_on_postgres_and_redis() {
    a_cancel_stops_an_all_or_nothing_import_within_about_a_second(Deployment::Production).await
}
