//! roster's integration tests: one binary, a module per area. Each test starts the real
//! application (or the real binary) against a database and queue of its own.

mod access;
mod cli;
mod crash;
mod deploy;
mod dispatch;
mod exports;
mod faults;
mod health;
pub mod helpers;
mod imports;
mod jobs;
mod limits;
pub mod operations;
mod outages;
pub mod process;
mod processes;
mod schedules;
mod security;
mod statements;
mod students;
pub mod watchers;
pub mod websocket;
