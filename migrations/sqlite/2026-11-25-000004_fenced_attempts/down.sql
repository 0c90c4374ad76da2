ALTER TABLE jobs ADD COLUMN published BOOLEAN NOT NULL DEFAULT 0;
UPDATE jobs SET published = published_at IS NOT NULL;
ALTER TABLE jobs DROP COLUMN published_at;
ALTER TABLE jobs DROP COLUMN checkpoint;
