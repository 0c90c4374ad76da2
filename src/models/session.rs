//! The `sessions` table: signed-in browsers. The cookie carries a session's id (signed);
//! the table keeps only its sha256, so a copy of the database is no key to a session;
//! signing out, a password change, a demotion or removing the user ends it, and says so
//! to every process (`revocation::revoked`) so that live streams are checked again.

use std::time::Duration;

use diesel::prelude::*;

use super::clock;
use super::secret::digest;
use super::user::User;
use crate::db::DbConnection;
use crate::domain::user::UserName;
use crate::schema::{sessions, users};

/// Signed-in browsers one user keeps at once; signing in past it ends the oldest.
pub const MAX_SESSIONS_PER_USER: i64 = 20;

/// Starts a session for `user` lasting `ttl`; returns its id.
pub fn create(conn: &mut DbConnection, user: &UserName, ttl: Duration) -> QueryResult<String> {
    let id = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let (now, until) = (clock::now(conn), clock::after(conn, ttl));
    diesel::insert_into(sessions::table)
        .values((
            sessions::id.eq(digest(&id)),
            sessions::user_name.eq(user.as_str()),
            sessions::created_at.eq(now),
            sessions::expires_at.eq(until),
        ))
        .execute(conn)?;
    // A user keeps their newest sessions only: signing in again and again cannot grow
    // the table without bound.
    let beyond: Vec<String> = sessions::table
        .filter(sessions::user_name.eq(user.as_str()))
        .order(sessions::created_at.desc())
        .select(sessions::id)
        .offset(MAX_SESSIONS_PER_USER)
        .load(conn)?;
    if !beyond.is_empty() {
        diesel::delete(sessions::table.filter(sessions::id.eq_any(beyond))).execute(conn)?;
    }
    Ok(id)
}

/// The user of a live session.
pub fn user(conn: &mut DbConnection, id: &str) -> QueryResult<Option<User>> {
    let now = clock::now(conn);
    let found: Option<(String, String)> = sessions::table
        .inner_join(users::table)
        .filter(sessions::id.eq(digest(id)))
        .filter(sessions::expires_at.gt(now))
        .select((users::name, users::role))
        .first(conn)
        .optional()?;
    let corrupt = |e: String| diesel::result::Error::DeserializationError(e.into());
    found
        .map(|(name, role)| {
            Ok(User {
                name: UserName::parse(&name).map_err(corrupt)?,
                role: role.parse().map_err(corrupt)?,
            })
        })
        .transpose()
}

/// Deletes the sessions that expired; how many.
pub fn delete_expired(conn: &mut DbConnection) -> QueryResult<usize> {
    let now = clock::now(conn);
    diesel::delete(sessions::table.filter(sessions::expires_at.le(now))).execute(conn)
}

/// Ends a session (signing out).
pub fn delete(conn: &mut DbConnection, id: &str) -> QueryResult<()> {
    diesel::delete(sessions::table.find(digest(id))).execute(conn)?;
    super::revocation::revoked(conn)
}
