-- Fenced, resumable attempts.
-- `checkpoint`: how far the running (or last crashed) attempt got, written with its lease
-- renewals, so that the next attempt resumes instead of starting over.
ALTER TABLE jobs ADD COLUMN checkpoint TEXT;
-- `published_at` replaces `published`: when the broker was last told about (or seen to
-- hold) the job's current queued stint; NULL when it never was. The reconciler publishes
-- again a queued job the broker no longer holds after ROSTER_REDELIVER_SECS.
ALTER TABLE jobs ADD COLUMN published_at TIMESTAMP;
UPDATE jobs SET published_at = LOCALTIMESTAMP WHERE published;
ALTER TABLE jobs DROP COLUMN published;
-- A cancel that met a retry, a shutdown or a crash used to leave the job queued with
-- `cancel_requested`, never to run: those jobs were cancelled.
UPDATE jobs SET status = 'cancelled', finished_at = LOCALTIMESTAMP, seq = seq + 1,
    lease_owner = NULL, lease_expires_at = NULL
    WHERE status = 'queued' AND cancel_requested;
