//! The JobWorker pool: a SyncArbiter of blocking workers. A worker is given a job its
//! consumer claimed (under a lease, with the attempt's fencing token), runs it while a keeper thread renews the lease on a timer, records progress
//! and checkpoints as it goes (each write fenced, each one an event), notices
//! cancellation, a lost lease, the time limit and shutdown, then records how the attempt
//! ended. A panic in a job is caught and fails that attempt; the files an attempt made
//! stay only if its success is recorded.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use anyhow::Context as _;

use super::completer::{Completed, Completer};
use super::heartbeat::RunningJobs;
use super::kind::Registry;
use super::lease::{LeaseKeeper, Shared};
use super::retry::{Retry, RetryPolicy};
use super::store::FileStore;
use crate::config::Settings;
use crate::db::{DbConnection, Pool, PooledConn};
use crate::domain::job::JobStatus;
use crate::events::Events;
use crate::metrics::METRICS;
use crate::models::attempt;
use crate::models::job::{self, AttemptToken, Beat, Ending, Job, Progress};

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

impl Stop {
    pub(super) const ALL: [Stop; 4] = [
        Stop::Cancelled,
        Stop::TimedOut,
        Stop::Shutdown,
        Stop::LeaseLost,
    ];
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
    /// No attempt can succeed, and the job produced something to keep anyway (an
    /// import's rejects report): the job fails with this result.
    #[error("{error}")]
    Refused {
        error: String,
        result: serde_json::Value,
    },
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
    pub kinds: Registry,
    pub shutdown: Shutdown,
    /// This process, in lease owners.
    pub node: String,
    pub lease: Duration,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// Where attempts keep their files.
    pub store: FileStore,
    /// The jobs running here now, for the heartbeat.
    pub running: RunningJobs,
    /// Records successes in batches.
    pub completer: Completer,
}

impl WorkerContext {
    pub fn new(
        settings: &Settings,
        pool: Pool,
        events: Events,
        kinds: Registry,
        shutdown: Shutdown,
        node: String,
    ) -> Self {
        let completer = Completer::start(pool.clone());
        Self {
            pool,
            events,
            kinds,
            shutdown,
            node,
            lease: settings.lease(),
            timeout: settings.job_timeout(),
            retry: RetryPolicy::from_settings(settings),
            store: FileStore::new(settings.export_dir.clone(), settings.export_ttl()),
            running: RunningJobs::default(),
            completer,
        }
    }
}

/// A running attempt, as the job's code sees it.
pub struct Attempt<'a> {
    ctx: &'a WorkerContext,
    /// The attempt's token, connection and stop, shared with the lease keeper.
    shared: &'a Shared,
    last_write: Option<Instant>,
    /// Files the attempt produced: removed unless its success is recorded.
    outputs: Vec<PathBuf>,
    /// Whether the job's effects are committed (see [`Attempt::committed`]).
    committed: bool,
    /// The row a [`record_in`](Attempt::record_in) wrote, announced once its
    /// transaction commits.
    pending: Option<Job>,
}

/// Why an attempt's transaction rolled back: the kind's error, or the database's own
/// (the commit failed).
enum Uncommitted {
    Job(JobError),
    Database(diesel::result::Error),
}

impl From<diesel::result::Error> for Uncommitted {
    fn from(e: diesel::result::Error) -> Self {
        Uncommitted::Database(e)
    }
}

impl Attempt<'_> {
    pub fn pool(&self) -> &Pool {
        &self.ctx.pool
    }

    /// The fencing token of this attempt (names its files).
    pub fn token(&self) -> &AttemptToken {
        &self.shared.token
    }

    /// Where the attempt keeps its files.
    pub fn store(&self) -> &FileStore {
        &self.ctx.store
    }

    /// Records in the attempt's history that it went on from `done` (in the kind's unit
    /// of progress) where an earlier attempt got to.
    pub fn resumed(&mut self, done: u64) {
        let recorded = self
            .shared
            .with_conn(|conn| attempt::resumed(conn, &self.shared.token, done as i64))
            .expect(ATTEMPT_CONN);
        if let Err(e) = recorded {
            log::warn!(
                "job {}: could not record its resumption: {e}",
                self.shared.token.job
            );
        }
    }

    /// A file this attempt produced for its result: it is removed unless the ending that
    /// names it is recorded (a cancel won, the lease was lost, the ending failed).
    pub fn output(&mut self, path: PathBuf) {
        self.outputs.push(path);
    }

    /// Says that the job's effects are committed in the database (an import's last
    /// batch): a cancel requested from now on cannot undo them, so the job ends
    /// `succeeded` if it returns a result.
    pub fn committed(&mut self) {
        self.committed = true;
    }

    /// Whether the job should stop now: cancelled or lost (seen by the lease keeper or
    /// at a write), past its time limit, or the process is shutting down.
    pub fn check(&self) -> Result<(), Stop> {
        if let Some(stop) = self.shared.stopped() {
            return Err(stop);
        }
        if self.ctx.shutdown.is_aborting() {
            return Err(Stop::Shutdown);
        }
        if self.shared.started.elapsed() > self.ctx.timeout {
            return Err(Stop::TimedOut);
        }
        Ok(())
    }

    /// Whether a progress report now would be written (at most every
    /// [`PROGRESS_INTERVAL`]): the moment for a kind to make its output durable and
    /// record a [`checkpoint`](Self::checkpoint).
    pub fn write_due(&self) -> bool {
        self.last_write
            .is_none_or(|t| t.elapsed() >= PROGRESS_INTERVAL)
    }

    /// Reports `done` of `total`. Written and announced at most every
    /// [`PROGRESS_INTERVAL`] unless `force`; each write renews the lease and reads the
    /// cancel flag.
    pub fn progress(&mut self, done: u64, total: u64, force: bool) -> Result<(), Stop> {
        self.check()?;
        if !(force || self.write_due()) {
            return Ok(());
        }
        self.write(done, total, None)
    }

    /// Reports progress now, with the checkpoint the next attempt resumes from if this
    /// one dies. Everything the checkpoint names must already be durable.
    pub fn checkpoint(
        &mut self,
        done: u64,
        total: u64,
        checkpoint: &serde_json::Value,
    ) -> Result<(), Stop> {
        self.check()?;
        self.write(done, total, Some(checkpoint))
    }

    /// Runs `f` in a transaction on `conn` in which the kind may [`record_in`] its progress
    /// and checkpoint, so that they commit (or roll back) with the work they vouch for (an
    /// import's batch). The progress event goes out only once the transaction has
    /// committed: a batch that rolls back (a cancel seen at its checkpoint, a lost lease)
    /// publishes nothing, so the `seq` it used is never sent with a state that did not
    /// happen.
    ///
    /// [`record_in`]: Self::record_in
    pub fn transaction<T>(
        &mut self,
        conn: &mut DbConnection,
        f: impl FnOnce(&mut DbConnection, &mut Self) -> Result<T, JobError>,
    ) -> Result<T, JobError> {
        use diesel::Connection as _;
        let done = conn.transaction(|tx| f(tx, self).map_err(Uncommitted::Job));
        let recorded = self.pending.take();
        match done {
            Ok(value) => {
                if let Some(row) = recorded {
                    self.shared.renewed();
                    self.ctx.events.progress(&row);
                }
                Ok(value)
            }
            Err(Uncommitted::Job(e)) => Err(e),
            Err(Uncommitted::Database(e)) => Err(e.into()),
        }
    }

    /// Records progress, and a checkpoint if given, on `conn`, the connection of a
    /// [`transaction`](Self::transaction) of this attempt. Fenced like every write of the
    /// attempt: when the attempt no longer holds the job this fails with
    /// [`Stop::LeaseLost`], and when a cancel was requested with [`Stop::Cancelled`]; the
    /// transaction then rolls back.
    pub fn record_in(
        &mut self,
        conn: &mut DbConnection,
        done: u64,
        total: u64,
        checkpoint: Option<&serde_json::Value>,
    ) -> Result<(), JobError> {
        self.check()?;
        let beat = self.beat(done, total, checkpoint);
        match job::renew(conn, &self.shared.token, self.ctx.lease, &beat)? {
            Some(row) if row.cancel_requested => Err(Stop::Cancelled.into()),
            Some(row) => {
                self.pending = Some(row);
                Ok(())
            }
            None => {
                self.shared.stop(Stop::LeaseLost);
                Err(Stop::LeaseLost.into())
            }
        }
    }

    /// What a progress write records; the write is about to happen.
    fn beat<'c>(
        &mut self,
        done: u64,
        total: u64,
        checkpoint: Option<&'c serde_json::Value>,
    ) -> Beat<'c> {
        self.last_write = Some(Instant::now());
        Beat {
            progress: Some(Progress {
                done: done as i64,
                total: total as i64,
            }),
            checkpoint,
        }
    }

    fn write(
        &mut self,
        done: u64,
        total: u64,
        checkpoint: Option<&serde_json::Value>,
    ) -> Result<(), Stop> {
        let beat = self.beat(done, total, checkpoint);
        let written = self
            .shared
            .with_conn(|conn| job::renew(conn, &self.shared.token, self.ctx.lease, &beat))
            .expect(ATTEMPT_CONN);
        match written {
            Ok(Some(row)) => {
                self.shared.renewed();
                self.ctx.events.progress(&row);
                if row.cancel_requested {
                    return Err(Stop::Cancelled);
                }
                Ok(())
            }
            Ok(None) => {
                self.shared.stop(Stop::LeaseLost);
                Err(Stop::LeaseLost)
            }
            Err(e) => {
                // A lost progress write is not worth failing the job for: the lease
                // keeper renews the lease on its own.
                log::warn!(
                    "job {}: could not record progress: {e}",
                    self.shared.token.job
                );
                Ok(())
            }
        }
    }
}

/// Run the attempt a claim began.
#[derive(Message)]
#[rtype(result = "AttemptOutcome")]
pub struct RunJob {
    pub job: Job,
    pub token: AttemptToken,
}

/// What became of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The attempt ran and the job is now in this status.
    Ended(JobStatus),
    /// The lease was lost; whoever holds the job now records its end.
    LeaseLost,
    /// Something outside the job's own code failed; the lease sweep will recover it.
    Crashed,
}

pub struct JobWorker {
    ctx: Arc<WorkerContext>,
    /// Started at the first attempt.
    keeper: Option<LeaseKeeper>,
}

impl JobWorker {
    /// Starts `n` workers on threads of their own.
    pub fn start_pool(n: usize, ctx: Arc<WorkerContext>) -> Addr<JobWorker> {
        SyncArbiter::start(n, move || JobWorker {
            ctx: ctx.clone(),
            keeper: None,
        })
    }
}

impl Actor for JobWorker {
    type Context = SyncContext<Self>;
}

impl Handler<RunJob> for JobWorker {
    type Result = MessageResult<RunJob>;

    fn handle(&mut self, msg: RunJob, ctx: &mut SyncContext<Self>) -> Self::Result {
        let id = msg.job.id;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let keeper = match self.keeper.take() {
                Some(keeper) => keeper,
                None => LeaseKeeper::start(self.ctx.clone())
                    .context("starting the worker's lease keeper")?,
            };
            run(&self.ctx, self.keeper.insert(keeper), msg.job, msg.token)
        }));
        MessageResult(match outcome {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => {
                log::error!("job {id}: attempt could not be recorded: {e:#}");
                AttemptOutcome::Crashed
            }
            Err(_) => {
                log::error!("job {id}: worker panicked outside the job");
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

/// Only the end of the attempt takes its connection back from what it shares with the
/// lease keeper.
const ATTEMPT_CONN: &str = "an attempt's connection is there until the attempt ends";

fn run(
    ctx: &WorkerContext,
    keeper: &LeaseKeeper,
    job: Job,
    token: AttemptToken,
) -> anyhow::Result<AttemptOutcome> {
    let id = job.id;
    let conn = ctx.pool.get()?;
    log::info!(
        "job {id} started: kind={} attempt={}/{}",
        job.kind.as_str(),
        job.attempts,
        job.max_attempts
    );
    ctx.events.status(&job);
    METRICS.jobs_in_flight.inc();
    let _in_flight = scopeguard(|| METRICS.jobs_in_flight.dec());
    let _running = ctx.running.enter(id);
    let shared = Shared::new(token.clone(), conn);
    let kept = keeper.keep(&shared);
    let mut attempt = Attempt {
        ctx,
        shared: &shared,
        last_write: None,
        outputs: Vec::new(),
        committed: false,
        pending: None,
    };
    let result = catch_unwind(AssertUnwindSafe(|| match ctx.kinds.get(job.kind) {
        Some(kind) => kind.run(&job, &mut attempt),
        None => Err(JobError::Abort(anyhow::anyhow!(
            "this worker does not run jobs of kind {}",
            job.kind
        ))),
    }))
    .unwrap_or_else(|panic| {
        Err(JobError::Retry(anyhow::anyhow!(
            "the job panicked: {}",
            panic_message(&*panic)
        )))
    });
    let (outputs, committed) = (attempt.outputs, attempt.committed);
    let conn = kept.release().expect(ATTEMPT_CONN);
    // Whatever happens next, the outputs stay only if the success is recorded.
    let mut outputs = Outputs(outputs);
    let ending = match result {
        Ok(value) => Ending::Succeeded {
            result: value.to_string(),
            committed,
        },
        Err(JobError::Stopped(Stop::Cancelled)) => Ending::Cancelled,
        Err(JobError::Stopped(Stop::TimedOut)) => Ending::Failed {
            error: format!("timed out after {} s", ctx.timeout.as_secs()),
            result: None,
        },
        Err(JobError::Stopped(Stop::Shutdown)) => Ending::Release,
        Err(JobError::Stopped(Stop::LeaseLost)) => {
            log::warn!("job {id}: lease lost; another worker has it now");
            return Ok(AttemptOutcome::LeaseLost);
        }
        Err(JobError::Abort(e)) => Ending::Failed {
            error: format!("{e:#}"),
            result: None,
        },
        Err(JobError::Refused { error, result }) => Ending::Failed {
            error,
            result: Some(result.to_string()),
        },
        Err(JobError::Retry(e)) => match ctx.retry.after_failure(job.attempts, job.max_attempts) {
            Retry::After(backoff) => Ending::Retry {
                error: format!("{e:#}"),
                backoff,
            },
            Retry::GiveUp => Ending::Failed {
                error: format!("{e:#}"),
                result: None,
            },
        },
    };
    // What the recorded ending's result names stays: a success's file, or the report of
    // a job refused as a whole (an import's rejects).
    let has_result = matches!(
        ending,
        Ending::Succeeded { .. }
            | Ending::Failed {
                result: Some(_),
                ..
            }
    );
    let ended = match record(ctx, conn, &token, &ending) {
        Ok(ended) => ended,
        Err(e) => {
            // Perhaps recorded after all: the files stay, and the file sweep removes
            // them if no job's result names them.
            if has_result {
                outputs.keep();
            }
            return Err(e);
        }
    };
    let Some(ended) = ended else {
        log::warn!("job {id}: lease lost before its end was recorded; another worker has it");
        return Ok(AttemptOutcome::LeaseLost);
    };
    if has_result && ended.status == ending.status() {
        outputs.keep();
    }
    let elapsed = shared.started.elapsed().as_secs_f64();
    let outcome = match (&ending, ended.status) {
        (_, JobStatus::Cancelled) => "cancelled",
        (Ending::Retry { .. }, _) => "retry",
        (Ending::Release, _) => "released",
        (other, _) => other.status().as_str(),
    };
    METRICS
        .job_duration
        .with_label_values(&[job.kind.as_str(), outcome])
        .observe(elapsed);
    match (&ending, ended.status) {
        (_, JobStatus::Cancelled) => log::info!("job {id} cancelled after {elapsed:.3}s"),
        (Ending::Succeeded { .. }, _) => log::info!(
            "job {id} succeeded: done={} duration={elapsed:.3}s",
            ended.progress.done
        ),
        (Ending::Retry { error, backoff }, _) => {
            METRICS.job_retries.inc();
            log::warn!(
                "job {id} attempt {} failed, retrying in {backoff:.1?}: {error}",
                ended.attempts
            )
        }
        (Ending::Failed { error, .. }, _) => log::error!(
            "job {id} failed after {} attempt(s): {error}",
            ended.attempts
        ),
        (Ending::Release, _) => log::info!("job {id} released for the next start (shutdown)"),
        (Ending::Cancelled, _) => unreachable!("a cancel ends the job cancelled"),
    }
    ctx.events.status(&ended);
    Ok(AttemptOutcome::Ended(ended.status))
}

/// The files an attempt produced; removed on drop unless kept.
struct Outputs(Vec<PathBuf>);

impl Outputs {
    fn keep(&mut self) {
        self.0.clear();
    }
}

impl Drop for Outputs {
    fn drop(&mut self) {
        for path in &self.0 {
            if let Err(e) = std::fs::remove_file(path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    log::warn!("could not remove {}: {e}", path.display());
                }
            }
        }
    }
}

/// Records the end of an attempt, trying again a few times: losing it would leave the
/// job running until its lease expires. Each try after a failure takes a connection from
/// the pool: the one that failed may be what failed (the server restarted under it), and
/// the pool throws it away. An error means the ending's fate is unknown: an earlier try
/// may have committed with only its reply lost.
fn record(
    ctx: &WorkerContext,
    conn: PooledConn,
    token: &AttemptToken,
    ending: &Ending,
) -> anyhow::Result<Option<Job>> {
    const TRIES: u32 = 6;
    // A success goes with the others of its moment, in one statement; what that batch did
    // not record (a cancel won, the lease was lost, the batch failed) is recorded alone.
    let mut failure = None;
    if let Ending::Succeeded { result, committed } = ending {
        match ctx.completer.succeed(token, result, *committed) {
            Completed::Recorded(job) => return Ok(Some(*job)),
            Completed::NotRecorded(None) => {}
            // Perhaps committed with only its reply lost: the tries below look.
            Completed::NotRecorded(Some(error)) => failure = Some(anyhow::anyhow!(error)),
        }
    }
    let mut conn = Some(conn);
    let mut delay = Duration::from_millis(100);
    for tried in 1..=TRIES {
        if tried > 1 {
            std::thread::sleep(delay);
            delay *= 2;
        }
        let mut c = match conn.take().map_or_else(|| ctx.pool.get(), Ok) {
            Ok(c) => c,
            Err(e) => {
                log::warn!("job {}: no connection to record its end ({e})", token.job);
                failure = Some(anyhow::Error::from(e));
                continue;
            }
        };
        let finished = match job::finish(&mut c, token, ending) {
            Ok(None) if failure.is_some() => recorded_before(&mut c, token, ending),
            Ok(row) => return Ok(row),
            Err(e) => Err(e.into()),
        };
        match finished {
            Ok(row) => return Ok(row),
            Err(e) => {
                log::warn!(
                    "job {}: recording its end failed ({e:#}); trying again",
                    token.job
                );
                failure = Some(e);
            }
        }
        // Dropped here, the connection goes back to the pool, which throws it away if
        // it is broken; the next try takes another.
    }
    Err(failure.expect("a try failed"))
}

/// The job, if the attempt's ending was recorded by an earlier try whose reply was lost
/// (the commit went through, the connection died before saying so): its history shows
/// the attempt ended, and not as lost, and the job is where that ending left it (not
/// claimed again since). Otherwise the attempt no longer holds the job.
fn recorded_before(
    conn: &mut DbConnection,
    token: &AttemptToken,
    ending: &Ending,
) -> anyhow::Result<Option<Job>> {
    let ours = attempt::for_job(conn, &token.job)?
        .into_iter()
        .find(|a| a.worker == token.owner.as_str());
    let ended = ours.and_then(|a| a.outcome);
    if ended.is_none_or(|outcome| outcome == attempt::Outcome::Lost) {
        return Ok(None);
    }
    let job = job::find(conn, &token.job)?;
    Ok(job.filter(|j| j.status == ending.status() || j.status == JobStatus::Cancelled))
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
