//! Security: each finding of the hostile review (issue 24) as the behaviour that closes
//! it: sign-in throttling that counts failures only with bounded keys and memory,
//! revocation that reaches tokens and schedules, tokens capped and manageable by an
//! admin, session ids hashed at rest, personal data never cached, ROSTER_AUTH=auto on
//! once a user exists, and a rejected credential told as such.

use std::time::{Duration, Instant};

use actix_web::http::{Method, StatusCode};
use roster::config::AuthSetting;
use roster::domain::user::Role;
use serde_json::{json, Value};

use crate::access::add_user;
use crate::helpers::{spawn_with, Deployment, Sandbox, TestApp};
use crate::process::{run, Roster};

async fn guarded(configure: impl FnOnce(&mut roster::config::Settings)) -> TestApp {
    spawn_with(
        Deployment::Embedded,
        |s| {
            s.auth = AuthSetting::Required;
            configure(s);
        },
        Default::default(),
    )
    .await
    .unwrap()
}

/// Asks, as `who`, for a schedule of an export named `name` ticking on `cron`.
async fn make_schedule(app: &TestApp, who: &str, name: &str, cron: &str) -> crate::helpers::Reply {
    app.call(
        Some(who),
        Method::POST,
        "/api/schedules",
        Some(json!({"name": name, "cron": cron, "kind": "students_by_age"})),
    )
    .await
}

/// The embedded deployment with every default: access control off on loopback.
async fn embedded() -> TestApp {
    spawn_with(Deployment::Embedded, |_| {}, Default::default())
        .await
        .unwrap()
}

async fn sign_in(app: &TestApp, name: &str, password: &str) -> StatusCode {
    app.post(
        "/api/session",
        json!({"username": name, "password": password}),
    )
    .await
    .status
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[actix_web::test]
async fn sign_ins_with_invented_names_do_not_grow_the_process() {
    let sandbox = Sandbox::new(Deployment::Embedded).unwrap();
    let password = "Marigold saddle 58 estuary";
    let (code, _, err) = run(&sandbox, &["migrate"], &[]);
    assert_eq!(code, 0, "{err}");
    let env = [
        ("ROSTER_AUTH", "required"),
        ("ROSTER_ADMIN_PASSWORD", password),
    ];
    let server = Roster::serve(&sandbox, &env).await;
    let pid = server.child.id();
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let url = format!("{}/api/session", server.address);
    let before = rss_kib(pid);
    // 3,000 sign-ins, each with a 16 KiB name nobody can have: not one of them may be
    // kept (the review saw 6,000 take the process from 234 to 911 MB, never released).
    for batch in 0..150 {
        let sends = (0..20).map(|i| {
            let name = format!("{batch}-{i}-{}", "x".repeat(16 * 1024));
            client
                .post(&url)
                .send_json(&json!({"username": name, "password": "wrong"}))
        });
        for reply in futures_util::future::join_all(sends).await {
            assert_eq!(reply.unwrap().status(), StatusCode::UNAUTHORIZED);
        }
    }
    let grown = rss_kib(pid).saturating_sub(before);
    assert!(grown < 40 * 1024, "grew {grown} KiB");
    // And the one user can still sign in.
    let ok = client
        .post(&url)
        .send_json(&json!({"username": "admin", "password": password}))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::NO_CONTENT);
}

#[actix_web::test]
async fn only_failed_sign_ins_count_so_a_user_signing_in_is_never_locked_out_by_success() {
    let app = guarded(|_| {}).await;
    add_user(&app, "ada", Role::Member);
    for _ in 0..12 {
        assert_eq!(
            sign_in(&app, "ada", "Juniper-ochre tidal 42 lantern").await,
            StatusCode::NO_CONTENT
        );
    }
    for _ in 0..5 {
        assert_eq!(
            sign_in(&app, "ada", "wrong").await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        sign_in(&app, "ada", "Juniper-ochre tidal 42 lantern").await,
        StatusCode::TOO_MANY_REQUESTS,
        "five failures lock the name for the rest of the minute"
    );
}

#[actix_web::test]
async fn a_client_address_comes_from_x_forwarded_for_only_behind_a_trusted_proxy() {
    // Untrusted: every request is the peer's, whatever it claims.
    let app = guarded(|_| {}).await;
    for i in 0..20 {
        let reply = app
            .client
            .post(format!("{}/api/session", app.address))
            .insert_header(("X-Forwarded-For", format!("10.0.0.{i}")))
            .send_json(&json!({"username": format!("nobody{i}"), "password": "x"}))
            .await
            .unwrap();
        assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        sign_in(&app, "someone", "x").await,
        StatusCode::TOO_MANY_REQUESTS,
        "twenty failures from one address"
    );
    // Trusted: the proxy's clients are told apart.
    let app = guarded(|s| s.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]).await;
    for i in 0..25 {
        let reply = app
            .client
            .post(format!("{}/api/session", app.address))
            .insert_header(("X-Forwarded-For", format!("10.0.0.{i}")))
            .send_json(&json!({"username": format!("nobody{i}"), "password": "x"}))
            .await
            .unwrap();
        assert_eq!(reply.status(), StatusCode::UNAUTHORIZED, "client {i}");
    }
}

#[actix_web::test]
async fn a_password_reset_revokes_the_user_s_tokens_and_sessions() {
    let app = guarded(|_| {}).await;
    let admin = add_user(&app, "root", Role::Admin);
    let ada = add_user(&app, "ada", Role::Member);
    assert_eq!(
        app.call(Some(&ada), Method::GET, "/api/jobs", None)
            .await
            .status,
        StatusCode::OK
    );
    let reset = app
        .call(
            Some(&admin),
            Method::PATCH,
            "/api/users/ada",
            Some(json!({"password": "another good password"})),
        )
        .await;
    assert_eq!(reset.status, StatusCode::OK);
    let after = app.call(Some(&ada), Method::GET, "/api/jobs", None).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert!(
        after.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("token is not valid"),
        "a rejected token is told so, not to sign in: {}",
        after.json()
    );
}

#[actix_web::test]
async fn an_admin_lists_and_revokes_anyone_s_tokens_and_a_member_only_their_own() {
    let app = guarded(|_| {}).await;
    let admin = add_user(&app, "root", Role::Admin);
    let ada = add_user(&app, "ada", Role::Member);
    let bob = add_user(&app, "bob", Role::Member);
    let listed = app
        .call(Some(&admin), Method::GET, "/api/tokens?user=ada", None)
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    let ada_token = listed.json()["items"][0]["id"].as_str().unwrap().to_owned();
    let peek = app
        .call(Some(&bob), Method::GET, "/api/tokens?user=ada", None)
        .await;
    assert_eq!(peek.status, StatusCode::FORBIDDEN);
    let steal = app
        .call(
            Some(&bob),
            Method::DELETE,
            &format!("/api/tokens/{ada_token}"),
            None,
        )
        .await;
    assert_eq!(
        steal.status,
        StatusCode::NOT_FOUND,
        "another's token is no token"
    );
    let revoked = app
        .call(
            Some(&admin),
            Method::DELETE,
            &format!("/api/tokens/{ada_token}"),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.call(Some(&ada), Method::GET, "/api/jobs", None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[actix_web::test]
async fn a_user_may_hold_only_so_many_tokens() {
    let app = guarded(|s| s.max_tokens_per_user = 2).await;
    let ada = add_user(&app, "ada", Role::Member);
    let make = |n: u32| {
        app.call(
            Some(&ada),
            Method::POST,
            "/api/tokens",
            Some(json!({"name": format!("t{n}")})),
        )
    };
    assert_eq!(
        make(1).await.status,
        StatusCode::CREATED,
        "the second of two"
    );
    let third = make(2).await;
    assert_eq!(third.status, StatusCode::CONFLICT, "{}", third.json());
}

#[actix_web::test]
async fn a_removed_user_s_schedules_stop_and_a_new_user_of_that_name_inherits_nothing() {
    let app = guarded(|_| {}).await;
    let admin = add_user(&app, "root", Role::Admin);
    let ada = add_user(&app, "ada", Role::Member);
    let export = app
        .call(Some(&ada), Method::POST, "/api/exports", Some(json!({})))
        .await;
    assert_eq!(export.status, StatusCode::ACCEPTED);
    let keyed = |token: String| {
        let app = &app;
        async move {
            let mut res = app
                .client
                .post(format!("{}/api/exports", app.address))
                .bearer_auth(token)
                .insert_header(("Idempotency-Key", "nightly-1"))
                .send_json(&json!({"min_age": 3}))
                .await
                .unwrap();
            (res.status(), res.json::<Value>().await.unwrap())
        }
    };
    let (status, first_keyed) = keyed(ada.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let schedule = app
        .call(
            Some(&ada),
            Method::POST,
            "/api/schedules",
            Some(json!({"name": "nightly", "cron": "0 2 * * *", "kind": "students_by_age"})),
        )
        .await;
    assert_eq!(schedule.status, StatusCode::CREATED, "{}", schedule.json());
    let removed = app
        .call(Some(&admin), Method::DELETE, "/api/users/ada", None)
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    let again = add_user(&app, "ada", Role::Member);
    // The old ada's keys are not the new one's: the same request makes a new job, and an
    // identical export the old one had queued is not handed over either.
    let (status, second_keyed) = keyed(again.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{second_keyed}");
    assert_ne!(second_keyed["id"], first_keyed["id"]);
    let same = app
        .call(Some(&again), Method::POST, "/api/exports", Some(json!({})))
        .await;
    assert_eq!(same.status, StatusCode::ACCEPTED, "{}", same.json());
    assert_ne!(same.json()["id"], export.json()["id"]);
    for path in ["/api/schedules"] {
        let seen = app.call(Some(&again), Method::GET, path, None).await.json();
        assert_eq!(seen["items"], json!([]), "{path}: {seen}");
    }
    let jobs = app
        .call(Some(&again), Method::GET, "/api/jobs", None)
        .await
        .json();
    assert!(
        jobs["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["created_by"] == "ada"
                && j["id"] != export.json()["id"]
                && j["id"] != first_keyed["id"]),
        "only the new ada's own: {jobs}"
    );
    let id = export.json()["id"].as_str().unwrap().to_owned();
    let theirs = app
        .call(
            Some(&again),
            Method::GET,
            &format!("/api/jobs/{id}/download"),
            None,
        )
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    let by_admin = app
        .call(Some(&admin), Method::GET, "/api/schedules", None)
        .await
        .json();
    let old: &Value = &by_admin["items"][0];
    assert_eq!(old["enabled"], false, "{old}");
    assert!(old["created_by"]
        .as_str()
        .unwrap()
        .starts_with("ada~removed-"));
}

#[actix_web::test]
async fn session_ids_are_kept_hashed_so_the_database_holds_no_cookie() {
    let app = guarded(|_| {}).await;
    add_user(&app, "ada", Role::Member);
    let reply = app
        .post(
            "/api/session",
            json!({"username": "ada", "password": "Juniper-ochre tidal 42 lantern"}),
        )
        .await;
    let cookie = reply.header("set-cookie").unwrap();
    let value = cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    use diesel::prelude::*;
    let stored: Vec<String> = roster::schema::sessions::table
        .select(roster::schema::sessions::id)
        .load(&mut *app.pool.get().unwrap())
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].len(), 64, "a sha256 in hex");
    assert!(
        !value.contains(&stored[0]),
        "the cookie carries the id, the table its hash"
    );
}

#[actix_web::test]
async fn personal_data_is_never_stored_by_caches_nor_sniffed() {
    let app = embedded().await;
    for path in [
        "/api/students",
        "/api/jobs",
        "/api/session",
        "/api/nothing-here",
    ] {
        let reply = app.get(path).await;
        assert_eq!(
            reply.header("cache-control").as_deref(),
            Some("no-store"),
            "{path}"
        );
        assert_eq!(
            reply.header("x-content-type-options").as_deref(),
            Some("nosniff"),
            "{path}"
        );
    }
}

#[actix_web::test]
async fn auto_access_turns_on_within_seconds_once_a_user_exists() {
    let app = spawn_with(
        Deployment::Embedded,
        |s| s.auth = AuthSetting::Auto,
        Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        app.get("/api/students").await.status,
        StatusCode::OK,
        "open on loopback"
    );
    add_user(&app, "root", Role::Admin);
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.get("/api/students").await.status != StatusCode::UNAUTHORIZED {
        assert!(Instant::now() < deadline, "still open with a user");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
async fn guessable_passwords_are_refused_wherever_a_password_is_set() {
    let app = guarded(|_| {}).await;
    let admin = add_user(&app, "root", Role::Admin);
    for weak in ["12345678", "        ", "passwordpassword", "qwertyuiop123"] {
        let made = app
            .call(
                Some(&admin),
                Method::POST,
                "/api/users",
                Some(json!({"name": "carol", "password": weak})),
            )
            .await;
        assert_eq!(made.status, StatusCode::UNPROCESSABLE_ENTITY, "{weak:?}");
        assert!(made.json()["error"]["fields"]["password"].is_string());
    }
}

#[actix_web::test]
async fn a_member_changes_their_own_password_and_their_other_sessions_end() {
    let app = guarded(|_| {}).await;
    let token = add_user(&app, "ada", Role::Member);
    let change = |current: &str, new: &str| {
        app.call(
            Some(&token),
            Method::PATCH,
            "/api/session/password",
            Some(json!({"current": current, "new": new})),
        )
    };
    let wrong = change("not my password", "Pelican orchard 88 vellum").await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.json()["error"]["fields"]["current"].is_string());
    let weak = change("Juniper-ochre tidal 42 lantern", "123456789012").await;
    assert!(
        weak.json()["error"]["fields"]["new"].is_string(),
        "{}",
        weak.json()
    );
    let changed = change(
        "Juniper-ochre tidal 42 lantern",
        "Pelican orchard 88 vellum",
    )
    .await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT);
    assert!(
        changed.header("set-cookie").is_some(),
        "this browser stays signed in"
    );
    assert_eq!(
        app.call(Some(&token), Method::GET, "/api/jobs", None)
            .await
            .status,
        StatusCode::UNAUTHORIZED,
        "the token made with the old password is revoked"
    );
    assert_eq!(
        sign_in(&app, "ada", "Juniper-ochre tidal 42 lantern").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        sign_in(&app, "ada", "Pelican orchard 88 vellum").await,
        StatusCode::NO_CONTENT
    );
}

#[actix_web::test]
async fn a_member_s_schedules_tick_at_most_once_a_minute_and_are_few() {
    let app = guarded(|s| s.max_schedules_per_user = 2).await;
    let admin = add_user(&app, "root", Role::Admin);
    let ada = add_user(&app, "ada", Role::Member);
    let every_second = make_schedule(&app, &ada, "flood", "* * * * * *").await;
    assert_eq!(every_second.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(every_second.json()["error"]["fields"]["cron"].is_string());
    assert_eq!(
        make_schedule(&app, &ada, "a", "* * * * *").await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        make_schedule(&app, &ada, "b", "0 * * * *").await.status,
        StatusCode::CREATED
    );
    let third = make_schedule(&app, &ada, "c", "0 2 * * *").await;
    assert_eq!(third.status, StatusCode::CONFLICT, "{}", third.json());
    // Changing a schedule's cron is held to the same interval.
    let mine = app
        .call(Some(&ada), Method::GET, "/api/schedules", None)
        .await
        .json();
    let id = mine["items"][0]["id"].as_str().unwrap().to_owned();
    let faster = app
        .call(
            Some(&ada),
            Method::PATCH,
            &format!("/api/schedules/{id}"),
            Some(json!({"cron": "*/10 * * * * *"})),
        )
        .await;
    assert_eq!(faster.status, StatusCode::UNPROCESSABLE_ENTITY);
    // An admin's schedule may tick as often as its cron says.
    assert_eq!(
        make_schedule(&app, &admin, "probe", "*/10 * * * * *")
            .await
            .status,
        StatusCode::CREATED
    );
}

#[actix_web::test]
async fn schedule_names_belong_to_their_owner_and_each_lists_only_their_own() {
    let app = guarded(|_| {}).await;
    let ada = add_user(&app, "ada", Role::Member);
    let bob = add_user(&app, "bob", Role::Member);
    for who in [&ada, &bob] {
        let made = make_schedule(&app, who, "nightly", "0 2 * * *").await;
        assert_eq!(
            made.status,
            StatusCode::CREATED,
            "a name another owner uses is free"
        );
    }
    let again = make_schedule(&app, &ada, "nightly", "0 3 * * *").await;
    assert_eq!(
        again.status,
        StatusCode::CONFLICT,
        "but not one's own twice"
    );
    let listed = app
        .call(Some(&ada), Method::GET, "/api/schedules", None)
        .await
        .json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed["items"][0]["created_by"], "ada");
}

#[actix_web::test]
async fn a_guesser_at_one_address_cannot_lock_a_user_out_from_another() {
    let app = guarded(|s| s.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]).await;
    add_user(&app, "ada", Role::Member);
    let from = |client: &'static str, password: &'static str| {
        let app = &app;
        async move {
            app.client
                .post(format!("{}/api/session", app.address))
                .insert_header(("X-Forwarded-For", client))
                .send_json(&json!({"username": "ada", "password": password}))
                .await
                .unwrap()
                .status()
        }
    };
    for _ in 0..5 {
        assert_eq!(from("10.0.0.66", "guess").await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        from("10.0.0.66", "guess").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        from("10.0.0.7", "Juniper-ochre tidal 42 lantern").await,
        StatusCode::NO_CONTENT,
        "ada signs in from her own address"
    );
}

#[actix_web::test]
async fn input_the_database_cannot_hold_is_refused_not_failed() {
    for deployment in [Deployment::Embedded, Deployment::Production] {
        let Some(app) = spawn_with(deployment, |_| {}, Default::default()).await else {
            continue;
        };
        let far = format!("9223372036854775807_{}", roster::domain::job::JobId::new());
        let before_time = format!("-1_{}", roster::domain::job::JobId::new());
        for path in [
            "/api/students?q=a%00b".to_owned(),
            "/api/jobs?q=%00".to_owned(),
            format!("/api/jobs?cursor={far}"),
            format!("/api/jobs?cursor={before_time}"),
        ] {
            let reply = app.get(&path).await;
            assert_eq!(
                reply.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{path}: {}",
                reply.json()
            );
        }
    }
}

#[actix_web::test]
async fn the_database_and_the_files_of_students_data_are_its_owner_s_only() {
    use std::os::unix::fs::PermissionsExt;
    let app = embedded().await;
    app.seed(10);
    let job = app.start_export(json!({})).await;
    app.wait_until_ended(job["id"].as_str().unwrap()).await;
    let roster::config::DatabaseUrl::Sqlite(db) = &app.settings.database_url else {
        panic!("the embedded deployment is SQLite");
    };
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode();
    assert_eq!(mode(std::path::Path::new(db)) & 0o077, 0, "{db}");
    let files: Vec<_> = std::fs::read_dir(&app.settings.export_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!files.is_empty());
    for file in files {
        assert_eq!(mode(&file) & 0o077, 0, "{}", file.display());
    }
}

#[actix_web::test]
async fn a_token_s_reads_never_wait_for_sqlite_s_writer() {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    let app = guarded(|_| {}).await;
    let ada = add_user(&app, "ada", Role::Member);
    let roster::config::DatabaseUrl::Sqlite(db) = &app.settings.database_url else {
        panic!("the embedded deployment is SQLite");
    };
    // Another writer holds SQLite's one write lock (a long import's batch, say).
    let mut writer = diesel::SqliteConnection::establish(db).unwrap();
    writer.batch_execute("BEGIN IMMEDIATE").unwrap();
    for _ in 0..3 {
        let started = Instant::now();
        let reply = app.call(Some(&ada), Method::GET, "/api/jobs", None).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "an authenticated read waited {:?} for the write lock",
            started.elapsed()
        );
    }
    writer.batch_execute("ROLLBACK").unwrap();
}

#[actix_web::test]
async fn a_csv_record_spanning_lines_past_a_mebibyte_is_refused_at_upload() {
    let app = embedded().await;
    let field: String = (0..20_000)
        .map(|_| format!("{}\n", "x".repeat(99)))
        .collect();
    let body = format!("name,age\nAda,3\n\"{field}\",4\n");
    let reply = app.import("?mode=skip_invalid", "text/csv", body).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.json()
    );
    assert_eq!(
        app.get("/api/jobs").await.json()["items"],
        json!([]),
        "no job"
    );
}

/// Sends a request head and the first bytes of a body that says it is `length` long, then
/// reads whatever the server answers within 5 s (without sending the rest).
/// (Blocking: run it where a blocked thread holds up no server.)
fn answer_before_the_body(address: &str, head: &str, length: usize) -> String {
    use std::io::{Read, Write};
    let port = address.rsplit(':').next().unwrap();
    let mut socket = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        socket,
        "{head}Host: 127.0.0.1:{port}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\nname,age\n"
    )
    .unwrap();
    let mut answer = vec![0; 4096];
    let n = socket.read(&mut answer).unwrap_or(0);
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

#[actix_web::test]
async fn an_upload_over_a_cap_is_refused_before_its_body_is_stored() {
    let sandbox = Sandbox::new(Deployment::Embedded).unwrap();
    let mut settings = sandbox.settings();
    settings.auth = AuthSetting::Required;
    settings.max_active_jobs = 1;
    // Web only: the export below stays queued, at the cap.
    let app = crate::helpers::start_in(sandbox, settings, Default::default(), false).await;
    let ada = add_user(&app, "ada", Role::Member);
    let first = app
        .call(Some(&ada), Method::POST, "/api/exports", Some(json!({})))
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let head = format!(
        "POST /api/imports HTTP/1.1\r\nAuthorization: Bearer {ada}\r\nContent-Type: text/csv\r\n"
    );
    let answer = answer_before_the_body(&app.address, &head, 50 << 20);
    assert!(answer.starts_with("HTTP/1.1 429"), "answered: {answer:?}");
    let stored: Vec<_> = std::fs::read_dir(&app.settings.export_dir)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(stored.is_empty(), "{stored:?}");
}

#[actix_web::test]
async fn an_upload_that_says_it_is_larger_than_the_free_space_is_refused_before_its_body() {
    // The floor is what the volume has free now, less 40 MB: a 60 MB upload cannot fit.
    let sandbox = Sandbox::new(Deployment::Embedded).unwrap();
    let free = fs4::available_space(sandbox.dir.path()).unwrap();
    let floor = ((free >> 20).saturating_sub(40)).to_string();
    let server = Roster::serve(&sandbox, &[("ROSTER_MIN_FREE_DISK_MB", floor.as_str())]).await;
    let address = server.address.clone();
    let head = "POST /api/imports HTTP/1.1\r\nContent-Type: text/csv\r\n";
    let answer =
        tokio::task::spawn_blocking(move || answer_before_the_body(&address, head, 60 << 20))
            .await
            .unwrap();
    assert!(answer.starts_with("HTTP/1.1 507"), "answered: {answer:?}");
}

#[actix_web::test]
async fn an_import_s_upload_is_removed_once_it_succeeded_and_kept_for_a_retry_otherwise() {
    use roster::jobs::maintenance::{Housekeeping, SweepFiles};
    let app = embedded().await;
    let good = app
        .import("", "text/csv", "name,age\nAda,36\n")
        .await
        .json();
    let bad = app
        .import("", "text/csv", "name,age\nAda,-1\n")
        .await
        .json();
    for job in [&good, &bad] {
        app.wait_until_ended(job["id"].as_str().unwrap()).await;
    }
    let uploads = || -> Vec<String> {
        std::fs::read_dir(&app.settings.export_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".upload."))
            .collect()
    };
    assert_eq!(uploads().len(), 2);
    // The sweep leaves files younger than two seconds alone.
    actix_web::rt::time::sleep(Duration::from_millis(2_100)).await;
    let store = roster::jobs::store::FileStore::new(
        app.settings.export_dir.clone(),
        app.settings.export_ttl(),
    );
    SweepFiles::new(app.pool.clone(), store).run_once().unwrap();
    let left = uploads();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0].starts_with(bad["id"].as_str().unwrap()),
        "the failed one's, for a retry"
    );
}

#[actix_web::test]
async fn a_second_request_head_on_a_connection_cannot_trickle_forever() {
    let app = embedded().await;
    let port = app.address.rsplit(':').next().unwrap().to_owned();
    let closed_after = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut socket = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        write!(
            socket,
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: keep-alive\r\n\r\n"
        )
        .unwrap();
        // The first answer, then a second head sent a byte a second.
        let mut first = [0; 1024];
        let n = socket.read(&mut first).unwrap();
        assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
        let started = Instant::now();
        let mut writer = socket.try_clone().unwrap();
        std::thread::spawn(move || {
            for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: ".iter().cycle().take(60) {
                std::thread::sleep(Duration::from_secs(1));
                if writer.write_all(&[*byte]).is_err() {
                    return;
                }
            }
        });
        let mut rest = Vec::new();
        let _ = socket.read_to_end(&mut rest);
        started.elapsed()
    })
    .await
    .unwrap();
    assert!(
        closed_after <= Duration::from_secs(7),
        "the connection stayed open {closed_after:?} for a trickling second head"
    );
}

#[actix_web::test]
async fn a_user_keeps_only_their_newest_sessions() {
    let app = guarded(|_| {}).await;
    add_user(&app, "ada", Role::Member);
    let limit = roster::models::session::MAX_SESSIONS_PER_USER;
    for _ in 0..limit + 5 {
        assert_eq!(
            sign_in(&app, "ada", "Juniper-ochre tidal 42 lantern").await,
            StatusCode::NO_CONTENT
        );
    }
    use diesel::prelude::*;
    let kept: i64 = roster::schema::sessions::table
        .count()
        .get_result(&mut *app.pool.get().unwrap())
        .unwrap();
    assert_eq!(kept, limit);
}

#[actix_web::test]
async fn a_rotated_admin_password_ends_the_old_one_s_sessions_and_tokens_and_an_unchanged_one_nothing(
) {
    let first = "Cobalt fennel 31 aqueduct";
    let app = guarded(|s| s.admin_password = Some(first.into())).await;
    let token = roster::models::token::create(
        &mut app.pool.get().unwrap(),
        &roster::domain::user::UserName::parse("admin").unwrap(),
        "script",
    )
    .unwrap()
    .1;
    let restart = |password: &str| {
        let mut settings = app.settings.clone();
        settings.admin_password = Some(password.into());
        roster::access::Access::start(&settings, &app.pool, false).unwrap();
    };
    // A restart with the same password changes nothing.
    restart(first);
    assert_eq!(
        app.call(Some(&token), Method::GET, "/api/users", None)
            .await
            .status,
        StatusCode::OK
    );
    // A restart with another one ends what the old one made.
    restart("Vermilion lattice 77 osprey");
    assert_eq!(
        app.call(Some(&token), Method::GET, "/api/users", None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        sign_in(&app, "admin", first).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        sign_in(&app, "admin", "Vermilion lattice 77 osprey").await,
        StatusCode::NO_CONTENT
    );
}
