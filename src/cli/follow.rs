//! Following a job from the terminal (`export --wait`, `import --wait`, `job follow`):
//! a waiting state while it is queued, with a plain word when no worker takes it; a
//! progress bar while it runs; a summary of what it made at the end (rows, size, where
//! the file is, its download URL). Ctrl-C offers to cancel the job, or says how to come
//! back to it; a second Ctrl-C ends the process at once.

use std::fmt::Write as _;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use indicatif::{HumanBytes, HumanCount, ProgressBar, ProgressState, ProgressStyle};
use serde::Deserialize;

use crate::config::Settings;
use crate::db::{DbConnection, Pool};
use crate::domain::job::{JobId, JobKind, JobStatus};
use crate::jobs::store::{FileStore, ResultFile};
use crate::kinds::export::ExportResult;
use crate::kinds::import::ImportResult;
use crate::models::job::{self, Job};
use crate::models::{clock, worker};

/// How long a bar runs before it shows a rate.
const RATE_AFTER: Duration = Duration::from_secs(1);
/// How often the job is read again.
const POLL: Duration = Duration::from_millis(200);
/// How long a due job may stay queued before the user is told why it waits.
pub const NO_WORKER_AFTER: Duration = Duration::from_secs(3);
/// What the user is told when no worker is live to take it.
pub const NO_WORKER_HINT: &str = "no worker has taken this job yet; is one running? \
     (`roster worker`, or `roster serve` without --no-workers)";

/// Follows job `id` until it ends, then prints what it made (and with `output`, copies
/// its file there). Exit status 0 if it succeeded, 1 if it failed or was cancelled,
/// 130 when Ctrl-C left it running or cancelled it.
pub fn follow(
    settings: &Settings,
    pool: &Pool,
    id: JobId,
    output: Option<&Path>,
) -> anyhow::Result<i32> {
    use signal_hook::consts::SIGINT;
    let interrupted = crate::startup::second_signal_exits(&[(SIGINT, 130)]);
    let mut screen = Screen::new(id);
    loop {
        if interrupted.load(Ordering::SeqCst) {
            screen.leave();
            return on_interrupt(settings, pool, id);
        }
        let (job, waiting) = read(pool, &id)?;
        screen.show(&job, waiting);
        if job.status.is_terminal() {
            screen.leave();
            return ended(settings, &job, output);
        }
        std::thread::sleep(POLL);
    }
}

/// Why a queued job has not started yet, as far as the user should be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// Not queued, or not for long: nothing to say.
    Briefly,
    /// Due for [`NO_WORKER_AFTER`], and no worker that could take it is live.
    NoWorker,
    /// Due for [`NO_WORKER_AFTER`] while the `workers` live workers are all busy.
    Busy { workers: usize },
}

/// The job, and why it waits if it is queued.
fn read(pool: &Pool, id: &JobId) -> anyhow::Result<(Job, Waiting)> {
    let mut conn = pool.get()?;
    let Some(job) = job::find(&mut conn, id)? else {
        anyhow::bail!("no job {id} (never made, or deleted since)");
    };
    let waiting = match queued_for(&mut conn, &job)? {
        Some(waited) if waited >= NO_WORKER_AFTER => match live_workers_for(&job, &mut conn)? {
            0 => Waiting::NoWorker,
            workers => Waiting::Busy { workers },
        },
        _ => Waiting::Briefly,
    };
    Ok((job, waiting))
}

/// How long a queued job has been due, on the database's clock (as every due time is).
fn queued_for(conn: &mut DbConnection, job: &Job) -> diesel::QueryResult<Option<Duration>> {
    if job.status != JobStatus::Queued {
        return Ok(None);
    }
    let now = clock::read(conn)?;
    Ok((now - job.run_after).to_std().ok())
}

/// How many live worker processes (a heartbeat within [`worker::LIVE_AFTER`]) could take
/// `job`: those that serve its queue.
fn live_workers_for(job: &Job, conn: &mut DbConnection) -> diesel::QueryResult<usize> {
    let live = worker::live(conn)?;
    let could_take = |w: &&worker::WorkerView| w.process.serves(job.queue.as_str());
    Ok(live.iter().filter(could_take).count())
}

/// How a job is shown, by where it is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Queued (or waiting for its retry): no bar, since there is no progress to show.
    Waiting,
    /// Running, before it knows how much there is to do.
    Starting,
    /// Running with a known total: the bar.
    Running,
    Ended,
}

fn phase(job: &Job) -> Phase {
    match job.status {
        JobStatus::Queued => Phase::Waiting,
        JobStatus::Running if job.progress.total > 0 => Phase::Running,
        JobStatus::Running => Phase::Starting,
        _ => Phase::Ended,
    }
}

/// A rate of rows, for people: `565,966/s`.
fn rate(per_sec: f64) -> String {
    format!("{}/s", HumanCount(per_sec.max(0.0).round() as u64))
}

/// The progress bar on stderr; when stderr is not a terminal (CI, a pipe), a line per
/// change of phase instead.
struct Screen {
    id: JobId,
    bar: ProgressBar,
    phase: Option<Phase>,
    /// The last reason for waiting the user was given.
    told: Option<Waiting>,
}

impl Screen {
    fn new(id: JobId) -> Self {
        let bar = ProgressBar::new_spinner();
        Self {
            id,
            bar,
            phase: None,
            told: None,
        }
    }

    fn show(&mut self, job: &Job, waiting: Waiting) {
        let now = phase(job);
        // Counts first, so that the bar is never drawn without its total (a full bar at
        // 0/0), and the last one drawn is the job's last.
        if job.progress.total > 0 {
            self.bar.set_length(job.progress.total as u64);
            self.bar.set_position(job.progress.done.max(0) as u64);
        }
        if self.phase != Some(now) {
            self.enter(now, job);
        }
        if now == Phase::Waiting {
            self.explain(waiting);
        }
    }

    fn enter(&mut self, phase: Phase, job: &Job) {
        self.phase = Some(phase);
        let id = self.id;
        let (style, message) = match phase {
            Phase::Waiting if job.attempts > 0 => (
                waiting_style(),
                format!("job {id}: queued for attempt {}", job.attempts + 1),
            ),
            Phase::Waiting => (waiting_style(), format!("job {id}: queued")),
            Phase::Starting => (waiting_style(), format!("job {id}: running, counting")),
            Phase::Running => (running_style(), format!("job {id}: running")),
            Phase::Ended => return,
        };
        if phase == Phase::Running {
            // The rate and the time left count from here, not from the wait.
            self.bar.reset_elapsed();
        }
        if self.bar.is_hidden() {
            eprintln!("{message}");
        }
        self.bar.set_message(message);
        self.bar.set_style(style);
        // The spinner turns by itself: a frozen one looks like a hung command.
        self.bar.enable_steady_tick(Duration::from_millis(120));
    }

    /// Says why a queued job waits: a line, once, when no worker is there to take it (the
    /// one thing the user can mend); otherwise the spinner's words (and a line off a
    /// terminal, where there is no spinner).
    fn explain(&mut self, waiting: Waiting) {
        let id = self.id;
        let words = match waiting {
            Waiting::Briefly => return,
            Waiting::NoWorker => format!("job {id}: queued; no worker has taken it yet"),
            Waiting::Busy { workers } => {
                format!("job {id}: queued; the {workers} live worker(s) are busy")
            }
        };
        if self.told != Some(waiting) {
            match waiting {
                Waiting::NoWorker => self.say(NO_WORKER_HINT),
                _ if self.bar.is_hidden() => eprintln!("{words}"),
                _ => {}
            }
            self.told = Some(waiting);
        }
        self.bar.set_message(words);
    }

    /// A line above the bar (or on its own when there is no bar).
    fn say(&self, line: &str) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    /// Leaves the bar as it stands, and the next line for what is printed next.
    fn leave(&self) {
        self.bar.abandon();
        if !self.bar.is_hidden() {
            eprintln!();
        }
    }
}

fn waiting_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("a valid template")
}

fn running_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} rows ({rate}, {eta} left)",
    )
    .expect("a valid template")
    .with_key(
        "rate",
        |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            // Progress comes in jumps: over the first instants one reads as millions a
            // second. The rate shows once it means something.
            let shown = if state.elapsed() < RATE_AFTER {
                "…/s".to_owned()
            } else {
                rate(state.per_sec())
            };
            let _ = w.write_str(&shown);
        },
    )
}

/// The job ended: what it made, or why it did not.
fn ended(settings: &Settings, job: &Job, output: Option<&Path>) -> anyhow::Result<i32> {
    let store = FileStore::new(settings.export_dir.clone(), settings.export_ttl());
    let lines = summary(job, &store);
    if job.status == JobStatus::Succeeded {
        for line in &lines {
            println!("{line}");
        }
        if let Some(output) = output {
            copy_output(&store, job, output)?;
            println!("copied to {}", output.display());
        }
        return Ok(0);
    }
    eprintln!(
        "job {} {}: {}",
        job.id,
        job.status,
        job.error.as_deref().unwrap_or("no error recorded")
    );
    for line in &lines {
        eprintln!("{line}");
    }
    Ok(1)
}

/// What a job made, for people: counts and sizes spelled out, where its file is on this
/// machine (when it is here: the workers may write to another host's disk) and the URL
/// to download it from.
pub fn summary(job: &Job, store: &FileStore) -> Vec<String> {
    let Some(result) = &job.result else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    match job.kind {
        JobKind::StudentsByAge => {
            if let Ok(r) = ExportResult::deserialize(result) {
                let mut line = format!(
                    "exported {} rows ({})",
                    HumanCount(r.rows),
                    HumanBytes(r.bytes)
                );
                if r.resumed_rows > 0 {
                    let _ = write!(line, ", {} resumed", HumanCount(r.resumed_rows));
                }
                lines.push(line);
            }
        }
        JobKind::StudentsImport => {
            if let Ok(r) = ImportResult::deserialize(result) {
                lines.push(format!(
                    "imported {} of {} rows; {} rejected",
                    HumanCount(r.inserted),
                    HumanCount(r.rows),
                    HumanCount(r.rejected)
                ));
            }
        }
        JobKind::Noop => {}
    }
    if lines.is_empty() {
        // A kind this CLI cannot describe: its result as it is.
        lines.push(result.to_string());
    }
    if let Some(file) = ResultFile::of(result) {
        let what = match job.kind {
            JobKind::StudentsImport => "rejects report",
            JobKind::StudentsByAge | JobKind::Noop => "file",
        };
        if let Some(path) = local_file(store, &file) {
            lines.push(format!("{what}: {}", path.display()));
        }
        lines.push(format!(
            "download: /api/jobs/{}/download (until {} UTC)",
            job.id,
            file.expires_at.format("%Y-%m-%d %H:%M")
        ));
    }
    lines
}

/// The file a result names, as an absolute path, if it is on this machine.
fn local_file(store: &FileStore, file: &ResultFile) -> Option<PathBuf> {
    let path = store.path_of(file)?;
    let path = std::path::absolute(&path).unwrap_or(path);
    path.is_file().then_some(path)
}

/// Copies the job's file to `output` (`--output`).
fn copy_output(store: &FileStore, job: &Job, output: &Path) -> anyhow::Result<()> {
    let file = job.result.as_ref().and_then(ResultFile::of);
    let Some(source) = file.as_ref().and_then(|f| local_file(store, f)) else {
        anyhow::bail!(
            "--output: the job's file is not in {} on this machine (ROSTER_EXPORT_DIR); \
             download it from /api/jobs/{}/download",
            store.dir().display(),
            job.id
        );
    };
    std::fs::copy(&source, output).map_err(|e| {
        anyhow::anyhow!(
            "--output: copying {} to {}: {e}",
            source.display(),
            output.display()
        )
    })?;
    Ok(())
}

/// Checks `--output FILE` before the job is submitted: its directory exists and it is
/// not a directory itself (a clap value parser).
pub fn output_file(raw: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(raw);
    if path.is_dir() {
        return Err("is a directory; give a file name".into());
    }
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) if !dir.is_dir() => Err(format!("{} is not a directory", dir.display())),
        _ => Ok(path),
    }
}

/// How to come back to job `id`: the commands, and the HTTP routes.
pub fn how_to_come_back(id: JobId) -> String {
    format!(
        "follow it: roster job follow {id}   (or GET /api/jobs/{id}/events)\n\
         cancel it: roster job cancel {id}   (or POST /api/jobs/{id}/cancel)"
    )
}

/// The first Ctrl-C: on a terminal, ask whether to cancel the job; otherwise (CI, no
/// stdin) leave it running and say how to come back to it. Either way exit status 130.
fn on_interrupt(settings: &Settings, pool: &Pool, id: JobId) -> anyhow::Result<i32> {
    let stdin = io::stdin();
    if stdin.is_terminal() && ask_to_cancel(id, &mut stdin.lock(), &mut io::stderr())? {
        let outcome = super::cancel::cancel(settings, pool, id)?;
        eprintln!("{}", super::cancel::describe(id, &outcome));
        return Ok(130);
    }
    let status = job::find(&mut *pool.get()?, &id)?.map(|j| j.status);
    let now = status.map_or("gone".to_owned(), |s| s.to_string());
    eprintln!(
        "job {id} keeps running in the background (it is {now}); it was not cancelled.\n{}",
        how_to_come_back(id)
    );
    Ok(130)
}

/// Asks on `out` whether to cancel job `id`; yes only when the answer says so.
fn ask_to_cancel(id: JobId, input: &mut impl BufRead, out: &mut impl Write) -> io::Result<bool> {
    write!(out, "\nCancel job {id}? [y/N] ")?;
    out.flush()?;
    let mut answer = String::new();
    input.read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_whole_and_grouped() {
        assert_eq!(rate(565_965.723_6), "565,966/s");
        assert_eq!(rate(0.4), "0/s");
        assert_eq!(rate(f64::NAN), "0/s");
    }

    #[test]
    fn only_yes_cancels() {
        let id = JobId::new();
        for (answer, yes) in [
            ("y\n", true),
            ("Yes\n", true),
            ("\n", false),
            ("n\n", false),
            ("", false),
        ] {
            let mut out = Vec::new();
            let got = ask_to_cancel(id, &mut answer.as_bytes(), &mut out).unwrap();
            assert_eq!(got, yes, "{answer:?}");
            assert!(String::from_utf8(out)
                .unwrap()
                .contains(&format!("Cancel job {id}? [y/N]")));
        }
    }

    #[test]
    fn an_output_file_needs_an_existing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("out.csv");
        assert_eq!(output_file(ok.to_str().unwrap()), Ok(ok));
        assert!(output_file(dir.path().to_str().unwrap()).is_err());
        let missing = dir.path().join("nowhere/out.csv");
        assert!(output_file(missing.to_str().unwrap()).is_err());
        assert!(output_file("out.csv").is_ok());
    }
}
