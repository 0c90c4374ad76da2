-- Queues and dispatch. A job belongs to a queue and has a priority (0 first); among jobs
-- of one queue and priority, `turn` orders owners round robin: a job's turn is one past
-- its owner's last queued job's, and never before the queue's oldest turn, so one
-- owner's backlog of a thousand jobs takes turns with another owner's one job.
--
-- The table decides what runs next: consumers claim due jobs straight from it, so the
-- bookkeeping of what the broker was told (`published_at`) goes.
ALTER TABLE jobs ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 5;
ALTER TABLE jobs ADD COLUMN turn BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs DROP COLUMN published_at;
-- What a claim reads, in the order it takes jobs; and an owner's last turn.
CREATE INDEX jobs_claim ON jobs (queue, priority, turn, run_after) WHERE status = 'queued';
CREATE INDEX jobs_owner_turn ON jobs (created_by, queue, priority, turn)
    WHERE status = 'queued' AND created_by IS NOT NULL;
ALTER TABLE schedules ADD COLUMN queue TEXT;
ALTER TABLE schedules ADD COLUMN priority INTEGER NOT NULL DEFAULT 5;
-- A paused queue accepts jobs and starts none, in every process that serves it.
CREATE TABLE queue_pauses (
    queue TEXT PRIMARY KEY,
    paused_at TIMESTAMP NOT NULL,
    paused_by TEXT
);
