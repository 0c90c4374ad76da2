//! Running jobs in the background: the consumer that takes them from the broker, the
//! worker pool that runs them, the export itself and the store of its files, and the
//! sweeper that repairs what a crash left behind.

pub mod consumer;
pub mod export;
pub mod store;
pub mod sweeper;
pub mod worker;

pub use worker::{Attempt, JobError, JobHandler, Shutdown, Stop};
