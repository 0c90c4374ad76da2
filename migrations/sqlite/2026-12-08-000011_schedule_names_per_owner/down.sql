DROP INDEX schedules_created_by;
DROP INDEX schedules_owner_name;
CREATE UNIQUE INDEX schedules_name ON schedules (name);
