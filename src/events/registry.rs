//! The EventRegistry actor: a supervised singleton per process that receives every job
//! event emitted here, hands it to the sessions subscribed to that job or to all jobs,
//! and (with Redis) exchanges events with the registries of other processes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::JobEvent;
use crate::models::job::Job;

/// Identifies one subscriber (a WebSocket session) within this process.
pub type SessionId = u64;

/// What a session listens to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    Job(String),
    /// Every job: the dashboard.
    All,
}

/// An event for a session.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub enum Deliver {
    Event(Arc<JobEvent>),
    /// Events may have been missed (the link to other processes was down): re-read the
    /// snapshots of what you watch.
    Resync,
}

/// An event that happened in this process.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish(pub JobEvent);

/// An event that happened in another process.
#[derive(Message)]
#[rtype(result = "()")]
struct Remote(JobEvent);

/// The link to other processes came back after a gap.
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

/// How many sessions are connected.
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

/// An event on the wire between processes.
#[derive(Serialize, Deserialize)]
struct Envelope {
    origin: String,
    event: JobEvent,
}

#[derive(Default)]
pub struct EventRegistry {
    sessions: HashMap<SessionId, Recipient<Deliver>>,
    by_job: HashMap<String, HashSet<SessionId>>,
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
        let event = Arc::new(event);
        let watchers = self.by_job.get(event.job_id());
        let targets = watchers
            .into_iter()
            .flatten()
            .chain(self.everything.iter())
            .collect::<HashSet<_>>();
        for session in targets {
            if let Some(recipient) = self.sessions.get(session) {
                recipient.do_send(Deliver::Event(event.clone()));
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

    /// Publishes this process's events to Redis, in order, from one task.
    fn start_outbox(&mut self, link: RedisLink) {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        self.outbox = Some(tx);
        actix::spawn(async move {
            let mut conn = link.manager.clone();
            while let Some(payload) = rx.recv().await {
                let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                    .arg(&link.channel)
                    .arg(&payload)
                    .query_async(&mut conn)
                    .await;
                if let Err(e) = sent {
                    log::warn!("could not publish a job event to Redis: {e}");
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
                                    Ok(env) if env.origin != link.node => {
                                        me.do_send(Remote(env.event))
                                    }
                                    Ok(_) => {}
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
                event: event.clone(),
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
        for recipient in self.sessions.values() {
            recipient.do_send(Deliver::Resync);
        }
    }
}

impl Handler<Subscribe> for EventRegistry {
    type Result = ();
    fn handle(&mut self, msg: Subscribe, _ctx: &mut Context<Self>) {
        self.sessions.insert(msg.session, msg.recipient);
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
