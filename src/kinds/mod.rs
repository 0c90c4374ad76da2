//! The kinds of job roster runs, each a [`Kind`](crate::jobs::Kind) of its own: the export
//! of students (and its PostgreSQL COPY path), the import, and `noop` for benchmarks.
//! [`standard_kinds`] is the one place they are registered; adding a kind touches this
//! module and nothing below it.

pub mod export;
pub mod export_copy;
pub mod import;
pub mod noop;
pub mod rows;

use crate::config::Settings;
use crate::jobs::Registry;

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
