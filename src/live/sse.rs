//! Server-Sent Events: `GET /api/jobs/{id}/events` follows one job, as `/ws/jobs/{id}`
//! does, for clients that would rather read a plain HTTP stream (`curl -N`,
//! `EventSource`): the job's snapshot (`event: snapshot`), then each later event
//! (`event: progress` or `status`, the WebSocket's JSON frames), each with `id:` its
//! `seq`; the stream ends after the terminal status. A client that reconnects with
//! `Last-Event-ID: n` gets the snapshot only if the job changed after `n`.
//!
//! An [`SseSession`] actor subscribes with the event registry first and only then reads
//! the snapshot, holding back the events that arrive meanwhile (as a WebSocket session
//! does), and never sends a `seq` twice or out of order. It writes into a small bounded
//! channel that the response body reads. While the client does not read, the session
//! waits for room and takes no more events, so its mailbox fills and the registry keeps
//! them for it, coalescing progress and keeping every status (`Subscriber` in
//! `events::registry`): a slow client never slows the workers and never misses the end.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;
use tokio::sync::mpsc;

use super::ws::{MAILBOX, SNAPSHOT_RETRY};
use crate::access::{Access, SocketSlot, Viewer};
use crate::db::Pool;
use crate::domain::job::JobId;
use crate::error::ApiError;
use crate::events::registry::{
    new_session_id, Deliver, Disconnect, EventRegistry, SessionId, Subscribe, Topic,
};
use crate::events::{JobEvent, Rendered};
use crate::models::job::{self, Job};
use crate::routes::jobs::{job_id, load};
use crate::routes::AppState;

/// A comment line is sent after this long without anything else, so that proxies and
/// clients see the stream is alive (and a client that left is noticed).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// How often a session looks whether its client went away.
const CLOSED_CHECK: Duration = Duration::from_secs(1);
/// Frames written but not yet read by the response body.
const BUFFER: usize = 16;

/// One event stream.
pub struct SseSession {
    id: SessionId,
    pool: Pool,
    registry: Addr<EventRegistry>,
    job: JobId,
    /// Whose jobs alone the caller may see (a member); `None`: everyone's.
    owner: Option<String>,
    /// The newest `seq` the client has: sent here, or named by `Last-Event-ID`.
    last: i64,
    /// While a snapshot is read: the events held back meanwhile.
    loading: Option<Vec<Arc<Rendered>>>,
    /// The response body's end of the stream; `None` once closed.
    out: Option<mpsc::Sender<Bytes>>,
    /// Frames waiting for room in `out`, in order.
    pending: VecDeque<Bytes>,
    /// Waiting for room in `out` (the actor takes no messages meanwhile).
    flushing: bool,
    /// Close once `pending` is sent.
    ending: bool,
    last_write: Instant,
    /// The user's place among their open live sessions, given back when this one ends.
    _slot: Option<SocketSlot>,
    /// Who watches, checked again after every revocation.
    viewer: Viewer,
    access: Access,
    /// A check of the viewer is under way.
    checking: bool,
}

impl SseSession {
    /// Sends `frame` after those already waiting.
    fn write(&mut self, frame: Bytes, ctx: &mut Context<Self>) {
        self.pending.push_back(frame);
        if !self.flushing {
            self.flush(ctx);
        }
    }

    /// Hands the waiting frames to the body; when it is full, waits for room, and the
    /// actor takes no message until then.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        let Some(out) = self.out.clone() else {
            self.pending.clear();
            return;
        };
        while let Some(frame) = self.pending.pop_front() {
            self.last_write = Instant::now();
            match out.try_send(frame) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => return self.close(ctx),
                Err(mpsc::error::TrySendError::Full(frame)) => {
                    self.flushing = true;
                    async move { out.send(frame).await.is_ok() }
                        .into_actor(self)
                        .map(|sent, act, ctx| {
                            act.flushing = false;
                            match sent {
                                true => act.flush(ctx),
                                false => act.close(ctx),
                            }
                        })
                        .wait(ctx);
                    return;
                }
            }
        }
        if self.ending {
            self.close(ctx);
        }
    }

    /// Ends the stream once what is written has been handed to the body.
    fn end(&mut self, ctx: &mut Context<Self>) {
        self.ending = true;
        if !self.flushing {
            self.flush(ctx);
        }
    }

    fn close(&mut self, ctx: &mut Context<Self>) {
        self.out = None;
        self.pending.clear();
        ctx.stop();
    }

    fn frame(event: &str, seq: i64, data: &str) -> Bytes {
        Bytes::from(format!("event: {event}\nid: {seq}\ndata: {data}\n\n"))
    }

    fn snapshot(&mut self, job: &Job, ctx: &mut Context<Self>) {
        if job.seq > self.last {
            self.last = job.seq;
            let data = json!({"type": "snapshot", "job": job.view()}).to_string();
            self.write(Self::frame("snapshot", job.seq, &data), ctx);
        }
        if job.status.is_terminal() {
            self.end(ctx);
        }
    }

    /// Sends an event unless the client has it (or something newer) already.
    fn forward(&mut self, event: &Rendered, ctx: &mut Context<Self>) {
        if self.ending || event.seq() <= self.last {
            return;
        }
        self.last = event.seq();
        let name = match &event.event {
            JobEvent::Progress { .. } => "progress",
            JobEvent::Status { .. } => "status",
        };
        self.write(Self::frame(name, event.seq(), &event.json), ctx);
        if event.is_terminal() {
            self.end(ctx);
        }
    }

    /// Subscribes (idempotent), then reads the snapshot and sends it with the events held
    /// back meanwhile. A read that fails is tried again a second later, the events still
    /// held: the client is never left without the job's state and its ending.
    fn load(&mut self, ctx: &mut Context<Self>) {
        self.loading.get_or_insert_with(Vec::new);
        let subscribe = Subscribe {
            session: self.id,
            recipient: ctx.address().recipient(),
            topic: Topic::Job(self.job),
        };
        let (registry, pool, id, owner) = (
            self.registry.clone(),
            self.pool.clone(),
            self.job,
            self.owner.clone(),
        );
        async move {
            registry
                .send(subscribe)
                .await
                .map_err(anyhow::Error::from)?;
            web::block(move || -> anyhow::Result<Option<Job>> {
                // Another member's job is no job, as on the other routes.
                Ok(job::find_visible(&mut *pool.get()?, &id, owner.as_deref())?)
            })
            .await?
        }
        .into_actor(self)
        .map(|read, act, ctx| match read {
            Err(e) => {
                log::warn!("event stream snapshot failed: {e:#}; trying again");
                ctx.run_later(SNAPSHOT_RETRY, |act, ctx| act.load(ctx));
            }
            // Deleted meanwhile: nothing more will happen to it.
            Ok(None) => act.end(ctx),
            Ok(Some(job)) => {
                let held = act.loading.take().unwrap_or_default();
                act.snapshot(&job, ctx);
                for event in held {
                    act.forward(&event, ctx);
                }
            }
        })
        .wait(ctx);
    }
}

impl SseSession {
    /// After a revocation anywhere, checks that the viewer is still who opened the
    /// stream; ends it at once if not (no terminal status: the client has no right to
    /// it any more).
    fn check_viewer(&mut self, ctx: &mut Context<Self>) {
        self.checking = true;
        let (access, pool) = (self.access.clone(), self.pool.clone());
        let check = self.viewer.recheck();
        let checked = async move { check.run(&access, &pool).await }
            .into_actor(self)
            .map(|found, act, ctx| {
                act.checking = false;
                if !act.viewer.checked(found) {
                    log::info!(
                        "closing an event stream of job {}: its access was revoked",
                        act.job
                    );
                    act.close(ctx);
                }
            });
        // Beside the stream's work, not in its way.
        ctx.spawn(checked);
    }
}

impl Actor for SseSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX);
        ctx.run_interval(CLOSED_CHECK, |act, ctx| {
            let gone = act.out.as_ref().is_none_or(|out| out.is_closed());
            if gone {
                ctx.stop();
            } else if !act.checking && act.viewer.needs_check() {
                act.check_viewer(ctx);
            } else if act.pending.is_empty() && act.last_write.elapsed() >= KEEPALIVE_INTERVAL {
                // Never queued behind a full body: a client that does not read needs none.
                let sent = act
                    .out
                    .as_ref()
                    .map(|out| out.try_send(": keepalive\n\n".into()));
                if matches!(sent, Some(Ok(()))) {
                    act.last_write = Instant::now();
                }
            }
        });
        self.load(ctx);
    }

    fn stopping(&mut self, _ctx: &mut Context<Self>) -> Running {
        self.registry.do_send(Disconnect { session: self.id });
        Running::Stop
    }
}

impl Handler<Deliver> for SseSession {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        match msg {
            Deliver::Event(event) => match &mut self.loading {
                Some(held) => held.push(event),
                None => self.forward(&event, ctx),
            },
            Deliver::Resync if self.loading.is_none() && !self.ending => self.load(ctx),
            Deliver::Resync => {}
            Deliver::GoingAway => self.end(ctx),
        }
    }
}

/// The `Last-Event-ID` a reconnecting client sends; anything but a number is none.
fn last_event_id(req: &HttpRequest) -> i64 {
    req.headers()
        .get("Last-Event-ID")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(0)
}

/// `GET /api/jobs/{id}/events`: the job's event stream, from its snapshot to its end.
pub async fn follow_job(
    viewer: Viewer,
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let job = load(&state, &viewer.caller, job_id(&path)?).await?;
    let slot = state.access.socket_slot(&viewer.caller)?;
    let (out, body) = mpsc::channel::<Bytes>(BUFFER);
    SseSession {
        id: new_session_id(),
        pool: state.pool.clone(),
        registry: state.events.registry().clone(),
        job: job.id,
        owner: viewer.caller.owner_filter(),
        access: state.access.clone(),
        viewer,
        checking: false,
        last: last_event_id(&req),
        loading: None,
        out: Some(out),
        pending: VecDeque::new(),
        flushing: false,
        ending: false,
        last_write: Instant::now(),
        _slot: slot,
    }
    .start();
    let body = futures_util::stream::unfold(body, |mut body| async move {
        let frame = body.recv().await?;
        Some((Ok::<_, Infallible>(frame), body))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}
