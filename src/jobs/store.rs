//! The file store: the one place that knows jobs' files (exports, rejects reports,
//! uploads). It names them (each attempt writes its own temporary file, created
//! exclusively, and commits it under a final name of its own), says when a finished file
//! expires, finds the file a job's result names, and decides which files the file sweep may
//! delete: only roster's own, and only once no attempt can own them.
//!
//! Names: `.{job}.{attempt}.{tag}.{ext}.part` while an attempt writes, then
//! `{job}.{attempt}.{tag}.{ext}`; `tag` is unique to the attempt (its fencing token's).
//! An upload is `{job}.0.upload.{ext}`, named by its job's `upload` parameter.
//! A kind's checkpoint that resumes from a temporary file names it in its `file` field;
//! a result that has a file to download names it in its `file` field (see [`ResultFile`]).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

use serde::Deserialize;

use crate::db::DbConnection;
use crate::domain::job::{JobId, JobStatus};
use crate::models::job::{self, AttemptToken, Job};

/// The tag of an upload's name.
const UPLOAD_TAG: &str = "upload";
/// An upload whose job does not exist is kept this long: its request may still be
/// committing the job.
const UPLOAD_GRACE: Duration = Duration::from_secs(600);

/// The downloadable file a job's result names (any kind's result with these fields).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ResultFile {
    /// The file's name in the store.
    pub file: String,
    pub content_type: String,
    pub expires_at: DateTime<Utc>,
}

impl ResultFile {
    /// The file `result` names, if it names one.
    pub fn of(result: &serde_json::Value) -> Option<Self> {
        Self::deserialize(result).ok()
    }

    /// Whether the file has expired: the one rule for downloads and the file sweep.
    pub fn is_expired(&self) -> bool {
        self.expires_at <= Utc::now()
    }

    /// The extension of its name (`csv`, `jsonl`).
    pub fn extension(&self) -> &str {
        self.file.rsplit('.').next().unwrap_or("bin")
    }
}

/// The parameter by which a job of any kind names its uploaded input file: the store
/// keeps that file while the job exists, and two requests that differ only in it (each
/// upload is named after its job) ask for the same thing.
pub const UPLOAD_PARAM: &str = "upload";

/// The upload a job's parameters name, if any.
fn upload_of(job: &Job) -> Option<&str> {
    job.params.get(UPLOAD_PARAM).and_then(|u| u.as_str())
}

/// Where jobs' files live, and for how long.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
    ttl: Duration,
}

/// A file name of roster's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName {
    pub job: JobId,
    pub attempt: i32,
    pub tag: String,
    pub ext: String,
    /// Still being written (hidden, `.part`).
    pub temp: bool,
}

impl FileName {
    fn of(token: &AttemptToken, ext: &str, temp: bool) -> Self {
        Self {
            job: token.job,
            attempt: token.number,
            tag: token.tag().to_owned(),
            ext: ext.to_owned(),
            temp,
        }
    }

    /// Reads a name roster wrote; `None` for any other file.
    pub fn parse(name: &str) -> Option<Self> {
        let (temp, stem) = match name.strip_prefix('.') {
            Some(hidden) => (true, hidden.strip_suffix(".part")?),
            None => (false, name),
        };
        let mut parts = stem.split('.');
        let job = parts.next()?.parse().ok()?;
        let attempt = parts.next()?.parse().ok()?;
        let tag = parts.next()?;
        let ext = parts.next()?;
        let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
        if parts.next().is_some() || !plain(tag) || !plain(ext) {
            return None;
        }
        Some(Self {
            job,
            attempt,
            tag: tag.to_owned(),
            ext: ext.to_owned(),
            temp,
        })
    }

    /// Whether this names an upload (an import's input file).
    pub fn is_upload(&self) -> bool {
        self.tag == UPLOAD_TAG && self.attempt == 0 && !self.temp
    }

    fn finished(&self) -> Self {
        Self {
            temp: false,
            ..self.clone()
        }
    }
}

impl std::fmt::Display for FileName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            job,
            attempt,
            tag,
            ext,
            temp,
        } = self;
        if *temp {
            write!(f, ".{job}.{attempt}.{tag}.{ext}.part")
        } else {
            write!(f, "{job}.{attempt}.{tag}.{ext}")
        }
    }
}

/// An attempt's temporary file: removed when dropped unless committed or kept.
pub struct TempFile {
    pub name: FileName,
    path: PathBuf,
    file: Option<File>,
    kept: bool,
}

impl TempFile {
    /// The open file (taken once, to write to).
    pub fn take_file(&mut self) -> Option<File> {
        self.file.take()
    }

    /// Where it is, for error messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leaves the file for the next attempt to resume from (a shutdown).
    pub fn keep(&mut self) {
        self.kept = true;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.kept {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// What a sweep of the store removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub expired: usize,
    pub orphans: usize,
}

/// Files of students' data are the service's own: read and written by its user only.
pub const OWNER_ONLY_FILE: u32 = 0o600;
const OWNER_ONLY_DIR: u32 = 0o700;

/// Makes `dir` (and its missing parents) as a directory only its owner may enter; one that
/// exists keeps its mode (an operator may have chosen a group).
fn owner_only_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(OWNER_ONLY_DIR)
        .create(dir)
}

impl FileStore {
    pub fn new(dir: PathBuf, ttl: Duration) -> Self {
        Self { dir, ttl }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes the directory if it is missing and proves it writable by creating and
    /// removing a file in it. Checked when a process starts, so that an unusable
    /// `ROSTER_EXPORT_DIR` stops it with the path rather than failing every job later.
    pub fn ensure_writable(&self) -> io::Result<()> {
        owner_only_dir(&self.dir)?;
        if !fs::metadata(&self.dir)?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "it is not a directory",
            ));
        }
        // A name no job file can have (the file sweep leaves it alone), unique to this check
        // even between processes sharing the volume.
        let probe = self.dir.join(format!(
            ".roster-write-check.{}",
            uuid::Uuid::new_v4().simple()
        ));
        File::options()
            .write(true)
            .create_new(true)
            .mode(OWNER_ONLY_FILE)
            .open(&probe)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot write in it: {e}")))?;
        fs::remove_file(&probe)
    }

    /// Creates the attempt's temporary file; fails if it exists, so no two attempts can
    /// ever write one file.
    pub fn create_temp(&self, token: &AttemptToken, ext: &str) -> io::Result<TempFile> {
        self.create(FileName::of(token, ext, true))
    }

    /// Creates the file `name` exclusively: no two writers can ever share one.
    fn create(&self, name: FileName) -> io::Result<TempFile> {
        owner_only_dir(&self.dir)
            .map_err(|e| with_path(e, "creating the export directory", &self.dir))?;
        let path = self.dir.join(name.to_string());
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(OWNER_ONLY_FILE)
            .open(&path)
            .map_err(|e| with_path(e, "creating", &path))?;
        Ok(TempFile {
            name,
            path,
            file: Some(file),
            kept: false,
        })
    }

    /// Opens the temporary file an earlier attempt's checkpoint names, to resume from.
    pub fn open_temp(&self, name: &str) -> io::Result<File> {
        match FileName::parse(name) {
            Some(parsed) if parsed.temp => {
                let path = self.dir.join(name);
                File::open(&path).map_err(|e| with_path(e, "opening", &path))
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} is not a temporary export file"),
            )),
        }
    }

    /// Removes an earlier attempt's temporary file once its content was taken over.
    pub fn remove_temp(&self, name: &str) {
        if FileName::parse(name).is_some_and(|n| n.temp) {
            let _ = fs::remove_file(self.dir.join(name));
        }
    }

    /// Creates the temporary file an upload for job `job` is written to (before the job
    /// exists); [`commit`](Self::commit) gives it the name the job's `upload` names.
    pub fn create_upload(&self, job: JobId, ext: &str) -> io::Result<TempFile> {
        self.create(FileName {
            job,
            attempt: 0,
            tag: UPLOAD_TAG.to_owned(),
            ext: ext.to_owned(),
            temp: true,
        })
    }

    /// Opens the upload a job's parameters name.
    pub fn open_upload(&self, job: &Job) -> io::Result<File> {
        let name = upload_of(job)
            .and_then(FileName::parse)
            .filter(|n| n.is_upload() && n.job == job.id)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the job names no upload"))?;
        let path = self.dir.join(name.to_string());
        File::open(&path).map_err(|e| with_path(e, "opening the upload", &path))
    }

    /// Removes the files a deleted job named (its result's and its upload); anything
    /// else of its is an orphan for the next sweep.
    pub fn remove_job_files(&self, job: &Job) {
        let result = job.result.as_ref().and_then(ResultFile::of).map(|r| r.file);
        let named = result.into_iter().chain(upload_of(job).map(str::to_owned));
        for name in named.filter(|n| FileName::parse(n).is_some_and(|n| n.job == job.id)) {
            let path = self.dir.join(&name);
            if let Err(e) = fs::remove_file(&path) {
                if e.kind() != io::ErrorKind::NotFound {
                    log::warn!("could not remove {}: {e}", path.display());
                }
            }
        }
    }

    /// Gives a complete temporary file (already synced) its final name; returns it with
    /// its path. The name is the attempt's own, so nothing else is ever replaced.
    pub fn commit(&self, mut temp: TempFile) -> io::Result<(String, PathBuf)> {
        let name = temp.name.finished().to_string();
        let path = self.dir.join(&name);
        fs::rename(&temp.path, &path).map_err(|e| with_path(e, "renaming", &temp.path))?;
        temp.kept = true;
        Ok((name, path))
    }

    /// When a file finished now expires.
    pub fn expires_at(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::days(1))
    }

    /// The path of the file a result names; `None` when the name is not roster's.
    pub fn path_of(&self, result: &ResultFile) -> Option<PathBuf> {
        FileName::parse(&result.file)
            .filter(|name| !name.temp)
            .map(|_| self.dir.join(&result.file))
    }

    /// Deletes expired results and files no attempt can own any more: those of jobs
    /// that ended (but an unexpired result and the job's upload), of jobs that are gone,
    /// and those of earlier attempts that no checkpoint names. Files that are not
    /// roster's are left alone. Files younger than `min_age` are left too, as a margin
    /// (and uploads younger than [`UPLOAD_GRACE`] whose job is not there yet).
    pub fn sweep(&self, conn: &mut DbConnection, min_age: Duration) -> anyhow::Result<Swept> {
        let mut files: Vec<(FileName, PathBuf, Duration)> = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Swept::default()),
            Err(e) => return Err(with_path(e, "listing", &self.dir).into()),
        };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().and_then(FileName::parse) else {
                continue;
            };
            let age = entry
                .metadata()
                .ok()
                .filter(|m| m.is_file())
                .and_then(|m| m.modified().ok())
                .and_then(|m| now.duration_since(m).ok());
            if let Some(age) = age.filter(|age| *age >= min_age) {
                files.push((name, entry.path(), age));
            }
        }
        // Listed first, read second: a file in the listing was created after its
        // attempt's claim committed, so the rows read now know that attempt.
        let mut ids: Vec<JobId> = files.iter().map(|(n, _, _)| n.job).collect();
        ids.sort_by_key(|id| id.to_string());
        ids.dedup();
        let mut jobs: HashMap<JobId, Job> = HashMap::new();
        for chunk in ids.chunks(500) {
            for job in job::find_many(conn, chunk)? {
                jobs.insert(job.id, job);
            }
        }
        let mut swept = Swept::default();
        for (name, path, age) in files {
            let verdict = match verdict(jobs.get(&name.job), &name, self.ttl) {
                Verdict::Orphan if name.tag == UPLOAD_TAG && age < UPLOAD_GRACE => Verdict::Keep,
                verdict => verdict,
            };
            if verdict == Verdict::Keep {
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) if verdict == Verdict::Expired => swept.expired += 1,
                Ok(()) => swept.orphans += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("could not remove {}: {e}", path.display()),
            }
        }
        Ok(swept)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Keep,
    Expired,
    Orphan,
}

/// Whether a file of roster's may still be owned by its job. An import's upload is kept
/// while its job may still read it: until it succeeds, and for `ttl` after it failed or
/// was cancelled (a person may retry it meanwhile).
fn verdict(job: Option<&Job>, name: &FileName, ttl: Duration) -> Verdict {
    let Some(job) = job else {
        return Verdict::Orphan;
    };
    let file = name.to_string();
    if upload_of(job) == Some(file.as_str()) {
        let retry_window_over = job.finished_at.is_some_and(|at| {
            let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(1));
            at.and_utc() + ttl <= Utc::now()
        });
        return match job.status {
            JobStatus::Queued | JobStatus::Running => Verdict::Keep,
            JobStatus::Succeeded => Verdict::Expired,
            JobStatus::Failed | JobStatus::Cancelled if retry_window_over => Verdict::Expired,
            JobStatus::Failed | JobStatus::Cancelled => Verdict::Keep,
        };
    }
    if let Some(result) = job.result.as_ref().and_then(ResultFile::of) {
        if result.file == file {
            return match result.is_expired() {
                true => Verdict::Expired,
                false => Verdict::Keep,
            };
        }
    }
    match job.status {
        JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled => Verdict::Orphan,
        JobStatus::Queued | JobStatus::Running => {
            let checkpointed = job
                .checkpoint
                .as_ref()
                .and_then(|c| c.get("file"))
                .and_then(|f| f.as_str())
                == Some(file.as_str());
            let running_attempt = job.status == JobStatus::Running
                && job.attempts == name.attempt
                && job
                    .lease_owner
                    .as_ref()
                    .is_some_and(|owner| owner.tag() == name.tag);
            if checkpointed || running_attempt {
                Verdict::Keep
            } else {
                Verdict::Orphan
            }
        }
    }
}

/// An I/O error that names the path it happened on.
fn with_path(e: io::Error, doing: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{doing} {}: {e}", path.display()))
}

/// Free space on the volume of `dir` (or of its nearest existing parent, before the
/// directory is made), when it is below `min_bytes`. A volume that cannot be measured is
/// not refused (logged instead).
pub fn short_of_disk(dir: &Path, min_bytes: u64) -> Option<u64> {
    if min_bytes == 0 {
        return None;
    }
    let dir = dir
        .ancestors()
        .find(|d| d.exists())
        .unwrap_or(Path::new("."));
    match fs4::available_space(dir) {
        Ok(free) if free < min_bytes => Some(free),
        Ok(_) => None,
        Err(e) => {
            log::warn!("cannot measure the free space of {}: {e}", dir.display());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::job::LeaseOwner;

    fn token() -> AttemptToken {
        AttemptToken {
            job: JobId::new(),
            number: 2,
            owner: LeaseOwner::stored("host-1-abc/1a2b3c4d".into()),
        }
    }

    #[test]
    fn names_round_trip_and_foreign_files_are_not_ours() {
        let t = token();
        for temp in [true, false] {
            let name = FileName::of(&t, "csv", temp);
            assert_eq!(FileName::parse(&name.to_string()), Some(name));
        }
        for foreign in [
            "notes.txt",
            ".bashrc",
            "report.csv",
            &format!("{}.csv", t.job),
            &format!(".{}.csv.part", t.job),
            &format!("{}.2.x/y.csv", t.job),
        ] {
            assert_eq!(FileName::parse(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn each_attempt_gets_a_file_no_other_attempt_can_open_for_writing() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().into(), Duration::from_secs(60));
        let t = token();
        let first = store.create_temp(&t, "csv").unwrap();
        assert!(store.create_temp(&t, "csv").is_err(), "created exclusively");
        let (name, path) = store.commit(first).unwrap();
        assert!(path.exists());
        assert_eq!(FileName::parse(&name).map(|n| n.temp), Some(false));
        let dropped = store.create_temp(&token(), "csv").unwrap();
        let temp_path = dir.path().join(dropped.name.to_string());
        assert!(temp_path.exists());
        drop(dropped);
        assert!(
            !temp_path.exists(),
            "an abandoned temporary file is removed"
        );
    }
}
