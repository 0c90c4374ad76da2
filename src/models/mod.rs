//! The tables, one module each: row types and the queries on them; the database clock;
//! the per-minute history of the jobs tables (`stats`).

pub mod attempt;
pub mod clock;
pub mod import_rows;
pub mod job;
pub mod prepared;
pub mod revocation;
pub mod schedule;
mod secret;
pub mod session;
pub mod setting;
pub mod stats;
pub mod student;
pub mod token;
pub mod user;
pub mod worker;
