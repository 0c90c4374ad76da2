//! Domain types: values that can only be valid once parsed at the edge.

pub mod fields;
pub mod job;
pub mod queue;
pub mod schedule;
pub mod student;
pub mod user;
