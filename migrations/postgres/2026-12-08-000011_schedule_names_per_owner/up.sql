-- Schedule names are unique per owner, not across everyone: one user cannot probe or
-- squat another's names. Schedules without an owner (made with access control off, or
-- from the command line) share one namespace.
DROP INDEX schedules_name;
CREATE UNIQUE INDEX schedules_owner_name ON schedules (COALESCE(created_by, ''), name);
CREATE INDEX schedules_created_by ON schedules (created_by) WHERE created_by IS NOT NULL;
