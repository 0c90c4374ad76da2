//! The `students_by_age` export: every student in an age range, ordered by age then id,
//! streamed in keyset batches into the attempt's own temporary file, committed under
//! its final name only when complete. Memory stays flat whatever the number of rows.
//!
//! Resumable: with its progress the export records a checkpoint (its file, the rows and
//! bytes written, their sha256 and the last key). The next attempt after a crash copies
//! that prefix of the old file into its own (checking its hash), then reads on from the
//! key: rows after the checkpoint are read as they are when it resumes.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::Path;
use std::sync::mpsc;

use chrono::{DateTime, Utc};
use diesel::connection::SimpleConnection;
use diesel::Connection;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::export_copy;
pub use super::rows::{neutralise_formula, starts_formula, Batch};
use crate::config::Settings;
use crate::db::{DbConnection, Pool, PooledConn};
use crate::domain::fields::{self as input, Fields};
use crate::domain::job::{FileFormat, JobKind};
use crate::domain::student::age_range;
use crate::domain::student::Age;
use crate::error::FieldErrors;
use crate::jobs::store::{FileStore, TempFile};
use crate::jobs::worker::{Attempt, JobError, Stop};
use crate::jobs::Kind;
use crate::models::job::Job;
use crate::models::student::{self, ExportRow, StudentFilter};

/// What to export: an optional inclusive age range, in a format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExportParams {
    pub format: FileFormat,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_age: Option<Age>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Age>,
}

impl ExportParams {
    /// Refuses an empty range (`min_age` above `max_age`).
    pub fn new(
        format: FileFormat,
        min_age: Option<Age>,
        max_age: Option<Age>,
    ) -> Result<Self, String> {
        if let (Some(lo), Some(hi)) = (min_age, max_age) {
            if lo > hi {
                return Err("min_age must not be greater than max_age".into());
            }
        }
        Ok(Self {
            format,
            min_age,
            max_age,
        })
    }
}

/// What a finished export produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportResult {
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    /// The file's name inside the export directory.
    pub file: String,
    pub content_type: String,
    pub expires_at: DateTime<Utc>,
    /// Rows copied from an earlier attempt's checkpoint instead of read again.
    #[serde(default)]
    pub resumed_rows: u64,
}

/// The export of `students_by_age` jobs.
pub struct StudentsByAge {
    pub settings: ExportSettings,
}

/// Rows per batch read as rows: a batch is held in memory, a few at a time.
pub const ROW_BATCH_ROWS: u32 = 10_000;
/// Rows per COPY: they stream through, so memory does not grow with them, while each COPY
/// costs a few round trips and a new index descent (at 10,000 rows a batch, a tenth of
/// the export's time).
pub const COPY_BATCH_ROWS: u32 = 100_000;

/// What the export is tuned by.
#[derive(Debug, Clone)]
pub struct ExportSettings {
    /// Rows read from the database per keyset batch; unset, [`ROW_BATCH_ROWS`] or
    /// [`COPY_BATCH_ROWS`].
    pub batch_rows: Option<u32>,
}

impl ExportSettings {
    pub fn new(settings: &Settings) -> Self {
        Self {
            batch_rows: settings.export_batch_rows,
        }
    }
}

/// Where an attempt got to: enough for the next one to go on from there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportCheckpoint {
    /// The attempt's temporary file.
    pub file: String,
    pub rows: u64,
    /// The file's first `bytes` bytes hold exactly the header and `rows` rows...
    pub bytes: u64,
    /// ...whose sha256 is this.
    pub sha256: String,
    /// The (age, id) of the last row written.
    pub after: (i32, i64),
}

/// Counts and hashes what passes through to the file.
struct Digesting<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W> Digesting<W> {
    fn sha256_so_far(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }
}

impl<W: Write> Write for Digesting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum RowWriter<W: Write> {
    Csv(Box<csv::Writer<W>>),
    Jsonl(W),
    /// CSV whose rows arrive already encoded ([`Batch::Encoded`]): written as they are.
    Encoded(W),
}

/// The CSV header line, as the CSV writer writes it.
const CSV_HEADER: &[u8] = b"id,name,age\r\n";

impl<W: Write> RowWriter<W> {
    /// A writer of `format` (`encoded`: of rows that come encoded); `header`: write the
    /// CSV header first (not when resuming).
    fn new(format: FileFormat, mut out: W, header: bool, encoded: bool) -> Result<Self, JobError> {
        Ok(match format {
            FileFormat::Csv if encoded => {
                if header {
                    out.write_all(CSV_HEADER)?;
                }
                RowWriter::Encoded(out)
            }
            FileFormat::Csv => {
                let mut w = csv::WriterBuilder::new()
                    .terminator(csv::Terminator::CRLF)
                    .from_writer(out);
                if header {
                    w.write_record(["id", "name", "age"])
                        .map_err(|e| JobError::Retry(e.into()))?;
                }
                RowWriter::Csv(Box::new(w))
            }
            FileFormat::Jsonl => RowWriter::Jsonl(out),
        })
    }

    fn write(&mut self, row: &ExportRow) -> Result<(), JobError> {
        match self {
            RowWriter::Csv(w) => {
                let (mut id, mut age) = (itoa::Buffer::new(), itoa::Buffer::new());
                w.write_record([
                    id.format(row.id),
                    &neutralise_formula(&row.name),
                    age.format(row.age),
                ])
                .map_err(|e| JobError::Retry(e.into()))
            }
            RowWriter::Jsonl(w) => {
                serde_json::to_writer(&mut *w, row).map_err(|e| JobError::Retry(e.into()))?;
                w.write_all(b"\n")?;
                Ok(())
            }
            RowWriter::Encoded(_) => Err(unexpected("a row to encode")),
        }
    }

    /// Writes rows that came encoded.
    fn write_encoded(&mut self, bytes: &[u8]) -> Result<(), JobError> {
        match self {
            RowWriter::Encoded(w) => Ok(w.write_all(bytes)?),
            RowWriter::Csv(_) | RowWriter::Jsonl(_) => Err(unexpected("encoded rows")),
        }
    }

    /// Pushes everything written so far through to `W` (and flushes it).
    fn flush(&mut self) -> io::Result<()> {
        match self {
            RowWriter::Csv(w) => w.flush(),
            RowWriter::Jsonl(w) | RowWriter::Encoded(w) => w.flush(),
        }
    }

    fn get_ref(&self) -> &W {
        match self {
            RowWriter::Csv(w) => w.get_ref(),
            RowWriter::Jsonl(w) | RowWriter::Encoded(w) => w,
        }
    }

    fn into_inner(self) -> Result<W, JobError> {
        match self {
            RowWriter::Csv(w) => w
                .into_inner()
                .map_err(|e| JobError::Retry(anyhow::anyhow!("{}", e.error()))),
            RowWriter::Jsonl(w) | RowWriter::Encoded(w) => Ok(w),
        }
    }
}

/// A reader and a writer that disagree on how rows travel: a bug, not a retryable fault
/// of the job's; failing the attempt keeps it from writing a wrong file.
fn unexpected(what: &str) -> JobError {
    JobError::Retry(anyhow::anyhow!(
        "internal error: the export's writer got {what}"
    ))
}

/// Reads the count and every row in (age, id) order after `after` into `tx`, inside one
/// snapshot: CSV from PostgreSQL through COPY (`copy`), all else in keyset batches after
/// the count. Stops quietly when the writer hangs up.
fn read_batches(
    mut conn: PooledConn,
    pool: &Pool,
    filter: &StudentFilter,
    mut after: Option<(i32, i64)>,
    batch: i64,
    copy: bool,
    tx: mpsc::SyncSender<Batch>,
) -> Result<(), JobError> {
    in_snapshot(&mut conn, |conn| {
        if copy {
            return export_copy::read(conn, pool, filter, after, batch, &tx);
        }
        let total = student::export_count(conn, filter, after)? as u64;
        if tx.send(Batch::Total(total)).is_err() {
            return Ok(());
        }
        loop {
            let rows = student::export_batch(conn, filter, after, batch)?;
            let Some(last) = rows.last() else {
                return Ok(());
            };
            after = Some((last.age, last.id));
            if tx.send(Batch::Rows(rows)).is_err() {
                return Ok(());
            }
        }
    })
}

/// Writes what the reader sends after `start`, reporting progress with a checkpoint;
/// returns the row count and the output.
fn write_batches<W: Write>(
    rx: &mpsc::Receiver<Batch>,
    attempt: &mut Attempt<'_>,
    mut writer: RowWriter<Digesting<W>>,
    file: &str,
    start: Position,
) -> Result<(u64, Digesting<W>), JobError> {
    // Unknown until the reader's count arrives, which may follow some rows.
    let mut total = None;
    let Position {
        mut rows,
        mut after,
    } = start;
    // The channel closes when the reader is done (or failed: the caller reports that).
    while let Ok(batch) = rx.recv() {
        match batch {
            Batch::Total(t) => {
                let t = start.rows + t;
                total = Some(t);
                if rows == start.rows {
                    attempt.progress(rows, t, true)?;
                } else {
                    // Rows came first: the progress shown is one to resume from.
                    record(attempt, &mut writer, file, rows, t, after)?;
                }
            }
            Batch::Rows(batch) => {
                for row in &batch {
                    writer.write(row)?;
                }
                rows += batch.len() as u64;
                after = batch.last().map(|r| (r.age, r.id)).or(after);
                checkpoint(attempt, &mut writer, file, rows, total, after)?;
            }
            Batch::Encoded {
                bytes,
                rows: n,
                last,
            } => {
                writer.write_encoded(&bytes)?;
                rows += n;
                after = Some(last);
                checkpoint(attempt, &mut writer, file, rows, total, after)?;
            }
        }
    }
    Ok((rows, writer.into_inner()?))
}

/// After a batch: records the attempt's progress with a checkpoint when one is due and
/// the total is known.
fn checkpoint<W: Write>(
    attempt: &mut Attempt<'_>,
    writer: &mut RowWriter<Digesting<W>>,
    file: &str,
    rows: u64,
    total: Option<u64>,
    after: Option<(i32, i64)>,
) -> Result<(), JobError> {
    let Some(total) = total.filter(|_| attempt.write_due()) else {
        return Ok(attempt.check()?);
    };
    record(attempt, writer, file, rows, total, after)
}

/// Records the attempt's progress with a checkpoint.
fn record<W: Write>(
    attempt: &mut Attempt<'_>,
    writer: &mut RowWriter<Digesting<W>>,
    file: &str,
    rows: u64,
    total: u64,
    after: Option<(i32, i64)>,
) -> Result<(), JobError> {
    // What the checkpoint names must be in the file before it is recorded.
    writer.flush()?;
    let checkpoint = after.map(|after| ExportCheckpoint {
        file: file.to_owned(),
        rows,
        bytes: writer.get_ref().bytes,
        sha256: writer.get_ref().sha256_so_far(),
        after,
    });
    let checkpoint = serde_json::to_value(checkpoint).expect("checkpoint serializes");
    Ok(attempt.checkpoint(rows, total.max(rows), &checkpoint)?)
}

/// Where an attempt starts: after `rows` rows, the last of them `after`.
#[derive(Debug, Clone, Copy, Default)]
struct Position {
    rows: u64,
    after: Option<(i32, i64)>,
}

/// Where an attempt starts, and the earlier attempt's file it copied its start from.
#[derive(Debug, Default)]
struct Start {
    position: Position,
    resumed_from: Option<String>,
}

/// Copies the prefix an earlier attempt's checkpoint vouches for into `out`; returns
/// where to go on from, or the start when there is nothing usable to resume.
fn resume(
    store: &FileStore,
    checkpoint: Option<&serde_json::Value>,
    out: &mut Digesting<BufWriter<File>>,
) -> Result<Start, JobError> {
    let Some(checkpoint) = checkpoint.and_then(|c| ExportCheckpoint::deserialize(c).ok()) else {
        return Ok(Start::default());
    };
    let Ok(old) = store.open_temp(&checkpoint.file) else {
        log::info!(
            "resuming from {} is not possible: the file is gone",
            checkpoint.file
        );
        return Ok(Start::default());
    };
    let copied = io::copy(&mut old.take(checkpoint.bytes), out)?;
    if copied == checkpoint.bytes && out.sha256_so_far() == checkpoint.sha256 {
        return Ok(Start {
            position: Position {
                rows: checkpoint.rows,
                after: Some(checkpoint.after),
            },
            resumed_from: Some(checkpoint.file),
        });
    }
    log::warn!(
        "the checkpointed prefix of {} does not match its hash; starting over",
        checkpoint.file
    );
    out.inner.flush()?;
    out.inner.get_ref().set_len(0)?;
    out.inner.get_mut().rewind()?;
    out.hasher = Sha256::new();
    out.bytes = 0;
    Ok(Start::default())
}

/// An I/O failure of the attempt, named with the file it was writing, so that the job's
/// error says where (a full disk, a directory gone); other errors are left as they are.
fn naming_file(e: JobError, path: &Path) -> JobError {
    match e {
        JobError::Retry(e) if e.chain().any(|cause| cause.is::<io::Error>()) => {
            JobError::Retry(e.context(format!("writing {}", path.display())))
        }
        other => other,
    }
}

/// Reads the export inside one read-only transaction, so the count and the rows agree.
fn in_snapshot<T>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, JobError>,
) -> Result<T, JobError> {
    conn.transaction(|c| {
        if let DbConnection::Pg(pg) = c {
            pg.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
        }
        f(c)
    })
}

impl Kind for StudentsByAge {
    const KIND: JobKind = JobKind::StudentsByAge;
    type Params = ExportParams;
    type Output = ExportResult;

    /// `{format?, min_age?, max_age?}`.
    fn params(
        raw: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<ExportParams, FieldErrors> {
        let mut fields = Fields::default();
        fields.only(raw, &["format", "min_age", "max_age"]);
        let format = raw
            .get("format")
            .and_then(|f| {
                fields.check(
                    "format",
                    input::string(f).and_then(|f| f.parse::<FileFormat>()),
                )
            })
            .unwrap_or_default();
        let age = |name: &str| raw.get(name).filter(|v| !v.is_null()).map(input::integer);
        let (min_age, max_age) = age_range(&mut fields, age("min_age"), age("max_age"));
        fields.into_result()?;
        ExportParams::new(format, min_age, max_age)
            .map_err(|e| FieldErrors::from([("min_age".to_owned(), e)]))
    }

    fn run(
        &self,
        job: &Job,
        params: ExportParams,
        attempt: &mut Attempt<'_>,
    ) -> Result<ExportResult, JobError> {
        let store = attempt.store().clone();
        let mut temp = store.create_temp(attempt.token(), params.format.extension())?;
        let exported = self
            .export(&store, job, attempt, &params, &mut temp)
            .map_err(|e| naming_file(e, temp.path()));
        if matches!(
            exported,
            Err(JobError::Stopped(Stop::Shutdown) | JobError::Retry(_))
        ) {
            // Handed back at shutdown, or to be tried again: the next attempt resumes
            // from what this file's checkpoint vouches for.
            temp.keep();
        }
        let (rows, start, digest) = exported?;
        // The last check before the file becomes visible.
        attempt.progress(rows, rows, true)?;
        let (file, path) = store.commit(temp)?;
        attempt.output(path);
        if let Some(old) = &start.resumed_from {
            store.remove_temp(old);
        }
        let resumed_rows = start.position.rows;
        let result = ExportResult {
            rows,
            bytes: digest.bytes,
            sha256: hex::encode(digest.hasher.finalize()),
            file,
            content_type: params.format.content_type().to_owned(),
            expires_at: store.expires_at(),
            resumed_rows,
        };
        Ok(result)
    }
}

/// The file's content, counted and hashed, once it is synced.
struct FileDigest {
    bytes: u64,
    hasher: Sha256,
}

impl StudentsByAge {
    /// Writes the whole export into `temp`, resuming from the job's checkpoint if it has
    /// one; returns the rows, how many of them were resumed, and the file's digest.
    fn export(
        &self,
        store: &FileStore,
        job: &Job,
        attempt: &mut Attempt<'_>,
        params: &ExportParams,
        temp: &mut TempFile,
    ) -> Result<(u64, Start, FileDigest), JobError> {
        let filter = StudentFilter {
            min_age: params.min_age,
            max_age: params.max_age,
            name_contains: None,
        };
        let file = temp.take_file().expect("a fresh temporary file is open");
        let mut out = Digesting {
            inner: BufWriter::with_capacity(256 * 1024, file),
            hasher: Sha256::new(),
            bytes: 0,
        };
        let begin = resume(store, job.checkpoint.as_ref(), &mut out)?;
        let start = begin.position;
        if start.rows > 0 {
            log::info!("job {}: resuming after {} rows", job.id, start.rows);
            attempt.resumed(start.rows);
        }
        let pool = attempt.pool().clone();
        let conn = pool.get()?;
        // PostgreSQL writes CSV itself, faster than rows can be decoded here.
        let copy = params.format == FileFormat::Csv && matches!(*conn, DbConnection::Pg(_));
        let writer = RowWriter::new(params.format, out, start.after.is_none(), copy)?;
        let default = if copy {
            COPY_BATCH_ROWS
        } else {
            ROW_BATCH_ROWS
        };
        let batch = i64::from(self.settings.batch_rows.unwrap_or(default));
        let name = temp.name.to_string();
        let (rows, out) = std::thread::scope(|scope| {
            // Reading and writing overlap: the database produces the next batch while
            // this thread encodes, hashes and writes the last one.
            let (tx, rx) = mpsc::sync_channel::<Batch>(2);
            let reader = scope
                .spawn(move || read_batches(conn, &pool, &filter, start.after, batch, copy, tx));
            let written = write_batches(&rx, attempt, writer, &name, start);
            drop(rx); // a reader still sending stops at once
            let read = reader
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            let (rows, out) = written?;
            read?;
            Ok::<_, JobError>((rows, out))
        })?;
        let Digesting {
            inner,
            hasher,
            bytes,
        } = out;
        let file = inner
            .into_inner()
            .map_err(|e| JobError::Retry(e.into_error().into()))?;
        file.sync_all()?;
        Ok((rows, begin, FileDigest { bytes, hasher }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_i_o_error_names_the_file_being_written() {
        let path = Path::new("/exports/.job.1.tag.csv.part");
        let full = io::Error::new(io::ErrorKind::StorageFull, "No space left on device");
        let named = naming_file(JobError::from(full), path).to_string();
        assert_eq!(
            named,
            "writing /exports/.job.1.tag.csv.part: No space left on device"
        );
        let other = naming_file(JobError::Retry(anyhow::anyhow!("database away")), path);
        assert_eq!(other.to_string(), "database away");
    }

    #[test]
    fn an_empty_age_range_is_refused() {
        let a = |n| Some(Age::new(n).unwrap());
        assert!(ExportParams::new(FileFormat::Csv, a(30), a(20)).is_err());
        assert!(ExportParams::new(FileFormat::Csv, a(20), a(20)).is_ok());
    }
}
