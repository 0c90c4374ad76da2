//! The `import_rows` table: where an all-or-nothing import stages its valid rows, batch by
//! committed batch, until one statement publishes them into `students`.
//!
//! Rows are keyed by the job and the attempt that staged them. Publishing takes only the
//! rows of the attempt that holds the job (the caller fences it in the same transaction),
//! so rows a paused attempt staged late are never published; whatever an attempt leaves
//! behind is discarded by the job's next attempt, or by maintenance once the job has ended.

use diesel::prelude::*;
use diesel::sql_types::Timestamp;
use diesel::IntoSql;

use crate::db::DbConnection;
use crate::domain::job::JobId;
use crate::schema::{import_rows, jobs, students};

/// One staged row: the `n`th valid row its attempt read.
#[derive(Debug, Insertable)]
#[diesel(table_name = import_rows, treat_none_as_default_value = false)]
struct StagedRow {
    job_id: String,
    attempt: i32,
    n: i64,
    name: String,
    age: i32,
}

/// Stages `rows` (name, age) for attempt `attempt` of `job`, numbered from `first`.
pub fn stage(
    conn: &mut DbConnection,
    job: &JobId,
    attempt: i32,
    first: i64,
    rows: &[(String, i32)],
) -> QueryResult<usize> {
    let job_id = job.to_string();
    let staged: Vec<StagedRow> = rows
        .iter()
        .zip(first..)
        .map(|((name, age), n)| StagedRow {
            job_id: job_id.clone(),
            attempt,
            n,
            name: name.clone(),
            age: *age,
        })
        .collect();
    match conn {
        DbConnection::Pg(pg) => diesel::copy_from(import_rows::table)
            .from_insertable(&staged)
            .execute(pg),
        DbConnection::Sqlite(lite) => {
            let mut inserted = 0;
            // 5 parameters a row; SQLite allows 32766 per statement.
            for chunk in staged.chunks(5_000) {
                inserted += diesel::insert_into(import_rows::table)
                    .values(chunk)
                    .execute(lite)?;
            }
            Ok(inserted)
        }
    }
}

/// Inserts every row attempt `attempt` of `job` staged into `students`, in the order they
/// were read, stamped `at`, and removes them from the stage; returns how many. Run it in
/// the transaction that fences the attempt, so that only the holder's rows are published.
pub fn publish(
    conn: &mut DbConnection,
    job: &JobId,
    attempt: i32,
    at: chrono::NaiveDateTime,
) -> QueryResult<usize> {
    let staged = || {
        import_rows::table
            .filter(import_rows::job_id.eq(job.to_string()))
            .filter(import_rows::attempt.eq(attempt))
    };
    let rows = staged().order(import_rows::n).select((
        import_rows::name,
        import_rows::age,
        at.into_sql::<Timestamp>(),
        at.into_sql::<Timestamp>(),
    ));
    let published = crate::on_backend!(conn, |c| diesel::insert_into(students::table)
        .values(rows)
        .into_columns((
            students::name,
            students::age,
            students::created_at,
            students::updated_at,
        ))
        .execute(c))?;
    crate::on_backend!(conn, |c| diesel::delete(staged()).execute(c))?;
    Ok(published)
}

/// Which of a job's staged rows to discard.
#[derive(Debug, Clone, Copy)]
pub enum Staged {
    /// Those of attempt number `n` (giving up). Never another attempt's: a paused attempt
    /// that gives up late must not discard what the attempt holding the job now staged.
    Of(i32),
    /// Those of attempts before number `n` (an attempt starting afresh).
    Before(i32),
}

/// Discards rows staged for `job`, as `which` says.
pub fn discard(conn: &mut DbConnection, job: &JobId, which: Staged) -> QueryResult<usize> {
    let of_job = import_rows::table.filter(import_rows::job_id.eq(job.to_string()));
    match which {
        Staged::Of(n) => crate::on_backend!(conn, |c| diesel::delete(
            of_job.filter(import_rows::attempt.eq(n))
        )
        .execute(c)),
        Staged::Before(n) => crate::on_backend!(conn, |c| diesel::delete(
            of_job.filter(import_rows::attempt.lt(n))
        )
        .execute(c)),
    }
}

/// Discards the rows staged by jobs that are no longer running: an attempt that died (or
/// was cancelled) between staging and cleaning up after itself.
pub fn discard_orphans(conn: &mut DbConnection) -> QueryResult<usize> {
    let running = jobs::table
        .filter(jobs::status.eq(crate::domain::job::JobStatus::Running.as_str()))
        .select(jobs::id);
    crate::on_backend!(conn, |c| diesel::delete(
        import_rows::table.filter(import_rows::job_id.ne_all(running))
    )
    .execute(c))
}
