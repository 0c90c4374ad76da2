//! Access: who may call which route. A route × role matrix (anonymous, the owner, another
//! member, an admin) over every route, sessions and tokens, sign-in limits, the active-job
//! cap, and refusing to start exposed without a user.

use actix_web::http::{Method, StatusCode};
use roster::config::AuthSetting;
use roster::domain::user::{Password, Role, UserName};
use roster::models::{token, user};
use serde_json::{json, Value};

use crate::helpers::{spawn_with, Deployment, Reply, TestApp};
use crate::websocket::WsClient;

/// The people of a test: tokens of an admin and of two members.
struct People {
    admin: String,
    ada: String,
    bob: String,
}

/// Adds a user; returns an API token of theirs.
pub fn add_user(app: &TestApp, name: &str, role: Role) -> String {
    let mut conn = app.pool.get().unwrap();
    let name = UserName::parse(name).unwrap();
    let hash =
        roster::access::password::hash(&Password::parse("Juniper-ochre tidal 42 lantern").unwrap());
    user::insert(&mut conn, &name, role, &hash).unwrap();
    token::create(&mut conn, &name, "tests").unwrap().1
}

async fn guarded(
    deployment: Deployment,
    configure: impl FnOnce(&mut roster::config::Settings),
) -> Option<(TestApp, People)> {
    let app = spawn_with(
        deployment,
        |s| {
            s.auth = AuthSetting::Required;
            configure(s);
        },
        Default::default(),
    )
    .await?;
    let people = People {
        admin: add_user(&app, "root", Role::Admin),
        ada: add_user(&app, "ada", Role::Member),
        bob: add_user(&app, "bob", Role::Member),
    };
    Some((app, people))
}

/// A web-only process with signing in required: no workers, so jobs stay queued.
async fn guarded_web_only(
    deployment: Deployment,
    configure: impl FnOnce(&mut roster::config::Settings),
) -> Option<TestApp> {
    let sandbox = crate::helpers::Sandbox::new(deployment)?;
    let mut settings = sandbox.settings();
    settings.auth = AuthSetting::Required;
    configure(&mut settings);
    Some(crate::helpers::start_in(sandbox, settings, Default::default(), false).await)
}

impl TestApp {
    /// A request with `token` (or none: anonymous).
    pub async fn call(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.address));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let mut res = match body {
            Some(b) => req.send_json(&b).await,
            None => req.send().await,
        }
        .expect("request sent");
        let body = res.body().limit(64 << 20).await.expect("body read");
        Reply {
            status: res.status(),
            headers: res.headers().clone(),
            body: body.to_vec(),
        }
    }
}

impl TestApp {
    /// Polls a job as `token` until it ends.
    async fn ended_as(&self, token: Option<&str>, job: &str) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let current = self
                .call(token, Method::GET, &format!("/api/jobs/{job}"), None)
                .await
                .json();
            if ["succeeded", "failed", "cancelled"]
                .contains(&current["status"].as_str().unwrap_or(""))
            {
                return current;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never ended: {current}"
            );
            actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// Who created each item of a listing (jobs or schedules).
fn creators(reply: &Reply) -> Vec<String> {
    reply.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["created_by"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// Every route, as anonymous, the owner (ada), another member (bob) and an admin.
async fn route_matrix(deployment: Deployment) {
    let Some((app, p)) = guarded(deployment, |_| {}).await else {
        return;
    };
    let (ada, bob, admin) = (
        Some(p.ada.as_str()),
        Some(p.bob.as_str()),
        Some(p.admin.as_str()),
    );
    let anon = None;
    use StatusCode as S;
    let check = |what: String, reply: &Reply, want: S| {
        assert_eq!(
            reply.status,
            want,
            "{what}: {}",
            String::from_utf8_lossy(&reply.body)
        );
    };

    // Ada's things, made by her.
    let student = app
        .call(
            ada,
            Method::POST,
            "/api/students",
            Some(json!({"name": "Ada", "age": 36})),
        )
        .await;
    check("ada creates a student".into(), &student, S::CREATED);
    let student = format!("/api/students/{}", student.json()["id"]);
    let job = app
        .call(
            ada,
            Method::POST,
            "/api/exports",
            Some(json!({"min_age": 30})),
        )
        .await;
    check("ada starts an export".into(), &job, S::ACCEPTED);
    let job = id(&job.json());
    let done = app.ended_as(ada, &job).await;
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["created_by"], "ada");
    let schedule = app
        .call(
            ada,
            Method::POST,
            "/api/schedules",
            Some(json!({"name": "ada's", "cron": "0 3 * * *", "kind": "students_by_age"})),
        )
        .await;
    check("ada adds a schedule".into(), &schedule, S::CREATED);
    assert_eq!(schedule.json()["created_by"], "ada");
    let schedule = format!("/api/schedules/{}", id(&schedule.json()));
    let ada_token = app
        .call(
            ada,
            Method::POST,
            "/api/tokens",
            Some(json!({"name": "laptop"})),
        )
        .await;
    check("ada makes a token".into(), &ada_token, S::CREATED);
    let ada_token = format!("/api/tokens/{}", id(&ada_token.json()));

    let jobs = format!("/api/jobs/{job}");
    // (route, body, [anonymous, ada, bob, admin])
    let reads: Vec<(Method, String, Option<Value>, [S; 4])> = vec![
        (
            Method::GET,
            "/api/students".into(),
            None,
            [S::UNAUTHORIZED, S::OK, S::OK, S::OK],
        ),
        (
            Method::GET,
            student.clone(),
            None,
            [S::UNAUTHORIZED, S::OK, S::OK, S::OK],
        ),
        (
            Method::PATCH,
            student.clone(),
            Some(json!({"age": 37})),
            [S::UNAUTHORIZED, S::OK, S::OK, S::OK],
        ),
        (
            Method::PUT,
            student.clone(),
            Some(json!({"name": "Ada L", "age": 37})),
            [S::UNAUTHORIZED, S::OK, S::OK, S::OK],
        ),
        (
            Method::GET,
            "/api/jobs".into(),
            None,
            [S::UNAUTHORIZED, S::OK, S::OK, S::OK],
        ),
        (
            Method::GET,
            jobs.clone(),
            None,
            [S::UNAUTHORIZED, S::OK, S::NOT_FOUND, S::OK],
        ),
        (
            Method::GET,
            format!("{jobs}/attempts"),
            None,
            [S::UNAUTHORIZED, S::OK, S::NOT_FOUND, S::OK],
        ),
        (
            Method::GET,
            format!("{jobs}/download"),
            None,
            [S::UNAUTHORIZED, S::OK, S::NOT_FOUND, S::OK],
        ),
        (
            Method::POST,
            format!("{jobs}/cancel"),
            None,
            [S::UNAUTHORIZED, S::CONFLICT, S::NOT_FOUND, S::CONFLICT],
        ),
        (
            Method::POST,
            format!("{jobs}/retry"),
            None,
            [S::UNAUTHORIZED, S::CONFLICT, S::NOT_FOUND, S::CONFLICT],
        ),
        (
            Method::GET,
            "/api/schedules".into(),
            None,
            [S::UNAUTHORIZED, S::OK, S::OK, S::OK],
        ),
        (
            Method::GET,
            schedule.clone(),
            None,
            [S::UNAUTHORIZED, S::OK, S::NOT_FOUND, S::OK],
        ),
        (
            Method::PATCH,
            schedule.clone(),
            Some(json!({"enabled": false})),
            [S::UNAUTHORIZED, S::OK, S::NOT_FOUND, S::OK],
        ),
        (
            Method::GET,
            "/api/session".into(),
            None,
            [S::UNAUTHORIZED, S::OK, S::OK, S::OK],
        ),
        (
            Method::GET,
            "/api/tokens".into(),
            None,
            [S::UNAUTHORIZED, S::OK, S::OK, S::OK],
        ),
        (
            Method::GET,
            "/api/users".into(),
            None,
            [S::UNAUTHORIZED, S::FORBIDDEN, S::FORBIDDEN, S::OK],
        ),
        (
            Method::POST,
            "/api/users".into(),
            Some(json!({"name": "carol", "password": "Basalt quiver 19 meadowlark"})),
            [S::UNAUTHORIZED, S::FORBIDDEN, S::FORBIDDEN, S::CREATED],
        ),
        (
            Method::PATCH,
            "/api/users/carol".into(),
            Some(json!({"role": "admin"})),
            [S::UNAUTHORIZED, S::FORBIDDEN, S::FORBIDDEN, S::OK],
        ),
        (
            Method::POST,
            "/api/exports".into(),
            Some(json!({"min_age": 150})),
            [S::UNAUTHORIZED, S::ACCEPTED, S::ACCEPTED, S::ACCEPTED],
        ),
        (
            Method::POST,
            "/api/tokens".into(),
            Some(json!({"name": "x"})),
            [S::UNAUTHORIZED, S::CREATED, S::CREATED, S::CREATED],
        ),
        (Method::GET, "/".into(), None, [S::OK, S::OK, S::OK, S::OK]),
        (
            Method::GET,
            "/healthz".into(),
            None,
            [S::OK, S::OK, S::OK, S::OK],
        ),
        (
            Method::GET,
            "/readyz".into(),
            None,
            [S::OK, S::OK, S::OK, S::OK],
        ),
        (
            Method::GET,
            "/metrics".into(),
            None,
            [S::OK, S::OK, S::OK, S::OK],
        ),
    ];
    for (method, path, body, wants) in reads {
        for (who, token, want) in [
            ("anonymous", anon, wants[0]),
            ("ada", ada, wants[1]),
            ("bob", bob, wants[2]),
            ("admin", admin, wants[3]),
        ] {
            let reply = app.call(token, method.clone(), &path, body.clone()).await;
            check(format!("{who} {method} {path}"), &reply, want);
            if want == S::UNAUTHORIZED {
                assert!(
                    reply.header("www-authenticate").is_some(),
                    "{method} {path}: no WWW-Authenticate"
                );
            }
        }
    }
    // Listings show a member their own jobs and schedules, an admin everyone's.
    let listed = |reply: Reply| creators(&reply);
    let bobs = listed(app.call(bob, Method::GET, "/api/jobs", None).await);
    assert!(
        !bobs.is_empty() && bobs.iter().all(|c| c == "bob"),
        "{bobs:?}"
    );
    let all = listed(app.call(admin, Method::GET, "/api/jobs", None).await);
    assert!(
        all.iter().any(|c| c == "ada") && all.iter().any(|c| c == "bob"),
        "{all:?}"
    );
    assert!(listed(app.call(bob, Method::GET, "/api/schedules", None).await).is_empty());
    assert!(app
        .call(
            bob,
            Method::GET,
            &format!("/api/jobs?q={}", &job[..8]),
            None
        )
        .await
        .json()["items"]
        .as_array()
        .unwrap()
        .is_empty());

    // The destructive ones last: others first (refused), then the owner.
    for (path, method) in [
        (ada_token.clone(), Method::DELETE),
        (schedule.clone(), Method::DELETE),
        (jobs.clone(), Method::DELETE),
    ] {
        check(
            format!("anonymous {method} {path}"),
            &app.call(anon, method.clone(), &path, None).await,
            S::UNAUTHORIZED,
        );
        check(
            format!("bob {method} {path}"),
            &app.call(bob, method.clone(), &path, None).await,
            S::NOT_FOUND,
        );
        let owner = app.call(ada, method.clone(), &path, None).await;
        check(format!("ada {method} {path}"), &owner, S::NO_CONTENT);
    }
    check(
        "anonymous deletes a student".into(),
        &app.call(anon, Method::DELETE, &student, None).await,
        S::UNAUTHORIZED,
    );
    check(
        "bob deletes a student".into(),
        &app.call(bob, Method::DELETE, &student, None).await,
        S::NO_CONTENT,
    );
    for (who, token, want) in [
        ("anonymous", anon, S::UNAUTHORIZED),
        ("ada", ada, S::FORBIDDEN),
        ("admin", admin, S::NO_CONTENT),
    ] {
        check(
            format!("{who} removes carol"),
            &app.call(token, Method::DELETE, "/api/users/carol", None)
                .await,
            want,
        );
    }
    // An upload needs a signed-in caller too.
    let upload = app
        .client
        .post(format!("{}/api/imports", app.address))
        .insert_header(("Content-Type", "text/csv"))
        .send_body("name,age\nAda,3\n")
        .await
        .unwrap();
    assert_eq!(upload.status(), S::UNAUTHORIZED);

    // WebSocket: a token is needed; another member's job is no job.
    let ws = WsClient::try_connect_as(&app.address, "/ws", None, None).await;
    assert!(matches!(
        ws,
        Err(awc::error::WsClientError::InvalidResponseStatus(
            S::UNAUTHORIZED
        ))
    ));
    let other = app
        .call(
            bob,
            Method::POST,
            "/api/exports",
            Some(json!({"min_age": 149})),
        )
        .await
        .json();
    let path = format!("/ws/jobs/{}", id(&other));
    let ws = WsClient::try_connect_as(&app.address, &path, None, ada).await;
    assert!(matches!(
        ws,
        Err(awc::error::WsClientError::InvalidResponseStatus(
            S::NOT_FOUND
        ))
    ));
    let mut dashboard = WsClient::try_connect_as(&app.address, "/ws", None, ada)
        .await
        .unwrap();
    dashboard.send(json!({"subscribe": "*"})).await;
    dashboard.send(json!({"subscribe": id(&other)})).await;
    let mine = app
        .call(
            ada,
            Method::POST,
            "/api/exports",
            Some(json!({"min_age": 148})),
        )
        .await
        .json();
    let mut seen = Vec::new();
    loop {
        let frame = dashboard
            .next(std::time::Duration::from_secs(30))
            .await
            .unwrap();
        if frame["type"] == "error" {
            assert_eq!(
                frame["code"], "not_found",
                "bob's job is not ada's to watch"
            );
            continue;
        }
        let job_id = frame["job"]["id"]
            .as_str()
            .or(frame["job_id"].as_str())
            .unwrap()
            .to_owned();
        seen.push(job_id.clone());
        if job_id == id(&mine) && frame["status"] == "succeeded" {
            break;
        }
    }
    assert!(
        !seen.contains(&id(&other)),
        "ada's dashboard showed bob's job"
    );
}

#[actix_web::test]
async fn every_route_answers_each_role_as_access_says_on_sqlite() {
    route_matrix(Deployment::Embedded).await;
}

#[actix_web::test]
async fn every_route_answers_each_role_as_access_says_on_postgres_and_redis() {
    route_matrix(Deployment::Production).await;
}

#[actix_web::test]
async fn a_browser_signs_in_with_a_cookie_and_out_again() {
    for deployment in [Deployment::Embedded, Deployment::Production] {
        let Some((app, _)) = guarded(deployment, |_| {}).await else {
            continue;
        };
        let wrong = app
            .post(
                "/api/session",
                json!({"username": "ada", "password": "wrong password"}),
            )
            .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        let nobody = app
            .post(
                "/api/session",
                json!({"username": "nobody", "password": "Juniper-ochre tidal 42 lantern"}),
            )
            .await;
        assert_eq!(nobody.status, StatusCode::UNAUTHORIZED);
        let signed_in = app
            .post(
                "/api/session",
                json!({"username": "ada", "password": "Juniper-ochre tidal 42 lantern"}),
            )
            .await;
        assert_eq!(signed_in.status, StatusCode::NO_CONTENT);
        let cookie = signed_in.header("set-cookie").unwrap();
        assert!(cookie.starts_with("roster_session="), "{cookie}");
        for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
        }
        let pair = cookie.split(';').next().unwrap().to_owned();
        let me = |pair: String| {
            let app = &app;
            async move {
                let mut res = app
                    .client
                    .get(format!("{}/api/session", app.address))
                    .insert_header(("Cookie", pair))
                    .send()
                    .await
                    .unwrap();
                (res.status(), res.json::<Value>().await.ok())
            }
        };
        let (status, body) = me(pair.clone()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body.unwrap()["username"], "ada");
        // A forged cookie (another id, or the signature changed) is nobody.
        let forged = format!("{}x", &pair[..pair.len() - 1]);
        assert_eq!(me(forged).await.0, StatusCode::UNAUTHORIZED);
        let out = app
            .client
            .delete(format!("{}/api/session", app.address))
            .insert_header(("Cookie", pair.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(out.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            me(pair).await.0,
            StatusCode::UNAUTHORIZED,
            "signed out for good"
        );
    }
}

#[actix_web::test]
async fn failed_sign_ins_are_limited_per_user() {
    let Some((app, _)) = guarded(Deployment::Embedded, |_| {}).await else {
        return;
    };
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let reply = app
            .post(
                "/api/session",
                json!({"username": "ada", "password": "guess guess"}),
            )
            .await;
        statuses.push(reply.status);
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            assert!(reply.header("retry-after").is_some());
        }
    }
    assert_eq!(statuses[0], StatusCode::UNAUTHORIZED);
    assert_eq!(
        *statuses.last().unwrap(),
        StatusCode::TOO_MANY_REQUESTS,
        "{statuses:?}"
    );
}

#[actix_web::test]
async fn a_member_may_have_only_so_many_active_jobs() {
    for deployment in [Deployment::Embedded, Deployment::Production] {
        let Some(app) = guarded_web_only(deployment, |s| s.max_active_jobs = 2).await else {
            continue;
        };
        let ada = add_user(&app, "ada", Role::Member);
        let bob = add_user(&app, "bob", Role::Member);
        for age in [1, 2] {
            let reply = app
                .call(
                    Some(&ada),
                    Method::POST,
                    "/api/exports",
                    Some(json!({"min_age": age})),
                )
                .await;
            assert_eq!(reply.status, StatusCode::ACCEPTED);
        }
        let third = app
            .call(
                Some(&ada),
                Method::POST,
                "/api/exports",
                Some(json!({"min_age": 3})),
            )
            .await;
        assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(third.header("retry-after").is_some());
        let other = app
            .call(
                Some(&bob),
                Method::POST,
                "/api/exports",
                Some(json!({"min_age": 3})),
            )
            .await;
        assert_eq!(other.status, StatusCode::ACCEPTED, "the cap is per user");
    }
}

#[actix_web::test]
async fn an_admin_may_list_only_their_own_jobs_and_a_member_only_ever_sees_theirs() {
    for deployment in [Deployment::Embedded, Deployment::Production] {
        let Some(app) = guarded_web_only(deployment, |_| {}).await else {
            continue;
        };
        let root = add_user(&app, "root", Role::Admin);
        let ada = add_user(&app, "ada", Role::Member);
        for (token, age) in [(&root, 1), (&ada, 2), (&ada, 3)] {
            let reply = app
                .call(
                    Some(token),
                    Method::POST,
                    "/api/exports",
                    Some(json!({"min_age": age})),
                )
                .await;
            assert_eq!(reply.status, StatusCode::ACCEPTED);
        }
        async fn owners(app: &TestApp, token: &str, query: &str) -> Vec<String> {
            let reply = app.call(Some(token), Method::GET, query, None).await;
            assert_eq!(reply.status, StatusCode::OK, "{query}");
            creators(&reply)
        }
        assert_eq!(owners(&app, &root, "/api/jobs").await.len(), 3);
        assert_eq!(owners(&app, &root, "/api/jobs?mine=true").await, ["root"]);
        assert_eq!(
            owners(&app, &ada, "/api/jobs?mine=true").await,
            ["ada", "ada"]
        );
        assert_eq!(
            owners(&app, &ada, "/api/jobs?mine=false").await,
            ["ada", "ada"]
        );
        let bad = app
            .call(Some(&root), Method::GET, "/api/jobs?mine=perhaps", None)
            .await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(bad.json()["error"]["fields"]["mine"].is_string());
    }
}

#[test]
fn an_exposed_service_with_access_required_and_no_user_refuses_to_start() {
    let sandbox = crate::helpers::Sandbox::new(Deployment::Embedded).unwrap();
    let port = crate::process::free_port().to_string();
    let out = crate::process::roster_command(&sandbox)
        .args(["serve"])
        .env("ROSTER_BIND", format!("0.0.0.0:{port}"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("roster user add") && stderr.contains("ROSTER_ADMIN_PASSWORD"),
        "{stderr}"
    );
    assert_eq!(
        stderr
            .trim()
            .lines()
            .filter(|l| l.starts_with("roster:"))
            .count(),
        1,
        "{stderr}"
    );
}

#[actix_web::test]
async fn the_admin_password_setting_makes_an_admin_who_can_sign_in() {
    let Some(app) = spawn_with(
        Deployment::Embedded,
        |s| {
            s.auth = AuthSetting::Required;
            s.admin_password = Some("Obsidian harbor 7 wren fjord".into());
        },
        Default::default(),
    )
    .await
    else {
        return;
    };
    let signed_in = app
        .post(
            "/api/session",
            json!({"username": "admin", "password": "Obsidian harbor 7 wren fjord"}),
        )
        .await;
    assert_eq!(signed_in.status, StatusCode::NO_CONTENT);
}

#[test]
fn users_and_tokens_are_made_from_the_command_line() {
    let sandbox = crate::helpers::Sandbox::new(Deployment::Embedded).unwrap();
    let run = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = crate::process::roster_command(&sandbox)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run(
        &["user", "add", "ada", "--role", "admin", "--password-stdin"],
        "Juniper-ochre tidal 42 lantern\n",
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("user ada added (admin)"), "{stdout}");
    let (_, listed, _) = run(&["user", "list"], "");
    assert!(
        listed.contains("ada") && listed.contains("admin"),
        "{listed}"
    );
    let (code, token, _) = run(&["token", "create", "--user", "ada", "--name", "ci"], "");
    assert_eq!(code, Some(0));
    assert!(token.trim().starts_with("roster_"), "{token}");
    let (code, _, stderr) = run(&["user", "add", "bob", "--password-stdin"], "short\n");
    assert_eq!(code, Some(1), "a short password is refused: {stderr}");
    let (code, _, _) = run(&["user", "remove", "ada"], "");
    assert_eq!(code, Some(0));
    let (code, _, stderr) = run(&["user", "remove", "ada"], "");
    assert_eq!(code, Some(1), "{stderr}");
}

#[actix_web::test]
async fn a_user_may_hold_only_so_many_websocket_sessions() {
    let Some((app, p)) = guarded(Deployment::Embedded, |_| {}).await else {
        return;
    };
    let limit = roster::access::MAX_SESSIONS_PER_USER;
    let mut open = Vec::new();
    for _ in 0..limit {
        open.push(
            WsClient::try_connect_as(&app.address, "/ws", None, Some(&p.ada))
                .await
                .unwrap(),
        );
    }
    let refused = WsClient::try_connect_as(&app.address, "/ws", None, Some(&p.ada)).await;
    assert!(
        matches!(
            refused,
            Err(awc::error::WsClientError::InvalidResponseStatus(
                StatusCode::TOO_MANY_REQUESTS
            ))
        ),
        "the {}th session of one user",
        limit + 1
    );
    assert!(
        WsClient::try_connect_as(&app.address, "/ws", None, Some(&p.bob))
            .await
            .is_ok(),
        "per user"
    );
    // A session that ends gives its place back.
    drop(open.pop());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if WsClient::try_connect_as(&app.address, "/ws", None, Some(&p.ada))
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the place was never given back"
        );
        actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Reads `socket` until the server closes it; panics if it stays open past `limit`.
async fn closed_within(socket: &mut WsClient, limit: std::time::Duration) -> std::time::Duration {
    let started = std::time::Instant::now();
    while socket.next(limit).await.is_some() {}
    started.elapsed()
}

#[actix_web::test]
async fn a_live_stream_closes_within_seconds_when_its_right_to_watch_ends() {
    for deployment in [Deployment::Embedded, Deployment::Production] {
        let Some((app, p)) = guarded(deployment, |_| {}).await else {
            continue;
        };
        let demoted = add_user(&app, "dee", Role::Admin);
        let carol = add_user(&app, "carol", Role::Member);
        let mut sockets = Vec::new();
        for token in [&p.ada, &p.bob, &demoted, &carol] {
            let mut ws = WsClient::try_connect_as(&app.address, "/ws", None, Some(token))
                .await
                .unwrap();
            ws.send(json!({"subscribe": "*"})).await;
            sockets.push(ws);
        }
        // ada revokes the token her socket was opened with; bob is removed; dee demoted.
        let ada_tokens = app
            .call(Some(&p.ada), Method::GET, "/api/tokens", None)
            .await;
        let token_id = ada_tokens.json()["items"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let revoked = app
            .call(
                Some(&p.ada),
                Method::DELETE,
                &format!("/api/tokens/{token_id}"),
                None,
            )
            .await;
        assert_eq!(revoked.status, StatusCode::NO_CONTENT);
        let removed = app
            .call(Some(&p.admin), Method::DELETE, "/api/users/bob", None)
            .await;
        assert_eq!(removed.status, StatusCode::NO_CONTENT);
        let demotion = app
            .call(
                Some(&p.admin),
                Method::PATCH,
                "/api/users/dee",
                Some(json!({"role": "member"})),
            )
            .await;
        assert_eq!(demotion.status, StatusCode::OK);
        let mut carol_ws = sockets.pop().unwrap();
        for (who, socket) in ["ada", "bob", "dee"].iter().zip(&mut sockets) {
            let took = closed_within(socket, std::time::Duration::from_secs(8)).await;
            assert_eq!(
                socket.closed,
                Some(Some(awc::ws::CloseCode::Policy)),
                "{who}'s socket closed as a policy matter"
            );
            assert!(took < std::time::Duration::from_secs(5), "{who}: {took:?}");
        }
        // Nothing changed for carol: her socket still answers.
        carol_ws.send(json!({"subscribe": 42})).await;
        let answer = carol_ws.next(std::time::Duration::from_secs(5)).await;
        assert_eq!(answer.unwrap()["type"], "error", "carol's socket is open");
    }
}
