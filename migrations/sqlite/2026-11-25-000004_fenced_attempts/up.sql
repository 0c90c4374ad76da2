-- Fenced, resumable attempts (see the PostgreSQL migration for the why).
ALTER TABLE jobs ADD COLUMN checkpoint TEXT;
ALTER TABLE jobs ADD COLUMN published_at TIMESTAMP;
UPDATE jobs SET published_at = strftime('%Y-%m-%d %H:%M:%f', 'now') WHERE published;
ALTER TABLE jobs DROP COLUMN published;
UPDATE jobs SET status = 'cancelled', finished_at = strftime('%Y-%m-%d %H:%M:%f', 'now'),
    seq = seq + 1, lease_owner = NULL, lease_expires_at = NULL
    WHERE status = 'queued' AND cancel_requested;
