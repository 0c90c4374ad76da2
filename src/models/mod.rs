//! The tables, one module each: row types and the queries on them.

pub mod attempt;
pub mod clock;
pub mod job;
pub mod schedule;
pub mod session;
pub mod student;
pub mod token;
pub mod user;
