//! Live progress over WebSocket (guarantee 8): snapshot first, then every later event in
//! `seq` order; late subscribers learn the end; bad messages; Origin; many subscribers.

use std::time::Duration;

use actix_web::http::StatusCode;
use awc::ws::{CloseCode, Frame, Message};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

use crate::both_deployments;
use crate::helpers::{spawn_with, Deployment, TestApp};

pub struct WsClient {
    framed: actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
    pub closed: Option<Option<CloseCode>>,
}

impl WsClient {
    pub async fn connect(address: &str, path: &str) -> Self {
        Self::try_connect(address, path, None)
            .await
            .expect("websocket connects")
    }

    pub async fn try_connect(
        address: &str,
        path: &str,
        origin: Option<&str>,
    ) -> Result<Self, awc::error::WsClientError> {
        Self::try_connect_as(address, path, origin, None).await
    }

    /// Connects with an API token (`Authorization: Bearer`), if given.
    pub async fn try_connect_as(
        address: &str,
        path: &str,
        origin: Option<&str>,
        token: Option<&str>,
    ) -> Result<Self, awc::error::WsClientError> {
        let url = format!("{}{path}", address.replacen("http", "ws", 1));
        let mut req = awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .finish()
            .ws(url);
        if let Some(origin) = origin {
            req = req.origin(origin);
        }
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let (_res, framed) = req.connect().await?;
        Ok(Self {
            framed,
            closed: None,
        })
    }

    pub async fn send(&mut self, value: Value) {
        self.framed
            .send(Message::Text(value.to_string().into()))
            .await
            .unwrap();
    }

    /// The next JSON frame; `None` once the server closed the connection. Panics after
    /// `limit`, pings included: a server that only pings must not hold a test forever.
    pub async fn next(&mut self, limit: Duration) -> Option<Value> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let frame = actix_web::rt::time::timeout(left, self.framed.next())
                .await
                .expect("a frame in time");
            match frame {
                Some(Ok(Frame::Text(text))) => return Some(serde_json::from_slice(&text).unwrap()),
                Some(Ok(Frame::Ping(bytes))) => {
                    self.framed.send(Message::Pong(bytes)).await.unwrap();
                }
                Some(Ok(Frame::Close(reason))) => {
                    self.closed = Some(reason.map(|r| r.code));
                    return None;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("websocket error: {e}"),
                None => {
                    self.closed.get_or_insert(None);
                    return None;
                }
            }
        }
    }

    /// Every frame until the server closes.
    pub async fn until_closed(&mut self) -> Vec<Value> {
        let mut frames = Vec::new();
        while let Some(frame) = self.next(Duration::from_secs(60)).await {
            frames.push(frame);
        }
        frames
    }

    /// Frames until a terminal status of `job`.
    pub async fn until_ended(&mut self, job: &str) -> Vec<Value> {
        let mut frames = Vec::new();
        loop {
            let frame = self.next(Duration::from_secs(60)).await.expect("open");
            let ended = frame["type"] == "status"
                && frame["job_id"] == job
                && matches!(
                    frame["status"].as_str(),
                    Some("succeeded" | "failed" | "cancelled")
                );
            frames.push(frame);
            if ended {
                return frames;
            }
        }
    }
}

fn id(job: &Value) -> String {
    job["id"].as_str().unwrap().to_owned()
}

/// Checks the frames of one job: a snapshot first, then events whose seq go up by one.
fn assert_complete_and_in_order(frames: &[Value], job: &str) {
    let mine: Vec<&Value> = frames
        .iter()
        .filter(|f| f["job_id"] == job || f["job"]["id"] == job)
        .collect();
    assert_eq!(mine[0]["type"], "snapshot", "{mine:?}");
    let mut seq = mine[0]["job"]["seq"].as_i64().unwrap();
    for frame in &mine[1..] {
        assert_ne!(frame["type"], "snapshot");
        let next = frame["seq"].as_i64().unwrap();
        assert_eq!(next, seq + 1, "no event missed or repeated: {frame}");
        seq = next;
    }
    let last = mine.last().unwrap();
    assert_eq!(last["type"], "status");
    assert_eq!(last["status"], "succeeded");
    assert_eq!(last["result"]["rows"], last["job"]["progress"]["done"]);
}

async fn slow_app(deployment: Deployment) -> Option<TestApp> {
    let app = spawn_with(
        deployment,
        |s| s.export_batch_rows = Some(5),
        Default::default(),
    )
    .await?;
    app.seed(60_000);
    Some(app)
}

#[actix_web::test]
async fn a_follower_gets_the_snapshot_then_every_event_in_order_and_a_normal_close() {
    for deployment in [Deployment::Embedded, Deployment::Production] {
        let Some(app) = slow_app(deployment).await else {
            continue;
        };
        let job = app.start_export(json!({})).await;
        let mut ws = WsClient::connect(&app.address, &format!("/ws/jobs/{}", id(&job))).await;
        let started = std::time::Instant::now();
        let frames = ws.until_closed().await;
        eprintln!(
            "{deployment:?}: {} frames in {:?}",
            frames.len(),
            started.elapsed()
        );
        assert_complete_and_in_order(&frames, &id(&job));
        assert!(
            frames.iter().filter(|f| f["type"] == "progress").count() >= 2,
            "{deployment:?}: progress is seen while the export runs"
        );
        assert_eq!(ws.closed, Some(Some(CloseCode::Normal)));
    }
}

both_deployments!(
    a_late_subscriber_learns_how_the_job_ended,
    |app| async move {
        let job = app.start_export(json!({})).await;
        let done = app.wait_until_ended(&id(&job)).await;
        let mut ws = WsClient::connect(&app.address, &format!("/ws/jobs/{}", id(&job))).await;
        let frames = ws.until_closed().await;
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0]["type"], "snapshot");
        assert_eq!(frames[0]["job"]["status"], "succeeded");
        assert_eq!(frames[0]["job"]["seq"], done["seq"]);
        assert_eq!(ws.closed, Some(Some(CloseCode::Normal)));
    }
);

#[actix_web::test]
async fn the_dashboard_sees_every_job_from_its_creation_to_its_end() {
    for deployment in [Deployment::Embedded, Deployment::Production] {
        let Some(app) = slow_app(deployment).await else {
            continue;
        };
        let earlier = app.start_export(json!({"min_age": 1, "max_age": 2})).await;
        app.wait_until_ended(&id(&earlier)).await;
        let mut ws = WsClient::connect(&app.address, "/ws").await;
        ws.send(json!({"subscribe": "*"})).await;
        let snapshot = ws.next(Duration::from_secs(10)).await.unwrap();
        assert_eq!(snapshot["type"], "snapshot", "recent jobs first");
        assert_eq!(snapshot["job"]["id"], id(&earlier).as_str());
        let job = app.start_export(json!({"format": "jsonl"})).await;
        let frames = ws.until_ended(&id(&job)).await;
        let first = frames
            .iter()
            .find(|f| f["job_id"] == id(&job).as_str())
            .unwrap();
        assert_eq!(
            first["status"], "queued",
            "{deployment:?}: the creation is an event"
        );
        assert_eq!(first["job"]["params"]["format"], "jsonl");
        let seqs: Vec<i64> = frames
            .iter()
            .filter(|f| f["job_id"] == id(&job).as_str())
            .map(|f| f["seq"].as_i64().unwrap())
            .collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
        assert_eq!(seqs[0], 1);
    }
}

both_deployments!(
    bad_messages_get_an_error_frame_and_the_connection_stays,
    |app| async move {
        let mut ws = WsClient::connect(&app.address, "/ws").await;
        for bad in [
            json!("hello"),
            json!({"subscribe": "not-a-job"}),
            json!({"subscribe": 5}),
            json!({"dance": "*"}),
        ] {
            ws.send(bad.clone()).await;
            // Generous: under the whole suite's load two cores can stall a reply.
            let reply = ws.next(Duration::from_secs(20)).await.unwrap();
            assert_eq!(reply["type"], "error", "{bad}");
        }
        ws.send(json!({"subscribe": "00000000-0000-4000-8000-000000000000"}))
            .await;
        let unknown = ws.next(Duration::from_secs(20)).await.unwrap();
        assert_eq!(unknown["code"], "not_found");
        let job = app.start_export(json!({})).await;
        ws.send(json!({"subscribe": id(&job)})).await;
        let frames = ws.until_ended(&id(&job)).await;
        assert_eq!(frames[0]["type"], "snapshot", "still connected and working");
    }
);

both_deployments!(
    handshakes_from_another_origin_are_refused,
    |app| async move {
        let foreign = WsClient::try_connect(&app.address, "/ws", Some("http://evil.example")).await;
        match foreign {
            Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
                assert_eq!(status, StatusCode::FORBIDDEN)
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("a foreign origin was let in"),
        }
        let own = app.address.clone();
        assert!(WsClient::try_connect(&app.address, "/ws", Some(&own))
            .await
            .is_ok());
        let unknown = WsClient::try_connect(
            &app.address,
            "/ws/jobs/00000000-0000-4000-8000-000000000000",
            None,
        )
        .await;
        assert!(matches!(
            unknown,
            Err(awc::error::WsClientError::InvalidResponseStatus(
                StatusCode::NOT_FOUND
            ))
        ));
    }
);

#[actix_web::test]
async fn a_thousand_subscribers_to_one_export_all_see_it_end() {
    for deployment in [Deployment::Embedded, Deployment::Production] {
        let Some(app) = slow_app(deployment).await else {
            continue;
        };
        let job = app.start_export(json!({})).await;
        let path = format!("/ws/jobs/{}", id(&job));
        let mut clients = Vec::new();
        for _ in 0..1000 {
            clients.push(WsClient::connect(&app.address, &path).await);
        }
        let endings = futures_util::future::join_all(clients.iter_mut().map(|c| async {
            let frames = c.until_closed().await;
            frames.last().cloned()
        }))
        .await;
        for last in endings {
            let last = last.expect("at least the snapshot");
            let status = last["status"].as_str().or(last["job"]["status"].as_str());
            assert_eq!(status, Some("succeeded"), "{deployment:?}: {last}");
        }
    }
}

/// The number of WebSocket sessions the app's registry holds, from /metrics.
async fn sessions(app: &TestApp) -> i64 {
    let text = String::from_utf8(app.get("/metrics").await.body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("roster_websocket_sessions "))
        .and_then(|n| n.trim().parse().ok())
        .expect("the gauge is there")
}

#[actix_web::test]
async fn a_client_that_stops_answering_pings_is_dropped() {
    let app = crate::helpers::spawn_app(Deployment::Embedded)
        .await
        .unwrap();
    let mut alive = WsClient::connect(&app.address, "/ws").await;
    alive.send(json!({"subscribe": "*"})).await;
    let mut silent = WsClient::connect(&app.address, "/ws").await;
    silent.send(json!({"subscribe": "*"})).await;
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sessions(&app).await, 2);
    // `alive` answers pings while `silent` is never read again.
    let deadline = std::time::Instant::now()
        + roster::live::ws::CLIENT_TIMEOUT
        + roster::live::ws::HEARTBEAT_INTERVAL * 2;
    while std::time::Instant::now() < deadline && sessions(&app).await > 1 {
        let _ = actix_web::rt::time::timeout(
            Duration::from_millis(500),
            alive.next(Duration::from_secs(60)),
        )
        .await;
    }
    assert_eq!(
        sessions(&app).await,
        1,
        "the silent client was dropped, the other kept"
    );
    drop(silent);
}

#[actix_web::test]
async fn a_snapshot_that_could_not_be_read_is_read_again_and_the_ending_arrives() {
    let app = crate::helpers::spawn_app(Deployment::Embedded)
        .await
        .unwrap();
    let job = app.start_export(json!({"min_age": 150})).await;
    app.wait_until_ended(&id(&job)).await;
    let mut ws = WsClient::connect(&app.address, "/ws").await;
    // Every connection of the pool taken (as by a flood of slow searches).
    let pool = app.pool.clone();
    let taken = actix_web::rt::task::spawn_blocking(move || {
        (0..pool.max_size())
            .map(|_| pool.get().unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    ws.send(json!({"subscribe": id(&job)})).await;
    let failed = ws.next(Duration::from_secs(30)).await.unwrap();
    assert_eq!(failed["type"], "error");
    assert_eq!(failed["code"], "unavailable");
    drop(taken);
    let snapshot = ws.next(Duration::from_secs(10)).await.unwrap();
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    assert_eq!(snapshot["job"]["status"], "succeeded");
}
