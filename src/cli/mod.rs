//! The `roster` command line: one module per subcommand, each with its clap options and
//! a `run`.

pub mod export;
pub mod schedule;
pub mod seed;
pub mod serve;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, Parser, Subcommand};

use crate::config::Settings;

#[derive(Debug, Parser)]
#[command(
    name = "roster",
    version,
    about = "A roster of students with background exports and live progress."
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// HTTP, consumer and workers in one process (the default).
    Serve(serve::Opts),
    /// Consumer and workers, no HTTP.
    Worker,
    /// Bring the database schema up to date.
    Migrate,
    /// Bulk-load generated students.
    Seed(seed::Opts),
    /// Enqueue an export, and with --wait follow it to its end.
    Export(export::Opts),
    /// Periodic jobs: add, list and remove schedules.
    Schedule(schedule::Opts),
}

/// Parses the command line; a bad value stops here with one line naming the variable
/// (and flag) it came from, and exit status 2.
pub fn parse() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            e.exit()
        }
        Err(e) => {
            eprintln!("roster: {}", one_line(&e));
            std::process::exit(2);
        }
    }
}

/// Says what was wrong in one line, naming the environment variable behind a flag.
fn one_line(e: &clap::Error) -> String {
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let value = match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let env = arg.as_deref().and_then(env_of);
    let rendered = e.render().to_string();
    let first = rendered
        .lines()
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_owned();
    match (env, value) {
        (Some(env), Some(value)) => {
            let reason = e
                .source()
                .map(|s| s.to_string())
                .unwrap_or_else(|| first.clone());
            format!(
                "invalid value {value:?} for {env} ({}): {reason}",
                arg.unwrap_or_default()
            )
        }
        _ => first,
    }
}

/// The environment variable of a flag as clap names it (`--bind <BIND>`).
fn env_of(arg: &str) -> Option<String> {
    let long = arg.split_whitespace().next()?.trim_start_matches("--");
    Cli::command()
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
        .map(|env| env.to_string_lossy().into_owned())
}

use std::error::Error as _;

use crate::db::{self, Pool};
use crate::events::Events;
use crate::jobs::accept::{Accepted, Acceptor, JobRequest};

/// Accepts a job from the command line as the HTTP API would: same checks, same commit,
/// same broker. Returns the pool, for following the job.
pub fn submit(settings: &Settings, request: JobRequest) -> anyhow::Result<(Pool, Accepted)> {
    let pool = db::connect(&settings.database_url, 2)?;
    db::migrate(&pool)?;
    let accepted = actix_web::rt::System::new().block_on(async {
        let (broker, link) = crate::broker::connect(settings, &pool, "roster-cli").await?;
        let jobs = Acceptor::new(
            pool.clone(),
            broker,
            Events::start(link),
            crate::jobs::standard_kinds(settings),
            settings.max_attempts,
        );
        jobs.accept(request).await.map_err(|e| match e {
            crate::jobs::accept::AcceptError::Invalid(fields) => anyhow::anyhow!(
                "{}",
                fields
                    .iter()
                    .map(|(field, message)| format!("{field} {message}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            other => other.into(),
        })
    })?;
    Ok((pool, accepted))
}

/// Runs the command line; returns the process's exit status.
pub fn run() -> i32 {
    let cli = parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let result = match cli.command {
        None => serve::run(cli.settings, serve::Opts::default()),
        Some(Command::Serve(opts)) => serve::run(cli.settings, opts),
        Some(Command::Worker) => serve::run_worker(cli.settings),
        Some(Command::Migrate) => serve::migrate(cli.settings),
        Some(Command::Seed(opts)) => seed::run(cli.settings, opts),
        Some(Command::Export(opts)) => export::run(cli.settings, opts),
        Some(Command::Schedule(opts)) => schedule::run(cli.settings, opts),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            log::error!("{e:#}");
            eprintln!("roster: {e:#}");
            1
        }
    }
}

impl Cli {
    /// Whether roster would accept `value` for the environment variable `var` (used to
    /// check deployment files).
    pub fn try_parse_from_env_value(var: &str, value: &str) -> Result<(), String> {
        let command = Cli::command();
        let arg = command
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == var));
        let Some(arg) = arg else {
            return if var == "RUST_LOG" {
                Ok(())
            } else {
                Err(format!("{var} is not a roster setting"))
            };
        };
        let flag = format!("--{}", arg.get_long().unwrap_or_default());
        Cli::try_parse_from(["roster", flag.as_str(), value, "migrate"])
            .map(|_| ())
            .map_err(|e| one_line(&e))
    }
}
