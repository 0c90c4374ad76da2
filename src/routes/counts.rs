//! A short-lived cache of student counts for listings.
//!
//! Every page of `GET /api/students` reports the total matching its filter; on a million
//! students an exact `count(*)` costs tens of milliseconds, paid by every page view. The
//! count is kept for a second, and dropped at once when this process changes a student,
//! so a person always sees their own change; a change made by another process shows
//! within a second.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::{Duration, Instant};

use crate::models::student::StudentFilter;

/// How long a count is trusted.
pub const COUNT_TTL: Duration = Duration::from_secs(1);
/// How old a count may be shown while the next is being read.
const AGED_TTL: Duration = Duration::from_secs(2);
/// Distinct filters remembered at most (then all are forgotten).
const MAX_ENTRIES: usize = 1024;

#[derive(Default)]
pub struct CountCache {
    /// Bumped by every write in this process: older entries are stale.
    generation: AtomicU64,
    entries: Mutex<HashMap<String, Arc<Slot>>>,
}

/// A filter's count. One request at a time counts (holding `counting`); the others wait
/// for that count only when they have nothing recent to show: a count that has merely
/// aged past [`COUNT_TTL`] (up to [`AGED_TTL`]) is shown while one request reads the next,
/// so that a listing's tail is not the count's time once a second.
#[derive(Default)]
struct Slot {
    entry: Mutex<Option<Entry>>,
    counting: Mutex<()>,
}

/// A count, with the generation it was read in and when.
type Entry = (u64, Instant, i64);

fn key(filter: &StudentFilter) -> String {
    format!(
        "{:?}|{:?}|{:?}",
        filter.min_age.map(|a| a.get()),
        filter.max_age.map(|a| a.get()),
        filter.name_contains
    )
}

impl CountCache {
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn slot(&self, filter: &StudentFilter) -> Arc<Slot> {
        let mut entries = self.entries.lock().unwrap();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.entry(key(filter)).or_default().clone()
    }

    /// The cached count, or the one `count` reads (once, however many ask at once).
    pub fn get_or_count<E>(
        &self,
        filter: &StudentFilter,
        count: impl FnOnce() -> Result<i64, E>,
    ) -> Result<i64, E> {
        let slot = self.slot(filter);
        if let Some(fresh) = self.younger_than(&slot, COUNT_TTL) {
            return Ok(fresh);
        }
        // A count that panicked leaves the lock poisoned, not the slot unusable.
        let _counting = match slot.counting.try_lock() {
            Ok(counting) => counting,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => match self.younger_than(&slot, AGED_TTL) {
                Some(aged) => return Ok(aged),
                // Nothing recent to show: wait for the count under way.
                None => slot.counting.lock().unwrap_or_else(|p| p.into_inner()),
            },
        };
        // Another request may have counted since.
        if let Some(fresh) = self.younger_than(&slot, COUNT_TTL) {
            return Ok(fresh);
        }
        let generation = self.generation();
        let counted = count()?;
        *slot.entry.lock().unwrap() = Some((generation, Instant::now(), counted));
        Ok(counted)
    }

    /// The slot's count if it was read since this process last wrote, less than `age` ago.
    fn younger_than(&self, slot: &Slot, age: Duration) -> Option<i64> {
        let (generation, at, count) = (*slot.entry.lock().unwrap())?;
        (generation == self.generation() && at.elapsed() < age).then_some(count)
    }

    /// A student was created, changed or deleted here.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(cache: &CountCache, filter: &StudentFilter, fresh: i64) -> i64 {
        cache.get_or_count(filter, || Ok::<_, ()>(fresh)).unwrap()
    }

    #[test]
    fn a_write_here_makes_every_count_stale() {
        let cache = CountCache::default();
        let filter = StudentFilter::default();
        assert_eq!(count(&cache, &filter, 7), 7);
        assert_eq!(count(&cache, &filter, 8), 7, "kept");
        cache.invalidate();
        assert_eq!(count(&cache, &filter, 8), 8, "counted again");
    }

    #[test]
    fn a_count_read_before_a_write_is_not_kept() {
        let cache = CountCache::default();
        let filter = StudentFilter::default();
        let counted = cache.get_or_count(&filter, || {
            cache.invalidate(); // a write lands while the count is being read
            Ok::<_, ()>(7)
        });
        assert_eq!(counted, Ok(7));
        assert_eq!(count(&cache, &filter, 8), 8);
    }

    #[test]
    fn concurrent_requests_share_one_count() {
        let cache = Arc::new(CountCache::default());
        let counted = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (cache, counted) = (cache.clone(), counted.clone());
                std::thread::spawn(move || {
                    cache.get_or_count(&StudentFilter::default(), || {
                        counted.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(50));
                        Ok::<_, ()>(42)
                    })
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), Ok(42));
        }
        assert_eq!(counted.load(Ordering::SeqCst), 1, "one count for all");
    }

    #[test]
    fn an_aged_count_is_shown_while_another_request_reads_the_next() {
        let cache = Arc::new(CountCache::default());
        let filter = StudentFilter::default();
        assert_eq!(count(&cache, &filter, 7), 7);
        std::thread::sleep(COUNT_TTL);
        let (started, release) = (
            Arc::new(std::sync::Barrier::new(2)),
            Arc::new(std::sync::Barrier::new(2)),
        );
        let counter = {
            let (cache, started, release) = (cache.clone(), started.clone(), release.clone());
            std::thread::spawn(move || {
                cache.get_or_count(&StudentFilter::default(), || {
                    started.wait();
                    release.wait();
                    Ok::<_, ()>(8)
                })
            })
        };
        started.wait();
        // On another thread, so that waiting for the count under way fails the test
        // instead of hanging it.
        let (tx, rx) = std::sync::mpsc::channel();
        let asker = {
            let cache = cache.clone();
            std::thread::spawn(move || tx.send(count(&cache, &StudentFilter::default(), 9)))
        };
        let shown = rx.recv_timeout(Duration::from_secs(2));
        release.wait();
        asker.join().unwrap().ok();
        assert_eq!(shown, Ok(7), "the aged count, without waiting");
        assert_eq!(counter.join().unwrap(), Ok(8));
        assert_eq!(count(&cache, &filter, 9), 8, "the new count, once read");
    }

    #[test]
    fn filters_have_their_own_counts() {
        let cache = CountCache::default();
        let all = StudentFilter::default();
        let named = StudentFilter {
            name_contains: Some("ada".into()),
            ..StudentFilter::default()
        };
        assert_eq!(count(&cache, &all, 10), 10);
        assert_eq!(count(&cache, &named, 3), 3, "not the other filter's count");
    }
}
