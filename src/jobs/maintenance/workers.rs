//! Forgetting what outlived its use: worker processes not seen for an hour (they died
//! without a graceful shutdown, and the workers view should not list them for ever), and
//! browser sessions that expired.

use super::Housekeeping;
use crate::db::Pool;
use crate::models::{session, worker};

pub struct ForgetWorkers {
    pool: Pool,
}

impl ForgetWorkers {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

impl Housekeeping for ForgetWorkers {
    fn what(&self) -> &'static str {
        "worker process(es) forgotten, not seen for an hour"
    }

    fn run_once(&self) -> anyhow::Result<usize> {
        Ok(worker::forget_stale(
            &mut *self.pool.get()?,
            worker::FORGET_AFTER,
        )?)
    }
}

pub struct PurgeSessions {
    pool: Pool,
}

impl PurgeSessions {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

impl Housekeeping for PurgeSessions {
    fn what(&self) -> &'static str {
        "expired session(s) deleted"
    }

    fn run_once(&self) -> anyhow::Result<usize> {
        Ok(session::delete_expired(&mut *self.pool.get()?)?)
    }
}
