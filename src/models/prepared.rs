//! [`Prepared`]: an UPDATE that each connection prepares once and runs again, as diesel
//! does for every other statement.
//!
//! diesel never caches an UPDATE (a changeset of `Option`s can change its SQL from one
//! call to the next, and the cache would grow with every shape). So every job transition
//! was parsed and planned anew by PostgreSQL: in a drain of no-op jobs, the server spent
//! 8 % of the machine parsing and 9 % planning, most of it for the three UPDATEs of a
//! job's claim and ending; SQLite spent a fifth of a drain's CPU preparing statements.
//! The transitions wrapped here have a few shapes each, known in advance, so caching them
//! by their SQL text is bounded. Not a list of varying length: SQLite writes a parameter
//! per element, and each length would be a statement of its own.

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::{QueryResult, RunQueryDsl};

/// `Q`, cached per connection by its SQL text (and bind types).
///
/// Two conditions, which the test `statements` (it reads PostgreSQL's prepared
/// statements) holds: it is built for the backend's own connection (inside `on_backend!`; through
/// `DbConnection` the backend is diesel's multi-backend), and run by value, with `load`
/// or `get_result(s)` (a statement without RETURNING returns something small for it):
/// `execute` passes the statement by reference, and a reference forgets this choice.
#[derive(Debug, Clone, Copy)]
pub struct Prepared<Q>(pub Q);

impl<Q, DB> QueryFragment<DB> for Prepared<Q>
where
    DB: Backend,
    Q: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    // diesel's hook for third-party backends (the cargo feature that makes it public is
    // enabled for this): the one place that decides whether a statement is cached.
    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q> QueryId for Prepared<Q> {
    type QueryId = ();
    // Keyed by its SQL text, which differs with the changeset's shape.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}

impl<Q, Conn> RunQueryDsl<Conn> for Prepared<Q> {}
