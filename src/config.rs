//! Settings: every knob roster reads from the environment (and the matching CLI flag),
//! parsed once at start-up into typed values.
//!
//! A bad value stops start-up with one line naming the variable (see `cli::parse`); so
//! does a value that parses but cannot be used — a database or broker that does not
//! answer, an export directory that cannot be written ([`StartupError`]).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::domain::job::JobKind;
use crate::domain::queue::QueueName;
use crate::domain::schedule::TimeZone;

/// Everything a roster process can be configured with. In `--help` these stand under
/// their own heading, apart from each command's own options, and each command shows only
/// those it reads (see `cli::command`).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = SETTINGS_HEADING)]
pub struct Settings {
    /// Database: `postgres://…` or `sqlite://path` (default: a SQLite file in the working directory).
    #[arg(long, env = "DATABASE_URL", global = true, default_value = "sqlite://roster.db", value_parser = DatabaseUrl::parse)]
    pub database_url: DatabaseUrl,

    /// Broker: `redis://…`; unset means the in-process broker (the jobs table is the queue; job events stay in each process).
    #[arg(long, env = "BROKER_URL", global = true, value_parser = BrokerUrl::parse)]
    pub broker_url: Option<BrokerUrl>,

    /// Address the HTTP server listens on.
    #[arg(
        long = "bind",
        env = "ROSTER_BIND",
        global = true,
        default_value = "127.0.0.1:8080"
    )]
    pub bind: SocketAddr,

    /// The one queue this process serves, and where jobs accepted here go unless they name
    /// one (the one-queue spelling of `ROSTER_QUEUES`).
    #[arg(long, env = "ROSTER_QUEUE", global = true, default_value = "default", value_parser = parse_queue)]
    pub queue: String,

    /// Workers of that queue in this process.
    #[arg(long, env = "ROSTER_CONCURRENCY", global = true, default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,

    /// The queues this process serves, each with its workers: `default:8,imports:2`. Jobs
    /// accepted here that name no queue go to the first. Set, it replaces the one-queue
    /// spelling (the two settings above).
    #[arg(long, env = "ROSTER_QUEUES", global = true, value_parser = QueueSpec::parse)]
    pub queues: Option<QueueSpec>,

    /// Jobs of one user that may run at once, across every process; the rest wait in the
    /// queue (the 429 cap is `ROSTER_MAX_ACTIVE_JOBS`).
    #[arg(long, env = "ROSTER_MAX_RUNNING_PER_USER", global = true, default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_running_per_user: u32,

    /// Jobs of a kind that may run at once across every process: `students_import:2,…`.
    #[arg(long, env = "ROSTER_KIND_CONCURRENCY", global = true, value_parser = KindCaps::parse)]
    pub kind_concurrency: Option<KindCaps>,

    /// A worker process that has not beaten for this long is dead: its jobs are due again
    /// at once instead of at their lease's end.
    #[arg(long, env = "ROSTER_DEAD_AFTER_SECS", global = true, default_value_t = 8,
          value_parser = clap::value_parser!(u64).range(3..=86_400))]
    pub dead_after_secs: u64,

    /// Directory where finished exports are kept.
    #[arg(
        long,
        env = "ROSTER_EXPORT_DIR",
        global = true,
        default_value = "./exports"
    )]
    pub export_dir: PathBuf,

    /// Attempts a job gets before it is `failed`.
    #[arg(long, env = "ROSTER_MAX_ATTEMPTS", global = true, default_value_t = 3,
          value_parser = clap::value_parser!(u16).range(1..=100))]
    pub max_attempts: u16,

    /// How long a worker's claim on a job lasts without renewal.
    #[arg(long, env = "ROSTER_LEASE_SECS", global = true, default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub lease_secs: u64,

    /// No longer read: consumers look at the jobs table every half second, so nothing waits
    /// for a redelivery. Accepted so that old configurations still start.
    #[arg(long, env = "ROSTER_REDELIVER_SECS", global = true, default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub redeliver_secs: u64,

    /// Time limit of one attempt of a job.
    #[arg(long, env = "ROSTER_JOB_TIMEOUT_SECS", global = true, default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub job_timeout_secs: u64,

    /// How long running jobs may take to finish after SIGINT/SIGTERM.
    #[arg(long, env = "ROSTER_SHUTDOWN_GRACE_SECS", global = true, default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub shutdown_grace_secs: u64,

    /// How long a finished export stays downloadable.
    #[arg(long, env = "ROSTER_EXPORT_TTL_SECS", global = true, default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub export_ttl_secs: u64,

    /// Origins (`scheme://host[:port]`) besides the service's own allowed to send unsafe
    /// requests and open WebSockets, comma separated; `*` allows any.
    #[arg(
        long,
        env = "ROSTER_ALLOWED_ORIGINS",
        global = true,
        value_delimiter = ',',
        value_parser = parse_allowed_origin
    )]
    pub allowed_origins: Vec<String>,

    /// Host names the service answers to, comma separated (`.example.com` also allows its
    /// subdomains; `*` allows any). Default: localhost, 127.0.0.1, [::1] and the bind address.
    #[arg(long, env = "ROSTER_ALLOWED_HOSTS", global = true, value_delimiter = ',',
          value_parser = parse_allowed_host)]
    pub allowed_hosts: Vec<String>,

    /// The shortest interval between two ticks of a member's schedule, in seconds (admins'
    /// schedules may tick as often as their cron says).
    #[arg(long, env = "ROSTER_MIN_SCHEDULE_INTERVAL_SECS", global = true, default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub min_schedule_interval_secs: u64,

    /// Schedules one user may own; beyond that creating one is refused (409).
    #[arg(long, env = "ROSTER_MAX_SCHEDULES_PER_USER", global = true, default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_schedules_per_user: u32,

    /// API tokens one user may hold; beyond that creating one is refused (409).
    #[arg(long, env = "ROSTER_MAX_TOKENS_PER_USER", global = true, default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_tokens_per_user: u32,

    /// Proxies (IP addresses, comma separated) whose `X-Forwarded-For` names the client's
    /// address, for sign-in throttling per address; other peers are their own address.
    #[arg(
        long,
        env = "ROSTER_TRUSTED_PROXIES",
        global = true,
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<std::net::IpAddr>,

    /// Jobs the whole queue may hold (status queued); beyond that new jobs are refused (503).
    #[arg(long, env = "ROSTER_MAX_QUEUED_JOBS", global = true, default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub max_queued_jobs: u64,

    /// Exports and imports are refused (507) when the export directory's volume has less free.
    #[arg(long, env = "ROSTER_MIN_FREE_DISK_MB", global = true, default_value_t = 512,
          value_parser = clap::value_parser!(u64).range(0..=1_000_000_000))]
    pub min_free_disk_mb: u64,

    /// A request body not received whole within this many seconds (plus one per 64 KiB
    /// received) is refused (408).
    #[arg(long, env = "ROSTER_BODY_TIMEOUT_SECS", global = true, default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub body_timeout_secs: u64,

    /// Open HTTP connections (WebSockets included) this process keeps; more wait to be accepted.
    #[arg(long, env = "ROSTER_MAX_CONNECTIONS", global = true, default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// Base delay before a failed attempt is retried (doubled each attempt, with jitter).
    #[arg(long, env = "ROSTER_RETRY_BACKOFF_MS", global = true, default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub retry_backoff_ms: u64,

    /// The longest delay before a retry, however many attempts failed before it.
    #[arg(long, env = "ROSTER_RETRY_BACKOFF_MAX_SECS", global = true, default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub retry_backoff_max_secs: u64,

    /// The largest file `POST /api/imports` takes, in bytes.
    #[arg(long, env = "ROSTER_MAX_IMPORT_BYTES", global = true, default_value_t = 256 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_import_bytes: u64,

    /// Ended jobs older than this many days are deleted, with their files.
    #[arg(long, env = "ROSTER_JOB_RETENTION_DAYS", global = true, default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=36_500))]
    pub job_retention_days: u64,

    /// Who must sign in: `auto` (off when bound to a loopback address, else required),
    /// `required` or `off`.
    #[arg(long, env = "ROSTER_AUTH", global = true, default_value = "auto", value_parser = AuthSetting::parse)]
    pub auth: AuthSetting,

    /// When set, the user `admin` is created (or its password reset) with this password at
    /// start: for containers and compose files.
    #[arg(
        long,
        env = "ROSTER_ADMIN_PASSWORD",
        global = true,
        hide_env_values = true
    )]
    pub admin_password: Option<String>,

    /// The key browser sessions are signed with (at least 32 characters); unset, a key is
    /// generated once and kept in the database.
    #[arg(long, env = "ROSTER_SECRET_KEY", global = true, hide_env_values = true,
          value_parser = parse_secret_key)]
    pub secret_key: Option<String>,

    /// Jobs one user may have queued or running at once; beyond that 429.
    #[arg(long, env = "ROSTER_MAX_ACTIVE_JOBS", global = true, default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_active_jobs: u32,

    /// Rows per batch of an import (with `skip_invalid`, each batch is one commit).
    #[arg(long, env = "ROSTER_IMPORT_BATCH_ROWS", global = true, default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub import_batch_rows: u32,

    /// Rows read from the database per keyset batch of an export [default: 10000, and
    /// 100000 for a CSV export on PostgreSQL, whose COPY streams its batch]
    #[arg(long, env = "ROSTER_EXPORT_BATCH_ROWS", global = true,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub export_batch_rows: Option<u32>,

    /// IANA time zone of a schedule that names none (and of the one `schedule add` makes).
    #[arg(long, env = "ROSTER_TIMEZONE", global = true, default_value = "UTC", value_parser = TimeZone::parse)]
    pub timezone: TimeZone,

    /// For benchmarks only (benches/run.sh): also registers the `noop` job kind, which does
    /// nothing, so that a drain measures the runtime's own overhead. Hidden from `--help`;
    /// off, `noop` is refused like any unknown kind.
    #[arg(long, env = "ROSTER_BENCH_KINDS", global = true, hide = true, action = clap::ArgAction::Set,
          default_value_t = false, value_parser = clap::builder::BoolishValueParser::new())]
    pub bench_kinds: bool,
}

impl Settings {
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }

    pub fn job_timeout(&self) -> Duration {
        Duration::from_secs(self.job_timeout_secs)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    pub fn export_ttl(&self) -> Duration {
        Duration::from_secs(self.export_ttl_secs)
    }

    pub fn job_retention(&self) -> Duration {
        Duration::from_secs(self.job_retention_days * 86_400)
    }

    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout_secs)
    }

    pub fn dead_after(&self) -> Duration {
        Duration::from_secs(self.dead_after_secs)
    }

    /// The queues this process serves, each with its workers; the first is where jobs
    /// accepted here go unless they say.
    pub fn served_queues(&self) -> Vec<(QueueName, u16)> {
        match &self.queues {
            Some(spec) => spec.0.clone(),
            None => vec![(
                self.queue.parse().expect("ROSTER_QUEUE was checked"),
                self.concurrency,
            )],
        }
    }

    /// Where a job accepted here goes when neither it nor its kind names a queue.
    pub fn home_queue(&self) -> QueueName {
        self.served_queues().remove(0).0
    }

    /// Workers in this process, over every queue it serves.
    pub fn total_workers(&self) -> u32 {
        self.served_queues()
            .iter()
            .map(|(_, n)| u32::from(*n))
            .sum()
    }

    /// Connections: two per worker (the export's read and its progress writes) plus the web's.
    pub fn db_pool_size(&self) -> u32 {
        self.total_workers() * 2 + 10
    }

    /// Settings with every default, for tests and embedding.
    pub fn defaults() -> Self {
        use clap::{FromArgMatches, Parser};
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            settings: Settings,
        }
        // Parse from an empty command line while ignoring the environment would need
        // clap to skip `env`; instead build from defaults and let callers override.
        let matches = <Only as clap::CommandFactory>::command()
            .mut_args(|a| a.env(None::<&str>))
            .get_matches_from(["roster"]);
        Only::from_arg_matches(&matches)
            .expect("defaults parse")
            .settings
    }
}

/// The `--help` heading of the settings.
pub const SETTINGS_HEADING: &str = "Settings (flag or environment variable)";

/// Why a process cannot start with settings that parsed: each names the variable and the
/// address or path it holds (a password hidden). As a bad value, it ends the process with
/// exit status [`StartupError::EXIT_STATUS`] and one line.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The database or the broker does not answer (or refuses this process).
    #[error("cannot connect to the {service} at {address} ({var}): {cause}")]
    Unreachable {
        service: &'static str,
        var: &'static str,
        /// Where it was looked for, without a password.
        address: String,
        cause: String,
    },
    /// A well-formed value this process cannot use (a path under a file, an address in use).
    #[error("{var}={value} cannot be used: {cause}")]
    Unusable {
        var: &'static str,
        value: String,
        cause: String,
    },
}

impl StartupError {
    /// A configuration error, as a bad value on the command line is (clap's status).
    pub const EXIT_STATUS: i32 = 2;

    pub fn database(url: &DatabaseUrl, cause: impl fmt::Display) -> Self {
        StartupError::Unreachable {
            service: "database",
            var: "DATABASE_URL",
            address: url.to_string(),
            cause: one_line(&cause.to_string()),
        }
    }

    pub fn broker(url: &BrokerUrl, cause: impl fmt::Display) -> Self {
        StartupError::Unreachable {
            service: "broker",
            var: "BROKER_URL",
            address: url.to_string(),
            cause: one_line(&cause.to_string()),
        }
    }

    pub fn unusable(var: &'static str, value: impl fmt::Display, cause: impl fmt::Display) -> Self {
        StartupError::Unusable {
            var,
            value: value.to_string(),
            cause: one_line(&cause.to_string()),
        }
    }
}

/// `text` on one line: libpq's messages, for one, end with a hint on a line of its own.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `ROSTER_AUTH`: whether requests must be signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthSetting {
    /// Off on a loopback address while no user exists (a one-command start on a laptop),
    /// required elsewhere and once a user exists.
    Auto,
    Required,
    Off,
}

impl AuthSetting {
    /// Whether requests must be signed in: `auto` is off only on a loopback address with
    /// no user yet (a one-command start on a laptop); once a user exists it is on, so a
    /// loopback bind behind a reverse proxy is never open to whoever the proxy lets in.
    /// (`ROSTER_ADMIN_PASSWORD` makes the user `admin` at start.)
    pub fn required(self, bind: &SocketAddr, users_exist: bool) -> bool {
        match self {
            AuthSetting::Required => true,
            AuthSetting::Off => false,
            AuthSetting::Auto => !bind.ip().is_loopback() || users_exist,
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "auto" => Ok(AuthSetting::Auto),
            "required" => Ok(AuthSetting::Required),
            "off" => Ok(AuthSetting::Off),
            _ => Err("must be auto, required or off".into()),
        }
    }
}

fn parse_secret_key(raw: &str) -> Result<String, String> {
    if raw.len() >= 32 {
        Ok(raw.to_owned())
    } else {
        Err("must be at least 32 characters".into())
    }
}

/// A `redis://` or `rediss://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl(String);

impl BrokerUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let url = url::Url::parse(raw).map_err(|e| format!("not a URL ({e})"))?;
        match url.scheme() {
            "redis" | "rediss" => Ok(BrokerUrl(raw.to_owned())),
            other => Err(format!("unsupported scheme `{other}`, expected redis://")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Shows where the broker is without its password (`redis://:***@host:6379`).
impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match url::Url::parse(&self.0) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("***"));
                write!(f, "{u}")
            }
            _ => f.write_str(&self.0),
        }
    }
}

fn parse_queue(raw: &str) -> Result<String, String> {
    raw.parse::<QueueName>().map(|q| q.as_str().to_owned())
}

/// `ROSTER_QUEUES`: the queues a process serves, each with its workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec(pub Vec<(QueueName, u16)>);

impl QueueSpec {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut queues: Vec<(QueueName, u16)> = Vec::new();
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, n) = entry
                .split_once(':')
                .ok_or_else(|| format!("{entry:?}: expected name:workers, as in default:8"))?;
            let name: QueueName = name.trim().parse().map_err(|e| format!("{name:?}: {e}"))?;
            let n: u16 = match n.trim().parse() {
                Ok(n) if (1..=256).contains(&n) => n,
                _ => return Err(format!("{entry:?}: workers must be from 1 to 256")),
            };
            if queues.iter().any(|(q, _)| *q == name) {
                return Err(format!("{name} is named twice"));
            }
            queues.push((name, n));
        }
        if queues.is_empty() {
            return Err("name at least one queue, as in default:8".into());
        }
        Ok(Self(queues))
    }
}

/// `ROSTER_KIND_CONCURRENCY`: how many jobs of a kind may run at once, across processes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KindCaps(pub Vec<(JobKind, u32)>);

impl KindCaps {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut caps = Vec::new();
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (kind, n) = entry.split_once(':').ok_or_else(|| {
                format!("{entry:?}: expected kind:count, as in students_import:2")
            })?;
            let kind: JobKind = kind.trim().parse()?;
            let n: u32 = match n.trim().parse() {
                Ok(n) if n >= 1 => n,
                _ => return Err(format!("{entry:?}: the count must be 1 or more")),
            };
            caps.push((kind, n));
        }
        Ok(Self(caps))
    }
}

/// One entry of `ROSTER_ALLOWED_HOSTS`: `*`, `name`, `.domain` (the domain and its
/// subdomains), or either with `:port` (that port only).
pub fn parse_allowed_host(raw: &str) -> Result<String, String> {
    let entry = raw.trim().to_ascii_lowercase();
    let ok = !entry.is_empty()
        && entry.len() <= 260
        && entry.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']' | b'*')
        })
        && (entry == "*" || !entry.contains('*'));
    if ok {
        Ok(entry)
    } else {
        Err(format!(
            "{raw:?} is not a host name (expected e.g. example.com, .example.com, 10.0.0.5:8080 or *)"
        ))
    }
}

/// One entry of `ROSTER_ALLOWED_ORIGINS`: `*`, or `http(s)://host[:port]` (normalized).
pub fn parse_allowed_origin(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw == "*" {
        return Ok(raw.to_owned());
    }
    let path_free = url::Url::parse(raw)
        .is_ok_and(|u| u.path() == "/" && u.query().is_none() && u.username().is_empty());
    match normalized_origin(raw) {
        Some(origin) if path_free => Ok(origin),
        _ => Err(format!(
            "{raw:?} is not an origin (expected e.g. https://roster.example or http://10.0.0.5:8080, or *)"
        )),
    }
}

/// `scheme://host[:port]`, lowercased, without a default port or a trailing slash.
pub fn normalized_origin(raw: &str) -> Option<String> {
    let url = url::Url::parse(raw.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    })
}

/// Where the database is, with its backend decided by the URL scheme.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Postgres(String),
    /// A file path (relative to the working directory unless absolute).
    Sqlite(String),
}

impl DatabaseUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            url::Url::parse(raw).map_err(|e| format!("malformed PostgreSQL URL ({e})"))?;
            Ok(Self::Postgres(raw.to_owned()))
        } else if let Some(path) = raw.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// needs a file path, e.g. sqlite://roster.db".into());
            }
            Ok(Self::Sqlite(path.to_owned()))
        } else {
            Err("expected postgres://… or sqlite://path".into())
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgresql",
            Self::Sqlite(_) => "sqlite",
        }
    }
}

/// Shows where the database is without its password.
impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Postgres(raw) => match url::Url::parse(raw) {
                Ok(mut u) => {
                    if u.password().is_some() {
                        let _ = u.set_password(Some("***"));
                    }
                    write!(f, "{u}")
                }
                Err(_) => f.write_str("postgres://(unparseable)"),
            },
            Self::Sqlite(path) => write!(f, "sqlite://{path}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = Settings::defaults();
        assert_eq!(s.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(s.concurrency, 8);
        assert_eq!(s.max_attempts, 3);
        assert_eq!(s.queue, "default");
        assert_eq!(s.timezone, TimeZone::UTC);
        assert!(s.broker_url.is_none());
        assert!(matches!(s.database_url, DatabaseUrl::Sqlite(ref p) if p == "roster.db"));
    }

    #[test]
    fn broker_urls_must_be_redis() {
        assert!(BrokerUrl::parse("redis://127.0.0.1:6379").is_ok());
        assert!(BrokerUrl::parse("amqp://127.0.0.1").is_err());
        assert!(BrokerUrl::parse("nonsense").is_err());
    }

    #[test]
    fn broker_urls_are_shown_without_their_password() {
        let url = BrokerUrl::parse("redis://:secret@cache:6379/0").unwrap();
        assert_eq!(url.to_string(), "redis://:***@cache:6379/0");
        let url = BrokerUrl::parse("redis://cache:6379").unwrap();
        assert_eq!(url.to_string(), "redis://cache:6379");
    }

    #[test]
    fn start_up_errors_name_the_variable_and_the_address_on_one_line() {
        let db = DatabaseUrl::parse("postgres://me:secret@db:5432/roster").unwrap();
        let line =
            StartupError::database(&db, "connection refused\n\tIs the server running?").to_string();
        assert_eq!(
            line,
            "cannot connect to the database at postgres://me:***@db:5432/roster \
             (DATABASE_URL): connection refused Is the server running?"
        );
    }

    #[test]
    fn queue_names_are_restricted_to_safe_characters() {
        assert!(parse_queue("default").is_ok());
        assert!(parse_queue("").is_err());
        assert!(parse_queue("a b").is_err());
        assert!(parse_queue("x:y").is_err());
    }
}
