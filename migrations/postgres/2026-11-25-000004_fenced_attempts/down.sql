ALTER TABLE jobs ADD COLUMN published BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE jobs SET published = published_at IS NOT NULL;
ALTER TABLE jobs DROP COLUMN published_at;
ALTER TABLE jobs DROP COLUMN checkpoint;
