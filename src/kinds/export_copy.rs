//! The export's fast path on PostgreSQL: `COPY (SELECT …) TO STDOUT` in CSV, so that the
//! server encodes and quotes the rows itself and nothing is decoded row by row here. Each
//! COPY reads one keyset batch (`ROSTER_EXPORT_BATCH_ROWS` rows after the last key), as
//! the row-by-row path does: a cancel waits for one batch at most, and the checkpoints
//! fall where they would. The server's CSV differs from the file's in two ways, mended on
//! the stream by [`CopyRows`]: its rows end in LF, the file's in CRLF (RFC 4180), and it
//! knows nothing of the formula guard. [`CopyRows`] also counts the rows and keeps the
//! key of the last one, and hands on whole rows only, so that a checkpoint taken between
//! two batches always names a row boundary.
//!
//! The progress total needs a count of the rows. An export that fits in one batch counts
//! its rows as it reads them; a longer one counts them on a second connection, in the
//! same snapshot, while the COPY goes on, so that the count costs no time of its own.

use std::io::BufRead;
use std::sync::mpsc::SyncSender;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel::PgConnection;

use super::rows::{starts_formula, Batch};
use crate::db::{DbConnection, Pool, PooledConn};
use crate::jobs::worker::JobError;
use crate::models::student::{self, CopyPlan, StudentFilter};

/// Bytes gathered before they go to the writer when a batch is large: the hand-over then
/// costs nothing per row, and checkpoints stay frequent.
const HANDOVER_BYTES: usize = 256 * 1024;

/// Streams the export's rows after `after` into `tx` as encoded batches, `batch` rows per
/// COPY, and their count as [`Batch::Total`] (not always first). `conn` is PostgreSQL's,
/// inside a repeatable-read transaction. Stops quietly when the writer hangs up.
pub fn read(
    conn: &mut DbConnection,
    pool: &Pool,
    filter: &StudentFilter,
    after: Option<(i32, i64)>,
    batch: i64,
    tx: &SyncSender<Batch>,
) -> Result<(), JobError> {
    let plan = student::export_copy_bounds(pg(conn)?, filter, batch)?;
    let mut stream = Stream::new(plan);
    let Some(first) = stream.copy(pg(conn)?, after, batch, tx)? else {
        return Ok(());
    };
    if first < batch as u64 {
        let _ = tx.send(Batch::Total(first));
        return Ok(());
    }
    // A full first batch was not checked (the next COPY would check it), and the
    // statements below are not COPYs.
    settle(pg(conn)?)?;
    let Some(other) = pool.try_get() else {
        // No connection to spare (a busy pool): count first, on this one.
        let total = student::export_count(conn, filter, after)? as u64;
        if tx.send(Batch::Total(total)).is_err() {
            return Ok(());
        }
        return stream.copy_rest(pg(conn)?, batch, tx);
    };
    let snapshot: String =
        diesel::select(diesel::dsl::sql::<Text>("pg_export_snapshot()")).get_result(pg(conn)?)?;
    std::thread::scope(|scope| {
        // The snapshot can be imported only while this transaction is open: it is, until
        // the count has ended.
        let counter = scope.spawn(|| count_in(other, &snapshot, filter, after, tx.clone()));
        let copied = stream.copy_rest(pg(conn)?, batch, tx);
        let counted = counter
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        copied.and(counted)
    })
}

fn pg(conn: &mut DbConnection) -> Result<&mut PgConnection, JobError> {
    match conn {
        DbConnection::Pg(pg) => Ok(pg),
        DbConnection::Sqlite(_) => Err(JobError::Retry(anyhow::anyhow!(
            "internal error: COPY asked of SQLite"
        ))),
    }
}

/// Counts the export's rows after `after` in the exported `snapshot`, into `tx`.
fn count_in(
    mut conn: PooledConn,
    snapshot: &str,
    filter: &StudentFilter,
    after: Option<(i32, i64)>,
    tx: SyncSender<Batch>,
) -> Result<(), JobError> {
    if !snapshot
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(JobError::Retry(anyhow::anyhow!(
            "unexpected snapshot name {snapshot:?}"
        )));
    }
    let total = conn.transaction(|c| {
        c.batch_execute(&format!(
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY; \
             SET TRANSACTION SNAPSHOT '{snapshot}';"
        ))?;
        student::export_count(c, filter, after)
    })?;
    let _ = tx.send(Batch::Total(total as u64));
    Ok(())
}

/// The COPY stream's state across batches.
struct Stream {
    plan: CopyPlan,
    rows: CopyRows,
    out: Vec<u8>,
}

impl Stream {
    fn new(plan: CopyPlan) -> Self {
        Self {
            plan,
            rows: CopyRows::default(),
            out: Vec::new(),
        }
    }

    /// Every batch after the last row read.
    fn copy_rest(
        &mut self,
        pg: &mut PgConnection,
        batch: i64,
        tx: &SyncSender<Batch>,
    ) -> Result<(), JobError> {
        loop {
            match self.copy(pg, self.rows.last, batch, tx)? {
                Some(read) if read == batch as u64 => continue,
                _ => return Ok(()),
            }
        }
    }

    /// One COPY of up to `batch` rows after `after`, into `tx`; how many rows it read, or
    /// `None` when the writer hung up.
    fn copy(
        &mut self,
        pg: &mut PgConnection,
        after: Option<(i32, i64)>,
        batch: i64,
        tx: &SyncSender<Batch>,
    ) -> Result<Option<u64>, JobError> {
        let (rows, out) = (&mut self.rows, &mut self.out);
        let before = rows.total;
        let mut copy = student::export_copy(pg, self.plan, after)?;
        let mut gone = false;
        loop {
            let chunk = copy.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            let n = chunk.len();
            if !gone {
                rows.feed(chunk, out);
            }
            copy.consume(n);
            if out.len() >= HANDOVER_BYTES {
                // The rest of this COPY is read and dropped: the connection is only
                // usable again once the server is done with it.
                gone |= rows.take(out).is_some_and(|b| tx.send(b).is_err());
            }
        }
        drop(copy);
        let read = rows.total - before;
        if gone {
            return Ok(None);
        }
        if read < batch as u64 || !rows.at_row_start() {
            // Short: the end of the export, unless the server ended the COPY with an
            // error, which diesel does not read. After a full batch the next one's
            // settings tell (it fails in the aborted transaction); at the end, a
            // statement of its own must.
            settle(pg)?;
        }
        if !rows.at_row_start() {
            return Err(JobError::Retry(anyhow::anyhow!(
                "PostgreSQL's COPY ended in the middle of a row"
            )));
        }
        if let Some(b) = rows.take(out) {
            if tx.send(b).is_err() {
                return Ok(None);
            }
        }
        Ok(Some(read))
    }
}

/// Fails if the last COPY on `pg` ended with a server error (a statement timeout, a
/// terminated backend), which diesel does not read: the error aborted the transaction, so
/// a statement after it fails. Also makes the connection usable for prepared statements
/// again ("another command is already in progress" until a COPY's result is read).
fn settle(pg: &mut PgConnection) -> Result<(), JobError> {
    pg.batch_execute("SELECT 1")
        .map_err(|e| JobError::Retry(anyhow::anyhow!("the COPY did not complete: {e}")))
}

/// Reads PostgreSQL's CSV rows of `id,name,age` (only `name` may be quoted), writing them
/// as the file holds them: CRLF line ends, and a name that a spreadsheet would take for a
/// formula behind a `'` ([`starts_formula`]), which costs the server nothing.
#[derive(Debug, Default)]
pub struct CopyRows {
    quoted: bool,
    /// The row's field being read: 0 id, 1 name, 2 age.
    field: u8,
    /// The next byte is the name's first character (or its opening quote).
    name_start: bool,
    id: i64,
    age: i32,
    /// Bytes of the output that end on a row boundary.
    whole: usize,
    /// Rows that end within `whole` and were not yet taken.
    rows: u64,
    /// Rows read in all.
    total: u64,
    last: Option<(i32, i64)>,
}

/// Whether a name whose bytes start `bytes` is neutralised: the CSV writer's rule
/// ([`starts_formula`]), read from the longest whole characters among the first few bytes
/// (what follows the name there, a quote or a comma, opens no formula).
fn formula_start(bytes: &[u8]) -> bool {
    // Invisible prefixes take 3 bytes each; a dozen is beyond any real name.
    let bytes = &bytes[..bytes.len().min(40)];
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).expect("valid up to there"),
    };
    starts_formula(text)
}

impl CopyRows {
    /// Appends `chunk` to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        // libpq hands over one row at a time. A row without a quote has its line end as
        // its only LF, its id before its first comma, its name right after it and its age
        // after its last comma: no byte needs looking at one by one.
        if self.at_row_start() && memchr::memchr(b'"', chunk).is_none() {
            let mut from = 0;
            for end in memchr::memchr_iter(b'\n', chunk) {
                self.row(&chunk[from..end], out);
                from = end + 1;
            }
            return self.scan(&chunk[from..], out);
        }
        self.scan(chunk, out);
    }

    /// A whole row without quotes, its LF left out.
    fn row(&mut self, line: &[u8], out: &mut Vec<u8>) {
        let digits = |field: &[u8]| {
            field
                .iter()
                .fold(0_i64, |n, &b| n * 10 + i64::from(b.wrapping_sub(b'0')))
        };
        let first = memchr::memchr(b',', line).unwrap_or(line.len());
        let last = memchr::memrchr(b',', line).map_or(line.len(), |i| i + 1);
        // Ages are 0..=150 (and the column an integer): the cast cannot truncate.
        let (id, age) = (digits(&line[..first]), digits(&line[last..]) as i32);
        let name = (first + 1).min(line.len());
        if formula_start(&line[name..]) {
            out.extend_from_slice(&line[..name]);
            out.push(b'\'');
            out.extend_from_slice(&line[name..]);
        } else {
            out.extend_from_slice(line);
        }
        out.extend_from_slice(b"\r\n");
        self.end_row(out, id, age);
    }

    /// Reads byte by byte, following quotes: for rows with quoted names, and for a row
    /// that a chunk cuts.
    fn scan(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let mut from = 0;
        for (i, &b) in chunk.iter().enumerate() {
            // The name's opening quote keeps the guard waiting for its first character.
            let opening_quote = b == b'"' && !self.quoted;
            if self.name_start && !opening_quote {
                self.name_start = false;
                if formula_start(&chunk[i..]) {
                    out.extend_from_slice(&chunk[from..i]);
                    out.push(b'\'');
                    from = i;
                }
            }
            match b {
                b'"' => self.quoted = !self.quoted,
                _ if self.quoted => {}
                b',' => {
                    self.field += 1;
                    self.name_start = self.field == 1;
                }
                b'0'..=b'9' if self.field == 0 => self.id = self.id * 10 + i64::from(b - b'0'),
                b'0'..=b'9' if self.field == 2 => self.age = self.age * 10 + i32::from(b - b'0'),
                b'\n' => {
                    out.extend_from_slice(&chunk[from..i]);
                    out.extend_from_slice(b"\r\n");
                    from = i + 1;
                    let (id, age) = (self.id, self.age);
                    self.end_row(out, id, age);
                }
                _ => {}
            }
        }
        out.extend_from_slice(&chunk[from..]);
    }

    fn end_row(&mut self, out: &[u8], id: i64, age: i32) {
        self.whole = out.len();
        self.rows += 1;
        self.total += 1;
        self.last = Some((age, id));
        (self.quoted, self.field, self.name_start) = (false, 0, false);
        (self.id, self.age) = (0, 0);
    }

    /// Whether the input so far ends on a row boundary.
    pub fn at_row_start(&self) -> bool {
        !self.quoted && self.field == 0 && self.id == 0
    }

    /// The whole rows written to `out` so far as a batch, leaving in `out` the start of a
    /// row still being read; `None` when no row was completed since the last take.
    pub fn take(&mut self, out: &mut Vec<u8>) -> Option<Batch> {
        let last = self.last.filter(|_| self.rows > 0)?;
        let rest = out.split_off(self.whole);
        let bytes = std::mem::replace(out, rest);
        let rows = std::mem::take(&mut self.rows);
        self.whole = 0;
        Some(Batch::Encoded { bytes, rows, last })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::rows::neutralise_formula;

    fn take(rows: &mut CopyRows, out: &mut Vec<u8>) -> (String, u64, (i32, i64)) {
        match rows.take(out) {
            Some(Batch::Encoded { bytes, rows, last }) => {
                (String::from_utf8(bytes).unwrap(), rows, last)
            }
            _ => panic!("a batch of encoded rows"),
        }
    }

    #[test]
    fn rows_end_in_crlf_and_a_quoted_line_break_is_left_alone() {
        let (mut rows, mut out) = (CopyRows::default(), Vec::new());
        rows.feed(b"7,Ada,30\n12,\"Smith, \"\"Jr\"\"\n2\",31\n", &mut out);
        assert_eq!(
            take(&mut rows, &mut out),
            (
                "7,Ada,30\r\n12,\"Smith, \"\"Jr\"\"\n2\",31\r\n".to_owned(),
                2,
                (31, 12)
            )
        );
        assert!(rows.at_row_start());
    }

    #[test]
    fn a_batch_holds_whole_rows_only_however_the_input_is_cut() {
        let cases: [(&[u8], &str); 2] = [
            (
                b"1,\"a,b\",5\n22,=x,6\n333,\"-\"\"c\"\"\",70\n",
                "1,\"a,b\",5\r\n22,'=x,6\r\n333,\"'-\"\"c\"\"\",70\r\n",
            ),
            (
                b"1,Ada,5\n22,@x,6\n333,+c,70\n",
                "1,Ada,5\r\n22,'@x,6\r\n333,'+c,70\r\n",
            ),
        ];
        for (input, expected) in cases {
            for cut in 0..input.len() {
                let (mut rows, mut out) = (CopyRows::default(), Vec::new());
                rows.feed(&input[..cut], &mut out);
                let first = rows.take(&mut out);
                rows.feed(&input[cut..], &mut out);
                let (tail, n, last) = take(&mut rows, &mut out);
                assert_eq!(last, (70, 333), "cut at {cut}");
                let head = match first {
                    Some(Batch::Encoded { bytes, rows, .. }) => {
                        assert_eq!(rows + n, 3);
                        assert!(bytes.ends_with(b"\r\n"), "cut at {cut}");
                        String::from_utf8(bytes).unwrap()
                    }
                    _ => {
                        assert_eq!(n, 3);
                        String::new()
                    }
                };
                assert_eq!(head + &tail, expected, "cut at {cut}");
                assert!(out.is_empty() && rows.at_row_start());
            }
        }
    }

    #[test]
    fn formulas_are_neutralised_as_the_csv_writer_does() {
        for name in [
            "=1+1",
            "+1",
            "-1",
            "@SUM(A1)",
            "Ada",
            "1+1",
            "é=x",
            "＝1+1",
            "\u{200B}=1",
            "\u{FEFF}@x",
            "\u{200B}Ada",
        ] {
            let (mut rows, mut out) = (CopyRows::default(), Vec::new());
            rows.feed(format!("9,{name},20\n").as_bytes(), &mut out);
            let expected = format!("9,{},20\r\n", neutralise_formula(name));
            assert_eq!(take(&mut rows, &mut out).0, expected);
            // Quoted, the name is read byte by byte: the same rule.
            let (mut rows, mut out) = (CopyRows::default(), Vec::new());
            rows.feed(format!("9,\"{name}, Jr\",20\n").as_bytes(), &mut out);
            let expected = format!("9,\"{}, Jr\",20\r\n", neutralise_formula(name));
            assert_eq!(take(&mut rows, &mut out).0, expected);
        }
    }

    #[test]
    fn nothing_is_taken_before_a_row_ends() {
        let (mut rows, mut out) = (CopyRows::default(), Vec::new());
        rows.feed(b"5,Ad", &mut out);
        assert!(rows.take(&mut out).is_none());
        assert!(!rows.at_row_start());
    }
}
