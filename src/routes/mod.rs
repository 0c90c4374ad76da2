//! HTTP handlers, a module per resource; the route table itself is in `startup`.

pub mod access;
pub mod caller;
pub mod counts;
pub mod fallback;
pub mod health;
pub mod imports;
pub mod input;
pub mod jobs;
pub mod page;
pub mod schedules;
pub mod stats;
pub mod students;
pub mod workers;

use actix_web::web;

use crate::db::DbConnection;
use crate::error::ApiError;
pub use crate::startup::AppState;

/// Runs `f` with a pooled connection on the blocking thread pool, in its turn
/// ([`crate::db::Gate`]).
pub async fn with_conn<T, F>(state: &AppState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut DbConnection) -> Result<T, ApiError> + Send + 'static,
{
    let _turn = state.db_gate.enter().await;
    let pool = state.pool.clone();
    web::block(move || {
        let mut conn = pool.get()?;
        f(&mut conn)
    })
    .await?
}
