//! The Sweeper actor: the periodic repairs that make the guarantees hold when something
//! died half-way.
//!
//! - running jobs whose lease expired (their process died) go back to the queue;
//! - queued jobs that are due but unpublished (the publish after the commit failed, a
//!   retry's backoff ran out, the broker lost its queue) are published;
//! - finished exports past their time to live are deleted.
//!
//! Every process runs one; the updates are conditional, so two sweeping at once is fine.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::prelude::*;

use crate::broker::Broker;
use crate::db::Pool;
use crate::domain::job::JobId;
use crate::events::Events;
use crate::models::job;

pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
const EXPIRY_INTERVAL: Duration = Duration::from_secs(60);
/// A job younger than this is still being published by the handler that accepted it.
const PUBLISH_GRACE: Duration = Duration::from_secs(2);
const PUBLISH_BATCH: i64 = 500;

pub struct Sweeper {
    pool: Pool,
    broker: Arc<dyn Broker>,
    events: Events,
    export_dir: PathBuf,
    export_ttl: Duration,
    busy: bool,
}

impl Sweeper {
    pub fn new(
        pool: Pool,
        broker: Arc<dyn Broker>,
        events: Events,
        export_dir: PathBuf,
        export_ttl: Duration,
    ) -> Self {
        Self {
            pool,
            broker,
            events,
            export_dir,
            export_ttl,
            busy: false,
        }
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        self.busy = true;
        let pool = self.pool.clone();
        let broker = self.broker.clone();
        let events = self.events.clone();
        async move {
            if let Err(e) = sweep_once(pool, broker, events).await {
                log::warn!("sweep failed: {e:#}");
            }
        }
        .into_actor(self)
        .map(|_, act, _| act.busy = false)
        .spawn(ctx);
    }
}

/// One pass: recover expired leases, then publish what is due and unpublished.
pub async fn sweep_once(pool: Pool, broker: Arc<dyn Broker>, events: Events) -> anyhow::Result<()> {
    let db = pool.clone();
    let (recovered, due) = actix_web::web::block(move || -> anyhow::Result<_> {
        let mut conn = db.get()?;
        let recovered = job::recover_expired(&mut conn)?;
        // Read after the recovery, so the jobs just requeued are published in this pass.
        let now = job::now();
        let settled = now - chrono::Duration::from_std(PUBLISH_GRACE).expect("small");
        let due = job::due_unpublished(&mut conn, now, settled, PUBLISH_BATCH)?;
        Ok((recovered, due))
    })
    .await??;
    for job in &recovered {
        log::warn!(
            "job {} lost its worker (lease expired); now {}",
            job.id,
            job.status
        );
        events.status(job);
    }
    let mut published = Vec::with_capacity(due.len());
    for (id, attempts) in due {
        let Ok(job_id) = id.parse::<JobId>() else {
            continue;
        };
        broker.publish(&job_id).await.map_err(anyhow::Error::from)?;
        published.push((id, attempts));
    }
    if !published.is_empty() {
        log::info!("reconciler published {} job(s)", published.len());
        actix_web::web::block(move || -> anyhow::Result<()> {
            let mut conn = pool.get()?;
            for (id, attempts) in published {
                job::mark_published(&mut conn, &id, attempts)?;
            }
            Ok(())
        })
        .await??;
    }
    Ok(())
}

/// Deletes finished exports older than the time to live. Temporary files are left to
/// the job that owns them.
fn expire_files(dir: &std::path::Path, ttl: Duration) -> std::io::Result<usize> {
    let mut removed = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        if meta.is_file() && age > ttl && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

impl Actor for Sweeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.sweep(ctx);
        ctx.run_interval(SWEEP_INTERVAL, |act, ctx| act.sweep(ctx));
        ctx.run_interval(EXPIRY_INTERVAL, |act, _ctx| {
            let (dir, ttl) = (act.export_dir.clone(), act.export_ttl);
            actix_web::rt::task::spawn_blocking(move || match expire_files(&dir, ttl) {
                Ok(0) => {}
                Ok(n) => log::info!("deleted {n} expired export file(s)"),
                Err(e) => log::warn!("could not expire exports in {}: {e}", dir.display()),
            });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_finished_exports_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.csv");
        let hidden = dir.path().join(".running.csv.part");
        let fresh = dir.path().join("fresh.csv");
        for p in [&old, &hidden, &fresh] {
            std::fs::write(p, "x").unwrap();
        }
        let past = SystemTime::now() - Duration::from_secs(3600);
        for p in [&old, &hidden] {
            std::fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(past)
                .unwrap();
        }
        assert_eq!(
            expire_files(dir.path(), Duration::from_secs(60)).unwrap(),
            1
        );
        assert!(!old.exists());
        assert!(hidden.exists() && fresh.exists());
    }
}
