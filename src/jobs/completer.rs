//! The completer: records the successes of a process's attempts in batches (as River's
//! batch completer does). A worker hands its success over and waits for the row; one
//! thread writes every success that arrived while the last batch was being written, in
//! one statement (PostgreSQL) or one transaction (SQLite), each still fenced by its
//! attempt's token. Nothing waits for a batch to fill: alone, a success is written at
//! once; under load, one round trip and one commit record many.
//!
//! A success the batch did not record (a cancel won, the attempt lost its job) or whose
//! batch failed goes back to its worker, which records it alone, the way every other
//! ending is.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread;

use crate::db::Pool;
use crate::domain::job::JobId;
use crate::models::job::{self, AttemptToken, Job, Success};

/// Successes one statement records at most.
const MAX_BATCH: usize = 512;

/// What became of a success handed to the completer.
#[derive(Debug)]
pub enum Completed {
    /// Recorded: the job as it now is.
    Recorded(Box<Job>),
    /// Not recorded by the batch (not held as asked, or the batch failed with this
    /// error): record it alone.
    NotRecorded(Option<String>),
}

struct Pending {
    token: AttemptToken,
    result: String,
    committed: bool,
    reply: SyncSender<Completed>,
}

/// Hands successes to the completer's thread.
#[derive(Clone)]
pub struct Completer {
    queue: SyncSender<Pending>,
}

impl Completer {
    /// Starts the completer's thread; it stops when every `Completer` is dropped.
    pub fn start(pool: Pool) -> Self {
        let (queue, pending) = mpsc::sync_channel(MAX_BATCH * 4);
        thread::Builder::new()
            .name("roster-completer".into())
            .spawn(move || complete(pool, pending))
            .expect("a thread for the completer");
        Self { queue }
    }

    /// Records the success of the attempt `token` (with its batch); waits for it.
    pub fn succeed(&self, token: &AttemptToken, result: &str, committed: bool) -> Completed {
        let (reply, answer) = mpsc::sync_channel(1);
        let pending = Pending {
            token: token.clone(),
            result: result.to_owned(),
            committed,
            reply,
        };
        let stopped = || Completed::NotRecorded(Some("the completer has stopped".into()));
        if self.queue.send(pending).is_err() {
            return stopped();
        }
        answer.recv().unwrap_or_else(|_| stopped())
    }
}

fn complete(pool: Pool, pending: Receiver<Pending>) {
    while let Ok(first) = pending.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match pending.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let successes: Vec<Success<'_>> = batch
            .iter()
            .map(|p| Success {
                token: &p.token,
                result: &p.result,
                committed: p.committed,
            })
            .collect();
        let recorded = pool
            .get()
            .map_err(anyhow::Error::from)
            .and_then(|mut conn| Ok(job::succeed_all(&mut conn, &successes)?));
        match recorded {
            Ok(jobs) => {
                let mut jobs: std::collections::HashMap<JobId, Job> =
                    jobs.into_iter().map(|j| (j.id, j)).collect();
                for p in batch {
                    let answer = match jobs.remove(&p.token.job) {
                        Some(job) => Completed::Recorded(Box::new(job)),
                        None => Completed::NotRecorded(None),
                    };
                    let _ = p.reply.send(answer);
                }
            }
            Err(e) => {
                log::warn!("recording {} successes failed: {e:#}", batch.len());
                for p in batch {
                    let _ = p.reply.send(Completed::NotRecorded(Some(format!("{e:#}"))));
                }
            }
        }
    }
}
