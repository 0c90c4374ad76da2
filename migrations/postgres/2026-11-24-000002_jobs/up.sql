-- Ids are stored as text so that PostgreSQL and SQLite share one schema.rs.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    params TEXT NOT NULL,
    status TEXT NOT NULL,
    progress_done BIGINT NOT NULL DEFAULT 0,
    progress_total BIGINT NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    error TEXT,
    result TEXT,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    lease_owner TEXT,
    lease_expires_at TIMESTAMP,
    run_after TIMESTAMP NOT NULL,
    -- Whether the broker has been told about the job's current queued stint;
    -- the reconciler publishes queued jobs that are due and not published.
    published BOOLEAN NOT NULL DEFAULT FALSE,
    seq BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL,
    started_at TIMESTAMP,
    finished_at TIMESTAMP
);
CREATE INDEX jobs_status_run_after ON jobs (status, run_after);
CREATE INDEX jobs_created_at ON jobs (created_at);
CREATE INDEX jobs_lease_expires_at ON jobs (lease_expires_at) WHERE status = 'running';
