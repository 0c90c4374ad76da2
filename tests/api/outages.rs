//! Dependencies going away and coming back, for real: a private Redis server is stopped
//! and started again under a running roster (and, here, under two of them); the database
//! is cut off behind a forwarder and connected again.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use roster::config::BrokerUrl;
use roster::startup::Hooks;
use serde_json::json;

use crate::helpers::{self, Deployment, Gate, Sandbox};
use crate::process::free_port;
use crate::websocket::WsClient;

/// A Redis server of the test's own, with no persistence: a restart loses everything.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> Self {
        let mut me = Self {
            port: free_port(),
            child: None,
        };
        me.restart();
        me
    }

    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[actix_web::test]
async fn redis_going_away_makes_readyz_503_and_jobs_still_run_from_the_table() {
    let Some(mut sandbox) = Sandbox::new(Deployment::Production) else {
        return;
    };
    let mut redis = PrivateRedis::start();
    sandbox.broker_url = Some(BrokerUrl::parse(&redis.url()).unwrap());
    let settings = sandbox.settings();
    let app = helpers::start_in(sandbox, settings, Hooks::default(), true).await;
    app.seed(100);
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);

    redis.stop();
    let down = app.get("/readyz").await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(down.json()["database"], "ok");
    // Which one is down, and nothing of its address or driver (anyone may ask).
    assert_eq!(down.json()["broker"], "down", "{}", down.json());
    assert!(!String::from_utf8_lossy(&down.body).contains("127.0.0.1"));
    // Accepted while the broker is down: committed, and run all the same. The table is
    // the queue; the broker only wakes consumers, which look at the table anyway.
    let job = app.start_export(json!({})).await;
    let id = job["id"].as_str().unwrap();
    let done = app.wait_until_ended(id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    // Down for seconds, as a restart of a Redis with much to load may be.
    actix_web::rt::time::sleep(Duration::from_secs(5)).await;

    // Redis comes back empty: no stream, no group. Wake-ups work again at once.
    redis.restart();
    let mut ready = false;
    for _ in 0..50 {
        if app.get("/readyz").await.status == StatusCode::OK {
            ready = true;
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "ready again once Redis is back");
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
    let after = app.start_export(json!({"format": "jsonl"})).await;
    let done = app.wait_until_ended(after["id"].as_str().unwrap()).await;
    assert_eq!(
        done["status"], "succeeded",
        "the consumer reconnected: {done}"
    );
}

#[actix_web::test]
async fn the_first_event_after_redis_dropped_its_connections_reaches_the_other_processes() {
    let Some(mut sandbox) = Sandbox::new(Deployment::Production) else {
        return;
    };
    let redis = PrivateRedis::start();
    sandbox.broker_url = Some(BrokerUrl::parse(&redis.url()).unwrap());
    let web_sandbox = sandbox.sharing();
    let gate = Arc::new(AtomicBool::new(false));
    let hooks = helpers::instead_of_export(Gate::new(gate.clone()));
    let mut settings = sandbox.settings();
    // One worker, busy with the job: its consumer reads nothing from Redis meanwhile,
    // so nothing else of that process touches Redis before the ending is published.
    settings.concurrency = 1;
    let worker = helpers::start_in(sandbox, settings, hooks, true).await;
    let settings = web_sandbox.settings();
    let web = helpers::start_in(web_sandbox, settings, Hooks::default(), false).await;
    let job = web.start_export(json!({})).await;
    let id = job["id"].as_str().unwrap().to_owned();
    worker
        .wait_for(&id, Duration::from_secs(20), |j| j["status"] == "running")
        .await;
    let mut watcher = WsClient::connect(&web.address, &format!("/ws/jobs/{id}")).await;
    let snapshot = watcher.next(Duration::from_secs(10)).await.unwrap();
    assert_eq!(snapshot["job"]["status"], "running");

    // Redis drops every connection but the subscriptions (a proxy or a failover would
    // too) while the job runs silently: the web process has no gap to resync from,
    // and the worker's connection is dead until something uses it.
    let mut admin = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .query(&mut admin)
        .unwrap();
    assert!(killed > 0);
    actix_web::rt::time::sleep(Duration::from_secs(1)).await;
    gate.store(true, Ordering::SeqCst);
    // The ending is the first event the worker's process publishes after the restart.
    let frames = actix_web::rt::time::timeout(Duration::from_secs(20), watcher.until_ended(&id))
        .await
        .expect("the watcher sees the job end");
    let last = frames.last().unwrap();
    assert_eq!(last["status"], "succeeded", "{frames:?}");
}

/// The pool hands out a connection that answered a moment ago without a check: one the
/// server dropped in that moment fails its statement once, and is then thrown away rather
/// than handed out again.
#[test]
fn a_pooled_connection_the_database_dropped_is_replaced_after_its_first_failure() {
    use diesel::connection::SimpleConnection;
    use diesel::RunQueryDsl;

    let Some(sandbox) = helpers::Sandbox::new(Deployment::Production) else {
        return;
    };
    let pool = roster::db::connect(&sandbox.database_url, 1).unwrap();
    // The window is a second: a loaded machine may pass it between the terminate and the
    // checkout, and then the check replaces the connection and there is nothing to see.
    let mut seen = false;
    for _ in 0..5 {
        let pid = backend_pid(&mut pool.get().unwrap());
        let used = Instant::now();
        terminate(&sandbox, pid);
        let mut dead = pool.get().unwrap();
        let unchecked = used.elapsed() < Duration::from_millis(900);
        let failed = dead.batch_execute("SELECT 1").is_err();
        drop(dead);
        if !unchecked {
            continue;
        }
        assert!(
            failed,
            "checked out unchecked, the dropped connection fails"
        );
        let mut conn = pool.get().unwrap();
        assert_ne!(backend_pid(&mut conn), pid, "a new connection replaced it");
        seen = true;
        break;
    }
    assert!(
        seen,
        "no checkout within the freshness window in five tries"
    );

    // One idle past the freshness window is checked on checkout: replaced at once.
    let pid = backend_pid(&mut pool.get().unwrap());
    terminate(&sandbox, pid);
    std::thread::sleep(Duration::from_millis(1_200));
    let mut conn = pool.get().unwrap();
    assert_ne!(backend_pid(&mut conn), pid);

    fn backend_pid(conn: &mut roster::db::DbConnection) -> i32 {
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
            "pg_backend_pid()",
        ))
        .get_result(conn)
        .unwrap()
    }

    /// Ends backend `pid` from a connection of another pool, waiting until it is gone.
    fn terminate(sandbox: &Sandbox, pid: i32) {
        let other = roster::db::connect(&sandbox.database_url, 1).unwrap();
        let mut other = other.get().unwrap();
        other
            .batch_execute(&format!("SELECT pg_terminate_backend({pid}, 5000)"))
            .unwrap();
    }
}

/// A database away for a few seconds (a restart) is connected to again within a moment of
/// its return: checkouts meanwhile, as workers' claims and the sweeper's passes make, do
/// not leave the pool waiting seconds more between attempts to reconnect.
#[test]
fn the_pool_connects_again_within_a_moment_of_the_database_coming_back() {
    use diesel::connection::SimpleConnection;

    let Some(sandbox) = helpers::Sandbox::new(Deployment::Production) else {
        return;
    };
    let cable = Cable::to(&sandbox.database_url);
    let pool = roster::db::connect(&cable.url, 2).unwrap();
    pool.get().unwrap().batch_execute("SELECT 1").unwrap();

    cable.cut();
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(3) {
        if let Ok(mut conn) = pool.get_timeout(Duration::from_millis(200)) {
            assert!(
                conn.batch_execute("SELECT 1").is_err(),
                "the database is away"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cable.mend();
    let back = Instant::now();
    let mut conn = pool.get().expect("a connection once the database is back");
    conn.batch_execute("SELECT 1").unwrap();
    assert!(
        back.elapsed() < Duration::from_millis(1_500),
        "connected again {:?} after the database came back",
        back.elapsed()
    );
}

/// A TCP forwarder to the test database that can be cut, as a restart cuts it: new
/// connections refused, open ones dropped; and mended.
struct Cable {
    url: roster::db::DatabaseUrl,
    up: Arc<AtomicBool>,
    open: Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Cable {
    fn to(database: &roster::db::DatabaseUrl) -> Self {
        let roster::db::DatabaseUrl::Postgres(raw) = database else {
            panic!("a PostgreSQL sandbox");
        };
        let mut url = url::Url::parse(raw).unwrap();
        let target = (
            url.host_str().unwrap().to_owned(),
            url.port().unwrap_or(5432),
        );
        let port = free_port();
        let bind = move || {
            let bound = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
            bound.set_nonblocking(true).unwrap();
            bound
        };
        let mut listener = Some(bind());
        url.set_port(Some(port)).unwrap();
        let me = Self {
            url: roster::db::DatabaseUrl::parse(url.as_str()).unwrap(),
            up: Arc::new(AtomicBool::new(true)),
            open: Arc::default(),
        };
        let (up, open) = (me.up.clone(), me.open.clone());
        std::thread::spawn(move || {
            // Ends with the test process.
            loop {
                if !up.load(Ordering::SeqCst) {
                    listener = None;
                } else if listener.is_none() {
                    listener = Some(bind());
                }
                match listener.as_ref().map(|l| l.accept()) {
                    Some(Ok((client, _))) => {
                        client.set_nonblocking(false).unwrap();
                        let server = std::net::TcpStream::connect(&target).unwrap();
                        let mut open = open.lock().unwrap();
                        for (mut from, mut to) in [
                            (client.try_clone().unwrap(), server.try_clone().unwrap()),
                            (server.try_clone().unwrap(), client.try_clone().unwrap()),
                        ] {
                            std::thread::spawn(move || {
                                let _ = std::io::copy(&mut from, &mut to);
                                let _ = to.shutdown(std::net::Shutdown::Both);
                            });
                        }
                        open.extend([client, server]);
                    }
                    _ => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        me
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        // The listener is closed within the forwarder's next turn; what it accepted
        // before then is dropped with the rest.
        std::thread::sleep(Duration::from_millis(50));
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    fn mend(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
