CREATE INDEX students_age_id ON students (age, id);
DROP INDEX students_age_id_name;
