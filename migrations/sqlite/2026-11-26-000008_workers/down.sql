DROP INDEX job_attempts_started_at;
DROP INDEX jobs_started_at;
DROP TABLE workers;
