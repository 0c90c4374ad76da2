//! The database's clock. Leases, due times and endings are stamped and compared by the
//! database itself, never by a host: two hosts whose clocks disagree still agree on
//! whether a lease has run out, so clock skew cannot requeue a live job.

use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::dsl::sql;
use diesel::expression::SqlLiteral;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Timestamp};

use crate::db::DbConnection;

/// The database's time now plus `offset_ms` (negative: in the past), as SQL.
fn expression(conn: &DbConnection, offset_ms: i64) -> String {
    match conn {
        // `AT TIME ZONE 'UTC'` gives UTC whatever the session's time zone.
        DbConnection::Pg(_) => format!(
            "((CURRENT_TIMESTAMP AT TIME ZONE 'UTC') + INTERVAL '{offset_ms} milliseconds')"
        ),
        // Written as diesel writes timestamps, so that text comparisons order by time.
        DbConnection::Sqlite(_) => {
            let sign = if offset_ms < 0 { '-' } else { '+' };
            let ms = offset_ms.unsigned_abs();
            format!(
                "strftime('%Y-%m-%d %H:%M:%f', 'now', '{sign}{}.{:03} seconds')",
                ms / 1000,
                ms % 1000
            )
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
}

/// The database's time now.
pub fn now(conn: &DbConnection) -> SqlLiteral<Timestamp> {
    sql(&expression(conn, 0))
}

/// The database's time `d` from now.
pub fn after(conn: &DbConnection, d: Duration) -> SqlLiteral<Timestamp> {
    sql(&expression(conn, millis(d)))
}

/// The database's time `d` ago.
pub fn before(conn: &DbConnection, d: Duration) -> SqlLiteral<Timestamp> {
    sql(&expression(conn, -millis(d)))
}

/// Reads the database's time now.
pub fn read(conn: &mut DbConnection) -> QueryResult<NaiveDateTime> {
    let now = now(conn);
    diesel::select(now).get_result(conn)
}

/// Whole minutes from `start` to the time in `column` (a timestamp column as SQL, e.g.
/// `jobs.finished_at`), rounded down: the minute of a window that starts at `start` (on
/// a whole second) in which the time falls.
pub fn minute_index(conn: &DbConnection, column: &str, start: NaiveDateTime) -> SqlLiteral<BigInt> {
    let epoch = start.and_utc().timestamp();
    sql(&match conn {
        DbConnection::Pg(_) => {
            format!("CAST(FLOOR((EXTRACT(EPOCH FROM {column}) - {epoch}) / 60) AS BIGINT)")
        }
        // Times at or after `start` only: SQLite's integer division rounds toward zero.
        DbConnection::Sqlite(_) => {
            format!("((CAST(strftime('%s', {column}) AS INTEGER) - {epoch}) / 60)")
        }
    })
}

/// A time read from the database, written back as the database writes its own (so that
/// SQLite's text comparisons agree).
pub fn literal(conn: &DbConnection, at: NaiveDateTime) -> SqlLiteral<Timestamp> {
    sql(&match conn {
        DbConnection::Pg(_) => format!("TIMESTAMP '{}'", at.format("%Y-%m-%d %H:%M:%S%.6f")),
        DbConnection::Sqlite(_) => format!("'{}'", at.format("%Y-%m-%d %H:%M:%S%.3f")),
    })
}

/// [`now`], for a nullable column.
pub fn now_nullable(conn: &DbConnection) -> SqlLiteral<Nullable<Timestamp>> {
    sql(&expression(conn, 0))
}

/// [`after`], for a nullable column.
pub fn after_nullable(conn: &DbConnection, d: Duration) -> SqlLiteral<Nullable<Timestamp>> {
    sql(&expression(conn, millis(d)))
}

/// [`before`], for a nullable column.
pub fn before_nullable(conn: &DbConnection, d: Duration) -> SqlLiteral<Nullable<Timestamp>> {
    sql(&expression(conn, -millis(d)))
}
