//! Maintenance: the periodic repairs that keep the jobs table the only truth, one small
//! service per repair (as River's `internal/maintenance`), each with a `run_once` that
//! tests call directly:
//!
//! - [`LeaseRecovery`]: running jobs whose lease expired on the database's clock, or whose
//!   process is dead, go back to the queue through the retry policy, or end as the state
//!   machine says;
//! - [`Retention`]: ended jobs past `ROSTER_JOB_RETENTION_DAYS` are deleted with their files;
//! - [`ForgetWorkers`]: worker processes not seen for an hour are forgotten;
//! - [`PurgeSessions`]: expired browser sessions are deleted;
//! - [`DiscardStaged`]: rows staged by imports that no longer run are discarded;
//! - [`SweepFiles`]: expired files and files no attempt can own are removed.
//!
//! The [`Maintenance`] actor runs them: recovery every second, the housekeeping every ten.
//! Every process runs one; each repair's updates are conditional, so two at once is fine.
//! (Nothing republishes: consumers claim from the table, the broker only wakes them.)

mod files;
mod lease_recovery;
mod retention;
mod staging;
mod workers;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

pub use files::SweepFiles;
pub use lease_recovery::LeaseRecovery;
pub use retention::Retention;
pub use staging::DiscardStaged;
pub use workers::{ForgetWorkers, PurgeSessions};

/// How often leases are recovered.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// How often the housekeeping repairs run.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(10);

/// A repair that runs on a blocking thread and says how many things it mended.
pub trait Housekeeping: Send + Sync + 'static {
    /// What it mends, for the log ("deleted 3 {what}").
    fn what(&self) -> &'static str;
    fn run_once(&self) -> anyhow::Result<usize>;
}

/// Runs every repair on its interval.
pub struct Maintenance {
    recovery: Arc<LeaseRecovery>,
    housekeeping: Arc<Vec<Box<dyn Housekeeping>>>,
    busy: bool,
}

impl Maintenance {
    pub fn new(recovery: LeaseRecovery, housekeeping: Vec<Box<dyn Housekeeping>>) -> Self {
        Self {
            recovery: Arc::new(recovery),
            housekeeping: Arc::new(housekeeping),
            busy: false,
        }
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        self.busy = true;
        let recovery = self.recovery.clone();
        async move {
            if let Err(e) = recovery.run_once().await {
                log::warn!("lease recovery failed: {e:#}");
            }
        }
        .into_actor(self)
        .map(|(), act, _| act.busy = false)
        .spawn(ctx);
    }
}

impl Actor for Maintenance {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.sweep(ctx);
        ctx.run_interval(SWEEP_INTERVAL, |act, ctx| act.sweep(ctx));
        ctx.run_interval(HOUSEKEEPING_INTERVAL, |act, _ctx| {
            let housekeeping = act.housekeeping.clone();
            actix_web::rt::task::spawn_blocking(move || {
                for repair in housekeeping.iter() {
                    match repair.run_once() {
                        Ok(0) => {}
                        Ok(n) => log::info!("maintenance: {n} {}", repair.what()),
                        Err(e) => log::warn!("maintenance: {} failed: {e:#}", repair.what()),
                    }
                }
            });
        });
    }
}
