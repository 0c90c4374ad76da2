//! `roster job follow ID` and `roster job cancel ID`: come back to a job started
//! elsewhere, or left running by Ctrl-C on `export --wait` / `import --wait`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::config::Settings;
use crate::db;
use crate::domain::job::JobId;
use crate::models::job::CancelOutcome;

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

pub use super::cancel::{cancel, describe};

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
