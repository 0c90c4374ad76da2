//! The `roster` command line: one module per subcommand, each with its clap options and
//! a `run`; here the command tree, its `--help`, and how a command's failure is told.
//!
//! Exit statuses: 0 done; 1 a command that failed (a job that did not succeed, a
//! database error mid-way); 2 a usage error or a configuration that cannot start (a bad
//! setting, an unreachable database or broker, an unusable export directory); 130 Ctrl-C.

pub mod cancel;
pub mod export;
pub mod follow;
pub mod import;
pub mod job;
pub mod queue;
pub mod schedule;
pub mod seed;
pub mod serve;
pub mod user;

use std::error::Error as _;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::{one_line, Settings, StartupError};
use crate::db::{self, Pool};
use crate::error::FieldErrors;
use crate::events::Events;
use crate::jobs::accept::{AcceptError, Accepted, Acceptor, JobRequest};

#[derive(Debug, Parser)]
#[command(
    name = "roster",
    version,
    about = "A roster of students with background exports and live progress.",
    after_help = "Without a command, roster serves (`roster serve`). \
                  Each command's --help lists the settings it reads."
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
    /// Follow or cancel a job by its id.
    Job(job::Opts),
    /// Periodic jobs: add, list and remove schedules.
    Schedule(schedule::Opts),
    /// Who may sign in: add, list and remove users.
    User(user::UserOpts),
    /// API tokens for scripts.
    Token(user::TokenOpts),
    /// The queues: list them, pause and resume one.
    Queue(queue::Opts),
}

/// The settings (by field name) each command reads; its `--help` shows only those, under
/// their own heading. Every setting is still accepted by every command (they are global,
/// and read from the environment anyway): this only keeps each help to what matters.
const SETTINGS_READ_BY: &[(&str, &[&str])] = &[
    ("serve", &["*"]),
    (
        "worker",
        &[
            "database_url",
            "broker_url",
            "queue",
            "concurrency",
            "queues",
            "max_running_per_user",
            "kind_concurrency",
            "dead_after_secs",
            "export_dir",
            "max_attempts",
            "lease_secs",
            "redeliver_secs",
            "job_timeout_secs",
            "shutdown_grace_secs",
            "export_ttl_secs",
            "retry_backoff_ms",
            "retry_backoff_max_secs",
            "export_batch_rows",
            "import_batch_rows",
            "job_retention_days",
            "max_queued_jobs",
            "max_active_jobs",
            "min_free_disk_mb",
        ],
    ),
    ("migrate", &["database_url"]),
    ("seed", &["database_url"]),
    ("export", ACCEPTING),
    ("import", ACCEPTING),
    (
        "job",
        &["database_url", "broker_url", "queue", "export_dir"],
    ),
    ("schedule", &["database_url", "timezone"]),
    ("user", &["database_url"]),
    ("token", &["database_url"]),
    ("queue", &["database_url"]),
];

/// What a command that accepts a job reads (`export`, `import`).
const ACCEPTING: &[&str] = &[
    "database_url",
    "broker_url",
    "queue",
    "queues",
    "export_dir",
    "export_ttl_secs",
    "max_attempts",
    "max_queued_jobs",
    "max_active_jobs",
    "min_free_disk_mb",
    "max_import_bytes",
];

/// The command tree, with each command's help showing only the settings it reads.
///
/// The settings are global arguments; a subcommand that already has an argument of the
/// same id keeps its own instead of receiving the global one. So each subcommand gets its
/// own copy of every setting, hidden unless it reads it (and so do their subcommands, to
/// which these copies are passed on). The top level shows none: its help is the list of
/// commands.
pub fn command() -> clap::Command {
    let top = Cli::command();
    let settings: Vec<clap::Arg> = top
        .get_arguments()
        .filter(|a| a.is_global_set())
        .cloned()
        .collect();
    let mut top = top.mut_args(|a| if a.is_global_set() { a.hide(true) } else { a });
    for (name, read) in SETTINGS_READ_BY {
        let shown = |id: &str| read.contains(&"*") || read.contains(&id);
        top = top.mut_subcommand(*name, |sub| {
            settings.iter().fold(sub, |sub, arg| {
                // A setting hidden everywhere (for benchmarks) stays hidden.
                let hidden = arg.is_hide_set() || !shown(arg.get_id().as_str());
                sub.arg(arg.clone().hide(hidden))
            })
        });
    }
    top
}

/// Parses the command line. A bad setting stops here with one line naming the variable
/// (and flag) it came from; any other usage error prints clap's whole message (what is
/// missing, the "did you mean" hint, the usage); both exit with status 2.
pub fn parse() -> Cli {
    let parsed = command()
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches));
    match parsed {
        Ok(cli) => cli,
        Err(e) => match bad_setting(&e) {
            Some(line) => {
                eprintln!("roster: {line}");
                std::process::exit(2);
            }
            None => e.exit(),
        },
    }
}

/// A bad value of a setting, in one line naming its environment variable; `None` for any
/// other error (clap tells those best itself).
fn bad_setting(e: &clap::Error) -> Option<String> {
    if !matches!(
        e.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return None;
    }
    let string = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let arg = string(ContextKind::InvalidArg)?;
    let value = string(ContextKind::InvalidValue)?;
    let env = env_of(&arg)?;
    let reason = match e.source() {
        Some(source) => source.to_string(),
        None => first_line(e),
    };
    Some(format!(
        "invalid value {value:?} for {env} ({arg}): {reason}"
    ))
}

/// clap's message without its `error: ` prefix, usage and hints.
fn first_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    rendered
        .lines()
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_owned()
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

/// Field errors as one line: `params.min_age: must be …; kind: …`.
pub(crate) fn field_errors(fields: &FieldErrors) -> anyhow::Error {
    let each: Vec<String> = fields
        .iter()
        .map(|(field, message)| format!("{field}: {message}"))
        .collect();
    anyhow::anyhow!("{}", each.join("; "))
}

/// Accepts a job from the command line as the HTTP API would: same checks, same commit,
/// same broker. Returns the pool, for following the job.
pub fn submit(settings: &Settings, request: JobRequest) -> anyhow::Result<(Pool, Accepted)> {
    // One connection: the CLI does one thing at a time, and a pool still opening a second
    // connection in the background when the process exits can crash it inside libpq.
    let pool = db::connect(&settings.database_url, 1)?;
    db::migrate(&pool)?;
    let accepted = actix_web::rt::System::new().block_on(async {
        let (broker, channel) = crate::broker::connect(settings, &pool).await?;
        let link = crate::startup::event_link(channel, "roster-cli");
        let jobs = Acceptor::new(
            pool.clone(),
            broker,
            Events::start(link),
            crate::kinds::standard_kinds(settings),
            settings,
        );
        jobs.accept(request).await.map_err(|e| match e {
            AcceptError::Invalid(fields) => field_errors(&fields),
            other => other.into(),
        })
    })?;
    Ok((pool, accepted))
}

/// Runs the command line; returns the process's exit status.
pub fn run() -> i32 {
    let cli = parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(log_level(&cli)))
        .init();
    let result = match cli.command {
        None => serve::run(cli.settings, serve::Opts::default()),
        Some(Command::Serve(opts)) => serve::run(cli.settings, opts),
        Some(Command::Worker) => serve::run_worker(cli.settings),
        Some(Command::Migrate) => serve::migrate(cli.settings),
        Some(Command::Seed(opts)) => seed::run(cli.settings, opts),
        Some(Command::Export(opts)) => export::run(cli.settings, opts),
        Some(Command::Import(opts)) => import::run(cli.settings, opts),
        Some(Command::Job(opts)) => job::run(cli.settings, opts),
        Some(Command::Schedule(opts)) => schedule::run(cli.settings, opts),
        Some(Command::User(opts)) => user::run_user(cli.settings, opts),
        Some(Command::Token(opts)) => user::run_token(cli.settings, opts),
        Some(Command::Queue(opts)) => queue::run(cli.settings, opts),
    };
    result.unwrap_or_else(|e| report(&e))
}

/// The log level unless `RUST_LOG` says otherwise: the processes that run for long
/// (`serve`, `worker`) and `migrate` tell what they do; the other commands speak for
/// themselves, and log only warnings.
fn log_level(cli: &Cli) -> &'static str {
    match cli.command {
        None | Some(Command::Serve(_) | Command::Worker | Command::Migrate) => "info",
        Some(_) => "warn",
    }
}

/// Tells why a command failed, once and on one line, and gives its exit status. Not
/// through the log as well: the same line twice reads as two failures.
fn report(e: &anyhow::Error) -> i32 {
    let (line, status) = match e.chain().find_map(|c| c.downcast_ref::<StartupError>()) {
        // The start-up error says it all (variable, address, cause); what wraps it adds
        // only noise.
        Some(startup) => (startup.to_string(), StartupError::EXIT_STATUS),
        // A setting that makes starting unsafe is a configuration error as well.
        None if e.downcast_ref::<crate::access::Refused>().is_some() => {
            (format!("{e:#}"), StartupError::EXIT_STATUS)
        }
        None => (format!("{e:#}"), 1),
    };
    eprintln!("roster: {}", one_line(&line));
    status
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
            .map_err(|e| bad_setting(&e).unwrap_or_else(|| first_line(&e)))
    }

    /// Parses `args` as [`parse`] does (for tests).
    pub fn try_parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches: ArgMatches = command().try_get_matches_from(args)?;
        Cli::from_arg_matches(&matches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn help_of(path: &[&str]) -> String {
        let mut cmd = command();
        cmd.build();
        let mut sub = &mut cmd;
        for name in path {
            sub = sub.find_subcommand_mut(name).expect("a subcommand");
        }
        sub.render_help().to_string()
    }

    #[test]
    fn every_setting_a_command_reads_exists() {
        let cmd = Cli::command();
        for (name, read) in SETTINGS_READ_BY {
            assert!(cmd.find_subcommand(name).is_some(), "{name}");
            for id in read.iter().filter(|id| **id != "*") {
                assert!(
                    cmd.get_arguments().any(|a| a.get_id() == *id),
                    "{name} reads {id}, which is no setting"
                );
            }
        }
        for sub in cmd.get_subcommands() {
            assert!(
                SETTINGS_READ_BY.iter().any(|(n, _)| *n == sub.get_name()),
                "{} says which settings it reads",
                sub.get_name()
            );
        }
    }

    #[test]
    fn help_shows_a_command_s_own_options_apart_from_the_settings_it_reads() {
        let migrate = help_of(&["migrate"]);
        assert!(
            migrate.contains(crate::config::SETTINGS_HEADING),
            "{migrate}"
        );
        assert!(migrate.contains("--database-url"), "{migrate}");
        assert!(!migrate.contains("--concurrency"), "{migrate}");
        assert!(!migrate.contains("--allowed-hosts"), "{migrate}");

        let serve = help_of(&["serve"]);
        assert!(serve.contains("--bind") && serve.contains("--concurrency"));
        let add = help_of(&["schedule", "add"]);
        assert!(
            add.contains("--timezone") && !add.contains("--concurrency"),
            "{add}"
        );
        let top = help_of(&[]);
        assert!(!top.contains("--concurrency"), "{top}");
    }

    #[test]
    fn every_option_has_a_description() {
        fn walk(cmd: &clap::Command, path: &str) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(
                    arg.get_help().is_some(),
                    "{path} {id} has no description in --help"
                );
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        walk(&command(), "roster");
    }

    #[test]
    fn settings_are_read_after_the_command_and_before_it() {
        let cli = Cli::try_parse_args(["roster", "migrate", "--concurrency", "4"]).unwrap();
        assert_eq!(cli.settings.concurrency, 4);
        let cli = Cli::try_parse_args(["roster", "--concurrency", "5", "worker"]).unwrap();
        assert_eq!(cli.settings.concurrency, 5);
        let cli = Cli::try_parse_args(["roster", "schedule", "list", "--timezone", "Europe/Paris"])
            .unwrap();
        assert_eq!(cli.settings.timezone.to_string(), "Europe/Paris");
    }

    #[test]
    fn a_bad_setting_is_one_line_naming_its_variable_and_other_errors_are_clap_s() {
        let e = Cli::try_parse_args(["roster", "serve", "--concurrency", "lots"]).unwrap_err();
        let line = bad_setting(&e).expect("a setting");
        assert!(line.contains("ROSTER_CONCURRENCY"), "{line}");
        let e = Cli::try_parse_args(["roster", "export", "--min-age", "x"]).unwrap_err();
        assert_eq!(bad_setting(&e), None, "an option of the command's own");
        let e = Cli::try_parse_args(["roster", "seed"]).unwrap_err();
        assert_eq!(bad_setting(&e), None);
    }
}
