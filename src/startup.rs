//! Builds a roster process from its settings: the database pool, the broker, the event
//! registry, the worker pool with its consumer, the maintenance services, the scheduler and (for
//! `serve`) the HTTP server. The whole route table is here, in [`routes`].

use std::net::TcpListener;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::dev::{Server, Service as _};
use actix_web::middleware::{Logger, NormalizePath, TrailingSlash};
use actix_web::{web, App, HttpServer};

use crate::broker::{self, Broker, EventChannel};
use crate::config::{Settings, StartupError};
use crate::db::{self, Pool};
use crate::events::registry::RedisLink;
use crate::events::Events;
use crate::jobs::accept::Acceptor;
use crate::jobs::consumer::{ClaimSettings, InFlight, JobConsumer, StopConsuming};
use crate::jobs::heartbeat::{BeatHealth, Heartbeat, Leave};
use crate::jobs::maintenance::{
    DiscardStaged, ForgetWorkers, LeaseRecovery, Maintenance, PurgeSessions, Retention, SweepFiles,
};
use crate::jobs::scheduler::Scheduler;
use crate::jobs::store::FileStore;
use crate::jobs::worker::{JobWorker, WorkerContext};
use crate::jobs::{JobHandler, Registry, Shutdown};
use crate::metrics::METRICS;
use crate::models::job::ClaimLimits;
use crate::models::worker;
use crate::routes::{self, input, AppState};

/// Wraps the broker a process uses (fault injection in tests).
pub type BrokerWrapper = Box<dyn FnOnce(Arc<dyn Broker>) -> Arc<dyn Broker>>;

/// Seams for tests and embedders: stand in for kinds, or wrap the broker.
#[derive(Default)]
pub struct Hooks {
    /// Kinds that replace the standard kinds of the same name.
    pub kinds: Vec<Arc<dyn JobHandler>>,
    pub wrap_broker: Option<BrokerWrapper>,
}

impl Hooks {
    /// Hooks that run `kind` in place of the standard kind of its name.
    pub fn with_kind(kind: impl JobHandler) -> Self {
        Self {
            kinds: vec![Arc::new(kind)],
            ..Self::default()
        }
    }
}

/// The background half of a process: everything but HTTP.
pub struct Services {
    pub pool: Pool,
    pub settings: Arc<Settings>,
    pub broker: Arc<dyn Broker>,
    pub events: Events,
    pub node: String,
    pub jobs: Acceptor,
    consumers: Vec<Addr<JobConsumer>>,
    /// Says in the `workers` table that this process runs workers, and what runs.
    heartbeat: Option<Addr<Heartbeat>>,
    shutdown: Shutdown,
}

/// The host's name.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "roster".into())
}

/// A name for this process, unique among those sharing a queue.
fn node_name() -> String {
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..6];
    format!("{}-{}-{tag}", hostname(), std::process::id())
}

impl Services {
    /// Connects, migrates, and starts the event registry, the maintenance services and (with
    /// `workers`) the worker pool and its consumer.
    pub async fn start(settings: Settings, hooks: Hooks, workers: bool) -> anyhow::Result<Self> {
        let settings = Arc::new(settings);
        let node = node_name();
        check_export_dir(&settings)?;
        let pool = {
            let s = settings.clone();
            web::block(move || -> anyhow::Result<Pool> {
                let pool = db::connect(&s.database_url, s.db_pool_size())?;
                let ran = db::migrate(&pool)?;
                if ran > 0 {
                    log::info!("applied {ran} migration(s)");
                }
                Ok(pool)
            })
            .await??
        };
        log::info!(
            "database: {} ({})",
            settings.database_url.backend(),
            settings.database_url
        );
        let (broker, channel) = broker::connect(&settings, &pool).await?;
        match (&settings.broker_url, &channel) {
            (Some(url), Some(channel)) => {
                log::info!("broker: redis on {url}, events on {}", channel.channel)
            }
            _ => log::info!("broker: in-process"),
        }
        let link = event_link(channel, &node);
        let broker = match hooks.wrap_broker {
            Some(wrap) => wrap(broker),
            None => broker,
        };
        let events = Events::start(link);
        let store = FileStore::new(settings.export_dir.clone(), settings.export_ttl());
        let health = BeatHealth::default();
        let recovery = LeaseRecovery::new(
            pool.clone(),
            events.clone(),
            crate::jobs::retry::RetryPolicy::from_settings(&settings),
        );
        // Only a process that beats itself can tell that another stopped beating.
        let recovery = match workers {
            true => recovery.judging_dead(settings.dead_after(), health.clone()),
            false => recovery,
        };
        Maintenance::new(
            recovery,
            vec![
                Box::new(Retention::new(
                    pool.clone(),
                    store.clone(),
                    settings.job_retention(),
                )),
                Box::new(ForgetWorkers::new(pool.clone())),
                Box::new(PurgeSessions::new(pool.clone())),
                Box::new(DiscardStaged::new(pool.clone())),
                Box::new(SweepFiles::new(pool.clone(), store)),
            ],
        )
        .start();
        let mut kinds: Registry = crate::kinds::standard_kinds(&settings);
        for kind in hooks.kinds {
            kinds.register_handler(kind);
        }
        let jobs = Acceptor::new(
            pool.clone(),
            broker.clone(),
            events.clone(),
            kinds.clone(),
            &settings,
        );
        // Every process fires schedules; one job per tick however many do.
        Scheduler::new(pool.clone(), jobs.clone()).start();
        let shutdown = Shutdown::default();
        let (consumers, heartbeat) = match workers {
            false => (Vec::new(), None),
            true => {
                let ctx = Arc::new(WorkerContext::new(
                    &settings,
                    pool.clone(),
                    events.clone(),
                    kinds,
                    shutdown.clone(),
                    node.clone(),
                ));
                let served = settings.served_queues();
                let me = worker::Process {
                    id: uuid::Uuid::new_v4().to_string(),
                    node: hostname(),
                    name: node.clone(),
                    pid: std::process::id() as i32,
                    queue: served
                        .iter()
                        .map(|(q, _)| q.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    concurrency: settings.total_workers() as i32,
                };
                let heartbeat =
                    Heartbeat::new(pool.clone(), me, ctx.running.clone(), health).start();
                let limits = ClaimLimits {
                    per_owner: Some(settings.max_running_per_user as usize),
                    per_kind: settings
                        .kind_concurrency
                        .iter()
                        .flat_map(|caps| caps.0.iter())
                        .map(|(kind, n)| (*kind, *n as usize))
                        .collect(),
                };
                // Each queue its own workers, so that one queue's long jobs never take
                // another's slots.
                let consumers = served
                    .into_iter()
                    .map(|(queue, n)| {
                        let n = usize::from(n);
                        let workers = JobWorker::start_pool(n, ctx.clone());
                        let claim = ClaimSettings {
                            queue,
                            node: node.clone(),
                            lease: settings.lease(),
                            limits: limits.clone(),
                        };
                        JobConsumer::new(broker.clone(), workers, pool.clone(), claim, n).start()
                    })
                    .collect();
                (consumers, Some(heartbeat))
            }
        };
        Ok(Self {
            pool,
            settings,
            broker,
            events,
            node,
            jobs,
            consumers,
            heartbeat,
            shutdown,
        })
    }

    pub fn state(&self, access: crate::access::Access) -> AppState {
        AppState {
            pool: self.pool.clone(),
            settings: self.settings.clone(),
            broker: self.broker.clone(),
            events: self.events.clone(),
            student_counts: Arc::default(),
            files: FileStore::new(self.settings.export_dir.clone(), self.settings.export_ttl()),
            jobs: self.jobs.clone(),
            access,
            db_gate: crate::db::Gate::for_reads(&self.pool),
        }
    }

    /// Stops taking jobs, lets running ones finish within the grace period, then hands
    /// back those still running so that they run again on the next start; the process
    /// then leaves the `workers` table.
    pub async fn shutdown(&self) {
        if self.consumers.is_empty() {
            return;
        }
        let grace = self.settings.shutdown_grace();
        log::info!("shutting down: no new jobs; {grace:?} for running ones to finish");
        for consumer in &self.consumers {
            let _ = consumer.send(StopConsuming).await;
        }
        if !drained(&self.consumers, grace).await {
            log::warn!("grace period over: handing running jobs back to the queue");
            self.shutdown.abort_running_jobs();
            drained(&self.consumers, Duration::from_secs(10)).await;
        }
        if let Some(heartbeat) = &self.heartbeat {
            let _ = heartbeat.send(Leave).await;
        }
    }
}

/// Waits until the consumers hold no job, up to `limit`.
async fn drained(consumers: &[Addr<JobConsumer>], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let mut holding = 0;
        for consumer in consumers {
            holding += consumer.send(InFlight).await.unwrap_or(0);
        }
        match holding {
            0 => return true,
            _ if Instant::now() >= deadline => return false,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The export directory exists (made if missing) and this process can write in it;
/// else a [`StartupError`] naming `ROSTER_EXPORT_DIR` and the path.
pub fn check_export_dir(settings: &Settings) -> Result<(), StartupError> {
    FileStore::new(settings.export_dir.clone(), settings.export_ttl())
        .ensure_writable()
        .map_err(|e| StartupError::unusable("ROSTER_EXPORT_DIR", settings.export_dir.display(), e))
}

/// The route table: every route of the service. Each path is a resource, so that a
/// method it does not take is a 405 (with `Allow`) rather than a 404.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api")
            .service(
                web::resource("/students")
                    .route(web::get().to(routes::students::list))
                    .route(web::post().to(routes::students::create)),
            )
            .service(
                web::resource("/students/{id}")
                    .route(web::get().to(routes::students::get))
                    .route(web::put().to(routes::students::replace))
                    .route(web::patch().to(routes::students::patch))
                    .route(web::delete().to(routes::students::delete)),
            )
            .service(
                web::resource("/schedules")
                    .route(web::get().to(routes::schedules::list))
                    .route(web::post().to(routes::schedules::create)),
            )
            .service(
                web::resource("/schedules/{id}")
                    .route(web::get().to(routes::schedules::get))
                    .route(web::patch().to(routes::schedules::patch))
                    .route(web::delete().to(routes::schedules::delete)),
            )
            .service(
                web::resource("/session")
                    .route(web::post().to(routes::access::sign_in))
                    .route(web::get().to(routes::access::whoami))
                    .route(web::delete().to(routes::access::sign_out)),
            )
            .service(
                web::resource("/session/password")
                    .route(web::patch().to(routes::access::change_password)),
            )
            .service(
                web::resource("/tokens")
                    .route(web::get().to(routes::access::tokens))
                    .route(web::post().to(routes::access::create_token)),
            )
            .service(
                web::resource("/tokens/{id}").route(web::delete().to(routes::access::delete_token)),
            )
            .service(
                web::resource("/users")
                    .route(web::get().to(routes::access::users))
                    .route(web::post().to(routes::access::create_user)),
            )
            .service(
                web::resource("/users/{name}")
                    .route(web::patch().to(routes::access::change_user))
                    .route(web::delete().to(routes::access::delete_user)),
            )
            .service(web::resource("/exports").route(web::post().to(routes::jobs::create_export)))
            .service(web::resource("/imports").route(web::post().to(routes::imports::create)))
            .service(web::resource("/jobs").route(web::get().to(routes::jobs::list)))
            .service(
                web::resource("/jobs/{id}")
                    .route(web::get().to(routes::jobs::get))
                    .route(web::delete().to(routes::jobs::delete)),
            )
            .service(web::resource("/jobs/{id}/cancel").route(web::post().to(routes::jobs::cancel)))
            .service(web::resource("/jobs/{id}/retry").route(web::post().to(routes::jobs::retry)))
            .service(
                web::resource("/jobs/{id}/attempts").route(web::get().to(routes::jobs::attempts)),
            )
            .service(
                web::resource("/jobs/{id}/download").route(web::get().to(routes::jobs::download)),
            )
            .service(
                web::resource("/jobs/{id}/events")
                    .route(web::get().to(crate::live::sse::follow_job)),
            )
            .service(web::resource("/workers").route(web::get().to(routes::workers::list)))
            .service(web::resource("/queues").route(web::get().to(routes::queues::list)))
            .service(
                web::resource("/queues/{name}/pause").route(web::post().to(routes::queues::pause)),
            )
            .service(
                web::resource("/queues/{name}/resume")
                    .route(web::post().to(routes::queues::resume)),
            )
            .service(web::resource("/stats").route(web::get().to(routes::stats::get))),
    )
    .service(web::resource("/").route(web::get().to(routes::page::index)))
    .service(web::resource("/static/app.css").route(web::get().to(routes::page::app_css)))
    .service(web::resource("/static/js/{file}").route(web::get().to(routes::page::script)))
    .service(web::resource("/static/vendor/{file}").route(web::get().to(routes::page::vendor)))
    .service(web::resource("/ws").route(web::get().to(crate::live::ws::connect)))
    .service(web::resource("/ws/jobs/{id}").route(web::get().to(crate::live::ws::follow_job)))
    .service(web::resource("/metrics").route(web::get().to(routes::metrics::scrape)))
    .service(web::resource("/healthz").route(web::get().to(routes::health::healthz)))
    .service(web::resource("/readyz").route(web::get().to(routes::health::readyz)));
}

/// A running `serve` process: HTTP on top of [`Services`].
pub struct Application {
    port: u16,
    server: Server,
    services: Services,
}

impl Application {
    /// Binds `settings.bind` (port 0 picks a free port) and starts everything.
    pub async fn build(settings: Settings, hooks: Hooks, workers: bool) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.bind)
            .map_err(|e| StartupError::unusable("ROSTER_BIND", settings.bind, e))?;
        let port = listener.local_addr()?.port();
        let services = Services::start(settings, hooks, workers).await?;
        let access = {
            let (settings, pool) = (services.settings.clone(), services.pool.clone());
            web::block(move || crate::access::Access::start(&settings, &pool, true)).await??
        };
        if access.required() {
            log::info!("access: signing in is required (ROSTER_AUTH)");
        } else {
            log::info!(
                "access: open to anyone who reaches {} (ROSTER_AUTH)",
                services.settings.bind
            );
        }
        access.watch_revocations(services.pool.clone());
        let state = web::Data::new(services.state(access));
        let grace = services.settings.shutdown_grace();
        let policy = web::Data::new(crate::routes::limits::Policy::from_settings(
            &services.settings,
        ));
        let max_connections = crate::routes::limits::connections_per_worker(&services.settings);
        let server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(routes::fallback::methods))
                .wrap(actix_web::middleware::from_fn(crate::routes::limits::guard))
                .wrap(NormalizePath::new(TrailingSlash::Trim))
                .wrap(Logger::new("%a \"%r\" %s %b %Dms"))
                .wrap_fn(|req, srv| {
                    let started = Instant::now();
                    let method = crate::metrics::method_label(req.method());
                    let response = srv.call(req);
                    async move {
                        let response = response.await?;
                        let route = response
                            .request()
                            .match_pattern()
                            .unwrap_or_else(|| "(unmatched)".into());
                        METRICS.observe_http(
                            method,
                            &route,
                            response.status().as_u16(),
                            started.elapsed(),
                        );
                        Ok(response)
                    }
                })
                .app_data(state.clone())
                .app_data(policy.clone())
                .app_data(input::json_config())
                .app_data(input::query_config())
                .configure(routes)
                .default_service(web::to(routes::health::not_found))
        })
        .disable_signals()
        .max_connections(max_connections)
        .client_request_timeout(crate::routes::limits::HEAD_TIMEOUT)
        // One request a connection: actix-http's head timeout covers only a connection's
        // first request, so a kept-alive connection could trickle its second head forever
        // (210 such sockets held every slot). Closing after each response puts every head
        // under HEAD_TIMEOUT.
        .keep_alive(actix_web::http::KeepAlive::Disabled)
        .client_disconnect_timeout(crate::routes::limits::DISCONNECT_TIMEOUT)
        .shutdown_timeout(grace.as_secs().max(1))
        .listen(listener)?
        .run();
        log::info!("listening on http://{}:{port}", services.settings.bind.ip());
        Ok(Self {
            port,
            server,
            services,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Serves until SIGINT or SIGTERM, then shuts down gracefully.
    pub async fn run_until_signalled(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let server = actix_web::rt::spawn(self.server);
        wait_for_signal().await;
        let _ = self
            .services
            .events
            .registry()
            .send(crate::events::registry::CloseAll)
            .await;
        // Stop accepting requests while running jobs get their grace period.
        let stopping = actix_web::rt::spawn(async move { handle.stop(true).await });
        self.services.shutdown().await;
        let _ = stopping.await;
        let _ = server.await;
        Ok(())
    }

    /// Serves until the server stops (tests drop the runtime instead).
    pub async fn run(self) -> std::io::Result<()> {
        let Application {
            server, services, ..
        } = self;
        let _keep = services;
        server.await
    }
}

/// Resolves on the first SIGINT or SIGTERM, which begins a graceful shutdown. From then
/// on a second one ends the process at once, from the signal handler itself: nothing on
/// the runtime has to run for it, and nothing can miss it. Jobs still running are then
/// recovered from their leases, as after a crash.
pub async fn wait_for_signal() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let _first = second_signal_exits(&[(SIGINT, 130), (SIGTERM, 143)]);
    tokio::select! {
        _ = term.recv() => log::info!("SIGTERM received; a second one stops at once"),
        _ = int.recv() => log::info!("SIGINT received; a second one stops at once"),
    }
}

/// Makes the second of `signals` end the process at once, each with its exit status
/// (130 for SIGINT, 143 for SIGTERM); returns the flag the first one raises. The flag is
/// raised inside the signal handler, not by a task that waits for the signal: a second
/// signal that came before such a task had run (two in a row, Ctrl-C pressed twice) would
/// find it still down and be lost, and the process would wait out its whole grace period.
pub fn second_signal_exits(signals: &[(i32, i32)]) -> Arc<AtomicBool> {
    let seen = Arc::new(AtomicBool::new(false));
    for &(sig, status) in signals {
        // Handlers run in the order they were registered: the check comes before the
        // flag is raised, or the first signal would already end the process.
        signal_hook::flag::register_conditional_shutdown(sig, status, seen.clone())
            .expect("signal handler");
        signal_hook::flag::register(sig, seen.clone()).expect("signal handler");
    }
    seen
}

/// The event registry's link to the other processes, over the broker's pub/sub channel
/// (none in-process). `node` names this process, so that its own events come back once.
pub fn event_link(channel: Option<EventChannel>, node: &str) -> Option<RedisLink> {
    channel.map(|c| RedisLink {
        client: c.client,
        manager: c.manager,
        channel: c.channel,
        node: node.to_owned(),
    })
}
