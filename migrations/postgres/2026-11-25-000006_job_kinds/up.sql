-- A runtime for many kinds of jobs.
-- Who created the job (a user's name; NULL while access control is off).
ALTER TABLE jobs ADD COLUMN created_by TEXT;
-- "{creator}/{Idempotency-Key}": the same key from the same creator returns the original
-- job for 24 hours (older keys are cleared when reused).
ALTER TABLE jobs ADD COLUMN idempotency_key TEXT;
-- "{creator}/{kind}/{params}" of a job that should not be queued twice: while one is
-- queued or running an identical request returns it instead.
ALTER TABLE jobs ADD COLUMN dedup_key TEXT;
-- The schedule that fired the job, and the tick it fired for: one job per tick.
ALTER TABLE jobs ADD COLUMN schedule_id TEXT;
ALTER TABLE jobs ADD COLUMN fire_at TIMESTAMP;
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_key);
CREATE UNIQUE INDEX jobs_dedup_key ON jobs (dedup_key) WHERE status IN ('queued', 'running');
CREATE UNIQUE INDEX jobs_schedule_tick ON jobs (schedule_id, fire_at);
-- Listing newest first, by kind, and retention of ended jobs.
CREATE INDEX jobs_kind_created_at ON jobs (kind, created_at);
CREATE INDEX jobs_finished_at ON jobs (finished_at);

-- Periodic jobs: a cron expression in an IANA time zone.
CREATE TABLE schedules (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    cron TEXT NOT NULL,
    timezone TEXT NOT NULL,
    kind TEXT NOT NULL,
    params TEXT NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    -- The next tick, in UTC; the scheduler fires schedules whose tick is due.
    next_fire_at TIMESTAMP NOT NULL,
    last_fired_at TIMESTAMP,
    created_by TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX schedules_name ON schedules (name);
CREATE INDEX schedules_next_fire_at ON schedules (next_fire_at) WHERE enabled;
