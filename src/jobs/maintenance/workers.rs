//! Forgetting worker processes not seen for an hour: they died without a graceful
//! shutdown, and the workers view should not list them for ever.

use super::Housekeeping;
use crate::db::Pool;
use crate::models::worker;

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
