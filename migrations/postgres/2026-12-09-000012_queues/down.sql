DROP TABLE queue_pauses;
ALTER TABLE schedules DROP COLUMN priority;
ALTER TABLE schedules DROP COLUMN queue;
DROP INDEX jobs_owner_turn;
DROP INDEX jobs_claim;
ALTER TABLE jobs ADD COLUMN published_at TIMESTAMP;
ALTER TABLE jobs DROP COLUMN turn;
ALTER TABLE jobs DROP COLUMN priority;
ALTER TABLE jobs DROP COLUMN queue;
