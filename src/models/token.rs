//! The `api_tokens` table: a user's tokens for scripts. A token is shown once, when it is
//! made; only its sha256 is kept.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use super::clock;
use super::secret::digest;
use super::user::User;
use crate::db::DbConnection;
use crate::domain::user::UserName;
use crate::schema::{api_tokens, users};

/// What tokens start with, so that a leaked one is recognisable (secret scanners).
pub const PREFIX: &str = "roster_";

/// A token, as its owner sees it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Makes a token for `user`; returns it and its secret (the only time it is seen).
pub fn create(
    conn: &mut DbConnection,
    user: &UserName,
    name: &str,
) -> QueryResult<(TokenView, String)> {
    // uuid v4 draws from the operating system's CSPRNG: 244 random bits.
    let secret = format!(
        "{PREFIX}{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let id = uuid::Uuid::new_v4().to_string();
    let now = clock::now(conn);
    diesel::insert_into(api_tokens::table)
        .values((
            api_tokens::id.eq(&id),
            api_tokens::user_name.eq(user.as_str()),
            api_tokens::name.eq(name),
            api_tokens::token_sha256.eq(digest(&secret)),
            api_tokens::created_at.eq(now),
        ))
        .execute(conn)?;
    let view = list(conn, user)?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or(diesel::result::Error::NotFound)?;
    Ok((view, secret))
}

/// How many tokens `user` has.
pub fn count(conn: &mut DbConnection, user: &UserName) -> QueryResult<i64> {
    api_tokens::table
        .filter(api_tokens::user_name.eq(user.as_str()))
        .count()
        .get_result(conn)
}

/// A user's tokens, newest first.
pub fn list(conn: &mut DbConnection, user: &UserName) -> QueryResult<Vec<TokenView>> {
    let rows: Vec<(String, String, NaiveDateTime, Option<NaiveDateTime>)> = api_tokens::table
        .filter(api_tokens::user_name.eq(user.as_str()))
        .order(api_tokens::created_at.desc())
        .select((
            api_tokens::id,
            api_tokens::name,
            api_tokens::created_at,
            api_tokens::last_used_at,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, name, created, used)| TokenView {
            id,
            name,
            created_at: created.and_utc(),
            last_used_at: used.map(|t| t.and_utc()),
        })
        .collect())
}

/// Removes token `id`, if it is `user`'s (`None`: anyone's, for an admin); whether it was
/// there to remove. The streams opened with it are checked again (see
/// `revocation::revoked`).
pub fn delete(conn: &mut DbConnection, user: Option<&UserName>, id: &str) -> QueryResult<bool> {
    let owner = user.map(|u| u.as_str().to_owned());
    let deleted = diesel::delete(
        api_tokens::table.filter(api_tokens::id.eq(id)).filter(
            api_tokens::user_name
                .eq(owner.clone().unwrap_or_default())
                .or(diesel::IntoSql::into_sql::<diesel::sql_types::Bool>(
                    owner.is_none(),
                )),
        ),
    )
    .execute(conn)?
        > 0;
    if deleted {
        super::revocation::revoked(conn)?;
    }
    Ok(deleted)
}

/// The user a presented token belongs to, noting its use.
///
/// Reads only: the token's use is noted by [`note_use`], at most once a
/// [`USE_NOTED_EVERY`], which the caller runs off the request path (on SQLite, one writer:
/// an authenticated read must never wait for the write lock). `Some((user, stale))`:
/// `stale` when the use should be noted.
pub fn authenticate(conn: &mut DbConnection, secret: &str) -> QueryResult<Option<(User, bool)>> {
    if !secret.starts_with(PREFIX) {
        return Ok(None);
    }
    let hash = digest(secret);
    let found: Option<(String, String, Option<NaiveDateTime>)> = api_tokens::table
        .inner_join(users::table)
        .filter(api_tokens::token_sha256.eq(&hash))
        .select((users::name, users::role, api_tokens::last_used_at))
        .first(conn)
        .optional()?;
    let Some((name, role, used)) = found else {
        return Ok(None);
    };
    let noted_since = clock::before(conn, USE_NOTED_EVERY);
    let stale = match used {
        None => true,
        Some(at) => diesel::select(noted_since.gt(at)).get_result::<bool>(conn)?,
    };
    let corrupt = |e: String| diesel::result::Error::DeserializationError(e.into());
    let user = User {
        name: UserName::parse(&name).map_err(corrupt)?,
        role: role.parse().map_err(corrupt)?,
    };
    Ok(Some((user, stale)))
}

/// How often a token's `last_used_at` is written at most.
pub const USE_NOTED_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Notes that the token `secret` was used now, unless that was noted less than
/// [`USE_NOTED_EVERY`] ago.
pub fn note_use(conn: &mut DbConnection, secret: &str) -> QueryResult<()> {
    let (now, noted_since) = (
        clock::now_nullable(conn),
        clock::before_nullable(conn, USE_NOTED_EVERY),
    );
    diesel::update(
        api_tokens::table
            .filter(api_tokens::token_sha256.eq(digest(secret)))
            .filter(
                api_tokens::last_used_at
                    .is_null()
                    .or(api_tokens::last_used_at.lt(noted_since)),
            ),
    )
    .set(api_tokens::last_used_at.eq(now))
    .execute(conn)
    .map(drop)
}
