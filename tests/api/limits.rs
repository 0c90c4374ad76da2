//! Hostile clients (issue 12): foreign Host headers (DNS rebinding), cross-origin unsafe
//! requests, bodies without their content type, unbounded metric labels, a flood of jobs,
//! a full disk, slow bodies and headers, too many connections.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use actix_web::http::{Method, StatusCode};
use roster::config::Settings;
use roster::startup::Hooks;
use serde_json::{json, Value};

use crate::both_deployments;
use crate::helpers::{start_in, Deployment, Sandbox, TestApp};

/// Starts roster with settings of the test's own (and workers only when `workers`).
async fn spawn_limited(
    deployment: Deployment,
    configure: impl FnOnce(&mut Settings),
    workers: bool,
) -> Option<TestApp> {
    let sandbox = Sandbox::new(deployment)?;
    let mut settings = sandbox.settings();
    configure(&mut settings);
    Some(start_in(sandbox, settings, Hooks::default(), workers).await)
}

/// Like `both_deployments!`, with the settings changed by `$configure` and workers
/// started or not.
macro_rules! both_with {
    ($name:ident, $configure:expr, workers: $workers:expr, |$app:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn case($app: TestApp) {
                $body.await
            }

            #[actix_web::test]
            async fn on_sqlite_in_process() {
                let app = spawn_limited(Deployment::Embedded, $configure, $workers)
                    .await
                    .unwrap();
                case(app).await;
            }

            #[actix_web::test]
            async fn on_postgres_and_redis() {
                if let Some(app) = spawn_limited(Deployment::Production, $configure, $workers).await
                {
                    case(app).await;
                }
            }
        }
    };
}

/// A response read off a raw socket.
#[derive(Debug)]
struct RawReply {
    status: u16,
    head: String,
    body: String,
}

impl RawReply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} {:?}", self.head, self.body))
    }

    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

fn port(app: &TestApp) -> u16 {
    app.address.rsplit(':').next().unwrap().parse().unwrap()
}

/// Reads one response (its head, then `Content-Length` bytes of body); `None` when the
/// connection ends or nothing complete arrives within `limit`.
fn read_reply(stream: &mut TcpStream, limit: Duration) -> Option<RawReply> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).into_owned();
            let length = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                let status = head.split(' ').nth(1)?.parse().ok()?;
                let body = String::from_utf8_lossy(&got[end + 4..end + 4 + length]).into_owned();
                return Some(RawReply { status, head, body });
            }
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(_) => return None,
        }
    }
}

/// Sends `request` as is on a new connection, off the test's runtime (which also runs the
/// server), and reads the reply.
async fn raw(port: u16, request: String) -> RawReply {
    actix_web::rt::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        read_reply(&mut stream, Duration::from_secs(20)).expect("a reply")
    })
    .await
    .unwrap()
}

/// Sends a request head, then its body one byte a second (of `length` declared); returns
/// the reply and how long after the head it came.
async fn trickle(port: u16, head: String, length: usize) -> (Option<RawReply>, Duration) {
    actix_web::rt::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        let started = Instant::now();
        let mut writer = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            for _ in 0..length {
                std::thread::sleep(Duration::from_secs(1));
                if writer.write_all(b" ").is_err() {
                    return;
                }
            }
        });
        let reply = read_reply(&mut stream, Duration::from_secs(20));
        let _ = stream.shutdown(std::net::Shutdown::Both);
        (reply, started.elapsed())
    })
    .await
    .unwrap()
}

fn ws_handshake(host: &str, origin: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

both_deployments!(
    requests_for_a_host_not_allowed_are_400_on_http_and_websocket,
    |app| async move {
        let port = port(&app);
        let foreign = raw(
            port,
            format!(
                "GET /api/students HTTP/1.1\r\nHost: attacker.example:{port}\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(foreign.status, 400, "{foreign:?}");
        assert_eq!(foreign.code(), "malformed");
        // DNS rebinding: the page's own origin and Host both name the attacker's domain.
        let rebound = raw(
            port,
            ws_handshake(
                &format!("attacker.example:{port}"),
                &format!("http://attacker.example:{port}"),
            ),
        )
        .await;
        assert_eq!(rebound.status, 400, "{rebound:?}");
        assert_eq!(rebound.code(), "malformed");
        for host in ["localhost", "127.0.0.1", "[::1]"] {
            let own = raw(
                port,
                ws_handshake(&format!("{host}:{port}"), &format!("http://{host}:{port}")),
            )
            .await;
            assert_eq!(own.status, 101, "{host}: {own:?}");
            let ok = raw(
                port,
                format!("GET /api/students HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"),
            )
            .await;
            assert_eq!(ok.status, 200, "{host}: {ok:?}");
        }
        let missing = raw(
            port,
            "GET /api/jobs HTTP/1.1\r\nConnection: close\r\n\r\n".into(),
        )
        .await;
        assert_eq!(missing.status, 400, "{missing:?}");
        // Probes answer whatever the Host (orchestrators call them by address).
        let probe = raw(
            port,
            "GET /healthz HTTP/1.1\r\nHost: 10.1.2.3:8080\r\nConnection: close\r\n\r\n".into(),
        )
        .await;
        assert_eq!(probe.status, 200, "{probe:?}");
    }
);

both_with!(
    allowed_hosts_replace_the_default_and_star_allows_any,
    |s: &mut Settings| s.allowed_hosts = vec!["roster.example".into(), ".corp.example".into()],
    workers: true,
    |app| async move {
        let port = port(&app);
        let get = |host: String| {
            raw(
                port,
                format!("GET /api/jobs HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
            )
        };
        assert_eq!(get(format!("roster.example:{port}")).await.status, 200);
        assert_eq!(get("a.corp.example".into()).await.status, 200);
        assert_eq!(get(format!("localhost:{port}")).await.status, 400);
        assert_eq!(get("evil.example".into()).await.status, 400);
    }
);

both_deployments!(
    unsafe_requests_from_another_origin_are_403_whatever_their_content_type,
    |app| async move {
        let port = port(&app);
        let post = |origin: &str, content_type: Option<&str>, body: &str| {
            let content_type = content_type
                .map(|t| format!("Content-Type: {t}\r\n"))
                .unwrap_or_default();
            format!(
                "POST /api/exports HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: {origin}\r\n\
                 {content_type}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        };
        for (content_type, body) in [
            (Some("text/plain"), ""),
            (Some("text/plain"), "{}"),
            (Some("application/x-www-form-urlencoded"), "a=b"),
            (Some("application/json"), "{}"),
            (None, ""),
        ] {
            let reply = raw(port, post("http://evil.example", content_type, body)).await;
            assert_eq!(reply.status, 403, "{content_type:?} {body:?}: {reply:?}");
            assert_eq!(reply.code(), "forbidden");
            // The same origin on another port is another origin.
            let other_port = raw(port, post("http://127.0.0.1:1", content_type, body)).await;
            assert_eq!(other_port.status, 403, "{other_port:?}");
        }
        let delete = raw(
            port,
            format!(
                "DELETE /api/jobs/{} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
                 Origin: http://evil.example\r\nConnection: close\r\n\r\n",
                uuid::Uuid::new_v4()
            ),
        )
        .await;
        assert_eq!(delete.status, 403, "{delete:?}");
        assert_eq!(app.get("/api/jobs").await.json()["items"], json!([]));

        // The service's own page, and scripts that send no Origin, are served.
        let own = raw(
            port,
            post(
                &format!("http://127.0.0.1:{port}"),
                Some("application/json"),
                "{}",
            ),
        )
        .await;
        assert_eq!(own.status, 202, "{own:?}");
        let script = raw(port, post("", None, "").replace("Origin: \r\n", "")).await;
        assert!(script.status == 200 || script.status == 202, "{script:?}");
        // Reads are never refused for their origin.
        let read = raw(
            port,
            format!(
                "GET /api/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://evil.example\r\n\
                 Connection: close\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(read.status, 200);
    }
);

both_with!(
    allowed_origins_may_post_and_open_websockets,
    |s: &mut Settings| s.allowed_origins = vec!["https://app.example".into()],
    workers: false,
    |app| async move {
        let port = port(&app);
        let post = |origin: &str| {
            format!(
                "POST /api/exports HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: {origin}\r\n\
                 Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
            )
        };
        assert_eq!(raw(port, post("https://app.example")).await.status, 202);
        assert_eq!(raw(port, post("http://app.example")).await.status, 403);
        // The own origin stays allowed beside the list.
        assert_eq!(
            raw(port, post(&format!("http://127.0.0.1:{port}")))
                .await
                .status,
            200,
            "the same export again: the queued one"
        );
        let host = format!("127.0.0.1:{port}");
        assert_eq!(
            raw(port, ws_handshake(&host, "https://app.example")).await.status,
            101
        );
        assert_eq!(
            raw(port, ws_handshake(&host, "https://evil.example")).await.status,
            403
        );
    }
);

both_deployments!(a_body_must_carry_a_json_content_type, |app| async move {
    // An empty text/plain POST (a cross-site form's) does not start an export.
    let empty_text = app
        .send_raw(Method::POST, "/api/exports", "text/plain", Vec::new())
        .await;
    assert_eq!(empty_text.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(empty_text.code(), "unsupported_media_type");
    let form = app
        .send_raw(
            Method::POST,
            "/api/students",
            "application/x-www-form-urlencoded",
            b"name=x&age=3".to_vec(),
        )
        .await;
    assert_eq!(form.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let job = app.start_export(json!({"min_age": 1})).await;
    let id = job["id"].as_str().unwrap();
    let cancel = app
        .send_raw(
            Method::POST,
            &format!("/api/jobs/{id}/cancel"),
            "text/plain",
            b"x".to_vec(),
        )
        .await;
    assert_eq!(cancel.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let csv_elsewhere = app
        .send_raw(
            Method::POST,
            "/api/students",
            "text/csv",
            b"name,age\n".to_vec(),
        )
        .await;
    assert_eq!(csv_elsewhere.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // A body without any content type is refused too.
    let port = port(&app);
    let untyped = raw(
        port,
        format!(
            "POST /api/exports HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 2\r\n\
                 Connection: close\r\n\r\n{{}}"
        ),
    )
    .await;
    assert_eq!(untyped.status, 415, "{untyped:?}");
    // `curl -XPOST` of an export, no body and no type, still works; so does JSON.
    let bare = app.request(Method::POST, "/api/exports", None).await;
    assert_eq!(bare.status, StatusCode::ACCEPTED);
    let typed = app
        .send_raw(
            Method::POST,
            "/api/exports",
            "application/json; charset=utf-8",
            br#"{"min_age": 2}"#.to_vec(),
        )
        .await;
    assert_eq!(typed.status, StatusCode::ACCEPTED);
});

both_deployments!(
    random_methods_leave_one_bounded_metric_series,
    |app| async move {
        for _ in 0..300 {
            let method: String = (0..4_000).map(|_| fastrand::uppercase()).collect();
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let reply = app.request(method, "/api/students", None).await;
            assert!(reply.status.is_client_error(), "{}", reply.status);
        }
        let metrics = app.get("/metrics").await;
        assert_eq!(metrics.status, StatusCode::OK);
        let text = String::from_utf8(metrics.body).unwrap();
        assert!(text.len() < 64 * 1024, "/metrics is {} bytes", text.len());
        let other: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.starts_with("roster_http_requests_total") && l.contains("method=\"other\"")
            })
            .collect();
        assert_eq!(other.len(), 1, "{other:#?}");
        // The metrics are the process's: tests running beside this one add to them.
        let count: u64 = other[0].rsplit(' ').next().unwrap().parse().unwrap();
        assert!(count >= 300, "{}", other[0]);
    }
);

both_with!(
    a_full_queue_refuses_new_jobs_with_503_and_retry_after,
    |s: &mut Settings| s.max_queued_jobs = 3,
    workers: false,
    |app| async move {
        for age in 0..3 {
            app.start_export(json!({"min_age": age})).await;
        }
        let refused = app.post("/api/exports", json!({"min_age": 50})).await;
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.code(), "busy");
        let retry_after: u64 = refused.header("Retry-After").unwrap().parse().unwrap();
        assert!(retry_after >= 1);
        let import = app
            .send_raw(Method::POST, "/api/imports", "text/csv", b"name,age\nAda,3\n".to_vec())
            .await;
        assert_eq!(import.status, StatusCode::SERVICE_UNAVAILABLE);
        // A request that repeats a queued job still gets it.
        let repeat = app.post("/api/exports", json!({"min_age": 0})).await;
        assert_eq!(repeat.status, StatusCode::OK);
        let jobs = app.get("/api/jobs").await.json();
        assert_eq!(jobs["items"].as_array().unwrap().len(), 3);
        // No upload of the refused import is left behind.
        let left: Vec<_> = std::fs::read_dir(&app.settings.export_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
);

both_with!(
    a_retry_passes_the_same_caps_as_a_new_job,
    |s: &mut Settings| s.max_queued_jobs = 2,
    workers: false,
    |app| async move {
        // Cancel and retry cannot fill the queue past its cap: a retry is admitted like
        // a new job.
        let mut cancelled = Vec::new();
        for age in 0..2 {
            let job = app.start_export(json!({"min_age": age})).await;
            let id = job["id"].as_str().unwrap().to_owned();
            assert_eq!(app.cancel(&id).await.status, StatusCode::ACCEPTED);
            cancelled.push(id);
        }
        // The queue's count is cached for a second.
        actix_web::rt::time::sleep(Duration::from_millis(1_100)).await;
        for age in 10..12 {
            app.start_export(json!({"min_age": age})).await;
        }
        actix_web::rt::time::sleep(Duration::from_millis(1_100)).await;
        for id in &cancelled {
            let retried = app.post(&format!("/api/jobs/{id}/retry"), json!({})).await;
            assert_eq!(retried.status, StatusCode::SERVICE_UNAVAILABLE, "{id}");
            assert_eq!(retried.code(), "busy");
            assert_eq!(app.get(&format!("/api/jobs/{id}")).await.json()["status"], "cancelled");
        }
    }
);

both_with!(
    a_retry_is_507_when_the_disk_is_short,
    |s: &mut Settings| s.min_free_disk_mb = 1_000_000_000,
    workers: false,
    |app| async move {
        let job = crate::helpers::new_job(roster::domain::job::JobKind::StudentsByAge, 3);
        let id = job.id;
        let mut conn = app.pool.get().unwrap();
        roster::models::job::insert(&mut conn, &job).unwrap();
        roster::models::job::request_cancel(&mut conn, &id, None).unwrap();
        let retried = app.post(&format!("/api/jobs/{id}/retry"), json!({})).await;
        assert_eq!(retried.status, StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(app.get(&format!("/api/jobs/{id}")).await.json()["status"], "cancelled");
    }
);

both_with!(
    exports_and_imports_are_507_when_the_disk_is_short,
    |s: &mut Settings| s.min_free_disk_mb = 1_000_000_000,
    workers: true,
    |app| async move {
        let export = app.post("/api/exports", json!({})).await;
        assert_eq!(export.status, StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(export.code(), "insufficient_storage");
        let import = app
            .send_raw(Method::POST, "/api/imports", "text/csv", b"name,age\nAda,3\n".to_vec())
            .await;
        assert_eq!(import.status, StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(app.get("/api/jobs").await.json()["items"], json!([]));
    }
);

both_with!(
    a_body_that_trickles_in_is_408_at_its_deadline,
    |s: &mut Settings| s.body_timeout_secs = 2,
    workers: true,
    |app| async move {
        let port = port(&app);
        for (path, content_type) in [
            ("/api/exports", "application/json"),
            ("/api/students", "application/json"),
            ("/api/imports", "text/csv"),
        ] {
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n\
                 Content-Length: 40\r\n\r\n"
            );
            let (reply, took) = trickle(port, head, 40).await;
            let reply = reply.unwrap_or_else(|| panic!("{path}: no reply in {took:?}"));
            assert_eq!(reply.status, 408, "{path}: {reply:?}");
            assert_eq!(reply.code(), "timeout", "{path}");
            assert!(took < Duration::from_secs(4), "{path}: answered after {took:?}");
        }
        assert_eq!(app.get("/api/jobs").await.json()["items"], json!([]));
    }
);

both_deployments!(
    a_request_head_that_trickles_in_is_cut_off,
    |app| async move {
        let port = port(&app);
        let (reply, took) = actix_web::rt::task::spawn_blocking(move || {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let started = Instant::now();
            let mut writer = stream.try_clone().unwrap();
            std::thread::spawn(move || {
                for b in
                    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaa"
                {
                    std::thread::sleep(Duration::from_secs(1));
                    if writer.write_all(&[*b]).is_err() {
                        return;
                    }
                }
            });
            let reply = read_reply(&mut stream, Duration::from_secs(20));
            (reply, started.elapsed())
        })
        .await
        .unwrap();
        // actix answers 408 (or just closes) once the head is late.
        assert!(reply.as_ref().is_none_or(|r| r.status == 408), "{reply:?}");
        assert!(took < Duration::from_secs(8), "held for {took:?}");
    }
);

both_with!(
    connections_beyond_the_bound_wait,
    |s: &mut Settings| s.max_connections = 1,
    workers: true,
    |app| async move {
        let port = port(&app);
        // One connection per HTTP worker (actix starts one per CPU).
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let held = actix_web::rt::task::spawn_blocking(move || {
            let mut held = Vec::new();
            for _ in 0..workers {
                // A head under way holds its connection (each request has its own: the
                // server does not keep connections alive).
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                    .unwrap();
                held.push(s);
            }
            std::thread::sleep(Duration::from_millis(200));
            let mut extra = TcpStream::connect(("127.0.0.1", port)).unwrap();
            extra
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .unwrap();
            let early = read_reply(&mut extra, Duration::from_millis(1500));
            assert!(early.is_none(), "served beyond the bound: {early:?}");
            drop(held);
            read_reply(&mut extra, Duration::from_secs(5))
        })
        .await
        .unwrap();
        assert_eq!(held.expect("served once a connection closed").status, 200);
    }
);

both_with!(
    a_websocket_session_watches_at_most_a_thousand_jobs_one_by_one,
    |_: &mut Settings| {},
    workers: false,
    |app| async move {
        use roster::domain::job::JobKind;
        use roster::models::job;
        let limit = roster::live::ws::MAX_SUBSCRIPTIONS;
        let ids: Vec<String> = {
            let mut conn = app.pool.get().unwrap();
            (0..=limit)
                .map(|_| {
                    let new = crate::helpers::new_job(JobKind::StudentsByAge, 1);
                    job::insert(&mut conn, &new).unwrap().id.to_string()
                })
                .collect()
        };
        let mut ws = crate::websocket::WsClient::connect(&app.address, "/ws").await;
        for id in &ids {
            ws.send(json!({ "subscribe": id })).await;
        }
        let mut snapshots = 0;
        let refused = loop {
            let frame = ws.next(Duration::from_secs(30)).await.expect("a frame");
            match frame["type"].as_str() {
                Some("snapshot") => snapshots += 1,
                _ => break frame,
            }
        };
        assert_eq!(refused["type"], "error", "{refused}");
        assert_eq!(refused["code"], "too_many_subscriptions", "{refused}");
        assert_eq!(snapshots, limit);
    }
);
