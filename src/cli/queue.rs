//! `roster queue list|pause|resume`: the queues, and pausing one across every process that
//! serves it (jobs are still accepted; none starts until it is resumed).

use clap::{Args, Subcommand};

use crate::config::Settings;
use crate::db;
use crate::domain::queue::{Dispatch, Priority, QueueName};
use crate::models::job;

#[derive(Debug, Args)]
pub struct Opts {
    #[command(subcommand)]
    pub command: QueueCommand,
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Each queue: jobs due, delayed and running, whether it is paused, the oldest wait.
    List,
    /// Start no more jobs of the queue, in every process (running ones finish).
    Pause {
        /// The queue's name.
        #[arg(value_parser = |s: &str| s.parse::<QueueName>())]
        name: QueueName,
    },
    /// Start the queue's jobs again.
    Resume {
        /// The queue's name.
        #[arg(value_parser = |s: &str| s.parse::<QueueName>())]
        name: QueueName,
    },
}

pub fn run(settings: Settings, opts: Opts) -> anyhow::Result<i32> {
    let pool = db::connect(&settings.database_url, 1)?;
    db::migrate(&pool)?;
    let mut conn = pool.get()?;
    match opts.command {
        QueueCommand::List => {
            let queues = job::queues(&mut conn, &[])?;
            if queues.is_empty() {
                eprintln!("no queue has jobs or is paused");
                return Ok(0);
            }
            println!(
                "{:<24} {:>8} {:>8} {:>8}  {:<7} {:>12}",
                "QUEUE", "DUE", "DELAYED", "RUNNING", "STATE", "OLDEST WAIT"
            );
            for q in queues {
                println!(
                    "{:<24} {:>8} {:>8} {:>8}  {:<7} {:>11.1}s",
                    q.name,
                    q.due,
                    q.delayed,
                    q.running,
                    if q.paused { "paused" } else { "active" },
                    q.oldest_wait_secs
                );
            }
        }
        // The command line acts with the database's own rights, as an admin.
        QueueCommand::Pause { name } => match job::pause(&mut conn, &name, None)? {
            true => println!("queue {name} paused: jobs are accepted and none starts"),
            false => println!("queue {name} was paused already"),
        },
        QueueCommand::Resume { name } => match job::resume(&mut conn, &name)? {
            true => println!("queue {name} resumed"),
            false => println!("queue {name} was not paused"),
        },
    }
    Ok(0)
}

/// When a job from the command line runs (`export`, `import`); where is the `--queue`
/// setting (`ROSTER_QUEUE`), as for any job accepted by a process.
#[derive(Debug, Clone, Args)]
pub struct DispatchOpts {
    /// 0 runs first, 9 last.
    #[arg(long, default_value = "5", value_parser = parse_priority)]
    pub priority: Priority,
    /// Not before this many seconds from now (at most 30 days).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(0..=2_592_000))]
    pub run_in: Option<u64>,
}

pub fn parse_priority(raw: &str) -> Result<Priority, String> {
    raw.parse::<i64>()
        .map_err(|_| "must be an integer from 0 to 9".to_owned())
        .and_then(Priority::new)
}

impl DispatchOpts {
    pub fn dispatch(&self) -> Dispatch {
        Dispatch {
            queue: None,
            priority: self.priority,
            run_at: self
                .run_in
                .map(|s| chrono::Utc::now() + chrono::Duration::seconds(s as i64)),
        }
    }
}
