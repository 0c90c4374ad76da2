//! What a session has sent of each job: the newest `seq`, so nothing older or equal is
//! sent again, in a memory that stays bounded however many jobs a dashboard sees go by.

use std::collections::{HashMap, VecDeque};

use crate::domain::job::JobId;

/// The newest `seq` sent per job, forgetting the jobs that ended longest ago past a cap.
#[derive(Debug)]
pub struct Seen {
    last: HashMap<JobId, i64>,
    /// The jobs seen to end, oldest first: the first forgotten.
    ended: VecDeque<JobId>,
    cap: usize,
}

impl Seen {
    pub fn new(cap: usize) -> Self {
        Self {
            last: HashMap::new(),
            ended: VecDeque::new(),
            cap,
        }
    }

    /// Records that `seq` of `job` is being sent, if it is newer than what was; whether
    /// it is.
    pub fn advance(&mut self, job: JobId, seq: i64) -> bool {
        let last = self.last.entry(job).or_insert(0);
        if seq <= *last {
            return false;
        }
        *last = seq;
        true
    }

    /// Notes that the client has seen `job` end; returns the jobs forgotten to stay
    /// within the cap (a later event of one, after a retry, carries a higher `seq`).
    pub fn ended(&mut self, job: JobId) -> Vec<JobId> {
        self.ended.push_back(job);
        let mut forgotten = Vec::new();
        while self.last.len() > self.cap {
            let Some(old) = self.ended.pop_front() else {
                break;
            };
            if self.last.remove(&old).is_some() {
                forgotten.push(old);
            }
        }
        // A job may end more than once (retried): keep the queue as bounded as the map.
        if self.ended.len() > 2 * self.cap {
            let last = &self.last;
            self.ended.retain(|id| last.contains_key(id));
        }
        forgotten
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_newer_seq_is_sent() {
        let mut seen = Seen::new(10);
        let job = JobId::new();
        assert!(seen.advance(job, 3));
        assert!(!seen.advance(job, 3));
        assert!(!seen.advance(job, 2));
        assert!(seen.advance(job, 4));
    }

    #[test]
    fn a_dashboard_that_sees_many_jobs_end_remembers_only_so_many() {
        let mut seen = Seen::new(100);
        for _ in 0..10_000 {
            let job = JobId::new();
            seen.advance(job, 1);
            seen.advance(job, 2);
            seen.ended(job);
        }
        assert!(seen.last.len() <= 100, "{}", seen.last.len());
        assert!(seen.ended.len() <= 200);
        // Active jobs are never forgotten for ended ones' sake.
        let active = JobId::new();
        seen.advance(active, 5);
        for _ in 0..500 {
            let job = JobId::new();
            seen.advance(job, 1);
            seen.ended(job);
        }
        assert!(!seen.advance(active, 5), "still remembered");
    }
}
