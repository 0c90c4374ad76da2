//! Running jobs in the background: the kinds of job and their registry, the one function
//! that accepts a job, the consumer that takes jobs from the broker, the worker pool that
//! runs them (and a `noop` kind for benchmarks) and the heartbeat that tells who runs
//! what, the store of their files, the scheduler of periodic jobs, and the sweeper that
//! repairs what a crash left behind.

pub mod accept;
pub mod consumer;
pub mod export;
pub mod export_copy;
pub mod heartbeat;
pub mod import;
pub mod kind;
mod lease;
pub mod noop;
pub mod retry;
pub mod schedule;
pub mod scheduler;
pub mod store;
pub mod sweeper;
pub mod worker;

pub use kind::{JobHandler, Kind, Registry};
pub use worker::{Attempt, JobError, Shutdown, Stop};

use crate::config::Settings;

/// Every kind roster runs, with their settings: the one place kinds are registered. The
/// `noop` kind only when `ROSTER_BENCH_KINDS` asks for it (benchmarks).
pub fn standard_kinds(settings: &Settings) -> Registry {
    let mut kinds = Registry::default();
    kinds.register(export::StudentsByAge {
        settings: export::ExportSettings::new(settings),
    });
    kinds.register(import::StudentsImport {
        settings: import::ImportSettings::new(settings),
    });
    if settings.bench_kinds {
        kinds.register(noop::Noop);
    }
    kinds
}
