//! What a job costs the database: on PostgreSQL, a claim of a batch is one transaction and
//! a success one statement, and the statements of a job's life are prepared once per connection
//! (diesel leaves an UPDATE unprepared, to be parsed and planned at every call); the job
//! indexes that leave NULLs out still serve the queries that read them.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use roster::db::DbConnection;
use roster::domain::job::{JobKind, JobStatus};
use roster::models::job::{self, Beat, Ending, Progress};

use crate::helpers::{self, Deployment, Sandbox};

#[test]
fn a_jobs_claim_progress_and_success_are_prepared_once_per_connection() {
    let Some(sandbox) = Sandbox::new(Deployment::Production) else {
        return;
    };
    let pool = sandbox.migrated_pool(1);
    let mut conn = pool.get().unwrap();
    for _ in 0..3 {
        let id = job::insert(&mut conn, &helpers::new_job(JobKind::Noop, 1))
            .unwrap()
            .id;
        let (_, token) = crate::helpers::claim(&mut conn, &id, "test", Duration::from_secs(30))
            .unwrap()
            .unwrap();
        let beat = Beat {
            progress: Some(Progress { done: 1, total: 2 }),
            checkpoint: None,
        };
        job::renew(&mut conn, &token, Duration::from_secs(30), &beat)
            .unwrap()
            .unwrap();
        let ending = Ending::Succeeded {
            result: "{}".into(),
            committed: false,
        };
        let ended = job::finish(&mut conn, &token, &ending).unwrap().unwrap();
        assert_eq!(ended.status, JobStatus::Succeeded);
    }

    let prepared: Vec<String> = diesel::sql_query(
        "SELECT statement FROM pg_prepared_statements WHERE NOT from_sql ORDER BY statement",
    )
    .load::<Statement>(&mut *conn)
    .unwrap()
    .into_iter()
    .map(|s| s.statement)
    .collect();
    let count = |start: &str| prepared.iter().filter(|s| s.starts_with(start)).count();
    // A claim's statements take an array of ids: one text whatever the batch's size.
    assert_eq!(
        count("UPDATE \"jobs\" SET \"status\""),
        1,
        "the claim: {prepared:#?}"
    );
    assert_eq!(
        count("INSERT INTO \"job_attempts\""),
        1,
        "the claim's attempts: {prepared:#?}"
    );
    assert_eq!(count("WITH input AS"), 1, "the success: {prepared:#?}");
    assert_eq!(
        count("UPDATE \"jobs\" SET \"lease_expires_at\""),
        1,
        "the progress write: {prepared:#?}"
    );

    #[derive(QueryableByName)]
    struct Statement {
        #[diesel(sql_type = diesel::sql_types::Text)]
        statement: String,
    }
}

/// The job indexes that leave NULLs out (most jobs have no idempotency key, schedule or
/// owner, and no start or end for much of their life) still serve the queries that read
/// them: each compares the column, which implies it is not NULL. The shapes are those of
/// the idempotency lookup, a schedule's tick, listing by owner, the stats' windows and
/// retention.
#[test]
fn the_job_indexes_that_leave_out_nulls_still_serve_the_queries_that_read_them() {
    let queries = [
        (
            "jobs_idempotency_key",
            "SELECT id FROM jobs WHERE idempotency_key = 'k'",
        ),
        (
            "jobs_schedule_tick",
            "SELECT id FROM jobs WHERE schedule_id = 's' AND fire_at = '2026-01-01 00:00:00'",
        ),
        (
            "jobs_created_by",
            "SELECT id FROM jobs WHERE created_by = 'ada' ORDER BY created_at DESC LIMIT 20",
        ),
        (
            "jobs_started_at",
            "SELECT count(*) FROM jobs \
             WHERE started_at >= '2026-01-01 00:00:00' AND started_at < '2026-01-02 00:00:00'",
        ),
        (
            "jobs_finished_at",
            "SELECT id FROM jobs WHERE finished_at < '2026-01-01 00:00:00' \
             ORDER BY finished_at LIMIT 100",
        ),
    ];
    for deployment in [Deployment::Embedded, Deployment::Production] {
        let Some(sandbox) = Sandbox::new(deployment) else {
            continue;
        };
        let pool = sandbox.migrated_pool(1);
        let mut conn = pool.get().unwrap();
        for (index, query) in queries {
            let definition = definition_of(&mut conn, index);
            assert!(
                definition.contains("IS NOT NULL"),
                "{deployment:?}: {index} keeps NULLs: {definition}"
            );
            let plan = plan_of(&mut conn, query);
            assert!(
                plan.contains(index),
                "{deployment:?}: {query} does not use {index}:\n{plan}"
            );
        }
    }

    fn definition_of(conn: &mut DbConnection, index: &str) -> String {
        let query = match conn {
            DbConnection::Pg(_) => "SELECT indexdef AS sql FROM pg_indexes WHERE indexname = $1",
            DbConnection::Sqlite(_) => "SELECT sql FROM sqlite_master WHERE name = ?",
        };
        diesel::sql_query(query)
            .bind::<diesel::sql_types::Text, _>(index)
            .get_result::<Definition>(conn)
            .unwrap()
            .sql
    }

    fn plan_of(conn: &mut DbConnection, query: &str) -> String {
        let lines: Vec<String> = match conn {
            DbConnection::Pg(conn) => {
                // An empty table is cheapest to scan whole; what matters is that the
                // index can serve the query at all.
                conn.batch_execute("SET enable_seqscan = off").unwrap();
                diesel::sql_query(format!("EXPLAIN {query}"))
                    .load::<PgPlan>(conn)
                    .unwrap()
                    .into_iter()
                    .map(|l| l.line)
                    .collect()
            }
            DbConnection::Sqlite(conn) => diesel::sql_query(format!("EXPLAIN QUERY PLAN {query}"))
                .load::<SqlitePlan>(conn)
                .unwrap()
                .into_iter()
                .map(|l| l.detail)
                .collect(),
        };
        lines.join("\n")
    }

    #[derive(QueryableByName)]
    struct Definition {
        #[diesel(sql_type = diesel::sql_types::Text)]
        sql: String,
    }

    #[derive(QueryableByName)]
    struct PgPlan {
        #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
        line: String,
    }

    #[derive(QueryableByName)]
    struct SqlitePlan {
        #[diesel(sql_type = diesel::sql_types::Text)]
        detail: String,
    }
}
