//! The `students_by_age` export: every student in an age range, ordered by age then id,
//! streamed in keyset batches into a temporary file that is renamed into place only when
//! complete. Memory stays flat whatever the number of rows.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use diesel::connection::SimpleConnection;
use diesel::Connection;
use sha2::{Digest, Sha256};

use super::worker::{Attempt, JobError, JobHandler};
use crate::db::{DbConnection, PooledConn};
use crate::domain::job::{ExportFormat, ExportResult, JobId};
use crate::models::job::Job;
use crate::models::student::{self, ExportRow, StudentFilter};

/// The export of `students_by_age` jobs.
pub struct StudentsByAge;

/// Where a finished export of `job` lives.
pub fn final_path(dir: &Path, id: &JobId, format: ExportFormat) -> PathBuf {
    dir.join(format!("{id}.{}", format.extension()))
}

/// Where an export is written until it is complete; hidden, so no listing shows it.
pub fn temp_path(dir: &Path, id: &JobId, format: ExportFormat) -> PathBuf {
    dir.join(format!(".{id}.{}.part", format.extension()))
}

/// Removes the temporary file unless the export was completed.
struct TempFile {
    path: PathBuf,
    kept: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.kept {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Counts and hashes what passes through to the file.
struct Digesting<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
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

/// A CSV cell that a spreadsheet would take for a formula gets a leading `'`.
pub fn neutralise_formula(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

enum RowWriter<W: Write> {
    Csv(Box<csv::Writer<W>>),
    Jsonl(W),
}

impl<W: Write> RowWriter<W> {
    fn new(format: ExportFormat, out: W) -> Result<Self, JobError> {
        Ok(match format {
            ExportFormat::Csv => {
                let mut w = csv::WriterBuilder::new()
                    .terminator(csv::Terminator::CRLF)
                    .from_writer(out);
                w.write_record(["id", "name", "age"])
                    .map_err(|e| JobError::Retry(e.into()))?;
                RowWriter::Csv(Box::new(w))
            }
            ExportFormat::Jsonl => RowWriter::Jsonl(out),
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
        }
    }

    fn into_inner(self) -> Result<W, JobError> {
        match self {
            RowWriter::Csv(w) => w
                .into_inner()
                .map_err(|e| JobError::Retry(anyhow::anyhow!("{}", e.error()))),
            RowWriter::Jsonl(w) => Ok(w),
        }
    }
}

/// What the reading thread hands to the writing one.
enum Batch {
    /// How many rows the export will have (sent first).
    Total(u64),
    Rows(Vec<ExportRow>),
}

/// Reads the count, then every batch in (age, id) order, into `tx`, inside one snapshot.
/// Stops quietly when the writer hangs up.
fn read_batches(
    mut conn: PooledConn,
    filter: &StudentFilter,
    batch: i64,
    tx: mpsc::SyncSender<Batch>,
) -> Result<(), JobError> {
    in_snapshot(&mut conn, |conn| {
        let total = student::count(conn, filter)? as u64;
        if tx.send(Batch::Total(total)).is_err() {
            return Ok(());
        }
        let mut after = None;
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

/// Writes what the reader sends, reporting progress; returns the row count and the output.
fn write_batches<W: Write>(
    rx: &mpsc::Receiver<Batch>,
    attempt: &mut Attempt<'_>,
    format: ExportFormat,
    out: W,
) -> Result<(u64, W), JobError> {
    let mut writer = RowWriter::new(format, out)?;
    let mut total = 0;
    let mut done = 0u64;
    // The channel closes when the reader is done (or failed: the caller reports that).
    while let Ok(batch) = rx.recv() {
        match batch {
            Batch::Total(t) => {
                total = t;
                attempt.progress(0, total, true)?;
            }
            Batch::Rows(rows) => {
                for row in &rows {
                    writer.write(row)?;
                }
                done += rows.len() as u64;
                attempt.progress(done, total.max(done), false)?;
            }
        }
    }
    Ok((done, writer.into_inner()?))
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

impl JobHandler for StudentsByAge {
    fn run(&self, job: &Job, attempt: &mut Attempt<'_>) -> Result<serde_json::Value, JobError> {
        let params = job
            .export_params()
            .map_err(|e| JobError::Abort(anyhow::anyhow!("unreadable parameters: {e}")))?;
        let id = job.job_id();
        let filter = StudentFilter {
            min_age: params.min_age,
            max_age: params.max_age,
            name_contains: None,
        };
        let dir = attempt.export_dir().to_owned();
        fs::create_dir_all(&dir)?;
        let temp = TempFile {
            path: temp_path(&dir, &id, params.format),
            kept: false,
        };
        let file = File::create(&temp.path)?;
        let out = Digesting {
            inner: BufWriter::with_capacity(256 * 1024, file),
            hasher: Sha256::new(),
            bytes: 0,
        };
        let batch = i64::from(attempt.batch_rows());
        let conn = attempt.pool().get()?;
        let (rows, out) = std::thread::scope(|scope| {
            // Reading and writing overlap: the database produces the next batch while
            // this thread encodes, hashes and writes the last one.
            let (tx, rx) = mpsc::sync_channel::<Batch>(2);
            let reader = scope.spawn(move || read_batches(conn, &filter, batch, tx));
            let written = write_batches(&rx, attempt, params.format, out);
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
        drop(file);
        // The last check before the file becomes visible: a cancel seen here still wins.
        attempt.progress(rows, rows, true)?;
        let path = final_path(&dir, &id, params.format);
        fs::rename(&temp.path, &path)?;
        let mut temp = temp;
        temp.kept = true;
        let expires_at = chrono::Utc::now()
            + chrono::Duration::from_std(attempt.export_ttl()).unwrap_or(chrono::Duration::days(1));
        let result = ExportResult {
            rows,
            bytes,
            sha256: hex::encode(hasher.finalize()),
            file: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            content_type: params.format.content_type().to_owned(),
            expires_at,
        };
        Ok(serde_json::to_value(result).expect("result serializes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised() {
        for cell in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(neutralise_formula(cell), format!("'{cell}"));
        }
        for cell in ["Ada", "1+1", "", "é=x"] {
            assert_eq!(neutralise_formula(cell), cell);
        }
    }
}
