//! The database: one connection type over PostgreSQL and SQLite, its r2d2 pool, and
//! the embedded migrations of both backends.
//!
//! diesel's `MultiConnection` would pick a backend by trying each in turn, which hides the
//! real error (a PostgreSQL URL with the server down reports "invalid connection url") and
//! can turn a malformed URL into a SQLite file name. So the backend is chosen from the
//! URL's scheme here, and the real connection error is reported.

use std::time::{Duration, Instant};

use diesel::connection::{Instrumentation, InstrumentationEvent, SimpleConnection};
use diesel::pg::PgConnection;
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, ConnectionError};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

pub use crate::config::DatabaseUrl;
use crate::config::StartupError;

/// A connection to whichever database roster was configured with.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

/// SQLite has one writer at a time, and a connection that finds it taken sleeps in
/// SQLite's busy handler (1, 2, 5, 10 ms…), though a job's claim or ending holds it for
/// about a tenth of a millisecond. So the process's hot write transactions take turns on
/// this lock instead, handed over at once. Other writes, and other processes, still wait
/// in the busy handler.
static SQLITE_WRITE_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl DbConnection {
    /// A write transaction; on SQLite it first waits its turn among this process's
    /// others (see [`SQLITE_WRITE_TURN`]). `f` must not start another.
    pub fn write_transaction<T, E>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<diesel::result::Error>,
    {
        let _turn = matches!(self, DbConnection::Sqlite(_))
            .then(|| SQLITE_WRITE_TURN.lock().unwrap_or_else(|p| p.into_inner()));
        self.transaction(f)
    }
}

/// The query backend of [`DbConnection`].
pub type Db = <DbConnection as Connection>::Backend;

/// Runs `$body` with `$c` bound to the inner connection of either backend. For the few
/// statements the shared backend cannot express (COPY, multi-row inserts).
#[macro_export]
macro_rules! on_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::DbConnection::Pg($c) => $body,
            $crate::db::DbConnection::Sqlite($c) => $body,
        }
    };
}

/// The connection pool: r2d2's, with roster's own checkout wait (see [`RECONNECT_CAP`]).
/// Everything r2d2's pool offers is reached through `Deref`; `get` is this type's own.
#[derive(Debug, Clone)]
pub struct Pool(r2d2::Pool<Manager>);

impl Pool {
    /// A connection, waiting at most [`CHECKOUT_WAIT`] for one: the pool full, or the
    /// database away and being reconnected to.
    pub fn get(&self) -> Result<PooledConn, r2d2::Error> {
        self.0.get_timeout(CHECKOUT_WAIT)
    }
}

impl std::ops::Deref for Pool {
    type Target = r2d2::Pool<Manager>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// How long a checkout waits for a connection.
const CHECKOUT_WAIT: Duration = Duration::from_secs(10);

/// The longest r2d2 waits between two attempts to connect while the database is away.
/// r2d2 doubles the wait after each failed attempt up to half its `connection_timeout`,
/// which is otherwise also the checkout wait: with 10 s, a database back from a restart
/// of two or three seconds was found only 3-5 s later, while every checkout (workers'
/// claims, the sweeper's pass) waited for it, and the chaos run saw queued jobs sit 9-11 s
/// beside idle worker slots. So the pool is built with a `connection_timeout` of twice
/// this, and checkouts wait [`CHECKOUT_WAIT`] through [`Pool::get`]. Not shorter: while
/// the database is away every pool slot retries on its own, and against a server out of
/// connection slots each attempt costs it a backend start.
const RECONNECT_CAP: Duration = Duration::from_millis(500);

pub type PooledConn = r2d2::PooledConnection<Manager>;

const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

diesel::define_sql_function! {
    /// Unicode lower case: a SQL function on PostgreSQL (see the migration), registered
    /// from Rust on each SQLite connection.
    fn roster_lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// Makes `roster_lower` available on a SQLite connection.
fn register_sqlite_functions(conn: &mut SqliteConnection) -> diesel::QueryResult<()> {
    roster_lower_utils::register_impl(conn, |s: String| s.to_lowercase())
}

/// Creates the SQLite file readable and writable by its owner only, if it does not exist
/// yet (SQLite makes its journal files with the same mode). Best effort: an error here is
/// reported by the connection that follows.
fn owner_only_file(path: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    if path == ":memory:" || std::path::Path::new(path).exists() {
        return;
    }
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
}

/// The r2d2 connection manager: establishes the backend named by the URL.
#[derive(Debug, Clone)]
pub struct Manager {
    url: DatabaseUrl,
}

impl r2d2::ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = ConnectionError;

    fn connect(&self) -> Result<DbConnection, ConnectionError> {
        let mut conn = self.establish()?;
        conn.set_instrumentation(Health::default());
        Ok(conn)
    }

    /// Checks a connection out only with a round trip (`SELECT 1`) when it has not
    /// answered a statement for a while: one just returned after a successful statement
    /// is known to work, and the check would be a third of a small request's statements.
    /// A connection found lost meanwhile (its statement failed with a closed connection)
    /// is thrown away when it comes back ([`Manager::has_broken`]).
    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), ConnectionError> {
        if health(conn).is_some_and(|h| h.fresh()) {
            return Ok(());
        }
        conn.batch_execute("SELECT 1")
            .map_err(ConnectionError::CouldntSetupConfiguration)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        // As diesel's own manager does: a connection given back while its holder panics,
        // or still inside a transaction, may be anywhere in a statement or a commit.
        std::thread::panicking()
            || health(conn).is_some_and(|h| h.lost)
            || on_backend!(conn, |c| diesel::r2d2::R2D2Connection::is_broken(c))
    }
}

impl Manager {
    fn establish(&self) -> Result<DbConnection, ConnectionError> {
        match &self.url {
            DatabaseUrl::Postgres(url) => PgConnection::establish(url).map(DbConnection::Pg),
            DatabaseUrl::Sqlite(path) => {
                owner_only_file(path);
                let mut conn = SqliteConnection::establish(path)?;
                // Writers wait for each other instead of failing with "database is locked".
                conn.batch_execute(
                    "PRAGMA busy_timeout = 15000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
                )
                .map_err(ConnectionError::CouldntSetupConfiguration)?;
                register_sqlite_functions(&mut conn)
                    .map_err(ConnectionError::CouldntSetupConfiguration)?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }
}

/// How long after its last successful statement a pooled connection is handed out
/// without a check: under load every checkout falls within it; a connection idle longer
/// (the server may have restarted meanwhile) is checked with a round trip.
const FRESH: Duration = Duration::from_secs(1);

/// What a connection's own statements tell of its health, kept on the connection through
/// diesel's instrumentation hook (read back by downcasting it).
#[derive(Debug)]
struct Health {
    last_ok: Instant,
    /// A statement failed because the connection is gone (the server restarted or
    /// dropped it) or unusable (a result still pending): it must not go back to the pool.
    lost: bool,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            last_ok: Instant::now(),
            lost: false,
        }
    }
}

impl Health {
    fn fresh(&self) -> bool {
        !self.lost && self.last_ok.elapsed() < FRESH
    }
}

impl Instrumentation for Health {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        use diesel::result::{DatabaseErrorKind, Error};
        if let InstrumentationEvent::FinishQuery { error, .. } = event {
            match error {
                None => self.last_ok = Instant::now(),
                Some(Error::DatabaseError(
                    DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                    _,
                )) => self.lost = true,
                Some(_) => {}
            }
        }
    }
}

/// The connection's [`Health`], if it has one (every pooled connection does).
fn health(conn: &mut DbConnection) -> Option<&Health> {
    // `instrumentation()` is diesel's (documented-hidden) getter; `Instrumentation` is
    // `Downcast` for exactly this use.
    conn.instrumentation().as_any().downcast_ref::<Health>()
}

/// Opens the pool; fails with a [`StartupError`] naming `DATABASE_URL`, the address
/// (password hidden) and the database's own error when it cannot connect.
pub fn connect(url: &DatabaseUrl, max_size: u32) -> anyhow::Result<Pool> {
    let manager = Manager { url: url.clone() };
    // One direct connection first, so that a bad URL or a server that is down is reported
    // with its real cause rather than r2d2's "timed out waiting for connection".
    let mut first =
        r2d2::ManageConnection::connect(&manager).map_err(|e| StartupError::database(url, e))?;
    if let DbConnection::Sqlite(c) = &mut first {
        // WAL once, at start: setting it on every checkout makes writers collide.
        c.batch_execute("PRAGMA journal_mode = WAL;")?;
    }
    drop(first);
    // Unchecked: the connection above proved the database answers, and r2d2's own check
    // would wait only its (short) `connection_timeout` for the first pooled connection.
    let pool = r2d2::Pool::builder()
        .max_size(max_size)
        .min_idle(Some(1))
        .connection_timeout(RECONNECT_CAP * 2)
        .build_unchecked(manager);
    Ok(Pool(pool))
}

/// Admits blocking database work from async code in the order it arrives, a bounded
/// number at once. Without it every request takes a blocking thread and waits on r2d2's
/// condition variable, which wakes waiters in no particular order, and every one of them
/// competes for the cores with the database: GET /api/students at 64 connections on two
/// cores had a p50 of 6 ms and a p99 of 100-300 ms.
///
/// Accepting a job does not pass through it: its commits gain from as many at once as
/// the pool allows (the database flushes its log once for many), and on POST
/// /api/exports a gate as wide as the pool cost a tenth of the throughput (5,500 → 4,900
/// req/s) for half the p99 (60-80 → 30-40 ms).
#[derive(Debug, Clone)]
pub struct Gate(std::sync::Arc<tokio::sync::Semaphore>);

impl Gate {
    /// A gate for reads: a few per core (at most the pool). Wider only queues them in
    /// the scheduler: on two cores, GET /api/students went from p99 15 ms at 7,900
    /// req/s (8 at once) to p99 93-117 ms at 9,100-9,700 (16).
    pub fn for_reads(pool: &Pool) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self::new((cores * READS_PER_CORE).min(pool.max_size() as usize))
    }

    fn new(permits: usize) -> Self {
        Self(std::sync::Arc::new(tokio::sync::Semaphore::new(permits)))
    }

    /// Waits for a turn; the turn lasts as long as the permit.
    pub async fn enter(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.0
            .clone()
            .acquire_owned()
            .await
            .expect("the gate is never closed")
    }
}

/// Reads in flight per core ([`Gate::for_reads`]).
const READS_PER_CORE: usize = 4;

/// Brings the schema up to date; returns how many migrations ran.
pub fn migrate(pool: &Pool) -> anyhow::Result<usize> {
    let mut conn = pool.get()?;
    let applied = match &mut *conn {
        DbConnection::Pg(c) => c.run_pending_migrations(PG_MIGRATIONS).map(|v| v.len()),
        DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
    }
    .map_err(|e| anyhow::anyhow!("running migrations: {e}"))?;
    Ok(applied)
}

/// Whether the database answers, for `/readyz`.
pub fn ping(pool: &Pool) -> anyhow::Result<()> {
    let mut conn = pool.get_timeout(Duration::from_secs(2))?;
    conn.batch_execute("SELECT 1")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_picks_the_backend() {
        assert_eq!(
            DatabaseUrl::parse("postgres://u@h/db"),
            Ok(DatabaseUrl::Postgres("postgres://u@h/db".into()))
        );
        assert_eq!(
            DatabaseUrl::parse("postgresql://h/db").map(|u| u.backend()),
            Ok("postgresql")
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite://roster.db"),
            Ok(DatabaseUrl::Sqlite("roster.db".into()))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///tmp/x.db"),
            Ok(DatabaseUrl::Sqlite("/tmp/x.db".into()))
        );
    }

    #[test]
    fn a_malformed_url_is_refused_rather_than_taken_for_a_file_name() {
        assert!(DatabaseUrl::parse("roster.db").is_err());
        assert!(DatabaseUrl::parse("mysql://h/db").is_err());
        assert!(DatabaseUrl::parse("sqlite://").is_err());
    }

    #[test]
    fn passwords_are_not_shown() {
        let url = DatabaseUrl::parse("postgres://me:secret@h/db").unwrap();
        assert!(!url.to_string().contains("secret"));
    }
}
