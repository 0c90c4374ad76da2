//! The job runtime, which names no kind and knows no HTTP: the `Kind` trait and its
//! registry, admission (the one function that accepts a job, and retries), the one retry
//! policy, the consumer that claims due jobs from the table when the broker wakes it, the
//! worker pool that runs them (fenced attempts, the lease keeper), the completer that
//! records their successes in batches, and the heartbeat that tells who runs what, the
//! store of their files, the scheduler of periodic jobs, and the maintenance services that
//! repair what a crash left behind. The kinds themselves are in `kinds`.

pub mod accept;
pub mod completer;
pub mod consumer;
pub mod heartbeat;
pub mod kind;
mod lease;
pub mod maintenance;
pub mod retry;
pub mod schedule;
pub mod scheduler;
pub mod store;
pub mod worker;

pub use kind::{JobHandler, Kind, Registry};
pub use worker::{Attempt, JobError, Shutdown, Stop};
