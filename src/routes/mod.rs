//! HTTP: the state every handler reaches ([`AppState`]), the extractors of who is asking,
//! the limits middleware and `/metrics`, and the handlers, a module per resource; the
//! route table itself is in `startup`.

pub mod access;
pub mod caller;
pub mod counts;
pub mod fallback;
pub mod health;
pub mod imports;
pub mod input;
pub mod jobs;
pub mod limits;
pub mod metrics;
pub mod page;
pub mod queues;
pub mod refusals;
pub mod schedules;
pub mod stats;
pub mod students;
pub mod workers;

use actix_web::web;

use crate::db::DbConnection;
use crate::error::ApiError;
use std::sync::Arc;

use crate::access::Access;
use crate::broker::Broker;
use crate::config::Settings;
use crate::db::{Gate, Pool};
use crate::events::Events;
use crate::jobs::accept::Acceptor;
use crate::jobs::store::FileStore;

/// What every request handler can reach.
pub struct AppState {
    pub pool: Pool,
    pub settings: Arc<Settings>,
    pub broker: Arc<dyn Broker>,
    pub events: Events,
    pub student_counts: Arc<counts::CountCache>,
    /// Where jobs' files are: downloads are served from it, uploads written to it.
    pub files: FileStore,
    /// The one way jobs are accepted.
    pub jobs: Acceptor,
    /// Who must sign in, and how sessions are signed.
    pub access: Access,
    /// Turns at the database for requests' statements ([`with_conn`]).
    pub db_gate: Gate,
}

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
