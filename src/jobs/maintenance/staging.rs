//! Discarding the rows staged by all-or-nothing imports that no longer run: an attempt
//! that died (or was cancelled) between staging its rows and cleaning up after itself.

use super::Housekeeping;
use crate::db::Pool;
use crate::models::import_rows;

pub struct DiscardStaged {
    pool: Pool,
}

impl DiscardStaged {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

impl Housekeeping for DiscardStaged {
    fn what(&self) -> &'static str {
        "row(s) discarded, staged by imports that ended"
    }

    fn run_once(&self) -> anyhow::Result<usize> {
        Ok(import_rows::discard_orphans(&mut *self.pool.get()?)?)
    }
}
