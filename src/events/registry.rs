//! The EventRegistry actor: a supervised singleton per process that receives every job
//! event emitted here, hands it to the sessions subscribed to that job or to all jobs,
//! and (with Redis) exchanges events with the registries of other processes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::dev::SendError;
use actix::prelude::*;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{JobEvent, Rendered};
use crate::domain::job::JobId;
use crate::metrics::METRICS;
use crate::models::job::Job;

/// Identifies one subscriber (a WebSocket or event-stream session) within this process.
pub type SessionId = u64;

static NEXT_SESSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// An id no other session of this process has.
pub fn new_session_id() -> SessionId {
    NEXT_SESSION.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// What a session listens to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    Job(JobId),
    /// Every job: the dashboard.
    All,
}

/// An event for a session.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub enum Deliver {
    Event(Arc<Rendered>),
    /// Events may have been missed (the link to other processes was down): re-read the
    /// snapshots of what you watch.
    Resync,
    /// The process is shutting down: close the connection ("going away").
    GoingAway,
}

/// Tell every session the process is going away, so that browsers reconnect elsewhere
/// (or after the restart) at once instead of holding the shutdown up.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseAll;

/// An event that happened in this process.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish(pub JobEvent);

/// An event that happened in another process.
#[derive(Message)]
#[rtype(result = "()")]
struct Remote(JobEvent);

/// Events from other processes may have been missed (the link came back after a gap, or
/// another process could not relay some): every session re-reads its snapshots.
#[derive(Message)]
#[rtype(result = "()")]
struct Reconnected;

/// Start sending `topic`'s events to `recipient`. Answered once it is in place, so that a
/// snapshot read afterwards cannot miss an event.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe {
    pub session: SessionId,
    pub recipient: Recipient<Deliver>,
    pub topic: Topic,
}

/// A session opened; it is told when the process goes away, even before it subscribes.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect {
    pub session: SessionId,
    pub recipient: Recipient<Deliver>,
}

/// Stop sending `topic`'s events to the session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    pub session: SessionId,
    pub topic: Topic,
}

/// The session is gone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub session: SessionId,
}

/// How many sessions are connected, for metrics.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct SessionCount;

/// The registry's link to Redis pub/sub.
#[derive(Clone)]
pub struct RedisLink {
    pub client: redis::Client,
    pub manager: redis::aio::ConnectionManager,
    pub channel: String,
    /// This process, so that its own events are not delivered twice.
    pub node: String,
}

impl RedisLink {
    /// Publishes `event` to the other processes at once, without a registry: for a
    /// short-lived process (the CLI cancelling a job) that would be gone before a
    /// registry's outbox sent it.
    pub async fn publish_now(&self, event: JobEvent) -> redis::RedisResult<()> {
        let envelope = Envelope {
            origin: self.node.clone(),
            event: Some(event),
        };
        let payload = serde_json::to_string(&envelope).expect("envelopes serialize");
        let mut conn = self.manager.clone();
        let _receivers: i64 = redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(payload)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}

/// An event on the wire between processes; without an event, a notice that some of
/// `origin`'s events were lost, so that every subscriber re-reads its snapshots.
#[derive(Serialize, Deserialize)]
struct Envelope {
    origin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event: Option<JobEvent>,
}

/// Events waiting for Redis to come back; beyond this they are dropped, and the other
/// processes are told to resync once it is back.
const MAX_OUTBOX: usize = 10_000;

/// Events the outbox sends to Redis in one pipeline at most.
const OUTBOX_PIPELINE: usize = 256;
/// The longest wait between two tries of a publish while Redis is down.
const MAX_PUBLISH_BACKOFF: Duration = Duration::from_secs(2);

/// How often events that a session's full mailbox refused are offered again.
pub const BACKLOG_RETRY: Duration = Duration::from_millis(20);
/// A session further behind than this many undelivered events is cut off from events and
/// told to resync from snapshots once it catches up: memory per slow client stays bounded.
pub const MAX_BACKLOG: usize = 1_000;

/// A session as the registry knows it: where its events go, and those it could not take
/// yet (its mailbox was full: the client reads slowly).
struct Subscriber {
    recipient: Recipient<Deliver>,
    backlog: VecDeque<Arc<Rendered>>,
    /// Events were dropped; the session must re-read snapshots.
    lagged: bool,
}

impl Subscriber {
    fn new(recipient: Recipient<Deliver>) -> Self {
        Self {
            recipient,
            backlog: VecDeque::new(),
            lagged: false,
        }
    }

    /// Hands `event` over now, or keeps it for later with progress coalesced: only the
    /// latest progress of a job waits, while every status waits in order.
    fn offer(&mut self, event: Arc<Rendered>) -> Coalesced {
        if self.lagged {
            return Coalesced(true);
        }
        if self.backlog.is_empty() {
            match self.recipient.try_send(Deliver::Event(event)) {
                Ok(()) => return Coalesced(false),
                Err(SendError::Closed(_)) => return Coalesced(false),
                Err(SendError::Full(Deliver::Event(event))) => self.backlog.push_back(event),
                Err(SendError::Full(_)) => return Coalesced(false),
            }
            return Coalesced(false);
        }
        let mut coalesced = false;
        if matches!(event.event, JobEvent::Progress { .. }) {
            let before = self.backlog.len();
            self.backlog.retain(|e| {
                !(matches!(e.event, JobEvent::Progress { .. }) && e.job_id() == event.job_id())
            });
            coalesced = self.backlog.len() < before;
        }
        self.backlog.push_back(event);
        if self.backlog.len() > MAX_BACKLOG {
            self.backlog.clear();
            self.lagged = true;
            coalesced = true;
        }
        Coalesced(coalesced)
    }

    /// Offers the backlog again, oldest first, until the mailbox is full.
    fn drain(&mut self) {
        while let Some(event) = self.backlog.pop_front() {
            match self.recipient.try_send(Deliver::Event(event)) {
                Ok(()) => {}
                Err(SendError::Full(Deliver::Event(event))) => {
                    self.backlog.push_front(event);
                    return;
                }
                Err(_) => return,
            }
        }
        if self.lagged && self.recipient.try_send(Deliver::Resync).is_ok() {
            self.lagged = false;
        }
    }

    fn waiting(&self) -> bool {
        !self.backlog.is_empty() || self.lagged
    }
}

/// Whether delivering an event replaced (or dropped) an older one.
struct Coalesced(bool);

#[derive(Default)]
pub struct EventRegistry {
    sessions: HashMap<SessionId, Subscriber>,
    by_job: HashMap<JobId, HashSet<SessionId>>,
    everything: HashSet<SessionId>,
    link: Option<RedisLink>,
    outbox: Option<mpsc::UnboundedSender<String>>,
}

impl EventRegistry {
    pub fn new(link: Option<RedisLink>) -> Self {
        Self {
            link,
            ..Self::default()
        }
    }

    fn deliver(&mut self, event: JobEvent) {
        let event = Arc::new(Rendered::new(event));
        let watchers = self.by_job.get(&event.job_id());
        let targets = watchers
            .into_iter()
            .flatten()
            .chain(self.everything.iter())
            .copied()
            .collect::<HashSet<_>>();
        for session in targets {
            if let Some(subscriber) = self.sessions.get_mut(&session) {
                let Coalesced(coalesced) = subscriber.offer(event.clone());
                METRICS.events_sent.inc();
                if coalesced {
                    METRICS.events_coalesced.inc();
                }
            }
        }
    }

    fn remove(&mut self, session: SessionId, topic: &Topic) {
        match topic {
            Topic::All => {
                self.everything.remove(&session);
            }
            Topic::Job(id) => {
                if let Some(set) = self.by_job.get_mut(id) {
                    set.remove(&session);
                    if set.is_empty() {
                        self.by_job.remove(id);
                    }
                }
            }
        }
    }

    /// Publishes this process's events to Redis, in order, from one task. What is waiting
    /// goes out as one pipeline (up to [`OUTBOX_PIPELINE`] events): under load that is one
    /// round trip for many events instead of one each. A publish that fails (Redis
    /// restarting, the connection manager's dead connection) is tried again until it goes
    /// out; if events had to be dropped meanwhile, the other processes are then told to
    /// resync their subscribers from snapshots.
    fn start_outbox(&mut self, link: RedisLink) {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        self.outbox = Some(tx);
        actix::spawn(async move {
            let mut conn = link.manager.clone();
            let mut lost = false;
            let resync = serde_json::to_string(&Envelope {
                origin: link.node.clone(),
                event: None,
            })
            .expect("envelopes serialize");
            let mut batch = Vec::with_capacity(OUTBOX_PIPELINE);
            while rx.recv_many(&mut batch, OUTBOX_PIPELINE).await > 0 {
                let mut pipe = redis::pipe();
                for payload in &batch {
                    pipe.cmd("PUBLISH").arg(&link.channel).arg(payload).ignore();
                }
                let mut delay = Duration::from_millis(50);
                loop {
                    // A pipeline that fails part-way may have published its first events:
                    // sent again, they arrive twice, and sessions drop the second (they
                    // send no seq twice), where a missing one could not be made up.
                    let sent: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
                    match sent {
                        Ok(()) => break,
                        Err(e) if rx.len() >= MAX_OUTBOX => {
                            log::warn!("dropping job events while Redis is away ({e})");
                            while rx.try_recv().is_ok() {}
                            lost = true;
                            break;
                        }
                        Err(e) => {
                            log::debug!("could not publish job events to Redis ({e}); retrying");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(MAX_PUBLISH_BACKOFF);
                        }
                    }
                }
                batch.clear();
                if lost {
                    let told: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                        .arg(&link.channel)
                        .arg(&resync)
                        .query_async(&mut conn)
                        .await;
                    lost = told.is_err();
                }
            }
        });
    }

    /// Feeds other processes' events in; resubscribes when Redis goes away.
    fn start_inbox(&self, link: RedisLink, me: Addr<Self>) {
        actix::spawn(async move {
            let mut first = true;
            loop {
                match link.client.get_async_pubsub().await {
                    Ok(mut pubsub) => match pubsub.subscribe(&link.channel).await {
                        Ok(()) => {
                            if !first {
                                log::info!("event link to Redis is back");
                                me.do_send(Reconnected);
                            }
                            first = false;
                            let mut messages = pubsub.into_on_message();
                            while let Some(msg) = messages.next().await {
                                let Ok(payload) = msg.get_payload::<String>() else {
                                    continue;
                                };
                                match serde_json::from_str::<Envelope>(&payload) {
                                    Ok(env) if env.origin == link.node => {}
                                    Ok(Envelope {
                                        event: Some(event), ..
                                    }) => me.do_send(Remote(event)),
                                    Ok(Envelope { event: None, .. }) => me.do_send(Reconnected),
                                    Err(e) => log::warn!("unreadable event from Redis: {e}"),
                                }
                            }
                            log::warn!("event link to Redis was lost; reconnecting");
                        }
                        Err(e) => log::warn!("cannot subscribe to Redis events: {e}"),
                    },
                    Err(e) => log::debug!("cannot connect to Redis for events: {e}"),
                }
                if !me.connected() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}

impl Actor for EventRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Many sessions subscribe at once (a dashboard reconnecting, a test with a
        // thousand clients): a larger mailbox keeps senders from waiting.
        ctx.set_mailbox_capacity(100_000);
        ctx.run_interval(BACKLOG_RETRY, |act, _ctx| {
            for subscriber in act.sessions.values_mut().filter(|s| s.waiting()) {
                subscriber.drain();
            }
        });
        if let Some(link) = self.link.clone() {
            self.start_outbox(link.clone());
            self.start_inbox(link, ctx.address());
        }
    }
}

impl Supervised for EventRegistry {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        log::warn!("event registry restarting");
    }
}

impl Handler<Publish> for EventRegistry {
    type Result = ();
    fn handle(&mut self, Publish(event): Publish, _ctx: &mut Context<Self>) {
        if let (Some(outbox), Some(link)) = (&self.outbox, &self.link) {
            let envelope = Envelope {
                origin: link.node.clone(),
                event: Some(event.clone()),
            };
            if let Ok(payload) = serde_json::to_string(&envelope) {
                let _ = outbox.send(payload);
            }
        }
        self.deliver(event);
    }
}

impl Handler<Remote> for EventRegistry {
    type Result = ();
    fn handle(&mut self, Remote(event): Remote, _ctx: &mut Context<Self>) {
        self.deliver(event);
    }
}

impl Handler<Reconnected> for EventRegistry {
    type Result = ();
    fn handle(&mut self, _: Reconnected, _ctx: &mut Context<Self>) {
        for subscriber in self.sessions.values_mut() {
            subscriber.lagged = true;
            subscriber.drain();
        }
    }
}

impl Handler<CloseAll> for EventRegistry {
    type Result = ();
    fn handle(&mut self, _: CloseAll, _ctx: &mut Context<Self>) {
        for subscriber in self.sessions.values() {
            subscriber.recipient.do_send(Deliver::GoingAway);
        }
    }
}

impl Handler<Connect> for EventRegistry {
    type Result = ();
    fn handle(&mut self, msg: Connect, _ctx: &mut Context<Self>) {
        self.sessions
            .entry(msg.session)
            .or_insert_with(|| Subscriber::new(msg.recipient));
    }
}

impl Handler<Subscribe> for EventRegistry {
    type Result = ();
    fn handle(&mut self, msg: Subscribe, _ctx: &mut Context<Self>) {
        self.sessions
            .entry(msg.session)
            .or_insert_with(|| Subscriber::new(msg.recipient));
        match msg.topic {
            Topic::All => {
                self.everything.insert(msg.session);
            }
            Topic::Job(id) => {
                self.by_job.entry(id).or_default().insert(msg.session);
            }
        }
    }
}

impl Handler<Unsubscribe> for EventRegistry {
    type Result = ();
    fn handle(&mut self, msg: Unsubscribe, _ctx: &mut Context<Self>) {
        self.remove(msg.session, &msg.topic);
    }
}

impl Handler<Disconnect> for EventRegistry {
    type Result = ();
    fn handle(&mut self, msg: Disconnect, _ctx: &mut Context<Self>) {
        self.sessions.remove(&msg.session);
        self.everything.remove(&msg.session);
        self.by_job.retain(|_, set| {
            set.remove(&msg.session);
            !set.is_empty()
        });
    }
}

impl Handler<SessionCount> for EventRegistry {
    type Result = usize;
    fn handle(&mut self, _: SessionCount, _ctx: &mut Context<Self>) -> usize {
        self.sessions.len()
    }
}

/// The handle through which job changes are announced; cheap to clone, usable from any
/// thread (workers run on their own).
#[derive(Clone)]
pub struct Events {
    registry: Addr<EventRegistry>,
}

impl Events {
    pub fn start(link: Option<RedisLink>) -> Self {
        let registry = Supervisor::start(move |_| EventRegistry::new(link));
        Self { registry }
    }

    pub fn registry(&self) -> &Addr<EventRegistry> {
        &self.registry
    }

    pub fn emit(&self, event: JobEvent) {
        self.registry.do_send(Publish(event));
    }

    /// Announces a change of status (creation, start, end, retry).
    pub fn status(&self, job: &Job) {
        self.emit(JobEvent::status(job));
    }

    pub fn progress(&self, job: &Job) {
        self.emit(JobEvent::progress(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::job::JobStatus;

    /// Collects what it is sent; its mailbox holds only a few messages.
    struct Sink(Arc<std::sync::Mutex<Vec<Deliver>>>);

    impl Actor for Sink {
        type Context = Context<Self>;
    }

    impl Handler<Deliver> for Sink {
        type Result = ();
        fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) {
            self.0.lock().unwrap().push(msg);
        }
    }

    fn sink() -> (Recipient<Deliver>, Arc<std::sync::Mutex<Vec<Deliver>>>) {
        let got = Arc::new(std::sync::Mutex::new(Vec::new()));
        let inner = got.clone();
        let addr = Sink::create(move |ctx| {
            ctx.set_mailbox_capacity(2);
            Sink(inner)
        });
        (addr.recipient(), got)
    }

    const JOB: &str = "00000000-0000-4000-8000-000000000001";

    fn progress(seq: i64) -> Arc<Rendered> {
        Arc::new(Rendered::new(JobEvent::Progress {
            job_id: JOB.parse().unwrap(),
            seq,
            done: seq,
            total: 1000,
        }))
    }

    fn status(seq: i64, status: JobStatus) -> Arc<Rendered> {
        let json = serde_json::json!({
            "id": JOB, "kind": "students_by_age", "params": {}, "status": status,
            "progress": {"done": 0, "total": 0}, "attempts": 1, "max_attempts": 3,
            "error": null, "result": null, "cancel_requested": false, "seq": seq,
            "created_at": "2026-01-01T00:00:00Z", "run_after": "2026-01-01T00:00:00Z",
            "started_at": null, "finished_at": null
        });
        Arc::new(Rendered::new(JobEvent::Status {
            job_id: JOB.parse().unwrap(),
            seq,
            status,
            error: None,
            result: None,
            job: Box::new(serde_json::from_value(json).unwrap()),
        }))
    }

    async fn drain_all(subscriber: &mut Subscriber) {
        for _ in 0..1000 {
            subscriber.drain();
            actix_web::rt::time::sleep(Duration::from_millis(1)).await;
            if !subscriber.waiting() {
                break;
            }
        }
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }

    fn seqs(got: &[Deliver]) -> Vec<(i64, bool)> {
        got.iter()
            .filter_map(|d| match d {
                Deliver::Event(e) => Some((e.seq(), matches!(e.event, JobEvent::Status { .. }))),
                Deliver::Resync | Deliver::GoingAway => None,
            })
            .collect()
    }

    #[actix_web::test]
    async fn a_slow_session_gets_coalesced_progress_but_every_status_in_order() {
        let (recipient, got) = sink();
        let mut subscriber = Subscriber::new(recipient);
        // The session does not run while these are offered: its mailbox fills at once.
        let mut coalesced = 0;
        subscriber.offer(status(1, JobStatus::Running));
        for seq in 2..500 {
            coalesced += usize::from(subscriber.offer(progress(seq)).0);
        }
        subscriber.offer(status(500, JobStatus::Succeeded));
        assert!(coalesced > 400, "progress was coalesced: {coalesced}");
        assert!(subscriber.backlog.len() < 10, "the backlog stays small");
        drain_all(&mut subscriber).await;

        let seqs = seqs(&got.lock().unwrap());
        assert!(
            seqs.windows(2).all(|w| w[0].0 < w[1].0),
            "in order: {seqs:?}"
        );
        assert_eq!(seqs.iter().filter(|s| s.1).count(), 2, "no status lost");
        assert_eq!(seqs.last(), Some(&(500, true)));
        assert!(
            seqs.contains(&(499, false)),
            "the latest progress before the end"
        );
        assert!(
            seqs.len() < 20,
            "far fewer frames than events: {}",
            seqs.len()
        );
    }

    #[actix_web::test]
    async fn a_session_too_far_behind_is_told_to_resync_instead_of_growing_memory() {
        let (recipient, got) = sink();
        let mut subscriber = Subscriber::new(recipient);
        for seq in 1..=(MAX_BACKLOG as i64 + 10) {
            subscriber.offer(status(seq, JobStatus::Running));
        }
        assert!(subscriber.lagged);
        assert!(subscriber.backlog.is_empty());
        drain_all(&mut subscriber).await;
        let got = got.lock().unwrap();
        assert!(
            matches!(got.last(), Some(Deliver::Resync)),
            "resync from snapshots"
        );
    }
}
