//! The ExportWorker pool: a SyncArbiter of blocking workers. A worker claims the job it is
//! given (a conditional update under a lease), runs it with a heartbeat that records
//! progress, renews the lease and notices cancellation, time limit and shutdown, then
//! records how the attempt ended. A panic in a job is caught and fails that attempt.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::NaiveDateTime;

use crate::config::Settings;
use crate::db::{DbConnection, Pool, PooledConn};
use crate::domain::job::{JobId, JobStatus};
use crate::events::Events;
use crate::metrics::METRICS;
use crate::models::job::{self, Ending, Job};

/// Progress is written and announced at most this often (the first and last always).
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// What stops a running attempt early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Cancelled,
    TimedOut,
    /// The process is shutting down and the grace period is over.
    Shutdown,
    /// Another worker holds the job now (this one's lease expired).
    LeaseLost,
}

/// Why an attempt did not succeed; carries whether to retry.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("stopped: {0:?}")]
    Stopped(Stop),
    /// Worth another attempt after a delay (I/O, database, a panic).
    #[error("{0:#}")]
    Retry(anyhow::Error),
    /// No attempt can succeed (the job's parameters are unusable).
    #[error("{0:#}")]
    Abort(anyhow::Error),
}

impl From<Stop> for JobError {
    fn from(s: Stop) -> Self {
        JobError::Stopped(s)
    }
}

impl From<diesel::result::Error> for JobError {
    fn from(e: diesel::result::Error) -> Self {
        JobError::Retry(e.into())
    }
}

impl From<std::io::Error> for JobError {
    fn from(e: std::io::Error) -> Self {
        JobError::Retry(e.into())
    }
}

impl From<r2d2::Error> for JobError {
    fn from(e: r2d2::Error) -> Self {
        JobError::Retry(e.into())
    }
}

/// The code that does one kind of job.
pub trait JobHandler: Send + Sync + 'static {
    /// Runs one attempt; returns the result to record (JSON).
    fn run(&self, job: &Job, attempt: &mut Attempt<'_>) -> Result<serde_json::Value, JobError>;
}

/// Tells running jobs that the shutdown grace period is over.
#[derive(Clone, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    pub fn abort_running_jobs(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_aborting(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What every worker shares.
pub struct WorkerContext {
    pub pool: Pool,
    pub events: Events,
    pub handler: Arc<dyn JobHandler>,
    pub shutdown: Shutdown,
    /// This process, in lease owners.
    pub node: String,
    pub lease: Duration,
    pub timeout: Duration,
    pub retry_backoff: Duration,
    pub export_dir: PathBuf,
    pub export_ttl: Duration,
    pub batch_rows: u32,
}

impl WorkerContext {
    pub fn new(
        settings: &Settings,
        pool: Pool,
        events: Events,
        handler: Arc<dyn JobHandler>,
        shutdown: Shutdown,
        node: String,
    ) -> Self {
        Self {
            pool,
            events,
            handler,
            shutdown,
            node,
            lease: settings.lease(),
            timeout: settings.job_timeout(),
            retry_backoff: settings.retry_backoff(),
            export_dir: settings.export_dir.clone(),
            export_ttl: settings.export_ttl(),
            batch_rows: settings.export_batch_rows,
        }
    }

    fn lease_until(&self) -> NaiveDateTime {
        job::now() + chrono::Duration::from_std(self.lease).expect("lease fits")
    }

    /// Exponential backoff with full jitter: base·2^(attempt-1), then a random half to all.
    fn retry_at(&self, attempts: i32) -> NaiveDateTime {
        let exp = self
            .retry_backoff
            .saturating_mul(1 << (attempts - 1).clamp(0, 16));
        let delay = exp.mul_f64(0.5 + fastrand::f64() * 0.5);
        job::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(1))
    }
}

/// A running attempt, as the job's code sees it.
pub struct Attempt<'a> {
    ctx: &'a WorkerContext,
    id: JobId,
    owner: String,
    /// For progress writes, apart from the job's own reads.
    conn: PooledConn,
    started: Instant,
    last_beat: Option<Instant>,
}

impl Attempt<'_> {
    pub fn pool(&self) -> &Pool {
        &self.ctx.pool
    }

    pub fn export_dir(&self) -> &std::path::Path {
        &self.ctx.export_dir
    }

    pub fn export_ttl(&self) -> Duration {
        self.ctx.export_ttl
    }

    pub fn batch_rows(&self) -> u32 {
        self.ctx.batch_rows
    }

    /// Whether the job should stop now, apart from cancellation (seen at heartbeats).
    pub fn check(&self) -> Result<(), Stop> {
        if self.ctx.shutdown.is_aborting() {
            return Err(Stop::Shutdown);
        }
        if self.started.elapsed() > self.ctx.timeout {
            return Err(Stop::TimedOut);
        }
        Ok(())
    }

    /// Reports `done` of `total`. Written and announced at most every
    /// [`PROGRESS_INTERVAL`] unless `force`; each write renews the lease and reads the
    /// cancel flag.
    pub fn progress(&mut self, done: u64, total: u64, force: bool) -> Result<(), Stop> {
        self.check()?;
        let due = self
            .last_beat
            .is_none_or(|t| t.elapsed() >= PROGRESS_INTERVAL);
        if !(due || force) {
            return Ok(());
        }
        self.last_beat = Some(Instant::now());
        let beat = job::heartbeat(
            &mut self.conn,
            &self.id,
            &self.owner,
            done as i64,
            total as i64,
            self.ctx.lease_until(),
        );
        match beat {
            Ok(Some(row)) => {
                self.ctx.events.progress(&row);
                if row.cancel_requested {
                    return Err(Stop::Cancelled);
                }
                Ok(())
            }
            Ok(None) => Err(Stop::LeaseLost),
            Err(e) => {
                // A lost progress write is not worth failing the job for; the lease
                // has room for a few of them.
                log::warn!("job {}: could not record progress: {e}", self.id);
                Ok(())
            }
        }
    }
}

/// Run one attempt of this job.
#[derive(Message)]
#[rtype(result = "AttemptOutcome")]
pub struct RunJob {
    pub job_id: JobId,
}

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The job was not there to run (running elsewhere, finished, not due).
    NotClaimed,
    /// The attempt ran and the job is now in this status.
    Ended(JobStatus),
    /// The lease was lost; whoever holds the job now records its end.
    LeaseLost,
    /// Something outside the job's own code failed; the lease sweep will recover it.
    Crashed,
}

pub struct ExportWorker {
    ctx: Arc<WorkerContext>,
}

impl ExportWorker {
    /// Starts `n` workers on threads of their own.
    pub fn start_pool(n: usize, ctx: Arc<WorkerContext>) -> Addr<ExportWorker> {
        SyncArbiter::start(n, move || ExportWorker { ctx: ctx.clone() })
    }
}

impl Actor for ExportWorker {
    type Context = SyncContext<Self>;
}

impl Handler<RunJob> for ExportWorker {
    type Result = MessageResult<RunJob>;

    fn handle(&mut self, msg: RunJob, ctx: &mut SyncContext<Self>) -> Self::Result {
        let outcome = catch_unwind(AssertUnwindSafe(|| run(&self.ctx, msg.job_id)));
        MessageResult(match outcome {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => {
                log::error!("job {}: attempt could not be recorded: {e:#}", msg.job_id);
                AttemptOutcome::Crashed
            }
            Err(_) => {
                log::error!("job {}: worker panicked outside the job", msg.job_id);
                // Start afresh from the factory: whatever state the panic left is gone.
                ctx.stop();
                AttemptOutcome::Crashed
            }
        })
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

fn run(ctx: &WorkerContext, id: JobId) -> anyhow::Result<AttemptOutcome> {
    let mut conn = ctx.pool.get()?;
    let owner = format!(
        "{}/{}",
        ctx.node,
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let Some(job) = job::claim(&mut conn, &id, &owner, ctx.lease_until())? else {
        log::debug!("job {id}: delivered but not claimable; dropped");
        return Ok(AttemptOutcome::NotClaimed);
    };
    log::info!(
        "job {id} started: kind={} attempt={}/{}",
        job.kind,
        job.attempts,
        job.max_attempts
    );
    ctx.events.status(&job);
    let started = Instant::now();
    METRICS.jobs_in_flight.inc();
    let _in_flight = scopeguard(|| METRICS.jobs_in_flight.dec());
    let mut attempt = Attempt {
        ctx,
        id,
        owner: owner.clone(),
        conn,
        started,
        last_beat: None,
    };
    let result = catch_unwind(AssertUnwindSafe(|| ctx.handler.run(&job, &mut attempt)))
        .unwrap_or_else(|panic| {
            Err(JobError::Retry(anyhow::anyhow!(
                "the job panicked: {}",
                panic_message(&*panic)
            )))
        });
    let mut conn = attempt.conn;
    let ending = match result {
        Ok(value) => Ending::Succeeded {
            rows: value.get("rows").and_then(|r| r.as_i64()).unwrap_or(0),
            result: value.to_string(),
        },
        Err(JobError::Stopped(Stop::Cancelled)) => Ending::Cancelled,
        Err(JobError::Stopped(Stop::TimedOut)) => Ending::Failed {
            error: format!("timed out after {} s", ctx.timeout.as_secs()),
        },
        Err(JobError::Stopped(Stop::Shutdown)) => Ending::Release,
        Err(JobError::Stopped(Stop::LeaseLost)) => {
            log::warn!("job {id}: lease lost; another worker has it now");
            return Ok(AttemptOutcome::LeaseLost);
        }
        Err(JobError::Abort(e)) => Ending::Failed {
            error: format!("{e:#}"),
        },
        Err(JobError::Retry(e)) if job.attempts < job.max_attempts => Ending::Retry {
            error: format!("{e:#}"),
            run_after: ctx.retry_at(job.attempts),
        },
        Err(JobError::Retry(e)) => Ending::Failed {
            error: format!("{e:#}"),
        },
    };
    let Some(ended) = record(ctx, &mut conn, &id, &owner, &ending)? else {
        return Ok(AttemptOutcome::LeaseLost);
    };
    let elapsed = started.elapsed().as_secs_f64();
    let outcome = match &ending {
        Ending::Retry { .. } => "retry",
        Ending::Release => "released",
        other => other.status().as_str(),
    };
    METRICS
        .job_duration
        .with_label_values(&[&job.kind, outcome])
        .observe(elapsed);
    if matches!(ending, Ending::Retry { .. }) {
        METRICS.job_retries.inc();
    }
    match &ending {
        Ending::Succeeded { rows, .. } => {
            log::info!("job {id} succeeded: rows={rows} duration={elapsed:.3}s")
        }
        Ending::Retry { error, run_after } => log::warn!(
            "job {id} attempt {} failed, retrying at {run_after}: {error}",
            ended.attempts
        ),
        Ending::Failed { error } => log::error!(
            "job {id} failed after {} attempt(s): {error}",
            ended.attempts
        ),
        Ending::Cancelled => log::info!("job {id} cancelled after {elapsed:.3}s"),
        Ending::Release => log::info!("job {id} released for the next start (shutdown)"),
    }
    ctx.events.status(&ended);
    Ok(AttemptOutcome::Ended(ended.status()))
}

/// Records the end of an attempt, retrying a few times: losing it would leave the job
/// running until its lease expires.
fn record(
    ctx: &WorkerContext,
    conn: &mut DbConnection,
    id: &JobId,
    owner: &str,
    ending: &Ending,
) -> anyhow::Result<Option<Job>> {
    let mut delay = Duration::from_millis(100);
    for _ in 0..5 {
        match job::finish(conn, id, owner, ending) {
            Ok(row) => return Ok(row),
            Err(e) => {
                log::warn!("job {id}: recording its end failed ({e}); trying again");
                std::thread::sleep(delay);
                delay *= 2;
            }
        }
    }
    let mut fresh = ctx.pool.get()?;
    Ok(job::finish(&mut fresh, id, owner, ending)?)
}

/// Runs `f` when dropped, however the scope is left (a panic included).
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
