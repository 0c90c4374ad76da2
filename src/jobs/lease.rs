//! Keeping a running attempt's lease: [`Shared`], what an attempt and its keeper share
//! (the attempt's connection, the stop it was told of, when the lease was last renewed),
//! and the [`LeaseKeeper`], one thread per worker for the worker's whole life that renews
//! the lease of whichever attempt the worker runs, whatever the job is doing (a long
//! query, a stalled disk).
//!
//! A thread per worker rather than per attempt: starting and joining a thread for every
//! attempt (clone3, the stack's mmap and munmap, exit) was about 5 % of the machine's
//! samples in a no-op drain. The keeper is not woken when an attempt starts or ends; it
//! looks on a tick of a quarter of the renewal interval, so a renewal is at most a quarter
//! interval late (a third of the lease + a twelfth: well inside it), and a job of a few
//! microseconds costs it nothing.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::worker::{Stop, WorkerContext};
use crate::db::{DbConnection, PooledConn};
use crate::models::job::{self, AttemptToken, Beat};

/// What an attempt's thread and its lease keeper share.
pub(super) struct Shared {
    pub token: AttemptToken,
    /// For the attempt's own writes (progress, checkpoint, lease), apart from the job's
    /// reads. Taken back by the attempt when it ends ([`Shared::take_conn`]); the keeper
    /// finds it gone and leaves the attempt alone.
    conn: Mutex<Option<PooledConn>>,
    /// A [`Stop`] the keeper saw (cancel, lost lease), as `Stop as u8 + 1`; 0 for none.
    stop: AtomicU8,
    /// When the lease was last renewed, in ms since the attempt started.
    renewed_ms: AtomicU64,
    pub started: Instant,
}

impl Shared {
    pub fn new(token: AttemptToken, conn: PooledConn) -> Arc<Self> {
        Arc::new(Self {
            token,
            conn: Mutex::new(Some(conn)),
            stop: AtomicU8::new(0),
            renewed_ms: AtomicU64::new(0),
            started: Instant::now(),
        })
    }

    pub fn stop(&self, why: Stop) {
        self.stop.store(why as u8 + 1, Ordering::SeqCst);
    }

    pub fn stopped(&self) -> Option<Stop> {
        match self.stop.load(Ordering::SeqCst) {
            0 => None,
            n => Stop::ALL.get(usize::from(n - 1)).copied(),
        }
    }

    pub fn renewed(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.renewed_ms.store(ms, Ordering::SeqCst);
    }

    fn since_renewal(&self) -> Duration {
        let at = Duration::from_millis(self.renewed_ms.load(Ordering::SeqCst));
        self.started.elapsed().saturating_sub(at)
    }

    fn slot(&self) -> MutexGuard<'_, Option<PooledConn>> {
        // A panic while holding it leaves a connection that is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the attempt's connection; `None` once the attempt has ended.
    pub fn with_conn<T>(&self, f: impl FnOnce(&mut DbConnection) -> T) -> Option<T> {
        self.slot().as_mut().map(|conn| f(conn))
    }

    /// The attempt is over: its connection back, once a renewal under way is done.
    fn take_conn(&self) -> Option<PooledConn> {
        self.slot().take()
    }
}

/// What the keeper is to do.
enum Keeping {
    Idle,
    Attempt(Arc<Shared>),
    Quit,
}

struct Watch {
    keeping: Mutex<Keeping>,
    quit: Condvar,
}

impl Watch {
    fn keeping(&self) -> MutexGuard<'_, Keeping> {
        self.keeping.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A worker's lease keeper thread; stopped and joined on drop.
pub(super) struct LeaseKeeper {
    watch: Arc<Watch>,
    thread: Option<JoinHandle<()>>,
}

impl LeaseKeeper {
    /// Starts the thread; the worker does so at its first attempt, where a failure is
    /// that attempt's (a worker's constructor cannot fail without losing the worker).
    pub fn start(ctx: Arc<WorkerContext>) -> std::io::Result<Self> {
        let watch = Arc::new(Watch {
            keeping: Mutex::new(Keeping::Idle),
            quit: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name("lease-keeper".into())
            .spawn({
                let watch = watch.clone();
                move || keep_leases(&ctx, &watch)
            })?;
        Ok(Self {
            watch,
            thread: Some(thread),
        })
    }

    /// Keeps `attempt`'s lease until the returned guard is released or dropped (the
    /// worker panicked outside the job).
    pub fn keep(&self, attempt: &Arc<Shared>) -> Kept<'_> {
        *self.watch.keeping() = Keeping::Attempt(attempt.clone());
        Kept {
            keeper: self,
            attempt: attempt.clone(),
        }
    }
}

/// An attempt whose lease the keeper keeps.
pub(super) struct Kept<'k> {
    keeper: &'k LeaseKeeper,
    attempt: Arc<Shared>,
}

impl Kept<'_> {
    /// Stops keeping the lease and gives the attempt's connection back, once a renewal
    /// under way is done.
    pub fn release(self) -> Option<PooledConn> {
        let attempt = self.attempt.clone();
        drop(self);
        attempt.take_conn()
    }
}

impl Drop for Kept<'_> {
    fn drop(&mut self) {
        *self.keeper.watch.keeping() = Keeping::Idle;
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        *self.watch.keeping() = Keeping::Quit;
        self.watch.quit.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How often a lease is renewed: three times a lease, and not in a busy loop for tiny
/// test leases.
fn renewal_interval(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(50))
}

fn keep_leases(ctx: &WorkerContext, watch: &Watch) {
    let every = renewal_interval(ctx.lease);
    let tick = every / 4;
    let mut keeping = watch.keeping();
    loop {
        if matches!(*keeping, Keeping::Quit) {
            return;
        }
        keeping = match watch.quit.wait_timeout(keeping, tick) {
            Ok((guard, _)) => guard,
            Err(poisoned) => poisoned.into_inner().0,
        };
        let attempt = match &*keeping {
            Keeping::Quit => return,
            Keeping::Idle => continue,
            Keeping::Attempt(attempt) => attempt.clone(),
        };
        // Renew without holding the watch: the attempt may end meanwhile. A panic in a
        // renewal must not end the thread: every later attempt would go unrenewed.
        drop(keeping);
        let renewal = catch_unwind(AssertUnwindSafe(|| renew_due(ctx, &attempt, every)));
        if renewal.is_err() {
            log::error!("job {}: renewing its lease panicked", attempt.token.job);
        }
        keeping = watch.keeping();
    }
}

/// Renews `attempt`'s lease if it is due, and notes a cancel or a lost lease for the
/// attempt to see. Past the attempt's time limit the lease is left to expire.
fn renew_due(ctx: &WorkerContext, attempt: &Shared, every: Duration) {
    let due = attempt.since_renewal() >= every
        && attempt.started.elapsed() <= ctx.timeout
        && attempt.stopped() != Some(Stop::LeaseLost);
    if !due {
        return;
    }
    let token = &attempt.token;
    let renewed = attempt.with_conn(|conn| job::renew(conn, token, ctx.lease, &Beat::default()));
    match renewed {
        None => {} // the attempt ended
        Some(Ok(Some(row))) => {
            attempt.renewed();
            if row.cancel_requested {
                attempt.stop(Stop::Cancelled);
            }
        }
        Some(Ok(None)) => attempt.stop(Stop::LeaseLost),
        Some(Err(e)) => log::warn!("job {}: could not renew its lease: {e}", token.job),
    }
}
