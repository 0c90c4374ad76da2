-- Most jobs never get an idempotency key (or lose it when its window closes), a schedule
-- or an owner, and a job is unstarted and unfinished for much of its life. Every status
-- change of a job is a non-HOT update, which writes an entry to each of its indexes, NULL
-- keys included. Leaving the NULLs out of these indexes takes those writes off every
-- enqueue, claim and ending; each query that reads one of them compares the column
-- (=, <, >=), which implies IS NOT NULL, so the planner still uses them.
DROP INDEX jobs_idempotency_key;
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;
DROP INDEX jobs_schedule_tick;
CREATE UNIQUE INDEX jobs_schedule_tick ON jobs (schedule_id, fire_at) WHERE schedule_id IS NOT NULL;
DROP INDEX jobs_created_by;
CREATE INDEX jobs_created_by ON jobs (created_by, created_at) WHERE created_by IS NOT NULL;
DROP INDEX jobs_started_at;
CREATE INDEX jobs_started_at ON jobs (started_at) WHERE started_at IS NOT NULL;
DROP INDEX jobs_finished_at;
CREATE INDEX jobs_finished_at ON jobs (finished_at) WHERE finished_at IS NOT NULL;
