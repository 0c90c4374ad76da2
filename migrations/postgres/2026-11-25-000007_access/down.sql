DROP INDEX jobs_created_by;
DROP TABLE settings;
DROP TABLE sessions;
DROP TABLE api_tokens;
DROP TABLE users;
