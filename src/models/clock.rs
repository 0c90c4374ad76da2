//! The database's clock. Leases, due times and endings are stamped and compared by the
//! database itself, never by a host: two hosts whose clocks disagree still agree on
//! whether a lease has run out, so clock skew cannot requeue a live job.

use std::marker::PhantomData;
use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::backend::Backend;
use diesel::dsl::sql;
use diesel::expression::{is_aggregate, SqlLiteral, TypedExpressionType, ValidGrouping};
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, HasSqlType, Nullable, SqlType, Timestamp};

use crate::db::DbConnection;

/// The database's time now plus an offset, as SQL. Its text depends on the backend only
/// (the offset is a bound parameter), so a statement that reads the clock is prepared
/// once per connection and reused; a literal offset made every such statement new to
/// the server, to be parsed and planned again.
#[derive(Debug, Clone, Copy)]
pub struct DbTime<ST> {
    /// The SQL before and after the bound offset in milliseconds.
    sql: (&'static str, &'static str),
    offset_ms: i64,
    sql_type: PhantomData<ST>,
}

impl<ST> DbTime<ST> {
    fn new(conn: &DbConnection, offset_ms: i64) -> Self {
        let sql = match conn {
            // `AT TIME ZONE 'UTC'` gives UTC whatever the session's time zone.
            DbConnection::Pg(_) => (
                "((CURRENT_TIMESTAMP AT TIME ZONE 'UTC') + ",
                " * INTERVAL '1 millisecond')",
            ),
            // Written as diesel writes timestamps, so that text comparisons order by time.
            DbConnection::Sqlite(_) => (
                "strftime('%Y-%m-%d %H:%M:%f', julianday('now') + ",
                " / 86400000.0)",
            ),
        };
        Self {
            sql,
            offset_ms,
            sql_type: PhantomData,
        }
    }
}

impl<ST: SqlType + TypedExpressionType> Expression for DbTime<ST> {
    type SqlType = ST;
}

// For either backend and for both together (a statement built for `DbConnection`).
impl<ST, DB> QueryFragment<DB> for DbTime<ST>
where
    DB: Backend + HasSqlType<BigInt>,
    i64: ToSql<BigInt, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql(self.sql.0);
        out.push_bind_param::<BigInt, _>(&self.offset_ms)?;
        out.push_sql(self.sql.1);
        Ok(())
    }
}

impl<ST> QueryId for DbTime<ST> {
    type QueryId = ();
    // Cached by its SQL text, which names the backend.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<QS, ST> SelectableExpression<QS> for DbTime<ST> where Self: Expression {}

impl<QS, ST> AppearsOnTable<QS> for DbTime<ST> where Self: Expression {}

impl<ST, GB> ValidGrouping<GB> for DbTime<ST> {
    type IsAggregate = is_aggregate::Never;
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
}

/// The database's time now.
pub fn now(conn: &DbConnection) -> DbTime<Timestamp> {
    DbTime::new(conn, 0)
}

/// The database's time `d` from now.
pub fn after(conn: &DbConnection, d: Duration) -> DbTime<Timestamp> {
    DbTime::new(conn, millis(d))
}

/// The database's time `d` ago.
pub fn before(conn: &DbConnection, d: Duration) -> DbTime<Timestamp> {
    DbTime::new(conn, -millis(d))
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
pub fn now_nullable(conn: &DbConnection) -> DbTime<Nullable<Timestamp>> {
    DbTime::new(conn, 0)
}

/// [`after`], for a nullable column.
pub fn after_nullable(conn: &DbConnection, d: Duration) -> DbTime<Nullable<Timestamp>> {
    DbTime::new(conn, millis(d))
}

/// [`before`], for a nullable column.
pub fn before_nullable(conn: &DbConnection, d: Duration) -> DbTime<Nullable<Timestamp>> {
    DbTime::new(conn, -millis(d))
}
