//! The `settings` table: values roster makes once and every process shares (the key
//! session cookies are signed with, the revocation mark).

use diesel::prelude::*;

use crate::db::DbConnection;
use crate::schema::settings;

/// The value of setting `key`, made by `make` and stored the first time it is asked for
/// (by whichever process asks first: the others read it).
pub fn setting_or_insert(
    conn: &mut DbConnection,
    key: &str,
    make: impl FnOnce() -> String,
) -> QueryResult<String> {
    let read = |conn: &mut DbConnection| {
        settings::table
            .find(key)
            .select(settings::value)
            .first::<String>(conn)
            .optional()
    };
    if let Some(value) = read(conn)? {
        return Ok(value);
    }
    let inserted = diesel::insert_into(settings::table)
        .values((settings::key.eq(key), settings::value.eq(make())))
        .execute(conn);
    match inserted {
        Ok(_) => {}
        // Another process stored it first: theirs is the one.
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => {}
        Err(e) => return Err(e),
    }
    read(conn)?.ok_or(diesel::result::Error::NotFound)
}

/// The name of the deployment: the processes that share this database. It scopes what
/// they share elsewhere (Redis keys and channels), so that two deployments on one Redis
/// never see each other's wake-ups or events.
pub fn deployment(conn: &mut DbConnection) -> QueryResult<String> {
    setting_or_insert(conn, "deployment", || {
        uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
    })
}
