//! The `students` table: rows, filters and the queries on them.

use std::io::BufRead;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::query_builder::AstPass;
use diesel::sql_types::{BigInt, Bool, Integer};
use diesel::PgConnection;
use serde::Serialize;

use crate::db::{roster_lower, Db, DbConnection};
use crate::domain::student::{Age, StudentName};
use crate::schema::students;

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = students)]
pub struct Student {
    pub id: i64,
    pub name: String,
    pub age: i32,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// A student as the API shows it.
#[derive(Debug, Serialize)]
pub struct StudentView {
    pub id: i64,
    pub name: String,
    pub age: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Student> for StudentView {
    fn from(s: Student) -> Self {
        Self {
            id: s.id,
            name: s.name,
            age: s.age,
            created_at: s.created_at.and_utc(),
            updated_at: s.updated_at.and_utc(),
        }
    }
}

/// The exported columns of a student, in export order.
#[derive(Debug, Clone, Queryable, Serialize)]
pub struct ExportRow {
    pub id: i64,
    pub name: String,
    pub age: i32,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = students, treat_none_as_default_value = false)]
pub struct NewStudent {
    pub name: String,
    pub age: i32,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl NewStudent {
    pub fn new(name: StudentName, age: Age, now: NaiveDateTime) -> Self {
        Self {
            name: name.into_inner(),
            age: age.get(),
            created_at: now,
            updated_at: now,
        }
    }
}

/// Inserts `rows` the fastest way each backend has (COPY on PostgreSQL, multi-row
/// inserts on SQLite), inside the caller's transaction if there is one.
pub fn insert_many(conn: &mut DbConnection, rows: &[NewStudent]) -> QueryResult<usize> {
    match conn {
        DbConnection::Pg(pg) => diesel::copy_from(students::table)
            .from_insertable(rows)
            .execute(pg),
        DbConnection::Sqlite(lite) => {
            let mut inserted = 0;
            // 4 parameters a row; SQLite allows 32766 per statement.
            for chunk in rows.chunks(5_000) {
                inserted += diesel::insert_into(students::table)
                    .values(chunk)
                    .execute(lite)?;
            }
            Ok(inserted)
        }
    }
}

/// A change to a student; absent fields stay as they are.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = students)]
pub struct StudentChanges {
    pub name: Option<String>,
    pub age: Option<i32>,
    pub updated_at: Option<NaiveDateTime>,
}

/// Which students a listing or an export covers.
#[derive(Debug, Clone, Default)]
pub struct StudentFilter {
    pub min_age: Option<Age>,
    pub max_age: Option<Age>,
    /// Name contains this, case-insensitively.
    pub name_contains: Option<String>,
}

fn filtered(filter: &StudentFilter) -> students::BoxedQuery<'static, Db> {
    let mut query = students::table.into_boxed();
    if let Some(min) = filter.min_age {
        query = query.filter(students::age.ge(min.get()));
    }
    if let Some(max) = filter.max_age {
        query = query.filter(students::age.le(max.get()));
    }
    if let Some(term) = &filter.name_contains {
        let pattern = format!("%{}%", escape_like(&term.to_lowercase()));
        query = query.filter(roster_lower(students::name).like(pattern).escape('\\'));
    }
    query
}

/// Makes `%`, `_` and `\` in a search term match themselves.
fn escape_like(term: &str) -> String {
    let mut out = String::with_capacity(term.len());
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub fn count(conn: &mut DbConnection, filter: &StudentFilter) -> QueryResult<i64> {
    filtered(filter).count().get_result(conn)
}

/// One page (1-based) of students, ordered by id.
pub fn page(
    conn: &mut DbConnection,
    filter: &StudentFilter,
    page: i64,
    per_page: i64,
) -> QueryResult<Vec<Student>> {
    filtered(filter)
        .order(students::id)
        .limit(per_page)
        .offset((page - 1).saturating_mul(per_page))
        .select(Student::as_select())
        .load(conn)
}

pub fn find(conn: &mut DbConnection, id: i64) -> QueryResult<Option<Student>> {
    students::table
        .find(id)
        .select(Student::as_select())
        .first(conn)
        .optional()
}

pub fn insert(conn: &mut DbConnection, new: &NewStudent) -> QueryResult<Student> {
    crate::on_backend!(conn, |c| diesel::insert_into(students::table)
        .values(new)
        .returning(students::all_columns)
        .get_result(c))
}

pub fn update(
    conn: &mut DbConnection,
    id: i64,
    changes: &StudentChanges,
) -> QueryResult<Option<Student>> {
    crate::on_backend!(conn, |c| diesel::update(students::table.find(id))
        .set(changes)
        .returning(students::all_columns)
        .get_result(c)
        .optional())
}

/// Returns whether a student was deleted.
pub fn delete(conn: &mut DbConnection, id: i64) -> QueryResult<bool> {
    diesel::delete(students::table.find(id))
        .execute(conn)
        .map(|n| n > 0)
}

/// The next keyset batch of an export: students in `filter` after `(age, id)`, in
/// (age, id) order. The row-value comparison lets both databases seek the (age, id) index.
/// The students of `filter` after the key `after` (age, id), in export order.
fn export_query(
    filter: &StudentFilter,
    after: Option<(i32, i64)>,
) -> students::BoxedQuery<'static, Db> {
    let mut query = filtered(filter);
    if let Some((age, id)) = after {
        query = query.filter(
            diesel::dsl::sql::<Bool>("(age, id) > (")
                .bind::<Integer, _>(age)
                .sql(", ")
                .bind::<BigInt, _>(id)
                .sql(")"),
        );
    }
    query
}

/// `COPY (the export's SELECT) TO STDOUT`. diesel's `copy_to` takes a table or its
/// columns; this target is the export's query instead. COPY takes no bind parameters,
/// so the query reads its bounds from settings of the enclosing transaction
/// ([`export_copy_bounds`], [`export_copy`] set them). A bound the export does not have
/// is left out of the SQL (`AGES`, `AFTER`) rather than set to the type's extremes: each
/// one checked per row cost the server's COPY 2-4 % (psql, 10,000,000 rows).
struct ExportCopy<const AGES: bool, const AFTER: bool>;

impl<const AGES: bool, const AFTER: bool> diesel::pg::CopyTarget for ExportCopy<AGES, AFTER> {
    type Table = students::table;
    type SqlType = (BigInt, diesel::sql_types::Text, Integer);

    fn walk_target(mut pass: AstPass<'_, '_, diesel::pg::Pg>) -> QueryResult<()> {
        // The formula guard is applied on the stream (`CopyRows`): in SQL it costs the
        // server half as much again as the COPY itself (`left(name, 1) IN …`).
        pass.push_sql("(SELECT id, name, age FROM students WHERE TRUE");
        if AGES {
            pass.push_sql(
                " AND age BETWEEN current_setting('roster.export_min_age')::integer \
                              AND current_setting('roster.export_max_age')::integer",
            );
        }
        if AFTER {
            pass.push_sql(
                " AND (age, id) > (current_setting('roster.export_after_age')::integer, \
                                   current_setting('roster.export_after_id')::bigint)",
            );
        }
        pass.push_sql(" ORDER BY age, id LIMIT current_setting('roster.export_limit')::bigint)");
        Ok(())
    }
}

/// What every [`export_copy`] of one export shares, set by [`export_copy_bounds`].
#[derive(Debug, Clone, Copy)]
pub struct CopyPlan {
    /// The filter bounds the ages.
    ages: bool,
}

/// Sets, for the rest of the transaction, the bounds every [`export_copy`] in it shares:
/// the filter's ages and the rows per COPY.
pub fn export_copy_bounds(
    pg: &mut PgConnection,
    filter: &StudentFilter,
    limit: i64,
) -> QueryResult<CopyPlan> {
    let min_age = filter.min_age.map_or(i32::MIN, Age::get);
    let max_age = filter.max_age.map_or(i32::MAX, Age::get);
    // Integers only: nothing formatted here can carry SQL.
    pg.batch_execute(&format!(
        "SELECT set_config('roster.export_min_age', '{min_age}', true), \
                set_config('roster.export_max_age', '{max_age}', true), \
                set_config('roster.export_limit', '{limit}', true)"
    ))?;
    Ok(CopyPlan {
        ages: filter.min_age.is_some() || filter.max_age.is_some(),
    })
}

/// The export's next rows after the key `after` (as many as [`export_copy_bounds`] set)
/// as PostgreSQL's own CSV (no header, each row ending in LF), encoded by the server:
/// nothing is decoded row by row on this side. Must run inside the transaction that set
/// the bounds.
///
/// diesel never reads a COPY's final result, so a server error mid-stream (a statement
/// timeout, a terminated backend) ends the stream as if it were complete. The caller must
/// run another statement in the transaction before trusting a short stream: the next
/// call's own is one (it fails in the aborted transaction).
pub fn export_copy<'c>(
    pg: &'c mut PgConnection,
    plan: CopyPlan,
    after: Option<(i32, i64)>,
) -> QueryResult<Box<dyn BufRead + 'c>> {
    let (after_age, after_id) = after.unwrap_or((i32::MIN, i64::MIN));
    // One statement, sent as a simple query: that also reads the last COPY's final
    // result, which a prepared statement would find still pending.
    pg.batch_execute(&format!(
        "SELECT set_config('roster.export_after_age', '{after_age}', true), \
                set_config('roster.export_after_id', '{after_id}', true)"
    ))?;
    fn copy<'c, const AGES: bool, const AFTER: bool>(
        pg: &'c mut PgConnection,
    ) -> QueryResult<Box<dyn BufRead + 'c>> {
        let out = diesel::copy_to(ExportCopy::<AGES, AFTER>)
            .with_format(diesel::pg::CopyFormat::Csv)
            .load_raw(pg)?;
        Ok(Box::new(out))
    }
    match (plan.ages, after.is_some()) {
        (false, false) => copy::<false, false>(pg),
        (false, true) => copy::<false, true>(pg),
        (true, false) => copy::<true, false>(pg),
        (true, true) => copy::<true, true>(pg),
    }
}

/// How many students an export still has to write after the key `after`.
pub fn export_count(
    conn: &mut DbConnection,
    filter: &StudentFilter,
    after: Option<(i32, i64)>,
) -> QueryResult<i64> {
    export_query(filter, after).count().get_result(conn)
}

pub fn export_batch(
    conn: &mut DbConnection,
    filter: &StudentFilter,
    after: Option<(i32, i64)>,
    limit: i64,
) -> QueryResult<Vec<ExportRow>> {
    export_query(filter, after)
        .order((students::age, students::id))
        .limit(limit)
        .select((students::id, students::name, students::age))
        .load(conn)
}

#[cfg(test)]
mod tests {
    use super::escape_like;

    #[test]
    fn like_wildcards_in_a_search_are_taken_literally() {
        assert_eq!(escape_like("50%_a\\b"), "50\\%\\_a\\\\b");
    }
}
