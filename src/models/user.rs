//! The `users` table: who may sign in, with which role. Passwords are stored as argon2id
//! hashes (see `access::password`); this module never sees a password.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use super::clock;
use crate::db::DbConnection;
use crate::domain::user::{Role, UserName};
use crate::schema::users;

/// A user, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub name: UserName,
    pub role: Role,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = users)]
struct UserRow {
    name: String,
    role: String,
    password_hash: String,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(format!("a user row's {what}: {e}").into())
}

impl TryFrom<&UserRow> for User {
    type Error = diesel::result::Error;
    fn try_from(row: &UserRow) -> QueryResult<User> {
        Ok(User {
            name: UserName::parse(&row.name).map_err(|e| corrupt("name", e))?,
            role: row.role.parse().map_err(|e| corrupt("role", e))?,
        })
    }
}

/// Adds a user; a unique violation when the name is taken.
pub fn insert(
    conn: &mut DbConnection,
    name: &UserName,
    role: Role,
    password_hash: &str,
) -> QueryResult<User> {
    let now = clock::now(conn);
    diesel::insert_into(users::table)
        .values((
            users::name.eq(name.as_str()),
            users::role.eq(role.as_str()),
            users::password_hash.eq(password_hash),
            users::created_at.eq(now),
            users::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(User {
        name: name.clone(),
        role,
    })
}

/// The user and their password hash.
pub fn find_with_hash(
    conn: &mut DbConnection,
    name: &UserName,
) -> QueryResult<Option<(User, String)>> {
    let row = users::table
        .find(name.as_str())
        .select(UserRow::as_select())
        .first(conn)
        .optional()?;
    row.map(|r| Ok((User::try_from(&r)?, r.password_hash)))
        .transpose()
}

pub fn find(conn: &mut DbConnection, name: &UserName) -> QueryResult<Option<User>> {
    Ok(find_with_hash(conn, name)?.map(|(user, _)| user))
}

/// Every user, by name.
pub fn list(conn: &mut DbConnection) -> QueryResult<Vec<User>> {
    let rows = users::table
        .order(users::name)
        .select(UserRow::as_select())
        .load(conn)?;
    rows.iter().map(User::try_from).collect()
}

pub fn count(conn: &mut DbConnection) -> QueryResult<i64> {
    users::table.count().get_result(conn)
}

/// Changes a user's role and/or password hash; `None` when there is no such user. A new
/// password or another role ends the user's sessions (and a new password their API
/// tokens too): whoever was signed in must sign in again, and their open live streams are
/// checked again.
pub fn update(
    conn: &mut DbConnection,
    name: &UserName,
    role: Option<Role>,
    password_hash: Option<&str>,
) -> QueryResult<Option<User>> {
    conn.transaction(|conn| {
        let Some(before) = find(conn, name)? else {
            return Ok(None);
        };
        let changed = update_row(conn, name, role, password_hash)?;
        // After the change, so that a stream checked again sees the new rights.
        if password_hash.is_some() || role.is_some_and(|r| r != before.role) {
            super::revocation::delete_for(conn, name)?;
        }
        if password_hash.is_some() {
            super::revocation::delete_tokens_of(conn, name)?;
        }
        Ok(changed)
    })
}

fn update_row(
    conn: &mut DbConnection,
    name: &UserName,
    role: Option<Role>,
    password_hash: Option<&str>,
) -> QueryResult<Option<User>> {
    let now: NaiveDateTime = super::job::now();
    let changed = diesel::update(users::table.find(name.as_str()))
        .set((
            role.map(|r| users::role.eq(r.as_str())),
            password_hash.map(|h| users::password_hash.eq(h)),
            users::updated_at.eq(now),
        ))
        .execute(conn)?;
    if changed == 0 {
        return Ok(None);
    }
    find(conn, name)
}

/// Removes a user: their tokens and sessions go with them; their jobs stay, disowned, and
/// their schedules are disabled ([`revocation::disown`](super::revocation::disown)).
pub fn delete(conn: &mut DbConnection, name: &UserName) -> QueryResult<bool> {
    conn.transaction(|conn| {
        let deleted = diesel::delete(users::table.find(name.as_str())).execute(conn)? > 0;
        if deleted {
            super::revocation::disown(conn, name)?;
            super::revocation::revoked(conn)?;
        }
        Ok(deleted)
    })
}
