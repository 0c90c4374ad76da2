//! `roster export`: enqueue an export from the command line, and with `--wait` follow it
//! with a progress bar until it ends (exit status 1 unless it succeeded).

use clap::Args;

use crate::config::Settings;
use crate::domain::job::{FileFormat, JobKind};
use crate::domain::student::Age;
use crate::jobs::accept::JobRequest;
use crate::jobs::export::ExportParams;

#[derive(Debug, Args)]
pub struct Opts {
    #[arg(long, value_parser = parse_age)]
    pub min_age: Option<Age>,
    #[arg(long, value_parser = parse_age)]
    pub max_age: Option<Age>,
    #[arg(long, default_value = "csv", value_parser = |s: &str| s.parse::<FileFormat>())]
    pub format: FileFormat,
    /// Follow the job until it ends.
    #[arg(long)]
    pub wait: bool,
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
        ..JobRequest::new(JobKind::StudentsByAge, params)
    };
    let (pool, accepted) = super::submit(&settings, request)?;
    let created = accepted.job().clone();
    println!("{}", created.id);
    if !opts.wait {
        return Ok(0);
    }
    super::follow(&pool, created.id, "rows")
}
