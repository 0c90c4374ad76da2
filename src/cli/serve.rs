//! `roster serve`, `roster worker` and `roster migrate`.

use clap::Args;

use crate::config::Settings;
use crate::startup::{wait_for_signal, Application, Hooks, Services};

#[derive(Debug, Default, Args)]
pub struct Opts {
    /// Serve HTTP only; leave the jobs to `roster worker` processes.
    #[arg(long)]
    pub no_workers: bool,
}

pub fn run(settings: Settings, opts: Opts) -> anyhow::Result<i32> {
    let warning = opts
        .no_workers
        .then(|| no_workers_warning(&settings))
        .flatten();
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings, Hooks::default(), !opts.no_workers).await?;
        // Once started: a process that could not start has nothing to warn about.
        if let Some(warning) = warning {
            log::warn!("{warning}");
        }
        app.run_until_signalled().await?;
        Ok(0)
    })
}

pub fn run_worker(settings: Settings) -> anyhow::Result<i32> {
    actix_web::rt::System::new().block_on(async move {
        let services = Services::start(settings, Hooks::default(), true).await?;
        log::info!("worker {} ready", services.node);
        wait_for_signal().await;
        services.shutdown().await;
        Ok(0)
    })
}

pub fn migrate(settings: Settings) -> anyhow::Result<i32> {
    let pool = crate::db::connect(&settings.database_url, 1)?;
    let ran = crate::db::migrate(&pool)?;
    println!("{ran} migration(s) applied to {}", settings.database_url);
    Ok(0)
}

/// What `serve --no-workers` must say at start when its jobs can only wait.
///
/// With the in-process broker (`BROKER_URL` unset) the queue is the jobs table itself:
/// any `roster worker` on the same `DATABASE_URL` (and no `BROKER_URL`) polls the table
/// and takes the jobs, so this works and is not refused. But nothing else tells the user
/// that until such a worker runs, every job waits; and without Redis, events do not cross
/// processes, so this process's pages see a job's progress only when they re-read it.
pub fn no_workers_warning(settings: &Settings) -> Option<String> {
    if settings.broker_url.is_some() {
        return None;
    }
    Some(format!(
        "--no-workers with the in-process broker (BROKER_URL unset): this process runs no \
         jobs; they wait in the jobs table until a worker on the same database takes them. \
         Start one with `DATABASE_URL={} roster worker` (or run `roster serve` without \
         --no-workers). Live progress of jobs run by another process needs BROKER_URL (Redis).",
        settings.database_url
    ))
}
