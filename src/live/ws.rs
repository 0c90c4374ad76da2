//! WebSocket sessions: `GET /ws/jobs/{id}` follows one job to its end, `GET /ws` takes
//! subscribe/unsubscribe messages (`"*"` for every job).
//!
//! A session subscribes with the registry first and only then reads the snapshot, holding
//! back the events that arrive meanwhile: no event can fall between the snapshot and the
//! live stream. Everything sent for a job carries its `seq`; the session never sends a
//! job's events out of order or twice.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use serde::Deserialize;
use serde_json::json;

use super::seen::Seen;
use crate::access::{Access, SocketSlot, Viewer, REVOCATION_POLL};
use crate::db::Pool;
use crate::domain::job::JobId;
use crate::error::ApiError;
use crate::events::registry::{
    new_session_id, Connect, Deliver, Disconnect, EventRegistry, SessionId, Subscribe, Topic,
    Unsubscribe,
};
use crate::events::{JobEvent, Rendered};
use crate::models::job::{self, Job};
use crate::routes::AppState;

/// How often a session looks whether a revocation was seen (in memory; the check of the
/// credential itself happens only after one).
pub const REVOCATION_CHECK: Duration = REVOCATION_POLL;
/// How often the server pings.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// A client silent for this long (no pong, no message) is dropped.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest frame a client may send.
pub const MAX_FRAME_BYTES: usize = 4 * 1024;
/// Events a session's mailbox holds before the registry keeps (and coalesces) them.
pub const MAILBOX: usize = 256;
/// Jobs a session remembers the last `seq` of, beyond those still active.
pub const MAX_JOBS_REMEMBERED: usize = 10_000;
/// Jobs one `/ws` session may watch one by one.
pub const MAX_SUBSCRIPTIONS: usize = 1_000;
/// How long a session waits before it reads a snapshot again after a failed read.
pub const SNAPSHOT_RETRY: Duration = Duration::from_secs(1);
/// Jobs whose snapshots a `"*"` subscriber gets first.
pub const DASHBOARD_SNAPSHOTS: i64 = 100;

/// One WebSocket connection.
pub struct WsSession {
    id: SessionId,
    pool: Pool,
    registry: Addr<EventRegistry>,
    /// `/ws/jobs/{id}`: the one job followed; the session closes after its end.
    only: Option<JobId>,
    watching: HashSet<Topic>,
    /// The newest `seq` sent per job.
    sent: Seen,
    /// Topics whose snapshot is being read, with the events held back meanwhile.
    loading: HashMap<Topic, Vec<Arc<Rendered>>>,
    last_heard: Instant,
    /// Whose jobs alone this session may see (a member); `None`: everyone's.
    owner: Option<String>,
    /// With an owner: the jobs seen to be theirs (progress events carry no owner).
    theirs: HashSet<JobId>,
    /// The user's place among their open sessions, given back when this one ends.
    _slot: Option<SocketSlot>,
    /// Who watches, checked again after every revocation.
    viewer: Viewer,
    access: Access,
    /// A check of the viewer is under way.
    checking: bool,
}

/// What a client may send on `/ws`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
enum ClientMessage {
    #[serde(rename = "subscribe")]
    Subscribe(String),
    #[serde(rename = "unsubscribe")]
    Unsubscribe(String),
}

impl WsSession {
    fn new(state: &AppState, viewer: Viewer, only: Option<JobId>) -> Result<Self, ApiError> {
        let slot = state.access.socket_slot(&viewer.caller)?;
        Ok(Self {
            _slot: slot,
            owner: viewer.caller.owner_filter(),
            viewer,
            access: state.access.clone(),
            checking: false,
            theirs: HashSet::new(),
            id: new_session_id(),
            pool: state.pool.clone(),
            registry: state.events.registry().clone(),
            only,
            watching: HashSet::new(),
            sent: Seen::new(MAX_JOBS_REMEMBERED),
            loading: HashMap::new(),
            last_heard: Instant::now(),
        })
    }

    fn send_json(ctx: &mut ws::WebsocketContext<Self>, value: &impl serde::Serialize) {
        ctx.text(serde_json::to_string(value).expect("events serialize"));
    }

    fn error(ctx: &mut ws::WebsocketContext<Self>, code: &str, message: impl Into<String>) {
        Self::send_json(
            ctx,
            &json!({"type": "error", "code": code, "message": message.into()}),
        );
    }

    /// Whether the caller may see the job of `event`: a status event names the job's
    /// creator; a progress event belongs to a job already seen to be theirs.
    fn may_see(&mut self, event: &Rendered) -> bool {
        if self.owner.is_none() {
            return true;
        }
        match &event.event {
            JobEvent::Status { job, .. }
                if self.viewer.caller.may_see(job.created_by.as_deref()) =>
            {
                self.theirs.insert(event.job_id());
                true
            }
            JobEvent::Status { .. } => false,
            JobEvent::Progress { .. } => self.theirs.contains(&event.job_id()),
        }
    }

    /// Sends an event unless the client already has it (or something newer), or may not
    /// see its job.
    fn forward(&mut self, event: &Rendered, ctx: &mut ws::WebsocketContext<Self>) {
        if !self.may_see(event) {
            return;
        }
        if !self.sent.advance(event.job_id(), event.seq()) {
            return;
        }
        ctx.text(event.json.clone());
        if event.is_terminal() {
            self.ended(event.job_id());
            if self.only.is_some() {
                self.close(ctx);
            }
        }
    }

    /// Notes that the client has seen `job` end; the per-job memory stays bounded
    /// ([`Seen`]).
    fn ended(&mut self, job: JobId) {
        for forgotten in self.sent.ended(job) {
            self.theirs.remove(&forgotten);
        }
    }

    fn snapshot(&mut self, job: &Job, ctx: &mut ws::WebsocketContext<Self>) {
        if self.owner.is_some() {
            self.theirs.insert(job.id);
        }
        if !self.sent.advance(job.id, job.seq) {
            return;
        }
        Self::send_json(ctx, &json!({"type": "snapshot", "job": job.view()}));
        if job.status.is_terminal() {
            self.ended(job.id);
            if self.only.is_some() {
                self.close(ctx);
            }
        }
    }

    fn close(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        ctx.close(Some(ws::CloseReason {
            code: ws::CloseCode::Normal,
            description: Some("the job has ended".into()),
        }));
        ctx.stop();
    }

    /// Subscribes to `topic` (again, when `resync`), then reads and sends its snapshot,
    /// then the events held back meanwhile.
    fn watch(&mut self, topic: Topic, resync: bool, ctx: &mut ws::WebsocketContext<Self>) {
        if self.loading.contains_key(&topic) || (!resync && self.watching.contains(&topic)) {
            return;
        }
        self.loading.insert(topic.clone(), Vec::new());
        self.watching.insert(topic.clone());
        self.load(topic, ctx);
    }

    /// Subscribes (idempotent) and reads `topic`'s snapshot. A read that fails (the pool
    /// exhausted, the database restarting) is tried again a second later with the events
    /// still held back: a watcher is never left without the job's state and its ending.
    fn load(&mut self, topic: Topic, ctx: &mut ws::WebsocketContext<Self>) {
        let subscribe = Subscribe {
            session: self.id,
            recipient: ctx.address().recipient(),
            topic: topic.clone(),
        };
        let registry = self.registry.clone();
        let pool = self.pool.clone();
        let read = topic.clone();
        let owner = self.owner.clone();
        async move {
            registry
                .send(subscribe)
                .await
                .map_err(anyhow::Error::from)?;
            web::block(move || -> anyhow::Result<Vec<Job>> {
                let mut conn = pool.get()?;
                Ok(match &read {
                    Topic::Job(id) => {
                        // Another member's job is no job, as on the HTTP routes.
                        job::find_visible(&mut conn, id, owner.as_deref())?
                            .into_iter()
                            .collect()
                    }
                    Topic::All => {
                        let filter = job::JobFilter {
                            created_by: owner,
                            ..job::JobFilter::default()
                        };
                        let (mut jobs, _) =
                            job::list(&mut conn, &filter, None, DASHBOARD_SNAPSHOTS)?;
                        jobs.reverse();
                        jobs
                    }
                })
            })
            .await?
        }
        .into_actor(self)
        .map(move |snapshots, act, ctx| {
            let jobs = match snapshots {
                Ok(jobs) => jobs,
                Err(e) => {
                    log::warn!("websocket snapshot failed: {e:#}; trying again");
                    Self::error(ctx, "unavailable", "could not read the job; trying again");
                    ctx.run_later(SNAPSHOT_RETRY, move |act, ctx| {
                        if act.loading.contains_key(&topic) {
                            act.load(topic, ctx);
                        }
                    });
                    return;
                }
            };
            let held = act.loading.remove(&topic).unwrap_or_default();
            if jobs.is_empty() && matches!(topic, Topic::Job(_)) {
                Self::error(ctx, "not_found", "no such job");
                act.unwatch(&topic);
                if act.only.is_some() {
                    ctx.stop();
                }
                return;
            }
            for job in &jobs {
                act.snapshot(job, ctx);
            }
            for event in held {
                act.forward(&event, ctx);
            }
        })
        .wait(ctx);
    }

    fn unwatch(&mut self, topic: &Topic) {
        self.watching.remove(topic);
        self.loading.remove(topic);
        self.registry.do_send(Unsubscribe {
            session: self.id,
            topic: topic.clone(),
        });
    }

    fn topic(raw: &str) -> Result<Topic, String> {
        if raw == "*" {
            return Ok(Topic::All);
        }
        raw.parse::<JobId>()
            .map(Topic::Job)
            .map_err(|_| format!("{raw:?} is neither a job id nor \"*\""))
    }

    fn handle_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        if self.only.is_some() {
            Self::error(
                ctx,
                "bad_message",
                "this connection follows one job and takes no messages",
            );
            return;
        }
        let message = match serde_json::from_str::<ClientMessage>(text) {
            Ok(m) => m,
            Err(_) => {
                Self::error(
                    ctx,
                    "bad_message",
                    r#"expected {"subscribe": "<job id>" | "*"} or {"unsubscribe": …}"#,
                );
                return;
            }
        };
        match message {
            ClientMessage::Subscribe(raw) => match Self::topic(&raw) {
                Ok(_) if self.watching.len() >= MAX_SUBSCRIPTIONS => Self::error(
                    ctx,
                    "too_many_subscriptions",
                    format!("at most {MAX_SUBSCRIPTIONS}; subscribe to \"*\" instead"),
                ),
                Ok(topic) => self.watch(topic, false, ctx),
                Err(e) => Self::error(ctx, "bad_message", e),
            },
            ClientMessage::Unsubscribe(raw) => match Self::topic(&raw) {
                Ok(topic) => self.unwatch(&topic),
                Err(e) => Self::error(ctx, "bad_message", e),
            },
        }
    }
}

impl WsSession {
    /// After a revocation anywhere, checks that the viewer is still who opened the
    /// session; closes it (policy violation) if not: the client reconnects as whoever it
    /// is now, and sees only what that one may see.
    fn check_viewer(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if self.checking || !self.viewer.needs_check() {
            return;
        }
        self.checking = true;
        let (access, pool) = (self.access.clone(), self.pool.clone());
        let viewer = self.viewer.caller.clone();
        let check = self.viewer.recheck();
        let checked = async move { check.run(&access, &pool).await }
            .into_actor(self)
            .map(move |found, act, ctx| {
                act.checking = false;
                if !act.viewer.checked(found) {
                    log::info!("closing a websocket of {viewer:?}: its access was revoked");
                    ctx.close(Some(ws::CloseReason {
                        code: ws::CloseCode::Policy,
                        description: Some("your access changed; sign in again".into()),
                    }));
                    ctx.stop();
                }
            });
        // Beside the session's work, not in its way: events and pings go on meanwhile.
        ctx.spawn(checked);
    }
}

impl Actor for WsSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX);
        self.registry.do_send(Connect {
            session: self.id,
            recipient: ctx.address().recipient(),
        });
        ctx.run_interval(HEARTBEAT_INTERVAL, |act, ctx| {
            if act.last_heard.elapsed() > CLIENT_TIMEOUT {
                log::info!("websocket client silent for {CLIENT_TIMEOUT:?}; dropping it");
                ctx.stop();
            } else {
                ctx.ping(b"");
            }
        });
        ctx.run_interval(REVOCATION_CHECK, |act, ctx| act.check_viewer(ctx));
        if let Some(id) = self.only {
            self.watch(Topic::Job(id), false, ctx);
        }
    }

    fn stopping(&mut self, _ctx: &mut Self::Context) -> Running {
        self.registry.do_send(Disconnect { session: self.id });
        Running::Stop
    }
}

impl Handler<Deliver> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        match msg {
            Deliver::Event(event) => {
                let job_topic = Topic::Job(event.job_id());
                if let Some(held) = self.loading.get_mut(&job_topic) {
                    held.push(event);
                } else if let Some(held) = self.loading.get_mut(&Topic::All) {
                    held.push(event);
                } else {
                    self.forward(&event, ctx);
                }
            }
            Deliver::GoingAway => {
                ctx.close(Some(ws::CloseReason {
                    code: ws::CloseCode::Away,
                    description: Some("the server is shutting down".into()),
                }));
                ctx.stop();
            }
            Deliver::Resync => {
                let topics: Vec<Topic> = self.watching.iter().cloned().collect();
                for topic in topics {
                    self.watch(topic, true, ctx);
                }
            }
        }
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for WsSession {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        match msg {
            Ok(ws::Message::Ping(bytes)) => ctx.pong(&bytes),
            Ok(ws::Message::Pong(_)) => {}
            Ok(ws::Message::Text(text)) => self.handle_text(&text, ctx),
            Ok(ws::Message::Binary(_)) => Self::error(ctx, "bad_message", "send JSON text frames"),
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Ok(ws::Message::Continuation(_)) | Ok(ws::Message::Nop) => {}
            Err(e) => {
                log::info!("websocket protocol error: {e}");
                ctx.close(Some(ws::CloseReason {
                    code: ws::CloseCode::Protocol,
                    description: Some(e.to_string()),
                }));
                ctx.stop();
            }
        }
    }
}

/// Refuses a handshake from a page of another origin (cross-site WebSocket hijacking):
/// the Origin must be the service's own (on an allowed Host, never merely the Host the
/// request names) or an allowed origin. Clients that send no Origin (not browsers) are
/// let in.
fn check_origin(req: &HttpRequest) -> Result<(), ApiError> {
    let Some(origin) = req.headers().get("origin") else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or_default();
    let host = req
        .headers()
        .get(actix_web::http::header::HOST)
        .and_then(|h| h.to_str().ok());
    let allowed = req
        .app_data::<web::Data<crate::routes::limits::Policy>>()
        .is_some_and(|policy| policy.origin_allowed(origin, host));
    if allowed {
        Ok(())
    } else {
        Err(ApiError::Forbidden("this origin is not allowed".into()))
    }
}

fn start(
    session: WsSession,
    req: &HttpRequest,
    stream: web::Payload,
) -> Result<HttpResponse, ApiError> {
    ws::WsResponseBuilder::new(session, req, stream)
        .frame_size(MAX_FRAME_BYTES)
        .start()
        .map_err(|e| ApiError::Malformed(format!("not a WebSocket handshake: {e}")))
}

/// `GET /ws`: subscribe and unsubscribe by message.
pub async fn connect(
    viewer: Viewer,
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    check_origin(&req)?;
    start(WsSession::new(&state, viewer, None)?, &req, stream)
}

/// `GET /ws/jobs/{id}`: one job, from its snapshot to its end.
pub async fn follow_job(
    viewer: Viewer,
    req: HttpRequest,
    stream: web::Payload,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    check_origin(&req)?;
    let id: JobId = path.parse().map_err(|_| ApiError::NotFound("job"))?;
    // The one access check (404 for another's job); the snapshot comes after the
    // session has subscribed, so that no event falls between the two.
    crate::routes::jobs::load(&state, &viewer.caller, id).await?;
    start(WsSession::new(&state, viewer, Some(id))?, &req, stream)
}
