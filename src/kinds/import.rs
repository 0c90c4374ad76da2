//! The `students_import` kind: students from an uploaded CSV or JSON Lines file, each row
//! checked by the same domain types as the API.
//!
//! - The upload is streamed to disk by the HTTP route, which checks it as it arrives
//!   ([`UploadCheck`]: size, UTF-8, line length, the CSV header), so a bad file is a 4xx
//!   before any job exists.
//! - `all_or_nothing` stages the valid rows in batches (`import_rows`), each its own short
//!   commit, and publishes them into `students` with one statement only if every row is
//!   valid, in the transaction of the attempt's fenced checkpoint saying the import is
//!   complete: a crash after that commit is not imported again, a crash or a cancel before
//!   it leaves nothing in `students`.
//! - `skip_invalid` commits each batch with a fenced checkpoint (the last line it covers)
//!   in one transaction; the next attempt after a crash goes on after that line. No row
//!   is ever inserted twice.
//! - Rejected rows go to a report (`line,field,message`, lines counted from 1 for a CSV
//!   header) that the result names for download. A resumed attempt rebuilds the report
//!   from the file: rejects depend on the file alone.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::Settings;
use crate::db::DbConnection;
use crate::domain::fields::{self as input, Fields};
use crate::domain::job::{FileFormat, JobKind};
use crate::domain::student::{Age, StudentName};
use crate::error::FieldErrors;
use crate::jobs::store::{FileName, FileStore, TempFile};
use crate::jobs::worker::{Attempt, JobError};
use crate::jobs::Kind;
use crate::models::import_rows::{self, Staged};
use crate::models::job::{now, AttemptToken, Job};
use crate::models::student::{self, NewStudent};

/// The longest line an upload may have.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// What happens to the valid rows of a file that has invalid ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportMode {
    /// Nothing is inserted unless every row is valid.
    #[default]
    AllOrNothing,
    /// Valid rows are inserted, invalid ones reported.
    SkipInvalid,
}

impl std::str::FromStr for ImportMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all_or_nothing" => Ok(ImportMode::AllOrNothing),
            "skip_invalid" => Ok(ImportMode::SkipInvalid),
            _ => Err("must be all_or_nothing or skip_invalid".into()),
        }
    }
}

/// An import's parameters: the upload and what to do with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportParams {
    pub mode: ImportMode,
    pub format: FileFormat,
    /// The upload's name in the file store (named after the job).
    pub upload: String,
    pub bytes: u64,
    /// Of the upload: what tells two uploads apart (an `Idempotency-Key` reused with
    /// another file is refused).
    pub sha256: String,
}

/// The rejects report a result names for download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub file: String,
    pub content_type: String,
    pub expires_at: DateTime<Utc>,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportResult {
    /// Rows read from the file.
    pub rows: u64,
    pub inserted: u64,
    pub rejected: u64,
    /// The rejects report, when there are rejects.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub report: Option<Report>,
    /// Rows an earlier attempt had already committed.
    #[serde(default)]
    pub resumed_rows: u64,
}

/// How far the committed part of an import goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportCheckpoint {
    /// Every row that starts on or before this line is done with (inserted or rejected).
    pub line: u64,
    pub rows: u64,
    pub inserted: u64,
    /// An `all_or_nothing` import committed: nothing is left to do.
    #[serde(default)]
    pub complete: bool,
}

/// What the import is tuned by.
#[derive(Debug, Clone)]
pub struct ImportSettings {
    /// Rows per inserted (and, with `skip_invalid`, committed) batch.
    pub batch_rows: usize,
}

impl ImportSettings {
    pub fn new(settings: &Settings) -> Self {
        Self {
            batch_rows: settings.import_batch_rows as usize,
        }
    }
}

/// The import of `students_import` jobs.
pub struct StudentsImport {
    pub settings: ImportSettings,
}

impl Kind for StudentsImport {
    const KIND: JobKind = JobKind::StudentsImport;
    // Each import has its own upload: nothing to run again on a timer.
    const SCHEDULABLE: bool = false;
    type Params = ImportParams;
    type Output = ImportResult;

    /// `{mode?, format, upload, bytes, sha256}`, as the upload route writes them.
    fn params(raw: &Map<String, Value>) -> Result<ImportParams, FieldErrors> {
        let mut fields = Fields::default();
        fields.only(raw, &["mode", "format", "upload", "bytes", "sha256"]);
        let mode = raw
            .get("mode")
            .and_then(|m| fields.check("mode", input::string(m).and_then(str::parse)))
            .unwrap_or_default();
        let format = raw
            .get("format")
            .and_then(|f| fields.check("format", input::string(f).and_then(str::parse)));
        let format = fields.require("format", format);
        let upload = raw.get("upload").and_then(|u| {
            let name = input::string(u).and_then(|name| {
                FileName::parse(name)
                    .filter(FileName::is_upload)
                    .map(|_| name.to_owned())
                    .ok_or_else(|| "must name an uploaded file".to_owned())
            });
            fields.check("upload", name)
        });
        let upload = fields.require("upload", upload);
        let bytes = raw.get("bytes").and_then(|b| {
            let bytes = input::integer(b)
                .and_then(|b| u64::try_from(b).map_err(|_| "must not be negative".to_owned()));
            fields.check("bytes", bytes)
        });
        let sha256 = raw.get("sha256").and_then(|h| {
            let hash = input::string(h).and_then(|h| {
                (h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                    .then(|| h.to_owned())
                    .ok_or_else(|| "must be a sha256 in hex".to_owned())
            });
            fields.check("sha256", hash)
        });
        let sha256 = fields.require("sha256", sha256);
        fields.into_result()?;
        Ok(ImportParams {
            mode,
            format: format.expect("required"),
            upload: upload.expect("required"),
            bytes: bytes.unwrap_or(0),
            sha256: sha256.expect("required"),
        })
    }

    fn run(
        &self,
        job: &Job,
        params: ImportParams,
        attempt: &mut Attempt<'_>,
    ) -> Result<ImportResult, JobError> {
        let resume = job
            .checkpoint
            .as_ref()
            .and_then(|c| ImportCheckpoint::deserialize(c).ok())
            .unwrap_or_default();
        if resume.complete {
            // The import committed; only the record of its end was lost.
            return Ok(ImportResult {
                rows: resume.rows,
                inserted: resume.inserted,
                rejected: 0,
                report: None,
                resumed_rows: resume.rows,
            });
        }
        if resume.line > 0 {
            log::info!("job {}: resuming after line {}", job.id, resume.line);
            attempt.resumed(resume.rows);
        }
        let store = attempt.store().clone();
        let upload = store.open_upload(job).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => JobError::Abort(anyhow::anyhow!(
                "the uploaded file is gone; upload it again"
            )),
            _ => JobError::Retry(e.into()),
        })?;
        let total = count_rows(&upload, params.format)?;
        (&upload).rewind()?;
        let mut rejects = Rejects::new(store.create_temp(attempt.token(), "csv")?)?;
        let mut run = Run {
            attempt,
            rows: parse(params.format, upload)?,
            rejects: &mut rejects,
            resume,
            total,
            batch: self.settings.batch_rows.max(1),
            done: 0,
            inserted: resume.inserted,
            last_line: 0,
        };
        let outcome = match params.mode {
            ImportMode::SkipInvalid => run.skip_invalid(),
            ImportMode::AllOrNothing => run.all_or_nothing(),
        };
        let (rows, inserted) = (run.done, run.inserted);
        drop(run);
        outcome?;
        // Every row is in (or, all or nothing, none is): a cancel now changes nothing.
        attempt.committed();
        let rejected = rejects.count;
        let report = rejects.finish(&store, attempt)?;
        let result = ImportResult {
            rows,
            inserted,
            rejected,
            report,
            resumed_rows: resume.rows,
        };
        if params.mode == ImportMode::AllOrNothing && rejected > 0 {
            return Err(JobError::Refused {
                error: format!(
                    "{rejected} invalid row{}; nothing was imported",
                    if rejected == 1 { "" } else { "s" }
                ),
                result: serde_json::to_value(result).expect("results serialize"),
            });
        }
        Ok(result)
    }
}

/// One attempt's pass over the file.
struct Run<'r, 'a> {
    attempt: &'r mut Attempt<'a>,
    rows: Rows,
    rejects: &'r mut Rejects,
    resume: ImportCheckpoint,
    total: u64,
    batch: usize,
    /// Rows read so far.
    done: u64,
    inserted: u64,
    /// The line of the last row read.
    last_line: u64,
}

impl Run<'_, '_> {
    /// The next batch of valid rows to insert, reporting the invalid ones; the line of
    /// the last row read. Rows up to the checkpoint are checked (for the report) but not
    /// returned: they are committed already.
    fn next_batch(&mut self) -> Result<Option<(Vec<NewStudent>, u64)>, JobError> {
        let mut valid = Vec::with_capacity(self.batch);
        let mut last_line = None;
        let stamp = now();
        while valid.len() < self.batch {
            let Some(row) = self.rows.next_row()? else {
                break;
            };
            self.done += 1;
            last_line = Some(row.line);
            match row.student {
                Ok((name, age)) if row.line > self.resume.line => {
                    valid.push(NewStudent::new(name, age, stamp))
                }
                Ok(_) => {}
                Err(problems) => self.rejects.add(row.line, &problems)?,
            }
        }
        Ok(last_line.map(|line| (valid, line)))
    }

    /// The checkpoint after `line`, once `inserted` rows in all are committed.
    fn checkpoint(&self, line: u64, inserted: u64, complete: bool) -> Value {
        let checkpoint = ImportCheckpoint {
            line,
            rows: self.done,
            inserted,
            complete,
        };
        serde_json::to_value(checkpoint).expect("checkpoints serialize")
    }

    /// Each batch commits with its checkpoint.
    fn skip_invalid(&mut self) -> Result<(), JobError> {
        let mut conn = self.attempt.pool().get()?;
        while let Some((batch, line)) = self.next_batch()? {
            self.attempt.check()?;
            if batch.is_empty() && line <= self.resume.line {
                self.attempt
                    .progress(self.done, self.total.max(self.done), false)?;
                continue;
            }
            let checkpoint = self.checkpoint(line, self.inserted + batch.len() as u64, false);
            let (done, total) = (self.done, self.total.max(self.done));
            let inserted = self.attempt.transaction(&mut conn, |tx, attempt| {
                let inserted = student::insert_many(tx, &batch)? as u64;
                debug_assert_eq!(inserted, batch.len() as u64);
                attempt.record_in(tx, done, total, Some(&checkpoint))?;
                Ok(inserted)
            })?;
            self.inserted += inserted;
        }
        self.attempt.progress(self.done, self.done, true)?;
        Ok(())
    }

    /// Stages the valid rows batch by committed batch (each short, so a cancel or a lost
    /// lease is seen within one, and SQLite's one writer is free between them), then, if
    /// no row was invalid, publishes them into `students` in one statement, in the
    /// transaction that records the attempt's fenced checkpoint saying the import is
    /// complete. Every row is still read, to report every reject. Whatever this attempt
    /// staged and did not publish is discarded as it gives up; what a dead one left, by
    /// the next attempt (or maintenance).
    fn all_or_nothing(&mut self) -> Result<(), JobError> {
        let mut conn = self.attempt.pool().get()?;
        let token = self.attempt.token().clone();
        // An earlier attempt's rows are not this one's: it starts afresh.
        import_rows::discard(&mut conn, &token.job, Staged::Before(token.number))?;
        let staged = self.stage_all(&mut conn, &token);
        if staged.is_err() || self.rejects.count > 0 {
            if let Err(e) = import_rows::discard(&mut conn, &token.job, Staged::Of(token.number)) {
                log::warn!("job {}: could not discard its staged rows: {e}", token.job);
            }
        }
        staged?;
        if self.rejects.count > 0 {
            self.inserted = 0;
            self.attempt.progress(self.done, self.done, true)?;
            return Ok(());
        }
        let checkpoint = self.checkpoint(self.last_line, self.inserted, true);
        let (done, staged) = (self.done, self.inserted);
        self.attempt.transaction(&mut conn, |tx, attempt| {
            // Fenced first: only the attempt that holds the job publishes its rows.
            attempt.record_in(tx, done, done, Some(&checkpoint))?;
            let published = import_rows::publish(tx, &token.job, token.number, now())? as u64;
            if published != staged {
                // Rows went missing from the stage: roll back rather than import part.
                return Err(JobError::Retry(anyhow::anyhow!(
                    "{published} of the {staged} staged rows were found; the import starts again"
                )));
            }
            Ok(())
        })
    }

    /// Reads the whole file, staging its valid rows until the first invalid one (from
    /// then on nothing will be imported, and only the rejects are collected).
    fn stage_all(&mut self, conn: &mut DbConnection, token: &AttemptToken) -> Result<(), JobError> {
        while let Some((batch, line)) = self.next_batch()? {
            self.last_line = line;
            if self.rejects.count == 0 {
                let rows: Vec<(String, i32)> = batch.into_iter().map(|s| (s.name, s.age)).collect();
                let first = self.inserted as i64;
                self.inserted +=
                    import_rows::stage(conn, &token.job, token.number, first, &rows)? as u64;
            }
            self.attempt
                .progress(self.done, self.total.max(self.done), false)?;
        }
        Ok(())
    }
}

/// The rows of an import, as they are read.
#[derive(Debug)]
struct Row {
    /// The line the row starts on.
    line: u64,
    /// The student, or each field's problem.
    student: Result<(StudentName, Age), Vec<(&'static str, String)>>,
}

/// Reads rows from an upload in its format.
enum Rows {
    Csv {
        reader: csv::Reader<BufReader<File>>,
        record: csv::StringRecord,
        name: usize,
        age: usize,
        /// Added to the reader's line numbers: after a CRLF it places a record on the
        /// line before (its position is the `\n` of the previous line's end).
        line_offset: u64,
    },
    Jsonl {
        reader: BufReader<File>,
        line: u64,
        buf: String,
    },
}

fn parse(format: FileFormat, file: File) -> Result<Rows, JobError> {
    let file = BufReader::with_capacity(256 * 1024, file);
    Ok(match format {
        FileFormat::Csv => {
            let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(file);
            let headers = reader.headers().map_err(abort)?.clone();
            let (name, age) = header_columns(&headers).map_err(|e| abort(anyhow::anyhow!(e)))?;
            let line_offset = 2u64.saturating_sub(reader.position().line());
            Rows::Csv {
                reader,
                record: csv::StringRecord::new(),
                name,
                age,
                line_offset,
            }
        }
        FileFormat::Jsonl => Rows::Jsonl {
            reader: file,
            line: 0,
            buf: String::new(),
        },
    })
}

fn abort(e: impl Into<anyhow::Error>) -> JobError {
    JobError::Abort(e.into())
}

/// Where the `name` and `age` columns are in a CSV header (names compared without case).
pub fn header_columns(headers: &csv::StringRecord) -> Result<(usize, usize), String> {
    let find = |wanted: &str| {
        headers.iter().position(|h| {
            h.trim_start_matches('\u{feff}')
                .trim()
                .eq_ignore_ascii_case(wanted)
        })
    };
    match (find("name"), find("age")) {
        (Some(name), Some(age)) => Ok((name, age)),
        _ => Err(format!(
            "the header row must name the columns name and age (it has: {})",
            headers.iter().collect::<Vec<_>>().join(", ")
        )),
    }
}

/// A student from a name and an age as found in a file.
fn student(
    name: Result<&str, String>,
    age: Result<i64, String>,
) -> Result<(StudentName, Age), Vec<(&'static str, String)>> {
    let name = name.and_then(StudentName::parse).map_err(|e| ("name", e));
    match (name, age.and_then(Age::new).map_err(|e| ("age", e))) {
        (Ok(name), Ok(age)) => Ok((name, age)),
        (name, age) => Err(name.err().into_iter().chain(age.err()).collect()),
    }
}

impl Rows {
    fn next_row(&mut self) -> Result<Option<Row>, JobError> {
        match self {
            Rows::Csv {
                reader,
                record,
                name,
                age,
                line_offset,
            } => {
                if !reader.read_record(record).map_err(abort)? {
                    return Ok(None);
                }
                let line = record.position().map_or(0, |p| p.line()) + *line_offset;
                let raw_age = match record.get(*age).map(str::trim) {
                    None | Some("") => Err("is required".to_owned()),
                    Some(raw) => raw.parse().map_err(|_| "must be an integer".to_owned()),
                };
                let raw_name = record.get(*name).ok_or_else(|| "is required".to_owned());
                Ok(Some(Row {
                    line,
                    student: student(raw_name, raw_age),
                }))
            }
            Rows::Jsonl { reader, line, buf } => loop {
                buf.clear();
                if reader.read_line(buf)? == 0 {
                    return Ok(None);
                }
                *line += 1;
                if buf.trim().is_empty() {
                    continue;
                }
                let student = match serde_json::from_str::<Map<String, Value>>(buf) {
                    Ok(object) => {
                        let field = |key: &str| match object.get(key) {
                            None | Some(Value::Null) => Err("is required".to_owned()),
                            Some(value) => Ok(value),
                        };
                        let name = field("name").and_then(input::string);
                        student(name, field("age").and_then(input::integer))
                    }
                    Err(e) if e.is_data() => Err(vec![("row", "is not a JSON object".into())]),
                    Err(e) => Err(vec![("row", format!("is not valid JSON ({e})"))]),
                };
                return Ok(Some(Row {
                    line: *line,
                    student,
                }));
            },
        }
    }
}

/// About how many rows a file has (its lines, less a CSV header): the progress total.
/// Reads through a clone of `file`, which shares its offset: rewind it after.
fn count_rows(file: &File, format: FileFormat) -> Result<u64, JobError> {
    let mut reader = BufReader::with_capacity(1024 * 1024, file.try_clone()?);
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let chunk = reader.fill_buf()?;
        let Some(&end) = chunk.last() else {
            break;
        };
        lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        last = end;
        let n = chunk.len();
        reader.consume(n);
    }
    if last != b'\n' {
        lines += 1;
    }
    Ok(match format {
        FileFormat::Csv => lines.saturating_sub(1),
        FileFormat::Jsonl => lines,
    })
}

/// The rejects report being written.
struct Rejects {
    temp: TempFile,
    out: csv::Writer<BufWriter<File>>,
    /// Rows rejected (a row may have several problems).
    count: u64,
}

impl Rejects {
    fn new(mut temp: TempFile) -> Result<Self, JobError> {
        let file = temp.take_file().expect("a fresh temporary file is open");
        let mut out = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(BufWriter::new(file));
        out.write_record(["line", "field", "message"])
            .map_err(|e| JobError::Retry(e.into()))?;
        Ok(Self {
            temp,
            out,
            count: 0,
        })
    }

    fn add(&mut self, line: u64, problems: &[(&'static str, String)]) -> Result<(), JobError> {
        self.count += 1;
        let line = line.to_string();
        for (field, message) in problems {
            self.out
                .write_record([line.as_str(), field, message.as_str()])
                .map_err(|e| JobError::Retry(e.into()))?;
        }
        Ok(())
    }

    /// Commits the report when there are rejects (it becomes one of the attempt's
    /// outputs); otherwise it is removed.
    fn finish(
        self,
        store: &FileStore,
        attempt: &mut Attempt<'_>,
    ) -> Result<Option<Report>, JobError> {
        if self.count == 0 {
            return Ok(None);
        }
        let file = self
            .out
            .into_inner()
            .map_err(|e| JobError::Retry(anyhow::anyhow!("{}", e.error())))?
            .into_inner()
            .map_err(|e| JobError::Retry(e.into_error().into()))?;
        file.sync_all()?;
        let (name, path) = store.commit(self.temp)?;
        attempt.output(path);
        Ok(Some(Report {
            file: name,
            content_type: FileFormat::Csv.content_type().to_owned(),
            expires_at: store.expires_at(),
        }))
    }
}

/// Why an upload is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum UploadError {
    TooLarge { limit: u64 },
    Invalid(String),
}

/// Checks an upload as it streams in: its size, that it is UTF-8, that no line (nor CSV
/// record, which may span lines) is longer than [`MAX_LINE_BYTES`], and a CSV file's
/// header. It passes on what to write (a
/// leading byte-order mark is dropped).
pub struct UploadCheck {
    format: FileFormat,
    limit: u64,
    bytes: u64,
    /// The tail of the last chunk that may begin an unfinished UTF-8 character.
    pending: Vec<u8>,
    line: u64,
    line_bytes: usize,
    /// A CSV header, until its line ends.
    header: Option<Vec<u8>>,
    started: bool,
    /// CSV: inside a quoted field (where a line end does not end the record).
    quoted: bool,
    /// CSV: the bytes of the record under way, and the line it starts on.
    record_bytes: usize,
    record_line: u64,
}

impl UploadCheck {
    pub fn new(format: FileFormat, limit: u64) -> Self {
        Self {
            format,
            limit,
            bytes: 0,
            pending: Vec::new(),
            line: 1,
            line_bytes: 0,
            header: (format == FileFormat::Csv).then(Vec::new),
            started: false,
            quoted: false,
            record_bytes: 0,
            record_line: 1,
        }
    }

    /// Bounds a CSV record, which a quoted field may spread over many lines: no record is
    /// longer than [`MAX_LINE_BYTES`] either, so no worker ever holds a huge one.
    fn track_records(&mut self, chunk: &[u8]) -> Result<(), UploadError> {
        if self.format != FileFormat::Csv {
            return Ok(());
        }
        let (mut from, mut newlines) = (0, 0);
        for at in memchr::memchr2_iter(b'"', b'\n', chunk) {
            self.record_bytes += at + 1 - from;
            from = at + 1;
            self.check_record()?;
            match chunk[at] {
                // A doubled quote inside a field toggles twice: it stays quoted.
                b'"' => self.quoted = !self.quoted,
                _ => {
                    newlines += 1;
                    if !self.quoted {
                        self.record_bytes = 0;
                        self.record_line = self.line + newlines;
                    }
                }
            }
        }
        self.record_bytes += chunk.len() - from;
        self.check_record()
    }

    fn check_record(&self) -> Result<(), UploadError> {
        match self.record_bytes > MAX_LINE_BYTES + 2 {
            true => Err(UploadError::Invalid(format!(
                "the record starting on line {} is longer than {} MiB (a quoted field may \
                 span lines, not that many)",
                self.record_line,
                MAX_LINE_BYTES / (1024 * 1024)
            ))),
            false => Ok(()),
        }
    }

    /// Checks the next chunk; returns the bytes to write.
    pub fn feed<'c>(&mut self, mut chunk: &'c [u8]) -> Result<&'c [u8], UploadError> {
        if !self.started {
            // A byte-order mark may be split across the first chunks; they are rarely
            // that small, and a stray one fails the UTF-8 check below anyway.
            self.started = !chunk.is_empty();
            chunk = chunk.strip_prefix(UTF8_BOM).unwrap_or(chunk);
        }
        self.bytes += chunk.len() as u64;
        if self.bytes > self.limit {
            return Err(UploadError::TooLarge { limit: self.limit });
        }
        self.check_utf8(chunk)?;
        self.track_records(chunk)?;
        for part in chunk.split_inclusive(|&b| b == b'\n') {
            self.line_bytes += part.len();
            if self.line_bytes > MAX_LINE_BYTES + 2 {
                return Err(UploadError::Invalid(format!(
                    "line {} is longer than {} MiB",
                    self.line,
                    MAX_LINE_BYTES / (1024 * 1024)
                )));
            }
            if let Some(header) = &mut self.header {
                header.extend_from_slice(part);
            }
            if part.ends_with(b"\n") {
                self.end_line()?;
            }
        }
        Ok(chunk)
    }

    /// Checks the end of the upload; returns its size.
    pub fn finish(mut self) -> Result<u64, UploadError> {
        if !self.pending.is_empty() {
            return Err(self.not_utf8(self.line));
        }
        if self.bytes == 0 {
            return Err(UploadError::Invalid("the file is empty".into()));
        }
        self.end_line()?;
        Ok(self.bytes)
    }

    fn end_line(&mut self) -> Result<(), UploadError> {
        self.line += 1;
        self.line_bytes = 0;
        if let Some(header) = self.header.take() {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(header.as_slice());
            let record = reader
                .records()
                .next()
                .transpose()
                .map_err(|e| UploadError::Invalid(format!("the header row is not CSV: {e}")))?
                .unwrap_or_default();
            header_columns(&record).map_err(UploadError::Invalid)?;
        }
        Ok(())
    }

    fn not_utf8(&self, line: u64) -> UploadError {
        UploadError::Invalid(format!(
            "the file is not UTF-8 text (line {line}); save it as UTF-8 and upload it again"
        ))
    }

    fn check_utf8(&mut self, chunk: &[u8]) -> Result<(), UploadError> {
        let joined;
        let bytes = if self.pending.is_empty() {
            chunk
        } else {
            joined = [std::mem::take(&mut self.pending).as_slice(), chunk].concat();
            joined.as_slice()
        };
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            // An unfinished character at the end: the next chunk may finish it.
            Err(e) if e.error_len().is_none() => {
                self.pending = bytes[e.valid_up_to()..].to_vec();
                Ok(())
            }
            Err(e) => {
                let good = &bytes[..e.valid_up_to()];
                let line = self.line + good.iter().filter(|&&b| b == b'\n').count() as u64;
                Err(self.not_utf8(line))
            }
        }
    }

    pub fn format(&self) -> FileFormat {
        self.format
    }
}

/// Reads `file` whole through an [`UploadCheck`] (for tests and the CLI).
pub fn check_file(
    file: &mut impl Read,
    format: FileFormat,
    limit: u64,
) -> Result<u64, UploadError> {
    let mut check = UploadCheck::new(format, limit);
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| UploadError::Invalid(format!("the file could not be read: {e}")))?;
        if n == 0 {
            return check.finish();
        }
        check.feed(&buf[..n])?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(format: FileFormat, body: &[u8]) -> Result<u64, UploadError> {
        check_file(&mut &body[..], format, 4 << 20)
    }

    #[test]
    fn a_csv_upload_needs_name_and_age_in_its_header() {
        assert!(check(FileFormat::Csv, b"id,Name,AGE\r\n1,Ada,36\r\n").is_ok());
        assert!(check(FileFormat::Csv, b"\xEF\xBB\xBFname,age\n").is_ok());
        let missing = check(FileFormat::Csv, b"name,years\nAda,36\n").unwrap_err();
        assert!(matches!(missing, UploadError::Invalid(m) if m.contains("name and age")));
        assert!(
            check(FileFormat::Csv, b"name,age").is_ok(),
            "no final newline"
        );
    }

    #[test]
    fn uploads_that_are_not_utf8_empty_or_too_long_are_refused() {
        let latin1 = check(FileFormat::Csv, b"name,age\nJos\xE9,3\n").unwrap_err();
        assert!(matches!(latin1, UploadError::Invalid(m) if m.contains("line 2")));
        assert!(check(FileFormat::Jsonl, b"").is_err());
        let long = [b"{\"name\":\"".as_slice(), &vec![b'a'; MAX_LINE_BYTES + 10]].concat();
        assert!(
            matches!(check(FileFormat::Jsonl, &long), Err(UploadError::Invalid(m)) if m.contains("line 1"))
        );
        let big = vec![b'\n'; 5 << 20];
        assert_eq!(
            check(FileFormat::Jsonl, &big),
            Err(UploadError::TooLarge { limit: 4 << 20 })
        );
    }

    #[test]
    fn a_csv_record_spread_over_many_short_lines_is_bounded_too() {
        // Quoted, one field spans 20,000 lines of 100 bytes: each line is short, the
        // record is 2 MB.
        let field: String = (0..20_000)
            .map(|_| format!("{}\n", "x".repeat(99)))
            .collect();
        let body = format!("name,age\nAda,3\n\"{field}\",4\nBob,5\n");
        let refused = check(FileFormat::Csv, body.as_bytes()).unwrap_err();
        assert!(
            matches!(&refused, UploadError::Invalid(m) if m.contains("record starting on line 3")),
            "{refused:?}"
        );
        // Quoted fields with line ends and doubled quotes, short ones, pass.
        let fine = "name,age\n\"Ada\nLovelace\",36\n\"say \"\"hi\"\"\",4\n";
        assert!(check(FileFormat::Csv, fine.as_bytes()).is_ok());
        // Fed in small chunks, the record is bounded all the same.
        let mut check = UploadCheck::new(FileFormat::Csv, 8 << 20);
        let failed = body
            .as_bytes()
            .chunks(4096)
            .map(|chunk| check.feed(chunk).map(drop))
            .find(Result::is_err);
        assert!(failed.is_some());
    }

    #[test]
    fn a_character_split_across_chunks_is_utf8_still() {
        let mut check = UploadCheck::new(FileFormat::Jsonl, 1 << 20);
        let text = "{\"name\":\"Zoë\"}\n".as_bytes();
        let split = text.iter().position(|&b| b == 0xC3).unwrap() + 1;
        check.feed(&text[..split]).unwrap();
        check.feed(&text[split..]).unwrap();
        assert!(check.finish().is_ok());
    }

    #[test]
    fn csv_rows_are_numbered_by_the_line_they_start_on_whatever_the_line_ends() {
        let dir = tempfile::tempdir().unwrap();
        for body in [
            "name,age\nA,1\nB,\"x\ny\"\nC,3\n",
            "name,age\r\nA,1\r\nB,\"x\r\ny\"\r\nC,3\r\n",
        ] {
            let path = dir.path().join("upload.csv");
            std::fs::write(&path, body).unwrap();
            let mut rows = parse(FileFormat::Csv, File::open(&path).unwrap()).unwrap();
            let mut lines = vec![];
            while let Some(row) = rows.next_row().unwrap() {
                lines.push(row.line);
            }
            assert_eq!(lines, [2, 3, 5], "{body:?}");
        }
    }

    #[test]
    fn each_invalid_field_of_a_row_is_named() {
        let problems = student(Ok(" "), Ok(200)).unwrap_err();
        let fields: Vec<_> = problems.iter().map(|(f, _)| *f).collect();
        assert_eq!(fields, ["name", "age"]);
        assert!(student(Ok("Ada"), Ok(36)).is_ok());
    }
}
