//! `roster export`: enqueue an export from the command line; with `--wait` follow it
//! with a progress bar until it ends (exit status 1 unless it succeeded), and with
//! `--output FILE` copy the file there.

use std::path::PathBuf;

use clap::Args;

use crate::config::Settings;
use crate::domain::job::{FileFormat, JobKind};
use crate::domain::student::Age;
use crate::jobs::accept::{Accepted, JobRequest};
use crate::kinds::export::ExportParams;

#[derive(Debug, Args)]
pub struct Opts {
    /// Only students this old or older.
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub min_age: Option<Age>,
    /// Only students this old or younger.
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub max_age: Option<Age>,
    /// The file's format: `csv` or `jsonl` (JSON Lines).
    #[arg(long, default_value = "csv", value_parser = |s: &str| s.parse::<FileFormat>())]
    pub format: FileFormat,
    /// Follow the job until it ends, with a progress bar.
    #[arg(long)]
    pub wait: bool,
    /// Once it succeeds, copy the file to FILE (replacing it); implies --wait.
    #[arg(long, value_name = "FILE", value_parser = super::follow::output_file)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub dispatch: super::queue::DispatchOpts,
}

fn parse_age(raw: &str) -> Result<Age, String> {
    raw.parse::<i64>()
        .map_err(|_| "must be an integer".to_owned())
        .and_then(Age::new)
}

pub fn run(settings: Settings, opts: Opts) -> anyhow::Result<i32> {
    let params = ExportParams::new(opts.format, opts.min_age, opts.max_age)
        .map_err(|e| anyhow::anyhow!(e))?;
    let params = match serde_json::to_value(params)? {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("export parameters are an object"),
    };
    let request = JobRequest {
        dedupe: true,
        dispatch: opts.dispatch.dispatch(),
        ..JobRequest::new(JobKind::StudentsByAge, params)
    };
    let (pool, accepted) = super::submit(&settings, request)?;
    let id = accepted.job().id;
    // The id alone on stdout, for scripts (`id=$(roster export)`); the words on stderr.
    println!("{id}");
    eprintln!("{}", accepted_line("export", &accepted));
    if !opts.wait && opts.output.is_none() {
        eprintln!("{}", super::follow::how_to_come_back(id));
        return Ok(0);
    }
    super::follow::follow(&settings, &pool, id, opts.output.as_deref())
}

/// What accepting did: a new job, or one already there that this request repeats.
pub fn accepted_line(what: &str, accepted: &Accepted) -> String {
    match accepted {
        Accepted::New(job) => format!("{what} queued as job {}", job.id),
        Accepted::Existing(job) => format!(
            "an identical {what} is already {}: job {} (not queued twice)",
            job.status, job.id
        ),
    }
}
