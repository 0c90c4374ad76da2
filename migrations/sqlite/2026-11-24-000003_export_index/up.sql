-- Exports read (age, id, name) in (age, id) order: a covering index answers them alone.
CREATE INDEX students_age_id_name ON students (age, id, name);
DROP INDEX students_age_id;
