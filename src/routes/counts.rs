//! A short-lived cache of student counts for listings.
//!
//! Every page of `GET /api/students` reports the total matching its filter; on a million
//! students an exact `count(*)` costs tens of milliseconds, paid by every page view. The
//! count is kept for a second, and dropped at once when this process changes a student,
//! so a person always sees their own change; a change made by another process shows
//! within a second.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::models::student::StudentFilter;

/// How long a count is trusted.
pub const COUNT_TTL: Duration = Duration::from_secs(1);
/// Distinct filters remembered at most (then all are forgotten).
const MAX_ENTRIES: usize = 1024;

#[derive(Default)]
pub struct CountCache {
    /// Bumped by every write in this process: older entries are stale.
    generation: AtomicU64,
    entries: Mutex<HashMap<String, (u64, Instant, i64)>>,
}

fn key(filter: &StudentFilter) -> String {
    format!(
        "{:?}|{:?}|{:?}",
        filter.min_age.map(|a| a.get()),
        filter.max_age.map(|a| a.get()),
        filter.name_contains
    )
}

impl CountCache {
    /// The current generation, to be passed back to [`CountCache::put`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub fn get(&self, filter: &StudentFilter) -> Option<i64> {
        let entries = self.entries.lock().unwrap();
        let (generation, at, count) = entries.get(&key(filter))?;
        (*generation == self.generation() && at.elapsed() < COUNT_TTL).then_some(*count)
    }

    /// Remembers a count read while `generation` was current.
    pub fn put(&self, filter: &StudentFilter, generation: u64, count: i64) {
        let mut entries = self.entries.lock().unwrap();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key(filter), (generation, Instant::now(), count));
    }

    /// A student was created, changed or deleted here.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_here_makes_every_count_stale() {
        let cache = CountCache::default();
        let filter = StudentFilter::default();
        let generation = cache.generation();
        cache.put(&filter, generation, 7);
        assert_eq!(cache.get(&filter), Some(7));
        cache.invalidate();
        assert_eq!(cache.get(&filter), None);
    }

    #[test]
    fn a_count_read_before_a_write_is_not_kept() {
        let cache = CountCache::default();
        let filter = StudentFilter::default();
        let generation = cache.generation();
        cache.invalidate(); // a write lands while the count is being read
        cache.put(&filter, generation, 7);
        assert_eq!(cache.get(&filter), None);
    }

    #[test]
    fn filters_have_their_own_counts() {
        let cache = CountCache::default();
        let all = StudentFilter::default();
        let named = StudentFilter {
            name_contains: Some("ada".into()),
            ..StudentFilter::default()
        };
        cache.put(&all, cache.generation(), 10);
        assert_eq!(cache.get(&named), None);
    }
}
