//! Sign-in throttling: failed attempts counted per key (a user name, a client address) in
//! a fixed window, with a fixed bound on the keys kept, so that what a client sends can
//! neither lock out a user by succeeding nor grow memory by inventing names.
//!
//! Only failures count: a correct password is never refused for someone else's mistakes
//! once their window has passed, and signing in successfully adds nothing. Keys are
//! bounded in length by their callers (a valid `UserName`, an IP address) and in number
//! here: at the bound, expired windows are dropped, and if every key is still live the
//! new key is not recorded (the attempt is still refused or allowed by the other keys).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures counted per key and window.
pub struct Throttle {
    limit: u32,
    window: Duration,
    max_keys: usize,
    failures: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Throttle {
    pub fn new(limit: u32, window: Duration, max_keys: usize) -> Self {
        Self {
            limit,
            window,
            max_keys,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// How long until `key` may try again, if it failed `limit` times in its window.
    pub fn blocked(&self, key: &str) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let (since, count) = *failures.get(key)?;
        let left = self.window.checked_sub(since.elapsed())?;
        (count >= self.limit).then_some(left)
    }

    /// Counts a failed attempt of `key`.
    pub fn failed(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let window = self.window;
        if let Some((since, count)) = failures.get_mut(key) {
            if since.elapsed() >= window {
                *since = Instant::now();
                *count = 0;
            }
            *count += 1;
            return;
        }
        if failures.len() >= self.max_keys {
            failures.retain(|_, (since, _)| since.elapsed() < window);
            if failures.len() >= self.max_keys {
                return;
            }
        }
        failures.insert(key.to_owned(), (Instant::now(), 1));
    }

    /// Keys kept now.
    #[cfg(test)]
    fn keys(&self) -> usize {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_blocked_after_its_limit_of_failures_only() {
        let t = Throttle::new(3, Duration::from_secs(60), 10);
        for _ in 0..2 {
            t.failed("ada");
        }
        assert!(t.blocked("ada").is_none(), "two failures of three");
        t.failed("ada");
        assert!(t.blocked("ada").is_some());
        assert!(t.blocked("bob").is_none(), "per key");
    }

    #[test]
    fn a_window_that_passed_forgets_its_failures() {
        let t = Throttle::new(1, Duration::from_millis(20), 10);
        t.failed("ada");
        assert!(t.blocked("ada").is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert!(t.blocked("ada").is_none());
    }

    #[test]
    fn the_keys_kept_never_pass_the_bound() {
        let t = Throttle::new(5, Duration::from_secs(60), 100);
        for i in 0..10_000 {
            t.failed(&format!("name-{i}"));
        }
        assert_eq!(t.keys(), 100);
    }
}
