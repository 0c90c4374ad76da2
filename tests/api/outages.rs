//! Dependencies going away and coming back, for real: a private Redis server is stopped
//! and started again under a running roster.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use roster::config::BrokerUrl;
use roster::startup::Hooks;
use serde_json::json;

use crate::helpers::{self, Deployment, Sandbox};
use crate::process::free_port;

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
async fn redis_going_away_makes_readyz_503_and_nothing_accepted_meanwhile_is_lost() {
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
    // Accepted while the broker is down: committed, published later.
    let job = app.start_export(json!({})).await;
    let id = job["id"].as_str().unwrap();
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.get(&format!("/api/jobs/{id}")).await.json()["status"],
        "queued"
    );

    // Redis comes back empty: no stream, no group, nothing of what was published.
    redis.restart();
    let done = app.wait_until_ended(id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
    let after = app.start_export(json!({"format": "jsonl"})).await;
    let done = app.wait_until_ended(after["id"].as_str().unwrap()).await;
    assert_eq!(
        done["status"], "succeeded",
        "the consumer reconnected: {done}"
    );
}
