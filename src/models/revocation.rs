//! Revocation: ending a user's sessions, and the mark every process watches to learn that
//! some credential stopped working or some user's rights changed (then each checks its
//! open live streams again).

use diesel::prelude::*;

use crate::db::DbConnection;
use crate::domain::user::UserName;
use crate::schema::{api_tokens, jobs, schedules, sessions, settings};

/// Ends every session of `user` (a password change, a demotion, a removal).
pub fn delete_for(conn: &mut DbConnection, user: &UserName) -> QueryResult<()> {
    diesel::delete(sessions::table.filter(sessions::user_name.eq(user.as_str()))).execute(conn)?;
    revoked(conn)
}

/// Revokes every API token of `user` (a password change or reset: whoever had the old
/// password may have made one).
pub fn delete_tokens_of(conn: &mut DbConnection, user: &UserName) -> QueryResult<()> {
    diesel::delete(api_tokens::table.filter(api_tokens::user_name.eq(user.as_str())))
        .execute(conn)?;
    revoked(conn)
}

/// What a removed user owned stops being theirs for good: their schedules are disabled,
/// and their jobs and schedules are recorded as a removed user's, `{name}~removed-{tag}`, a
/// name no user can have (`~` is not allowed), so a user created later under the same
/// name inherits nothing of theirs (not their exports of student data, not their
/// schedules); an admin still sees them, under that name.
pub fn disown(conn: &mut DbConnection, user: &UserName) -> QueryResult<String> {
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let removed = format!("{user}~removed-{tag}");
    diesel::update(schedules::table.filter(schedules::created_by.eq(user.as_str())))
        .set((
            schedules::enabled.eq(false),
            schedules::created_by.eq(&removed),
        ))
        .execute(conn)?;
    // Their idempotency and duplicate keys are scoped by their name: let them go too, or a
    // request of the next user of that name would be answered with their job.
    diesel::update(jobs::table.filter(jobs::created_by.eq(user.as_str())))
        .set((
            jobs::created_by.eq(&removed),
            jobs::idempotency_key.eq(None::<String>),
            jobs::dedup_key.eq(None::<String>),
        ))
        .execute(conn)?;
    Ok(removed)
}

/// The setting that changes whenever a credential stops working or a user's rights change.
const REVOCATIONS: &str = "revocations";

/// Says to every process that a credential stopped working or a user's rights changed,
/// so that each checks its open live streams again (see [`revocations`]). Every function
/// of the access tables that revokes calls it: no caller can forget.
pub fn revoked(conn: &mut DbConnection) -> QueryResult<()> {
    let mark = uuid::Uuid::new_v4().simple().to_string();
    let updated = diesel::update(settings::table.find(REVOCATIONS))
        .set(settings::value.eq(&mark))
        .execute(conn)?;
    if updated == 0 {
        super::setting::setting_or_insert(conn, REVOCATIONS, || mark)?;
    }
    Ok(())
}

/// The mark of the latest revocation (`None` before the first): a process that sees it
/// change checks its live streams' credentials again.
pub fn revocations(conn: &mut DbConnection) -> QueryResult<Option<String>> {
    settings::table
        .find(REVOCATIONS)
        .select(settings::value)
        .first(conn)
        .optional()
}
