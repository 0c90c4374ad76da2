//! `roster job follow ID` and `roster job cancel ID`: come back to a job started
//! elsewhere, or left running by Ctrl-C on `export --wait` / `import --wait`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::config::Settings;
use crate::db::{self, Pool};
use crate::domain::job::JobId;
use crate::events::JobEvent;
use crate::models::job::{self, CancelOutcome, Job};

#[derive(Debug, Args)]
pub struct Opts {
    #[command(subcommand)]
    pub command: JobCommand,
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Follow a job to its end with a progress bar (exit status 0 if it succeeded).
    Follow {
        /// The job's id.
        #[arg(value_parser = parse_id)]
        id: JobId,
        /// Once it succeeds, copy its file to FILE (replacing it).
        #[arg(long, value_name = "FILE", value_parser = super::follow::output_file)]
        output: Option<PathBuf>,
    },
    /// Cancel a job: a queued one at once, a running one within about a second.
    Cancel {
        /// The job's id.
        #[arg(value_parser = parse_id)]
        id: JobId,
    },
}

fn parse_id(raw: &str) -> Result<JobId, String> {
    raw.parse()
        .map_err(|_| "not a job id (a UUID, as `roster export` prints)".to_owned())
}

pub fn run(settings: Settings, opts: Opts) -> anyhow::Result<i32> {
    // One connection, as every short-lived command (see `cli::submit`).
    let pool = db::connect(&settings.database_url, 1)?;
    db::migrate(&pool)?;
    match opts.command {
        JobCommand::Follow { id, output } => {
            super::follow::follow(&settings, &pool, id, output.as_deref())
        }
        JobCommand::Cancel { id } => {
            let outcome = cancel(&settings, &pool, id)?;
            let line = describe(id, &outcome);
            match outcome {
                CancelOutcome::Cancelled(_) | CancelOutcome::Requested(_) => {
                    println!("{line}");
                    Ok(0)
                }
                CancelOutcome::AlreadyFinished(_) | CancelOutcome::NotFound => {
                    eprintln!("roster: {line}");
                    Ok(1)
                }
            }
        }
    }
}

/// Cancels job `id` through the model function `POST /api/jobs/{id}/cancel` uses, and
/// tells the other processes' subscribers: a queued job cancelled here has no worker to
/// announce its ending.
pub fn cancel(settings: &Settings, pool: &Pool, id: JobId) -> anyhow::Result<CancelOutcome> {
    // No owner filter: the command line acts with the database's own rights, as an admin.
    let outcome = job::request_cancel(&mut *pool.get()?, &id, None)?;
    if let CancelOutcome::Cancelled(changed) | CancelOutcome::Requested(changed) = &outcome {
        if let Err(e) = announce(settings, pool, changed) {
            log::warn!("job {id}: the cancel is recorded, but other processes were not told at once ({e:#})");
        }
    }
    Ok(outcome)
}

/// Publishes the job's new status to the other processes (with Redis; the in-process
/// broker has no other process to tell).
fn announce(settings: &Settings, pool: &Pool, changed: &Job) -> anyhow::Result<()> {
    if settings.broker_url.is_none() {
        return Ok(());
    }
    actix_web::rt::System::new().block_on(async {
        let (_, link) = crate::broker::connect(settings, pool, "roster-cli").await?;
        if let Some(link) = link {
            link.publish_now(JobEvent::status(changed)).await?;
        }
        Ok(())
    })
}

/// What a cancel did, in a sentence.
pub fn describe(id: JobId, outcome: &CancelOutcome) -> String {
    match outcome {
        CancelOutcome::Cancelled(_) => format!("job {id} cancelled (it had not started)"),
        CancelOutcome::Requested(_) => {
            format!("cancel requested: job {id} is running and stops within about a second")
        }
        CancelOutcome::AlreadyFinished(job) => {
            format!(
                "job {id} has already ended ({}); nothing to cancel",
                job.status
            )
        }
        CancelOutcome::NotFound => format!("no job {id}"),
    }
}
