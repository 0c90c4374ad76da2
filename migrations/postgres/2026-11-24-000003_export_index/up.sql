-- Exports read (age, id, name) in (age, id) order: with name in the index they are
-- index-only scans, walking the index in order instead of fetching heap pages at random.
CREATE INDEX students_age_id_name ON students (age, id) INCLUDE (name);
DROP INDEX students_age_id;
