CREATE TABLE students (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    age INTEGER NOT NULL CHECK (age BETWEEN 0 AND 150),
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
-- Exports walk students in (age, id) order in keyset batches.
CREATE INDEX students_age_id ON students (age, id);
-- Name search folds case with roster_lower() on both backends; SQLite's own lower() only
-- folds ASCII, so there the function is registered by the application.
CREATE FUNCTION roster_lower(t TEXT) RETURNS TEXT
    AS $$ SELECT lower(t) $$ LANGUAGE SQL IMMUTABLE STRICT PARALLEL SAFE;
