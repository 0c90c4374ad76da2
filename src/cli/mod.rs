//! The `roster` command line: one module per subcommand, each with its clap options and
//! a `run`.

pub mod export;
pub mod import;
pub mod schedule;
pub mod seed;
pub mod serve;
pub mod user;

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
    /// Import students from a CSV or JSON Lines file, and with --wait follow it.
    Import(import::Opts),
    /// Periodic jobs: add, list and remove schedules.
    Schedule(schedule::Opts),
    /// Who may sign in: add, list and remove users.
    User(user::UserOpts),
    /// API tokens for scripts.
    Token(user::TokenOpts),
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

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::db::{self, Pool};
use crate::domain::job::{JobId, JobStatus};
use crate::events::Events;
use crate::jobs::accept::{Accepted, Acceptor, JobRequest};
use crate::models::job;

/// Follows job `id` with a progress bar (counting `unit`) until it ends; exit status 0
/// if it succeeded, else 1.
pub fn follow(pool: &Pool, id: JobId, unit: &str) -> anyhow::Result<i32> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} [{{elapsed_precise}}] {{bar:40}} {{pos}}/{{len}} {unit} ({{per_sec}}, {{eta}} left) {{msg}}"
        ))
        .expect("valid template"),
    );
    loop {
        let Some(current) = job::find(&mut *pool.get()?, &id)? else {
            anyhow::bail!("job {id} disappeared");
        };
        bar.set_length(current.progress.total.max(0) as u64);
        bar.set_position(current.progress.done.max(0) as u64);
        bar.set_message(current.status.as_str());
        match current.status {
            JobStatus::Succeeded => {
                bar.finish_with_message("succeeded");
                println!("{}", current.result.unwrap_or_default());
                return Ok(0);
            }
            JobStatus::Failed | JobStatus::Cancelled => {
                bar.abandon_with_message(current.status.as_str());
                eprintln!(
                    "job {id} {}: {}",
                    current.status,
                    current.error.unwrap_or_default()
                );
                if let Some(result) = current.result {
                    println!("{result}");
                }
                return Ok(1);
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Accepts a job from the command line as the HTTP API would: same checks, same commit,
/// same broker. Returns the pool, for following the job.
pub fn submit(settings: &Settings, request: JobRequest) -> anyhow::Result<(Pool, Accepted)> {
    // One connection: the CLI does one thing at a time, and a pool still opening a second
    // connection in the background when the process exits can crash it inside libpq.
    let pool = db::connect(&settings.database_url, 1)?;
    db::migrate(&pool)?;
    let accepted = actix_web::rt::System::new().block_on(async {
        let (broker, link) = crate::broker::connect(settings, &pool, "roster-cli").await?;
        let jobs = Acceptor::new(
            pool.clone(),
            broker,
            Events::start(link),
            crate::jobs::standard_kinds(settings),
            settings.max_attempts,
        )
        .with_limits(crate::jobs::accept::AcceptLimits::from_settings(settings));
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
        Some(Command::Import(opts)) => import::run(cli.settings, opts),
        Some(Command::Schedule(opts)) => schedule::run(cli.settings, opts),
        Some(Command::User(opts)) => user::run_user(cli.settings, opts),
        Some(Command::Token(opts)) => user::run_token(cli.settings, opts),
    };
    match result {
        Ok(code) => code,
        // A setting that makes starting unsafe is a configuration error: exit status 2.
        Err(e) if e.downcast_ref::<crate::access::Refused>().is_some() => {
            eprintln!("roster: {e:#}");
            2
        }
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
