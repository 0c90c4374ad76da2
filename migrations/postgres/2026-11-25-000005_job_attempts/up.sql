-- One row per attempt of a job, written in the same transaction as the job's fenced
-- transitions: when it started and ended, on which worker, how it ended and why.
CREATE TABLE job_attempts (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    -- The attempt's lease owner, unique to it (a number is reused after a shutdown).
    worker TEXT NOT NULL,
    number INTEGER NOT NULL,
    started_at TIMESTAMP NOT NULL,
    ended_at TIMESTAMP,
    -- succeeded, failed, cancelled, retry, released or lost (its lease expired).
    outcome TEXT,
    error TEXT,
    -- The progress it resumed from (its predecessor's checkpoint), if any.
    resumed_from BIGINT,
    PRIMARY KEY (job_id, worker)
);
