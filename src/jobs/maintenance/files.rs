//! The file sweep: expired results and files no attempt can own any more are removed from
//! the export directory; files that are not roster's are never touched (the rules are the
//! file store's own, [`FileStore::sweep`]).

use std::time::Duration;

use super::Housekeeping;
use crate::db::Pool;
use crate::jobs::store::FileStore;

/// Files younger than this are left alone by the file sweep, as a margin.
const MIN_AGE: Duration = Duration::from_secs(2);

pub struct SweepFiles {
    pool: Pool,
    store: FileStore,
}

impl SweepFiles {
    pub fn new(pool: Pool, store: FileStore) -> Self {
        Self { pool, store }
    }
}

impl Housekeeping for SweepFiles {
    fn what(&self) -> &'static str {
        "expired or orphaned file(s) removed"
    }

    fn run_once(&self) -> anyhow::Result<usize> {
        let mut conn = self.pool.get()?;
        let swept = self.store.sweep(&mut conn, MIN_AGE)?;
        Ok(swept.expired + swept.orphans)
    }
}
