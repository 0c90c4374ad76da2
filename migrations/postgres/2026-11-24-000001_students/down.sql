DROP FUNCTION roster_lower(TEXT);
DROP TABLE students;
