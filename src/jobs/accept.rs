//! Accepting a job: the one way a job comes to exist, used by the HTTP routes, the CLI
//! and the scheduler alike.
//!
//! The kind checks the parameters; the row is committed (durable accept) before anything
//! else happens; then the job is announced as an event and its queue's consumers are
//! woken. The row is all a job needs: consumers claim from the table, so a wake-up that
//! is lost (Redis away, the process dead before it) delays the job by a consumer's poll
//! interval at most. A job goes to the queue it names, else to this process's first
//! queue; it runs only where that queue is served.
//!
//! Unique jobs: an `Idempotency-Key` returns the job first created with it by the same
//! creator within [`IDEMPOTENCY_WINDOW`] (the same key with other parameters is refused),
//! and a request marked `dedupe` returns an identical job of the same creator that is
//! still queued or running. Both are enforced by unique indexes, so two racing requests
//! still make one job; a schedule's tick is unique the same way.
//!
//! Limits ([`AcceptLimits`]): a new job (not one a request repeats) is refused while the
//! queue holds `ROSTER_MAX_QUEUED_JOBS` jobs (503), or while the export directory's volume
//! has less than `ROSTER_MIN_FREE_DISK_MB` free (507).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::kind::Registry;
use super::store::UPLOAD_PARAM;
use crate::broker::Broker;
use crate::config::Settings;
use crate::db::{DbConnection, Pool};
use crate::domain::job::{JobId, JobKind};
use crate::domain::queue::{Dispatch, QueueName};
use crate::error::FieldErrors;
use crate::events::Events;
use crate::models::job::{self, Job, NewJob, RetryOutcome};

/// How long an idempotency key returns the job it first created.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// The longest idempotency key taken.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;
/// How long a count of the queued jobs stands in for the table (this process adds its own
/// accepts to it meanwhile).
pub const QUEUE_COUNT_TTL: Duration = Duration::from_secs(1);
/// When a client refused for a full queue should try again.
pub const QUEUE_FULL_RETRY: Duration = Duration::from_secs(30);

/// A job someone asks for.
#[derive(Debug, Clone)]
pub struct JobRequest {
    pub kind: JobKind,
    /// As the client sent them; the kind checks them.
    pub params: Map<String, Value>,
    /// The id to give the job (an import's upload is named after its job); else a new one.
    pub id: Option<JobId>,
    pub created_by: Option<String>,
    pub idempotency_key: Option<String>,
    /// Return an identical queued or running job of the same creator instead of a new one
    /// (what a request without an idempotency key gets).
    pub dedupe: bool,
    /// The schedule and tick this job is for (one job per tick).
    pub tick: Option<(String, NaiveDateTime)>,
    /// Its queue, priority and due time, as asked.
    pub dispatch: Dispatch,
}

impl JobRequest {
    pub fn new(kind: JobKind, params: Map<String, Value>) -> Self {
        Self {
            kind,
            params,
            id: None,
            created_by: None,
            idempotency_key: None,
            dedupe: false,
            tick: None,
            dispatch: Dispatch::default(),
        }
    }
}

/// What accepting a request gave.
#[derive(Debug)]
pub enum Accepted {
    /// A new job, committed.
    New(Job),
    /// The job this request repeats (same idempotency key, or identical and still active).
    Existing(Job),
}

impl Accepted {
    pub fn job(&self) -> &Job {
        match self {
            Accepted::New(job) | Accepted::Existing(job) => job,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("no kind {0} here")]
    UnknownKind(JobKind),
    #[error("jobs of kind {0} cannot be scheduled")]
    NotSchedulable(JobKind),
    #[error("some parameters are invalid")]
    Invalid(FieldErrors),
    #[error("this Idempotency-Key was used for a job with other parameters")]
    KeyReused,
    #[error("the schedule already fired for this tick")]
    TickTaken,
    #[error("an identical job is already queued or running")]
    Duplicate,
    #[error("you have {limit} jobs queued or running already (ROSTER_MAX_ACTIVE_JOBS); wait for one to end")]
    TooManyActive { limit: u32 },
    #[error("the queue is full ({max} jobs waiting); try again later")]
    QueueFull { max: i64 },
    #[error(
        "not enough free disk space for the job's files ({free_mb} MB free, {min_mb} MB required)"
    )]
    DiskFull { free_mb: u64, min_mb: u64 },
    #[error(transparent)]
    Database(#[from] DieselError),
    #[error(transparent)]
    Pool(#[from] r2d2::Error),
    #[error("accepting the job failed: {0}")]
    Blocking(#[from] actix_web::error::BlockingError),
}

/// The bounds a new job must stay within: the whole queue, and the free disk space its
/// files need.
#[derive(Clone, Debug)]
pub struct AcceptLimits {
    max_queued: i64,
    /// Jobs one user may have queued or running (`None`: no cap).
    max_active: Option<u32>,
    dir: PathBuf,
    min_free_bytes: u64,
    /// The last count of queued jobs, when it was taken, plus this process's accepts since.
    queued: Arc<Mutex<Option<(Instant, i64)>>>,
    /// Bytes uploads under way in this process said they will still write: free space is
    /// counted without them, so parallel uploads cannot together take the volume below
    /// the floor.
    promised: Arc<AtomicU64>,
}

/// The room an upload under way holds on the export volume ([`AcceptLimits::reserve_upload`]).
pub struct UploadSpace {
    limits: AcceptLimits,
    /// Of what it promised, what it has not written yet.
    remaining: u64,
}

impl UploadSpace {
    /// Counts `n` more bytes written, and refuses (507) once the volume, less what every
    /// upload under way still promised, is short of the floor.
    pub fn wrote(&mut self, n: u64) -> Result<(), AcceptError> {
        let kept = n.min(self.remaining);
        self.remaining -= kept;
        self.limits.promised.fetch_sub(kept, Ordering::SeqCst);
        self.limits.check_disk()
    }
}

impl Drop for UploadSpace {
    fn drop(&mut self) {
        self.limits
            .promised
            .fetch_sub(self.remaining, Ordering::SeqCst);
    }
}

impl AcceptLimits {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            max_queued: i64::try_from(settings.max_queued_jobs).unwrap_or(i64::MAX),
            max_active: Some(settings.max_active_jobs),
            dir: settings.export_dir.clone(),
            min_free_bytes: settings.min_free_disk_mb.saturating_mul(1024 * 1024),
            queued: Arc::default(),
            promised: Arc::default(),
        }
    }

    /// No bounds.
    pub fn none() -> Self {
        Self {
            max_queued: i64::MAX,
            max_active: None,
            dir: PathBuf::new(),
            min_free_bytes: 0,
            queued: Arc::default(),
            promised: Arc::default(),
        }
    }

    /// Holds room for an upload that says it will write `declared` bytes (0 when it does
    /// not say), refusing it (507) at once when the room is not there.
    pub fn reserve_upload(&self, declared: u64) -> Result<UploadSpace, AcceptError> {
        self.promised.fetch_add(declared, Ordering::SeqCst);
        let space = UploadSpace {
            limits: self.clone(),
            remaining: declared,
        };
        self.check_disk()?;
        Ok(space)
    }

    /// Refuses when the export directory's volume, less what uploads under way still
    /// promised, is short of free space.
    pub fn check_disk(&self) -> Result<(), AcceptError> {
        if self.min_free_bytes == 0 {
            return Ok(());
        }
        let promised = self.promised.load(Ordering::SeqCst);
        let floor = self.min_free_bytes.saturating_add(promised);
        match super::store::short_of_disk(&self.dir, floor) {
            Some(free) => Err(AcceptError::DiskFull {
                free_mb: free.saturating_sub(promised) / (1024 * 1024),
                min_mb: self.min_free_bytes / (1024 * 1024),
            }),
            None => Ok(()),
        }
    }

    /// Whether the queue is full, by the cached count, counting nothing.
    fn check_queue(&self, conn: &mut DbConnection) -> Result<(), AcceptError> {
        if self.max_queued == i64::MAX {
            return Ok(());
        }
        let cached = *self.queued.lock().expect("queue count lock");
        let queued = match cached {
            Some((at, n)) if at.elapsed() < QUEUE_COUNT_TTL => n,
            _ => job::count_queued(conn)?,
        };
        match queued >= self.max_queued {
            true => Err(AcceptError::QueueFull {
                max: self.max_queued,
            }),
            false => Ok(()),
        }
    }

    /// Refuses a new job when the disk or the queue is full; else counts it as queued.
    fn admit(&self, conn: &mut DbConnection) -> Result<(), AcceptError> {
        self.check_disk()?;
        if self.max_queued == i64::MAX {
            return Ok(());
        }
        let cached = *self.queued.lock().expect("queue count lock");
        let (at, queued) = match cached {
            Some((at, n)) if at.elapsed() < QUEUE_COUNT_TTL => (at, n),
            _ => (Instant::now(), job::count_queued(conn)?),
        };
        if queued >= self.max_queued {
            *self.queued.lock().expect("queue count lock") = Some((at, queued));
            return Err(AcceptError::QueueFull {
                max: self.max_queued,
            });
        }
        // Counted before the insert: a failed insert (or a repeated request) only makes the
        // cap a little stricter until the next count.
        let mut guard = self.queued.lock().expect("queue count lock");
        *guard = Some(match *guard {
            Some((t, n)) if t == at => (t, n + 1),
            _ => (at, queued + 1),
        });
        Ok(())
    }
}

/// Accepts jobs for this process.
#[derive(Clone)]
pub struct Acceptor {
    pool: Pool,
    broker: Arc<dyn Broker>,
    events: Events,
    kinds: Registry,
    max_attempts: i32,
    limits: AcceptLimits,
    /// Where jobs go that name no queue.
    home_queue: QueueName,
}

impl Acceptor {
    /// An acceptor as `settings` say: their attempts, caps and first queue (where jobs go
    /// that name none).
    pub fn new(
        pool: Pool,
        broker: Arc<dyn Broker>,
        events: Events,
        kinds: Registry,
        settings: &Settings,
    ) -> Self {
        Self {
            pool,
            broker,
            events,
            kinds,
            max_attempts: i32::from(settings.max_attempts),
            limits: AcceptLimits::from_settings(settings),
            home_queue: settings.home_queue(),
        }
    }

    pub fn kinds(&self) -> &Registry {
        &self.kinds
    }

    pub fn limits(&self) -> &AcceptLimits {
        &self.limits
    }

    /// Checks the request's parameters with its kind, as stored.
    pub fn check(&self, kind: JobKind, params: &Map<String, Value>) -> Result<Value, AcceptError> {
        let handler = self.kinds.get(kind).ok_or(AcceptError::UnknownKind(kind))?;
        handler.accept(params).map_err(AcceptError::Invalid)
    }

    /// Accepts `request`: commits its job, announces it as an event and wakes its queue's
    /// consumers; or returns the job it repeats.
    pub async fn accept(&self, request: JobRequest) -> Result<Accepted, AcceptError> {
        let params = self.check(request.kind, &request.params)?;
        if request.tick.is_some()
            && !self
                .kinds
                .get(request.kind)
                .is_some_and(|k| k.schedulable())
        {
            return Err(AcceptError::NotSchedulable(request.kind));
        }
        let creator = request.created_by.as_deref().unwrap_or("-");
        let queue = request
            .dispatch
            .queue
            .clone()
            .unwrap_or_else(|| self.home_queue.clone());
        let run_at = request.dispatch.run_at;
        let new = NewJob {
            id: request.id.unwrap_or_default(),
            kind: request.kind,
            idempotency_key: request
                .idempotency_key
                .as_ref()
                .map(|key| format!("{creator}/{key}")),
            dedup_key: request.dedupe.then(|| {
                // The same work in the same queue at the same time: a delayed copy of a
                // job is another job.
                let when = run_at.map(|t| t.to_rfc3339()).unwrap_or_default();
                let identity = format!("{creator}/{}/{params}/{queue}/{when}", request.kind);
                hex::encode(Sha256::digest(identity.as_bytes()))
            }),
            params,
            max_attempts: self.max_attempts,
            created_by: request.created_by,
            tick: request.tick,
            queue,
            priority: request.dispatch.priority,
            delay: run_at
                .and_then(|t| (t - chrono::Utc::now()).to_std().ok())
                .unwrap_or_default(),
        };
        let pool = self.pool.clone();
        let limits = self.limits.clone();
        let accepted = actix_web::web::block(move || {
            let mut conn = pool.get()?;
            commit(&mut conn, &new, &limits)
        })
        .await??;
        if let Accepted::New(job) = &accepted {
            log::info!(
                "job {} queued: kind={} params={}",
                job.id,
                job.kind,
                job.params
            );
            self.events.status(job);
            self.wake(&job.queue).await;
        }
        Ok(accepted)
    }

    /// Wakes the consumers of `queue`: a job there may be due. A wake-up that fails only
    /// costs the job the rest of a consumer's poll interval.
    pub async fn wake(&self, queue: &QueueName) {
        if let Err(e) = self.broker.announce(queue).await {
            log::debug!("could not wake the consumers of queue {queue} ({e}); they will look soon");
        }
    }
}

impl Acceptor {
    /// Admission ahead of a request's body (an upload): refuses now, before a byte is
    /// stored, what accepting would refuse for its caps: the owner's active jobs, the
    /// queue, the disk. Counts nothing (accepting admits again, and counts). A request
    /// repeating a job by its `Idempotency-Key` is let through: it gets that job.
    pub async fn admit_ahead(
        &self,
        owner: Option<String>,
        idempotency_key: Option<String>,
    ) -> Result<(), AcceptError> {
        let (pool, limits) = (self.pool.clone(), self.limits.clone());
        actix_web::web::block(move || -> Result<(), AcceptError> {
            let mut conn = pool.get()?;
            if let Some(key) = idempotency_key {
                let scoped = format!("{}/{key}", owner.as_deref().unwrap_or("-"));
                if job::by_idempotency_key(&mut conn, &scoped, IDEMPOTENCY_WINDOW)?.is_some() {
                    return Ok(());
                }
            }
            check_owner(&mut conn, owner.as_deref(), &limits)?;
            limits.check_disk()?;
            limits.check_queue(&mut conn)
        })
        .await?
    }

    /// A person's retry of a failed or cancelled job that `visible_to` may see: back in the
    /// queue with a fresh budget of attempts, through the same admission as a new job
    /// (its owner's cap, the queue's, the disk's), then announced and published.
    pub async fn retry(
        &self,
        id: JobId,
        visible_to: Option<String>,
    ) -> Result<RetryOutcome, AcceptError> {
        let (pool, limits, budget) = (self.pool.clone(), self.limits.clone(), self.max_attempts);
        let outcome = actix_web::web::block(move || -> Result<_, AcceptError> {
            let mut conn = pool.get()?;
            let Some(found) = job::find_visible(&mut conn, &id, visible_to.as_deref())? else {
                return Ok(RetryOutcome::NotFound);
            };
            if !found.status.is_retryable() {
                return Ok(RetryOutcome::NotRetryable(found));
            }
            admit(&mut conn, found.created_by.as_deref(), &limits)?;
            match job::retry(&mut conn, &id, visible_to.as_deref(), budget) {
                Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                    Err(AcceptError::Duplicate)
                }
                other => Ok(other?),
            }
        })
        .await??;
        if let RetryOutcome::Queued(job) = &outcome {
            log::info!("job {} retried: back in the queue", job.id);
            self.events.status(job);
            self.wake(&job.queue).await;
        }
        Ok(outcome)
    }
}

/// Returns the job `new` repeats, or commits it. Most requests are new jobs, so the insert
/// comes first: one statement, and the unique indexes (idempotency key, an identical
/// active job, a schedule's tick) tell when the request repeats one.
fn commit(
    conn: &mut DbConnection,
    new: &NewJob,
    limits: &AcceptLimits,
) -> Result<Accepted, AcceptError> {
    if let Err(refused) = admit(conn, new.created_by.as_deref(), limits) {
        // A request repeating an accepted job gets that job, even at a cap.
        return repeated(conn, new)?.ok_or(refused);
    }
    // A key held by a job older than the window is let go by `repeated`: one more try.
    for _ in 0..2 {
        match job::insert(conn, new) {
            Ok(job) => return Ok(Accepted::New(job)),
            Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                match repeated(conn, new)? {
                    Some(existing) => return Ok(existing),
                    None if new.tick.is_some() => return Err(AcceptError::TickTaken),
                    None => {}
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(AcceptError::Database(DieselError::RollbackTransaction))
}

/// Admission: the limits every job entering the queue must pass, whichever way it comes
/// (accepted, retried, fired by a schedule): its owner's active jobs, the disk and the
/// queue.
fn admit(
    conn: &mut DbConnection,
    owner: Option<&str>,
    limits: &AcceptLimits,
) -> Result<(), AcceptError> {
    check_owner(conn, owner, limits)?;
    limits.admit(conn)
}

/// The owner's cap on jobs queued or running.
fn check_owner(
    conn: &mut DbConnection,
    owner: Option<&str>,
    limits: &AcceptLimits,
) -> Result<(), AcceptError> {
    if let (Some(limit), Some(user)) = (limits.max_active, owner) {
        // Checked before the insert, not with it: two racing requests may both pass, so
        // the cap can be exceeded by the requests in flight at once, never more.
        if job::active_count(conn, user)? >= i64::from(limit) {
            return Err(AcceptError::TooManyActive { limit });
        }
    }
    Ok(())
}

/// The job `new` repeats, if any: by idempotency key, else an identical active one.
fn repeated(conn: &mut DbConnection, new: &NewJob) -> Result<Option<Accepted>, AcceptError> {
    if let Some(key) = &new.idempotency_key {
        if let Some(first) = job::by_idempotency_key(conn, key, IDEMPOTENCY_WINDOW)? {
            if first.kind != new.kind || !same_request(&first.params, &new.params) {
                return Err(AcceptError::KeyReused);
            }
            return Ok(Some(Accepted::Existing(first)));
        }
    }
    if let Some(key) = &new.dedup_key {
        if let Some(active) = job::active_by_dedup_key(conn, key)? {
            return Ok(Some(Accepted::Existing(active)));
        }
    }
    Ok(None)
}

/// Whether two jobs' parameters ask for the same thing. An uploaded input file is named
/// after its job ([`UPLOAD_PARAM`]), so two uploads of one request differ only there.
fn same_request(a: &Value, b: &Value) -> bool {
    let without_upload = |v: &Value| {
        let mut v = v.clone();
        if let Some(map) = v.as_object_mut() {
            map.remove(UPLOAD_PARAM);
        }
        v
    };
    without_upload(a) == without_upload(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_under_way_hold_the_room_they_said_they_need() {
        let dir = std::env::temp_dir();
        let free = fs4::available_space(&dir).unwrap();
        // The floor is what is free now less 40 MB: room for one 30 MB upload, not two.
        let limits = AcceptLimits {
            min_free_bytes: free.saturating_sub(40 << 20),
            dir,
            ..AcceptLimits::none()
        };
        let mut first = limits.reserve_upload(30 << 20).unwrap();
        assert!(matches!(
            limits.reserve_upload(30 << 20),
            Err(AcceptError::DiskFull { .. })
        ));
        // Writing turns the promise into used space: it is not counted twice.
        first.wrote(10 << 20).unwrap();
        assert_eq!(limits.promised.load(Ordering::SeqCst), 20 << 20);
        drop(first);
        assert_eq!(
            limits.promised.load(Ordering::SeqCst),
            0,
            "given back at its end"
        );
        assert!(limits.reserve_upload(30 << 20).is_ok());
    }
}
