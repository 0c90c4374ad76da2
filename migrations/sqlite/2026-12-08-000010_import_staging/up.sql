-- An all-or-nothing import stages its rows here, one committed batch at a time, and
-- publishes them into students with one INSERT … SELECT in the transaction that records
-- its end. Staging keeps every batch short (a cancel is seen within a batch; SQLite's
-- one writer is not held for the whole import) while nothing reaches students unless
-- every row was valid. Rows are keyed by the attempt that staged them, so a paused
-- attempt's late rows never mix with the rows of the attempt that holds the job now.
CREATE TABLE import_rows (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    n BIGINT NOT NULL,
    name TEXT NOT NULL,
    age INTEGER NOT NULL,
    PRIMARY KEY (job_id, attempt, n)
);
