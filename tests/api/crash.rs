//! Guarantee 3, crash recovery, with real processes: `roster serve` is started as a child,
//! SIGKILLed in the middle of an export, and started again.

use std::collections::HashSet;
use std::fs;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::helpers::{Deployment, Sandbox};
use crate::process::{seed, Roster};

async fn crash_mid_export_then_recover(deployment: Deployment) {
    let Some(sandbox) = Sandbox::new(deployment) else {
        return;
    };
    seed(&sandbox, 150_000);
    let slow = [
        ("ROSTER_EXPORT_BATCH_ROWS", "20"),
        ("ROSTER_CONCURRENCY", "1"),
    ];

    let first = Roster::serve(&sandbox, &slow).await;
    let big = first.post("/api/exports", json!({})).await;
    let big_id = big["id"].as_str().unwrap().to_owned();
    let mut small = Vec::new();
    for _ in 0..5 {
        let job = first
            .post("/api/exports", json!({"min_age": 40, "max_age": 41}))
            .await;
        small.push(job["id"].as_str().unwrap().to_owned());
    }
    let running = first
        .wait_for(&big_id, |j| {
            j["status"] == "running" && j["progress"]["done"].as_i64() > Some(0)
        })
        .await;
    assert!(running["progress"]["done"].as_i64() < running["progress"]["total"].as_i64());
    first.kill();
    let export_dir = sandbox.dir.path().join("exports");
    let names = |dir: &std::path::Path| -> Vec<String> {
        fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        names(&export_dir).iter().all(|n| n.starts_with('.')),
        "no finished file after the kill: {:?}",
        names(&export_dir)
    );

    let second = Roster::serve(&sandbox, &slow).await;
    let done = second
        .wait_for(&big_id, |j| j["status"] == "succeeded")
        .await;
    assert_eq!(
        done["attempts"], 2,
        "ran again after its lease expired: {done}"
    );
    let history = second.get(&format!("/api/jobs/{big_id}/attempts")).await;
    let history = history["items"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(
        history[0]["outcome"], "lost",
        "the killed attempt: {history:?}"
    );
    assert_eq!(history[1]["outcome"], "succeeded");
    assert_eq!(history[1]["resumed_from"], done["result"]["resumed_rows"]);
    let resumed = done["result"]["resumed_rows"].as_i64().unwrap();
    assert!(
        resumed >= running["progress"]["done"].as_i64().unwrap() && resumed < 150_000,
        "resumed from its last checkpoint, not from zero: {done}"
    );
    let file = fs::read(export_dir.join(done["result"]["file"].as_str().unwrap())).unwrap();
    assert_eq!(done["result"]["sha256"], hex::encode(Sha256::digest(&file)));
    let mut reader = csv::Reader::from_reader(file.as_slice());
    let rows: Vec<(i64, String, i32)> = reader.deserialize().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 150_000, "every row, once");
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<HashSet<_>>().len(),
        150_000
    );
    assert!(
        rows.windows(2).all(|w| (w[0].2, w[0].0) < (w[1].2, w[1].0)),
        "in order"
    );

    for id in &small {
        let job = second.wait_for(id, |j| j["status"] == "succeeded").await;
        assert_eq!(job["attempts"], 1, "queued jobs run exactly once: {job}");
    }
    let leftovers: Vec<String> = names(&export_dir)
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary file left: {leftovers:?}"
    );
    second.stop();
}

#[actix_web::test]
async fn a_killed_process_s_export_runs_again_and_completes_on_sqlite() {
    crash_mid_export_then_recover(Deployment::Embedded).await;
}

#[actix_web::test]
async fn a_killed_process_s_export_runs_again_and_completes_on_postgres_and_redis() {
    crash_mid_export_then_recover(Deployment::Production).await;
}

/// How many students the sandbox's database holds, read directly.
fn students_in(sandbox: &Sandbox) -> i64 {
    use diesel::prelude::*;
    use roster::schema::students;
    let pool = roster::db::connect(&sandbox.settings().database_url, 1).unwrap();
    let mut conn = pool.get().unwrap();
    students::table.count().get_result(&mut *conn).unwrap()
}

/// An import is SIGKILLed mid-run, then its process started again: every valid row ends
/// up in the table exactly once, whichever mode.
async fn crash_mid_import_then_recover(deployment: Deployment, mode: &str) {
    let Some(sandbox) = Sandbox::new(deployment) else {
        return;
    };
    const ROWS: usize = 300_000;
    // Every 1000th row is invalid: skip_invalid reports them, all_or_nothing refuses
    // the file, so it gets a valid one.
    let invalid = |i: usize| mode == "skip_invalid" && i % 1000 == 999;
    let body: String = std::iter::once("name,age\n".to_owned())
        .chain((0..ROWS).map(|i| {
            let age = if invalid(i) { 200 } else { i % 100 };
            format!("Student {i},{age}\n")
        }))
        .collect();
    let valid = (0..ROWS).filter(|&i| !invalid(i)).count() as i64;
    let file = sandbox.dir.path().join("students.csv");
    fs::write(&file, body).unwrap();
    let small_batches = [
        ("ROSTER_IMPORT_BATCH_ROWS", "100"),
        ("ROSTER_CONCURRENCY", "1"),
    ];

    let first = Roster::serve(&sandbox, &small_batches).await;
    let out = crate::process::roster_command(&sandbox)
        .args(["import", file.to_str().unwrap(), "--mode", mode])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    first.wait_for(&id, |j| j["status"] == "running").await;
    actix_web::rt::time::sleep(std::time::Duration::from_millis(400)).await;
    first.kill();
    let after_kill = students_in(&sandbox);
    assert!(
        after_kill < valid,
        "killed before it finished ({after_kill} rows in)"
    );
    if mode == "all_or_nothing" {
        assert_eq!(after_kill, 0, "all or nothing: nothing before the commit");
    }

    let second = Roster::serve(&sandbox, &small_batches).await;
    let done = second.wait_for(&id, |j| j["status"] == "succeeded").await;
    assert_eq!(students_in(&sandbox), valid, "every valid row once: {done}");
    assert_eq!(done["result"]["inserted"], valid);
    assert_eq!(done["result"]["rejected"], ROWS as i64 - valid);
    assert_eq!(done["attempts"], 2, "{done}");
    if mode == "skip_invalid" {
        let resumed = done["result"]["resumed_rows"].as_i64().unwrap();
        assert!(resumed > 0, "went on from its checkpoint: {done}");
        let report = second.get(&format!("/api/jobs/{id}")).await["result"]["file"].clone();
        assert!(report.is_string(), "a rejects report: {done}");
    }
    second.stop();
}

#[actix_web::test]
async fn a_killed_import_inserts_every_row_once_on_sqlite() {
    crash_mid_import_then_recover(Deployment::Embedded, "skip_invalid").await;
    crash_mid_import_then_recover(Deployment::Embedded, "all_or_nothing").await;
}

#[actix_web::test]
async fn a_killed_import_inserts_every_row_once_on_postgres_and_redis() {
    crash_mid_import_then_recover(Deployment::Production, "skip_invalid").await;
    crash_mid_import_then_recover(Deployment::Production, "all_or_nothing").await;
}
