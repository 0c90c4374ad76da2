-- The processes that run workers, as they last said: each registers at start with a
-- fresh id, beats every few seconds (last_seen, on the database's clock) and deletes its
-- row on a graceful shutdown. The sweeper forgets rows not seen for an hour.
CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    -- The host name.
    node TEXT NOT NULL,
    -- The process's name in lease owners and attempts (`{name}/{tag}`).
    name TEXT NOT NULL,
    pid INTEGER NOT NULL,
    queue TEXT NOT NULL,
    concurrency INTEGER NOT NULL,
    -- Jobs running in the process at its last beat, and their ids as a JSON array.
    busy INTEGER NOT NULL,
    running TEXT NOT NULL,
    started_at TIMESTAMP NOT NULL,
    last_seen TIMESTAMP NOT NULL
);
CREATE INDEX workers_last_seen ON workers (last_seen);
-- /api/stats reads the minutes of the last day by these (jobs' created_at and
-- finished_at have theirs).
CREATE INDEX jobs_started_at ON jobs (started_at);
CREATE INDEX job_attempts_started_at ON job_attempts (started_at);
