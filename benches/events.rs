//! Event benchmarks (`cargo bench --bench events [-- latency|idle] [--runs N] …`):
//!
//! - **latency**: roster runs in this process (the library, embedded default, no workers);
//!   N WebSocket clients (`--subscribers 1000,10000`: one set of runs per count) subscribe
//!   on `/ws` to one real queued job, then progress events
//!   are emitted straight into the registry at the real throttle (10 a second). Latency is
//!   the time from just before `Events::emit` to the client reading the frame, over every
//!   (client, event) pair. The server runs on its own actix system (its registry thread plus
//!   the HTTP workers); the clients share one other thread of the same machine, so their
//!   reading is part of the figure. Each run also reports the CPU time per event of the
//!   registry, the HTTP workers (where the sessions run) and the clients.
//! - **idle**: the `roster` binary runs as a child process; this process opens N WebSocket
//!   sessions to `/ws` (`--sessions 10000,100000`: one set of runs per count), keeps
//!   answering pings, and reads the child's resident memory before and after from
//!   `/proc/<pid>/status`.
//!
//! Many sockets: this process raises its open-file limit (soft and, as root, hard) to what
//! the largest count needs before it starts anything, so the child inherits it; the child
//! gets `ROSTER_MAX_CONNECTIONS` to match. The clients spread over source addresses
//! 127.0.0.2, 127.0.0.3, … (`--sources N`, else one per 10,000 sockets): one address has
//! only the ephemeral port range (~28,000 ports) to connect from.
//!
//! Each figure is the median over `--runs` runs. Lines starting with `RESULT` are for
//! `benches/run.sh`.

use std::cell::Cell;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix_web::rt;
use anyhow::{anyhow, bail, Context as _};
use awc::ws::{Frame, Message};
use futures_util::{stream, SinkExt, StreamExt};
use roster::config::Settings;
use roster::db::DatabaseUrl;
use roster::events::{Events, JobEvent};
use roster::startup::{Application, Hooks};
use serde::Deserialize;

type Ws = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

/// What to run, from the command line (`cargo bench` adds `--bench`, which is ignored).
struct Opts {
    latency: bool,
    idle: bool,
    runs: usize,
    subscribers: Vec<usize>,
    events: i64,
    interval: Duration,
    sessions: Vec<usize>,
    /// Source addresses to spread the clients over (0: one per [`SOCKETS_PER_SOURCE`]).
    sources: usize,
}

/// Sockets one loopback source address is given, well inside the ephemeral port range.
const SOCKETS_PER_SOURCE: usize = 10_000;

/// A comma-separated list of counts (`1000,10000`).
fn counts(name: &str, raw: Option<String>) -> anyhow::Result<Vec<usize>> {
    let raw = raw.with_context(|| format!("{name} needs a value"))?;
    raw.split(',')
        .map(|n| {
            n.trim()
                .parse::<usize>()
                .with_context(|| format!("{name} needs numbers, comma separated"))
        })
        .collect()
}

impl Opts {
    fn parse() -> anyhow::Result<Self> {
        let mut opts = Opts {
            latency: false,
            idle: false,
            runs: 3,
            subscribers: vec![1_000],
            events: 50,
            interval: Duration::from_millis(100),
            sessions: vec![10_000],
            sources: 0,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = |name: &str| -> anyhow::Result<u64> {
                args.next()
                    .with_context(|| format!("{name} needs a value"))?
                    .parse()
                    .with_context(|| format!("{name} needs a number"))
            };
            match arg.as_str() {
                "--bench" => {}
                "latency" => opts.latency = true,
                "idle" => opts.idle = true,
                "--runs" => opts.runs = value("--runs")?.max(1) as usize,
                "--subscribers" => opts.subscribers = counts("--subscribers", args.next())?,
                "--events" => opts.events = value("--events")?.max(1) as i64,
                "--interval-ms" => opts.interval = Duration::from_millis(value("--interval-ms")?),
                "--sessions" => opts.sessions = counts("--sessions", args.next())?,
                "--sources" => opts.sources = value("--sources")? as usize,
                other => bail!(
                    "unknown argument {other:?}; expected latency, idle, --runs N, \
                     --subscribers N[,N…], --events N, --interval-ms N, --sessions N[,N…], \
                     --sources N"
                ),
            }
        }
        if !opts.latency && !opts.idle {
            opts.latency = true;
            opts.idle = true;
        }
        Ok(opts)
    }

    /// The most sockets one run opens.
    fn most_sockets(&self) -> usize {
        let subscribers = if self.latency {
            &self.subscribers[..]
        } else {
            &[]
        };
        let sessions = if self.idle { &self.sessions[..] } else { &[] };
        subscribers
            .iter()
            .chain(sessions)
            .copied()
            .max()
            .unwrap_or(0)
    }

    /// How many source addresses `sockets` clients are spread over.
    fn sources_for(&self, sockets: usize) -> usize {
        match self.sources {
            0 => sockets.div_ceil(SOCKETS_PER_SOURCE).max(1),
            n => n,
        }
        .min(250)
    }
}

/// The frames a client reads; only what the bench needs.
#[derive(Deserialize)]
struct Incoming {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    seq: Option<i64>,
    #[serde(default)]
    message: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let opts = Opts::parse()?;
    // Both ends of every socket may be in this process (latency), or this process and its
    // child (idle, which inherits the limit): twice the sockets, and room for the rest.
    let want = 2 * opts.most_sockets() as u64 + 4_096;
    let limit = raise_file_limit(want);
    println!("events bench: open-file limit {limit} (wanted {want})");
    if opts.latency {
        let server = InProcess::start()?;
        let mut result = Ok(());
        for &n in &opts.subscribers {
            // Both ends of each socket are in this process.
            let fits = fitting(n, 2, limit);
            result = rt::System::new().block_on(latency(&opts, n, fits, &server));
            if result.is_err() {
                break;
            }
        }
        server.stop();
        result?;
    }
    if opts.idle {
        for &n in &opts.sessions {
            // One end of each socket here, the other in the child (which has the same limit).
            let fits = fitting(n, 1, limit);
            rt::System::new().block_on(idle(&opts, n, fits))?;
        }
    }
    Ok(())
}

/// How many of `asked` sockets fit when each takes `fds` descriptors of one process whose
/// limit is `limit` (with room for the rest); said aloud when fewer than asked.
fn fitting(asked: usize, fds: usize, limit: u64) -> usize {
    let room = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_sub(1_024)
        / fds;
    if room >= asked {
        return asked;
    }
    // Rounded down to a hundred, so that the label reads well.
    let fits = room / 100 * 100;
    println!(
        "  {asked} sockets do not fit under the open-file limit {limit} (this machine refuses a \
         higher hard limit): measuring {fits}"
    );
    fits
}

/// Raises this process's limit of open files to `want` (the hard limit too, which needs
/// root or CAP_SYS_RESOURCE; else the soft limit up to the hard one); returns the limit.
fn raise_file_limit(want: u64) -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_max < want {
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: want,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return want;
            }
        }
        lim.rlim_cur = lim.rlim_max.min(want.max(lim.rlim_cur));
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur
    }
}

fn client() -> awc::Client {
    client_from(None)
}

/// A client whose connections leave from `source` (a loopback address).
fn client_from(source: Option<std::net::IpAddr>) -> awc::Client {
    let mut connector = awc::Connector::new().limit(0);
    if let Some(ip) = source {
        connector = connector.local_address(ip);
    }
    awc::Client::builder()
        .connector(connector)
        .timeout(Duration::from_secs(30))
        .finish()
}

/// Clients on `n` source addresses, 127.0.0.2 onwards, starting `offset` addresses in (so
/// that successive runs do not reuse ports a previous run's sockets still hold in
/// TIME_WAIT).
fn clients(n: usize, offset: usize) -> Vec<awc::Client> {
    (0..n)
        .map(|i| {
            let host = 2 + (offset + i) % 250;
            client_from(Some(std::net::Ipv4Addr::new(127, 0, 0, host as u8).into()))
        })
        .collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The `p`-th quantile (nearest rank) of sorted values.
fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

// ---------------------------------------------------------------------------------------
// Latency from emit to receipt.

/// roster, built from the library, running on an actix system of its own thread.
struct InProcess {
    port: u16,
    events: Events,
    system: rt::System,
    _dir: tempfile::TempDir,
}

impl InProcess {
    fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut settings = Settings::defaults();
        settings.database_url =
            DatabaseUrl::Sqlite(dir.path().join("roster.db").display().to_string());
        settings.bind = "127.0.0.1:0".parse()?;
        settings.export_dir = dir.path().join("exports");
        let (tx, rx) = std::sync::mpsc::channel();
        // Named, so that a profile (and `ThreadCpu`) tells the server's system thread (the
        // registry) from the clients' (the main thread); the HTTP workers are
        // `actix-rt|system:…|arbiter:…`.
        std::thread::Builder::new()
            .name("roster-server".into())
            .spawn(move || {
                let system = rt::System::new();
                let built = system.block_on(async move {
                    let app = Application::build(settings, Hooks::default(), false).await?;
                    let ready = (
                        app.port(),
                        app.services().events.clone(),
                        rt::System::current(),
                    );
                    rt::spawn(app.run());
                    anyhow::Ok(ready)
                });
                let failed = built.is_err();
                let _ = tx.send(built);
                if !failed {
                    let _ = system.run();
                }
            })?;
        let (port, events, system) = rx
            .recv_timeout(Duration::from_secs(60))
            .context("the in-process server did not start in 60 s")??;
        Ok(Self {
            port,
            events,
            system,
            _dir: dir,
        })
    }

    fn stop(&self) {
        self.system.stop();
    }
}

/// Opens `/ws`, subscribes to `job_id` and waits for its snapshot.
async fn subscribe(client: &awc::Client, url: &str, job_id: &str) -> anyhow::Result<Ws> {
    let (_, mut ws) = client
        .ws(url)
        .connect()
        .await
        .map_err(|e| anyhow!("websocket connect: {e}"))?;
    let request = serde_json::json!({ "subscribe": job_id }).to_string();
    ws.send(Message::Text(request.into()))
        .await
        .map_err(|e| anyhow!("websocket send: {e}"))?;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .context("no snapshot within 30 s")?;
        match frame {
            Some(Ok(Frame::Text(text))) => {
                let m: Incoming = serde_json::from_slice(&text)?;
                match m.kind.as_str() {
                    "snapshot" => return Ok(ws),
                    "error" => bail!("server refused: {}", m.message.unwrap_or_default()),
                    _ => {}
                }
            }
            Some(Ok(Frame::Ping(b))) => ws
                .send(Message::Pong(b))
                .await
                .map_err(|e| anyhow!("websocket send: {e}"))?,
            Some(Ok(_)) => {}
            Some(Err(e)) => bail!("websocket error: {e}"),
            None => bail!("closed before the snapshot"),
        }
    }
}

/// Reads progress frames until `last` arrives (or `deadline`); returns (seq, receipt).
async fn receive(mut ws: Ws, last: i64, deadline: Instant) -> Vec<(i64, Instant)> {
    let mut got = Vec::with_capacity(64);
    let deadline = tokio::time::Instant::from_std(deadline);
    while let Ok(Some(frame)) = tokio::time::timeout_at(deadline, ws.next()).await {
        let at = Instant::now();
        match frame {
            Ok(Frame::Text(text)) => {
                if let Ok(Incoming {
                    kind,
                    seq: Some(seq),
                    ..
                }) = serde_json::from_slice::<Incoming>(&text)
                {
                    if kind == "progress" {
                        got.push((seq, at));
                        if seq >= last {
                            break;
                        }
                    }
                }
            }
            Ok(Frame::Ping(b)) => {
                let _ = ws.send(Message::Pong(b)).await;
            }
            Ok(Frame::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let _ = ws.close().await;
    got
}

/// One run: returns the latencies (ms) of every (client, event) pair, how many pairs never
/// arrived, and the CPU time each group of threads spent per event.
async fn latency_run(
    opts: &Opts,
    subscribers: usize,
    run: usize,
    server: &InProcess,
) -> anyhow::Result<(Vec<f64>, usize, ThreadCpu)> {
    let base = format!("http://127.0.0.1:{}", server.port);
    let client = client();
    let sources = opts.sources_for(subscribers);
    let from = clients(sources, run * sources);
    let mut res = client
        .post(format!("{base}/api/exports"))
        .send_json(&serde_json::json!({"format": "csv", "min_age": 1, "max_age": 1}))
        .await
        .map_err(|e| anyhow!("POST /api/exports: {e}"))?;
    let job: serde_json::Value = res.json().await.context("the job")?;
    let job_id = job["id"].as_str().context("job id")?.to_owned();
    let first = job["seq"].as_i64().context("job seq")? + 1;
    let last = first + opts.events - 1;

    let url = format!("ws://127.0.0.1:{}/ws", server.port);
    let started = Instant::now();
    let clients: Vec<anyhow::Result<Ws>> = stream::iter(0..subscribers)
        .map(|i| subscribe(&from[i % from.len()], &url, &job_id))
        .buffer_unordered(100)
        .collect()
        .await;
    let clients = clients.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    println!(
        "  {} subscribers on job {job_id} in {:.2} s, from {sources} source addresses",
        clients.len(),
        started.elapsed().as_secs_f64()
    );
    let deadline = Instant::now()
        + opts.interval * u32::try_from(opts.events).unwrap_or(u32::MAX)
        + Duration::from_secs(30);
    let readers: Vec<_> = clients
        .into_iter()
        .map(|ws| rt::spawn(receive(ws, last, deadline)))
        .collect();
    rt::time::sleep(Duration::from_millis(500)).await;

    let cpu_before = ThreadCpu::now();
    let mut emitted = Vec::with_capacity(usize::try_from(opts.events).unwrap_or_default());
    let mut tick = tokio::time::interval(opts.interval);
    for seq in first..=last {
        tick.tick().await;
        let event = JobEvent::Progress {
            job_id: job_id.parse()?,
            seq,
            done: seq - first + 1,
            total: opts.events,
        };
        emitted.push(Instant::now());
        server.events.emit(event);
    }
    let mut received = Vec::with_capacity(readers.len());
    for reader in readers {
        received.push(reader.await?);
    }
    let cpu = ThreadCpu::now().since(&cpu_before, emitted.len());
    let mut latencies = Vec::with_capacity(subscribers * emitted.len());
    for got in received {
        for (seq, at) in got {
            if let Some(sent) = usize::try_from(seq - first)
                .ok()
                .and_then(|i| emitted.get(i))
            {
                latencies.push(at.saturating_duration_since(*sent).as_secs_f64() * 1e3);
            }
        }
    }
    let missing = subscribers * emitted.len() - latencies.len();
    Ok((latencies, missing, cpu))
}

/// CPU time used so far by this process's threads (ms), grouped by role.
#[derive(Debug, Clone, Copy, Default)]
struct ThreadCpu {
    /// The main thread: the WebSocket clients (and the emitter).
    clients: f64,
    /// The server's system thread: the EventRegistry (and the other service actors).
    registry: f64,
    /// The HTTP workers (`actix-rt|system:…`), where the WsSession actors run.
    http: f64,
}

impl ThreadCpu {
    fn now() -> Self {
        // SAFETY: sysconf only reads a configuration value.
        let tick_ms = 1e3 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let me = std::process::id().to_string();
        let mut cpu = Self::default();
        for task in std::fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let comm = &stat[open + 1..close];
            // After the name: state, ppid, …; utime and stime are the 12th and 13th.
            let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            let ticks: f64 = [11, 12]
                .iter()
                .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
                .sum();
            let ms = ticks * tick_ms;
            if task.file_name().to_string_lossy() == me {
                cpu.clients += ms;
            } else if comm == "roster-server" {
                cpu.registry += ms;
            } else if comm.starts_with("actix-rt|system") {
                cpu.http += ms;
            }
        }
        cpu
    }

    /// Per event, since `before`.
    fn since(&self, before: &Self, events: usize) -> Self {
        let n = events.max(1) as f64;
        Self {
            clients: (self.clients - before.clients) / n,
            registry: (self.registry - before.registry) / n,
            http: (self.http - before.http) / n,
        }
    }
}

/// The latency runs for `asked` subscribers, measured with `subscribers` (fewer when the
/// open-file limit holds them back; the keys still name `asked`).
async fn latency(
    opts: &Opts,
    asked: usize,
    subscribers: usize,
    server: &InProcess,
) -> anyhow::Result<()> {
    println!(
        "latency: {subscribers} subscribers, {} events at {:?} intervals, {} runs",
        opts.events, opts.interval, opts.runs
    );
    let (mut p50s, mut p99s, mut maxes, mut missing) = (vec![], vec![], vec![], 0);
    let (mut clients, mut registry, mut http) = (vec![], vec![], vec![]);
    for run in 1..=opts.runs {
        let (mut l, lost, cpu) = latency_run(opts, subscribers, run, server).await?;
        l.sort_by(f64::total_cmp);
        let (p50, p99, max) = (
            quantile(&l, 0.50),
            quantile(&l, 0.99),
            l.last().copied().unwrap_or(f64::NAN),
        );
        println!(
            "  run {run}: {} pairs, p50 {p50:.3} ms, p99 {p99:.3} ms, max {max:.3} ms, {lost} missing; \
             CPU per event: registry {:.2} ms, HTTP workers {:.2} ms, clients {:.2} ms",
            l.len(),
            cpu.registry,
            cpu.http,
            cpu.clients
        );
        p50s.push(p50);
        p99s.push(p99);
        maxes.push(max);
        missing += lost;
        clients.push(cpu.clients);
        registry.push(cpu.registry);
        http.push(cpu.http);
        rt::time::sleep(Duration::from_secs(1)).await;
    }
    // Keys carry the count: `event1000_p99_ms`, `event10000_p99_ms`, …
    let k = format!("event{asked}");
    println!(
        "RESULT {k}_subscribers={subscribers} {k}_p50_ms={:.3} {k}_p99_ms={:.3} {k}_max_ms={:.3} \
         {k}_missing={missing} {k}_cpu_registry_ms={:.2} {k}_cpu_http_ms={:.2} \
         {k}_cpu_clients_ms={:.2}",
        median(p50s),
        median(p99s),
        median(maxes),
        median(registry),
        median(http),
        median(clients)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Memory of idle sessions.

/// A field of `/proc/<pid>/status`, in KiB.
fn proc_status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// The `roster` binary serving the embedded default, killed when dropped.
struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `roster serve` allowing `connections` open connections.
    async fn start(connections: usize) -> anyhow::Result<Self> {
        let bin =
            std::env::var("ROSTER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_roster").into());
        let dir = tempfile::tempdir()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(&bin)
            .arg("serve")
            .env_remove("BROKER_URL")
            .env(
                "DATABASE_URL",
                format!("sqlite://{}", dir.path().join("roster.db").display()),
            )
            .env("ROSTER_BIND", format!("127.0.0.1:{port}"))
            .env("ROSTER_EXPORT_DIR", dir.path().join("exports"))
            .env("ROSTER_MAX_CONNECTIONS", (connections + 1_000).to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {bin}"))?;
        let server = Self {
            child,
            port,
            _dir: dir,
        };
        let client = client();
        let ready = Instant::now() + Duration::from_secs(30);
        loop {
            let up = client
                .get(format!("http://127.0.0.1:{port}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                return Ok(server);
            }
            if Instant::now() > ready {
                bail!("{bin} serve did not answer /healthz within 30 s");
            }
            rt::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn rss_kib(&self) -> anyhow::Result<u64> {
        proc_status_kib(self.child.id(), "VmRSS")
    }
}

/// Keeps a session alive (answers pings) until the server closes it.
async fn keep(mut ws: Ws, alive: Rc<Cell<usize>>) {
    alive.set(alive.get() + 1);
    while let Some(frame) = ws.next().await {
        match frame {
            Ok(Frame::Ping(b)) => {
                if ws.send(Message::Pong(b)).await.is_err() {
                    break;
                }
            }
            Ok(Frame::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    alive.set(alive.get() - 1);
}

/// One run: RSS before and after (KiB), the sessions still open when measured, and how
/// many failed to open.
async fn idle_run(
    opts: &Opts,
    sessions: usize,
    run: usize,
) -> anyhow::Result<(u64, u64, usize, usize)> {
    let server = Server::start(sessions).await?;
    let url = format!("ws://127.0.0.1:{}/ws", server.port);
    let client = client();
    let sources = opts.sources_for(sessions);
    let from = clients(sources, run * sources);
    // Warm-up: one session opened and closed, so one-time set-up is not counted.
    let (_, mut ws) = client
        .ws(url.as_str())
        .connect()
        .await
        .map_err(|e| anyhow!("websocket connect: {e}"))?;
    let _ = ws.close().await;
    drop(ws);
    rt::time::sleep(Duration::from_secs(1)).await;
    let before = server.rss_kib()?;

    let alive = Rc::new(Cell::new(0));
    let started = Instant::now();
    let mut keepers = Vec::with_capacity(sessions);
    let mut failed = 0usize;
    let mut first_error = None;
    let mut connects = stream::iter(0..sessions)
        .map(|i| from[i % from.len()].ws(url.as_str()).connect())
        .buffer_unordered(200);
    while let Some(result) = connects.next().await {
        match result {
            Ok((_, ws)) => keepers.push(rt::spawn(keep(ws, alive.clone()))),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    drop(connects);
    println!(
        "  {} sessions opened in {:.2} s from {sources} source addresses{}",
        keepers.len(),
        started.elapsed().as_secs_f64(),
        match &first_error {
            Some(e) => format!(" ({failed} failed, first: {e})"),
            None => String::new(),
        }
    );
    rt::time::sleep(Duration::from_secs(3)).await;
    let after = server.rss_kib()?;
    let open = alive.get();
    drop(server);
    for keeper in keepers {
        keeper.abort();
    }
    rt::time::sleep(Duration::from_millis(500)).await;
    Ok((before, after, open, failed))
}

/// The idle runs for `asked` sessions, measured with `sessions` (fewer when the open-file
/// limit holds them back: then the resident memory is also extrapolated to `asked`, from
/// the memory per session measured; the keys still name `asked`).
async fn idle(opts: &Opts, asked: usize, sessions: usize) -> anyhow::Result<()> {
    println!(
        "idle sessions: {sessions} WebSocket sessions to a `roster serve` child, {} runs",
        opts.runs
    );
    let (mut deltas, mut afters, mut opens, mut failures) = (vec![], vec![], vec![], 0);
    for run in 1..=opts.runs {
        let (before, after, open, failed) = idle_run(opts, sessions, run).await?;
        let delta = after.saturating_sub(before) as f64 / 1024.0;
        println!(
            "  run {run}: RSS {:.1} MiB before, {:.1} MiB after, +{delta:.1} MiB for {open} open sessions ({:.1} KiB each), {failed} failed to open",
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            delta * 1024.0 / open.max(1) as f64
        );
        deltas.push(delta);
        afters.push(after as f64 / 1024.0);
        opens.push(open as f64);
        failures += failed;
    }
    let delta = median(deltas);
    let open = median(opens);
    // Keys carry the count asked for: `idle10000_rss_delta_mib`, `idle100000_…`.
    let k = format!("idle{asked}");
    let after = median(afters);
    let per_session_mib = delta / open.max(1.0);
    let extrapolated = after + per_session_mib * (asked as f64 - open).max(0.0);
    println!(
        "RESULT {k}_sessions={open:.0} {k}_rss_delta_mib={delta:.1} {k}_rss_after_mib={after:.1} \
         {k}_rss_per_session_kib={:.1} {k}_failed={failures} {k}_rss_extrapolated_mib={extrapolated:.1}",
        per_session_mib * 1024.0
    );
    Ok(())
}
