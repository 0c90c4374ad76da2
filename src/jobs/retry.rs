//! The one retry policy: when a job whose attempt did not succeed runs again. Worker
//! errors, panics and lost leases (a worker that died or stalled) all go through it, so
//! a crash loop backs off exactly as an error loop does.

use std::time::Duration;

use crate::config::Settings;

/// Exponential backoff with jitter, up to the job's attempt budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
}

/// What becomes of a job whose attempt number `attempts` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Due again after this delay.
    After(Duration),
    /// No attempt left: the job fails.
    GiveUp,
}

impl RetryPolicy {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            base: Duration::from_millis(settings.retry_backoff_ms),
            max: Duration::from_secs(settings.retry_backoff_max_secs),
        }
    }

    /// After attempt number `attempts` (1 for the first) of a budget of `max_attempts`
    /// failed.
    pub fn after_failure(&self, attempts: i32, max_attempts: i32) -> Retry {
        match attempts < max_attempts {
            true => Retry::After(self.delay(attempts)),
            false => Retry::GiveUp,
        }
    }

    /// The delay after attempt number `attempts` failed: min(base·2^(attempts-1), max),
    /// then a random half to all of it (so that jobs that failed together do not all
    /// come back at once).
    pub fn delay(&self, attempts: i32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1 << (attempts - 1).clamp(0, 30))
            .min(self.max);
        exp.mul_f64(0.5 + fastrand::f64() * 0.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        base: Duration::from_secs(1),
        max: Duration::from_secs(10),
    };

    #[test]
    fn each_failure_waits_about_twice_as_long_as_the_last_up_to_the_cap() {
        for (attempts, full) in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (40, 10)] {
            let full = Duration::from_secs(full);
            let delay = POLICY.delay(attempts);
            assert!(delay >= full / 2 && delay <= full, "{attempts}: {delay:?}");
        }
    }

    #[test]
    fn the_last_attempt_of_the_budget_gives_up() {
        assert!(matches!(POLICY.after_failure(2, 3), Retry::After(_)));
        assert_eq!(POLICY.after_failure(3, 3), Retry::GiveUp);
    }
}
