//! `roster schedule add|list|remove`: periodic jobs from the command line, with the
//! checks the HTTP API makes (the kind checks the parameters; names are unique).
//!
//! The zone of `schedule add` is the shared `--timezone` setting (`ROSTER_TIMEZONE`),
//! so `roster schedule add nightly --cron '0 2 * * *' --timezone Europe/Paris` reads as
//! it should and one flag does not shadow the other.

use clap::{Args, Subcommand};
use serde_json::{Map, Value};

use crate::config::Settings;
use crate::db::{self, DbConnection};
use crate::domain::job::JobKind;
use crate::domain::queue::{Priority, QueueName};
use crate::domain::schedule::{CronExpr, ScheduleName};
use crate::jobs::schedule::{self as rules, JobTemplate, ScheduleError, ScheduleSpec};
use crate::models::schedule::{self, Schedule};

#[derive(Debug, Args)]
pub struct Opts {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Add a schedule (its zone: --timezone, default ROSTER_TIMEZONE).
    Add(AddOpts),
    /// List the schedules and when each fires next.
    List,
    /// Remove a schedule by name (the jobs it fired stay).
    Remove {
        /// The schedule's name.
        #[arg(value_parser = ScheduleName::parse)]
        name: ScheduleName,
    },
}

#[derive(Debug, Args)]
pub struct AddOpts {
    /// A name for it, unique.
    #[arg(value_parser = ScheduleName::parse)]
    pub name: ScheduleName,
    /// When it fires: a cron expression of 5 fields (minute hour day-of-month month
    /// day-of-week), or 6 with a leading seconds field.
    #[arg(long, value_name = "EXPR", value_parser = CronExpr::parse)]
    pub cron: CronExpr,
    /// The kind of job it starts.
    #[arg(long, default_value = "students_by_age", value_parser = |s: &str| s.parse::<JobKind>())]
    pub kind: JobKind,
    /// The job's parameters, a JSON object such as '{"min_age": 18, "format": "jsonl"}'.
    #[arg(long, value_name = "JSON", value_parser = parse_params)]
    pub params: Option<Map<String, Value>>,
    /// Add it switched off.
    #[arg(long)]
    pub disabled: bool,
    /// The queue its jobs go to [default: the firing process's first queue].
    #[arg(long = "to-queue", value_name = "NAME", value_parser = |s: &str| s.parse::<QueueName>())]
    pub to_queue: Option<QueueName>,
    /// Its jobs' priority: 0 runs first, 9 last.
    #[arg(long, default_value = "5", value_parser = super::queue::parse_priority)]
    pub priority: Priority,
}

fn parse_params(raw: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str(raw) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("must be a JSON object".into()),
        Err(e) => Err(format!("is not JSON: {e}")),
    }
}

pub fn run(settings: Settings, opts: Opts) -> anyhow::Result<i32> {
    // One connection: a pool allowed more refills itself in the background, and a
    // connection still being made when the process exits can crash it (libpq at exit).
    let pool = db::connect(&settings.database_url, 1)?;
    db::migrate(&pool)?;
    let mut conn = pool.get()?;
    match opts.command {
        Command::Add(add) => self::add(&mut conn, &settings, add),
        Command::List => {
            print!("{}", table(&schedule::list(&mut conn)?));
            Ok(0)
        }
        Command::Remove { name } => {
            if schedule::delete_by_name(&mut conn, &name)? {
                println!("removed schedule {name}");
                Ok(0)
            } else {
                anyhow::bail!("no schedule named {name}")
            }
        }
    }
}

fn add(conn: &mut DbConnection, settings: &Settings, add: AddOpts) -> anyhow::Result<i32> {
    let kinds = crate::kinds::standard_kinds(settings);
    let params = add.params.unwrap_or_default();
    let job = JobTemplate::check(&kinds, add.kind, &params).map_err(|f| super::field_errors(&f))?;
    let spec = ScheduleSpec {
        name: add.name,
        cron: add.cron,
        timezone: settings.timezone,
        job,
        enabled: !add.disabled,
        created_by: None,
        // The command line acts with the database's own rights, as an admin.
        limits: None,
        queue: add.to_queue,
        priority: add.priority,
    };
    let created = rules::create(conn, spec).map_err(|e| match e {
        ScheduleError::Invalid(fields) => super::field_errors(&fields),
        other => other.into(),
    })?;
    println!(
        "added schedule {} ({}): next fire {}",
        created.name,
        created.id,
        next_fire(&created)
    );
    Ok(0)
}

/// When `s` fires next: on its zone's clock, then in UTC.
fn next_fire(s: &Schedule) -> String {
    if !s.enabled {
        return "never (disabled)".into();
    }
    let utc = s.next_fire_at.and_utc();
    let local = utc.with_timezone(&s.timezone.tz());
    format!(
        "{} ({}Z)",
        local.format("%Y-%m-%d %H:%M:%S %Z"),
        utc.format("%Y-%m-%d %H:%M:%S")
    )
}

/// The schedules as an aligned table, one a line.
fn table(all: &[Schedule]) -> String {
    if all.is_empty() {
        return "no schedules\n".into();
    }
    let mut rows = vec![[
        "NAME".to_owned(),
        "CRON".into(),
        "TIMEZONE".into(),
        "KIND".into(),
        "NEXT FIRE".into(),
        "LAST FIRED".into(),
    ]];
    rows.extend(all.iter().map(|s| {
        [
            s.name.to_string(),
            s.cron.to_string(),
            s.timezone.to_string(),
            s.kind.to_string(),
            next_fire(s),
            s.last_fired_at
                .map(|t| format!("{}Z", t.format("%Y-%m-%d %H:%M:%S")))
                .unwrap_or_else(|| "-".into()),
        ]
    }));
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
