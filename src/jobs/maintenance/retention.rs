//! Retention: ended jobs older than `ROSTER_JOB_RETENTION_DAYS` are deleted, with the files
//! their results name (the file sweep removes any other file of theirs as an orphan).

use std::time::Duration;

use super::Housekeeping;
use crate::db::Pool;
use crate::jobs::store::FileStore;
use crate::models::job;

/// Jobs deleted per statement.
const BATCH: i64 = 500;

pub struct Retention {
    pool: Pool,
    store: FileStore,
    retention: Duration,
}

impl Retention {
    pub fn new(pool: Pool, store: FileStore, retention: Duration) -> Self {
        Self {
            pool,
            store,
            retention,
        }
    }
}

impl Housekeeping for Retention {
    fn what(&self) -> &'static str {
        "job(s) deleted past their retention"
    }

    fn run_once(&self) -> anyhow::Result<usize> {
        let mut conn = self.pool.get()?;
        let mut pruned = 0;
        loop {
            let jobs = job::prune_ended(&mut conn, self.retention, BATCH)?;
            for job in &jobs {
                self.store.remove_job_files(job);
            }
            pruned += jobs.len();
            if (jobs.len() as i64) < BATCH {
                return Ok(pruned);
            }
        }
    }
}
