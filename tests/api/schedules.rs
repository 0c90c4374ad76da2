//! Schedules: the API and its errors, one job per tick however many processes fire it,
//! a single catch-up fire after missed ticks, time zones, and the CLI.

use std::time::{Duration, Instant};

use actix_web::http::{Method, StatusCode};
use chrono::{DateTime, Datelike, NaiveDateTime, Timelike, Utc};
use diesel::prelude::*;
use roster::domain::job::JobKind;
use roster::domain::schedule::TimeZone;
use roster::error::FieldErrors;
use roster::jobs::{Attempt, JobError, JobHandler};
use roster::models::job::Job;
use roster::schema::{jobs, schedules};
use roster::startup::Hooks;
use serde_json::{json, Value};

use crate::both_deployments;
use crate::helpers::{self, spawn_with, Deployment, Sandbox, TestApp};
use crate::process::run;

/// Creates a schedule; returns it.
async fn create(app: &TestApp, body: Value) -> Value {
    let reply = app.post("/api/schedules", body).await;
    assert_eq!(
        reply.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()
}

fn id(v: &Value) -> &str {
    v["id"].as_str().unwrap()
}

fn instant(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}

/// The ticks of the jobs `schedule` fired, oldest first (one entry per job).
fn fired_ticks(app: &TestApp, schedule: &str) -> Vec<NaiveDateTime> {
    let mut conn = app.pool.get().unwrap();
    let mut ticks: Vec<NaiveDateTime> = jobs::table
        .filter(jobs::schedule_id.eq(schedule))
        .select(jobs::fire_at)
        .load::<Option<NaiveDateTime>>(&mut *conn)
        .unwrap()
        .into_iter()
        .map(|t| t.expect("a scheduled job records its tick"))
        .collect();
    ticks.sort();
    ticks
}

/// Waits until `schedule` has fired at least `n` jobs, or panics after `limit`.
async fn wait_for_jobs(app: &TestApp, schedule: &str, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let fired = fired_ticks(app, schedule);
        if fired.len() >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} jobs after {limit:?}: {fired:?}",
            fired.len()
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

both_deployments!(
    a_schedule_is_created_read_listed_changed_and_deleted,
    |app| async move {
        let reply = app
            .post(
                "/api/schedules",
                json!({"name": " nightly export ", "cron": "0 2 * * *",
                       "kind": "students_by_age", "params": {"min_age": 18}}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED);
        let created = reply.json();
        let location = reply.header("location").unwrap();
        assert_eq!(location, format!("/api/schedules/{}", id(&created)));
        assert_eq!(created["name"], "nightly export", "the name is trimmed");
        assert_eq!(created["cron"], "0 2 * * *");
        assert_eq!(created["timezone"], "UTC", "ROSTER_TIMEZONE's default");
        assert_eq!(created["kind"], "students_by_age");
        assert_eq!(created["params"]["min_age"], 18);
        assert_eq!(
            created["params"]["format"], "csv",
            "as the kind normalised them"
        );
        assert_eq!(created["enabled"], true);
        assert_eq!(created["last_fired_at"], Value::Null);
        assert_eq!(created["created_by"], Value::Null);
        let next = instant(&created["next_fire_at"]);
        assert!(next > Utc::now() && next - Utc::now() <= chrono::Duration::days(1));
        assert_eq!((next.hour(), next.minute(), next.second()), (2, 0, 0));
        instant(&created["created_at"]);

        let fetched = app.get(&location).await;
        assert_eq!(fetched.status, StatusCode::OK);
        assert_eq!(fetched.json(), created);
        let listed = app.get("/api/schedules").await.json();
        assert_eq!(listed["items"], json!([created]));

        // Changing the cron moves the next tick; other fields stay.
        let changed = app
            .request(
                Method::PATCH,
                &location,
                Some(json!({"cron": "30 4 * * *", "params": {"format": "jsonl"}})),
            )
            .await;
        assert_eq!(changed.status, StatusCode::OK, "{}", changed.json());
        let changed = changed.json();
        assert_eq!(changed["cron"], "30 4 * * *");
        assert_eq!(changed["params"], json!({"format": "jsonl"}));
        assert_eq!(changed["name"], "nightly export");
        let next = instant(&changed["next_fire_at"]);
        assert_eq!((next.hour(), next.minute()), (4, 30));

        let renamed = app
            .request(
                Method::PATCH,
                &location,
                Some(json!({"name": "early export", "enabled": false})),
            )
            .await
            .json();
        assert_eq!(renamed["name"], "early export");
        assert_eq!(renamed["enabled"], false);
        assert_eq!(renamed["next_fire_at"], changed["next_fire_at"]);

        let deleted = app.request(Method::DELETE, &location, None).await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);
        assert_eq!(app.get(&location).await.status, StatusCode::NOT_FOUND);
        let again = app.request(Method::DELETE, &location, None).await;
        assert_eq!(again.status, StatusCode::NOT_FOUND);
        assert_eq!(again.code(), "not_found");
        assert_eq!(app.get("/api/schedules").await.json(), json!({"items": []}));
    }
);

both_deployments!(
    invalid_schedules_get_422_naming_the_field,
    |app| async move {
        let ok = json!({"name": "n", "cron": "* * * * *", "kind": "students_by_age"});
        let with = |key: &str, value: Value| {
            let mut body = ok.clone();
            body[key] = value;
            body
        };
        let without = |key: &str| {
            let mut body = ok.clone();
            body.as_object_mut().unwrap().remove(key);
            body
        };
        for (body, field) in [
            (with("cron", json!("61 * * * *")), "cron"),
            (with("cron", json!("* * * *")), "cron"),
            (with("cron", json!("0 0 30 2 *")), "cron"),
            (with("cron", json!(5)), "cron"),
            (with("timezone", json!("Mars/Olympus_Mons")), "timezone"),
            (with("kind", json!("students_by_height")), "kind"),
            (with("params", json!({"min_age": 200})), "params.min_age"),
            (with("params", json!({"colour": "red"})), "params.colour"),
            (with("params", json!([1])), "params"),
            (with("enabled", json!("yes")), "enabled"),
            (with("name", json!("  ")), "name"),
            (with("shape", json!("round")), "shape"),
            (without("name"), "name"),
            (without("cron"), "cron"),
            (without("kind"), "kind"),
        ] {
            let reply = app.post("/api/schedules", body.clone()).await;
            assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert_eq!(reply.code(), "invalid");
            let fields = reply.json()["error"]["fields"].clone();
            assert!(
                fields[field].is_string(),
                "{body}: {field} is named in {fields}"
            );
        }
        let reply = app
            .post("/api/schedules", with("cron", json!("61 * * * *")))
            .await;
        let reason = reply.json()["error"]["fields"]["cron"].clone();
        assert!(
            reason.as_str().unwrap().to_lowercase().contains("minute")
                || reason.as_str().unwrap().contains("61")
                || reason.as_str().unwrap().contains("out of bounds"),
            "the parser's reason: {reason}"
        );

        let malformed = app
            .send_raw(
                Method::POST,
                "/api/schedules",
                "application/json",
                b"{\"name\":".to_vec(),
            )
            .await;
        assert_eq!(malformed.status, StatusCode::BAD_REQUEST);

        create(&app, ok.clone()).await;
        let taken = app.post("/api/schedules", ok.clone()).await;
        assert_eq!(taken.status, StatusCode::CONFLICT);
        assert_eq!(taken.code(), "conflict");
        let other = create(&app, with("name", json!("other"))).await;
        let path = format!("/api/schedules/{}", id(&other));
        let renamed = app
            .request(Method::PATCH, &path, Some(json!({"name": "n"})))
            .await;
        assert_eq!(renamed.status, StatusCode::CONFLICT, "names stay unique");

        for (body, field) in [
            (json!({"kind": "students_by_age"}), "kind"),
            (json!({"cron": "nope"}), "cron"),
            (json!({"timezone": "Nowhere"}), "timezone"),
            (json!({"params": {"max_age": -1}}), "params.max_age"),
        ] {
            let reply = app.request(Method::PATCH, &path, Some(body.clone())).await;
            assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert!(reply.json()["error"]["fields"][field].is_string(), "{body}");
        }
        assert_eq!(
            app.get(&path).await.json(),
            other,
            "a refused change changes nothing"
        );

        for path in [
            "/api/schedules/00000000-0000-0000-0000-000000000000",
            "/api/schedules/not-an-id",
        ] {
            assert_eq!(app.get(path).await.status, StatusCode::NOT_FOUND);
            let patched = app
                .request(Method::PATCH, path, Some(json!({"enabled": false})))
                .await;
            assert_eq!(patched.status, StatusCode::NOT_FOUND);
        }
        assert_eq!(
            app.get("/api/schedules").await.json()["items"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }
);

/// Stands in for a kind that needs an upload, and so cannot be scheduled.
struct Unschedulable;

impl JobHandler for Unschedulable {
    fn kind(&self) -> JobKind {
        JobKind::StudentsImport
    }

    fn schedulable(&self) -> bool {
        false
    }

    fn accept(&self, _raw: &serde_json::Map<String, Value>) -> Result<Value, FieldErrors> {
        Ok(json!({}))
    }

    fn run(&self, _job: &Job, _attempt: &mut Attempt<'_>) -> Result<Value, JobError> {
        Err(JobError::Abort(anyhow::anyhow!("a stand-in")))
    }
}

#[actix_web::test]
async fn a_kind_that_cannot_be_scheduled_is_refused() {
    let app = spawn_with(
        Deployment::Embedded,
        |_| {},
        Hooks::with_kind(Unschedulable),
    )
    .await
    .unwrap();
    let reply = app
        .post(
            "/api/schedules",
            json!({"name": "imports", "cron": "* * * * *", "kind": "students_import"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    let message = reply.json()["error"]["fields"]["kind"].clone();
    assert!(
        message.as_str().unwrap().contains("cannot be scheduled"),
        "{message}"
    );
}

/// The first of five consecutive seconds at least two seconds from now, all in one
/// minute (so that one cron expression names exactly them).
fn five_seconds_ahead() -> DateTime<Utc> {
    let mut start = (Utc::now() + chrono::Duration::seconds(3))
        .with_nanosecond(0)
        .unwrap();
    if start.second() > 55 {
        start = start.with_second(0).unwrap() + chrono::Duration::seconds(61);
    }
    start
}

both_deployments!(
    two_processes_firing_an_every_second_schedule_make_one_job_per_tick,
    |app| async move {
        // A second process on the same database and queue: its scheduler runs too.
        let other = app.sandbox.sharing();
        let settings = other.settings();
        let second = helpers::start_in(other, settings, Hooks::default(), true).await;
        let start = five_seconds_ahead();
        let cron = format!(
            "{}-{} {} {} {} {} *",
            start.second(),
            start.second() + 4,
            start.minute(),
            start.hour(),
            start.day(),
            start.month()
        );
        // Every second, for five seconds.
        let schedule = create(
            &app,
            json!({"name": "every second", "cron": cron, "kind": "students_by_age"}),
        )
        .await;
        assert_eq!(instant(&schedule["next_fire_at"]), start);
        wait_for_jobs(&second, id(&schedule), 5, Duration::from_secs(20)).await;
        // Both schedulers have had time to fire anything more.
        actix_web::rt::time::sleep(Duration::from_secs(2)).await;
        let ticks = fired_ticks(&app, id(&schedule));
        let expected: Vec<NaiveDateTime> = (0..5)
            .map(|s| (start + chrono::Duration::seconds(s)).naive_utc())
            .collect();
        assert_eq!(ticks, expected, "one job per tick, none twice");

        let after = app
            .get(&format!("/api/schedules/{}", id(&schedule)))
            .await
            .json();
        assert!(instant(&after["next_fire_at"]) > Utc::now(), "{after}");
        assert!(instant(&after["last_fired_at"]) >= start, "{after}");
        // The jobs are ordinary jobs, which say which schedule made them.
        let listed = app.get("/api/jobs?limit=50").await.json();
        let from_schedule = listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["schedule_id"] == schedule["id"])
            .count();
        assert_eq!(from_schedule, 5, "{listed}");
    }
);

both_deployments!(
    ticks_missed_while_nothing_ran_fire_once_then_the_schedule_moves_on,
    |app| async move {
        let schedule = create(
            &app,
            json!({"name": "new year", "cron": "0 0 1 1 *", "kind": "students_by_age"}),
        )
        .await;
        // As if every process had been down since 2020: six new years missed.
        let long_ago = chrono::NaiveDate::from_ymd_opt(2020, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        diesel::update(schedules::table.find(id(&schedule)))
            .set(schedules::next_fire_at.eq(long_ago))
            .execute(&mut *app.pool.get().unwrap())
            .unwrap();
        wait_for_jobs(&app, id(&schedule), 1, Duration::from_secs(10)).await;
        actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(fired_ticks(&app, id(&schedule)), vec![long_ago], "once");

        let after = app
            .get(&format!("/api/schedules/{}", id(&schedule)))
            .await
            .json();
        let next = instant(&after["next_fire_at"]);
        assert_eq!(next.year(), Utc::now().year() + 1, "{after}");
        assert_eq!((next.month(), next.day(), next.hour()), (1, 1, 0));
        assert!(!after["last_fired_at"].is_null(), "{after}");
    }
);

both_deployments!(
    a_disabled_schedule_does_not_fire_and_starts_from_now_when_enabled,
    |app| async move {
        let schedule = create(
            &app,
            json!({"name": "paused", "cron": "* * * * * *", "kind": "students_by_age",
                   "enabled": false}),
        )
        .await;
        actix_web::rt::time::sleep(Duration::from_millis(2500)).await;
        assert!(fired_ticks(&app, id(&schedule)).is_empty());
        let path = format!("/api/schedules/{}", id(&schedule));
        let enabled = app
            .request(Method::PATCH, &path, Some(json!({"enabled": true})))
            .await
            .json();
        let next = instant(&enabled["next_fire_at"]);
        assert!(
            next >= instant(&schedule["next_fire_at"]) + chrono::Duration::seconds(2),
            "the ticks spent disabled are not owed: {enabled}"
        );
        wait_for_jobs(&app, id(&schedule), 1, Duration::from_secs(10)).await;
        assert!(fired_ticks(&app, id(&schedule))[0] >= next.naive_utc());
    }
);

#[actix_web::test]
async fn cron_is_read_in_the_schedules_time_zone_defaulting_to_roster_timezone() {
    for deployment in [Deployment::Embedded, Deployment::Production] {
        let Some(app) = spawn_with(
            deployment,
            |s| s.timezone = TimeZone::parse("Europe/Lisbon").unwrap(),
            Hooks::default(),
        )
        .await
        else {
            continue;
        };
        // Manaus is UTC-4 all year: 09:00 there is 13:00 UTC.
        let manaus = create(
            &app,
            json!({"name": "manaus", "cron": "0 9 * * *", "timezone": "America/Manaus",
                   "kind": "students_by_age"}),
        )
        .await;
        assert_eq!(manaus["timezone"], "America/Manaus");
        let next = instant(&manaus["next_fire_at"]);
        assert_eq!((next.hour(), next.minute(), next.second()), (13, 0, 0));
        assert!(next > Utc::now() && next - Utc::now() <= chrono::Duration::days(1));

        let lisbon = create(
            &app,
            json!({"name": "lisbon", "cron": "0 9 * * *", "kind": "students_by_age"}),
        )
        .await;
        assert_eq!(lisbon["timezone"], "Europe/Lisbon", "ROSTER_TIMEZONE");
        let next = instant(&lisbon["next_fire_at"]);
        // Lisbon is UTC+0 in winter and UTC+1 in summer.
        assert!(matches!(next.hour(), 8 | 9), "{lisbon}");
        let moved = app
            .request(
                Method::PATCH,
                &format!("/api/schedules/{}", id(&lisbon)),
                Some(json!({"timezone": "America/Manaus"})),
            )
            .await
            .json();
        assert_eq!(moved["next_fire_at"], manaus["next_fire_at"], "{moved}");
    }
}

#[test]
fn schedules_are_added_listed_and_removed_from_the_command_line() {
    for deployment in [Deployment::Embedded, Deployment::Production] {
        let Some(sandbox) = Sandbox::new(deployment) else {
            continue;
        };
        let add = [
            "schedule",
            "add",
            "morning",
            "--cron",
            "0 9 * * *",
            "--timezone",
            "America/Manaus",
            "--params",
            r#"{"min_age": 18}"#,
        ];
        let (code, stdout, stderr) = run(&sandbox, &add, &[]);
        assert_eq!(code, 0, "{deployment:?}: {stderr}");
        assert!(stdout.contains("13:00:00Z"), "{stdout}");

        let (code, _, stderr) = run(&sandbox, &add, &[]);
        assert_eq!(code, 1, "a taken name: {stderr}");
        assert!(stderr.contains("exists already"), "{stderr}");

        let (code, _, stderr) = run(
            &sandbox,
            &["schedule", "add", "bad", "--cron", "0 9 * *"],
            &[],
        );
        assert_eq!(code, 2, "a usage error: {stderr}");
        assert!(stderr.contains("--cron"), "{stderr}");
        let (code, _, stderr) = run(
            &sandbox,
            &[
                "schedule",
                "add",
                "bad",
                "--cron",
                "0 9 * * *",
                "--params",
                r#"{"min_age": 900}"#,
            ],
            &[],
        );
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("params.min_age"), "{stderr}");

        let (code, stdout, stderr) = run(
            &sandbox,
            &[
                "schedule",
                "add",
                "ticker",
                "--cron",
                "*/10 * * * * *",
                "--disabled",
            ],
            &[("ROSTER_TIMEZONE", "Asia/Tokyo")],
        );
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("disabled"), "{stdout}");

        let (code, stdout, stderr) = run(&sandbox, &["schedule", "list"], &[]);
        assert_eq!(code, 0, "{stderr}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 3, "a header and two schedules: {stdout}");
        assert!(lines[0].contains("NEXT FIRE"), "{stdout}");
        assert!(
            lines[1].starts_with("morning")
                && lines[1].contains("America/Manaus")
                && lines[1].contains("09:00:00 -04")
                && lines[1].contains("13:00:00Z"),
            "{stdout}"
        );
        assert!(
            lines[2].starts_with("ticker") && lines[2].contains("Asia/Tokyo"),
            "{stdout}"
        );

        let (code, _, stderr) = run(&sandbox, &["schedule", "remove", "morning"], &[]);
        assert_eq!(code, 0, "{stderr}");
        let (code, _, stderr) = run(&sandbox, &["schedule", "remove", "morning"], &[]);
        assert_eq!(code, 1);
        assert!(stderr.contains("no schedule named morning"), "{stderr}");
        let (_, stdout, _) = run(&sandbox, &["schedule", "list"], &[]);
        assert!(
            !stdout.contains("morning") && stdout.contains("ticker"),
            "{stdout}"
        );
    }
}

#[test]
fn a_bad_roster_timezone_stops_start_up_with_one_line_naming_it() {
    let sandbox = Sandbox::new(Deployment::Embedded).unwrap();
    for args in [&["serve"][..], &["schedule", "list"][..]] {
        let (code, _, stderr) = run(&sandbox, args, &[("ROSTER_TIMEZONE", "Mars/Olympus_Mons")]);
        assert_eq!(code, 2, "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("ROSTER_TIMEZONE"), "{stderr}");
    }
}
