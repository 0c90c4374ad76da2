//! What a job costs the database: on PostgreSQL, its claim and its success are one
//! statement each, and the statements of a job's life are prepared once per connection
//! (diesel leaves an UPDATE unprepared, to be parsed and planned at every call).

use std::time::Duration;

use diesel::prelude::*;
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
        let (_, token) = job::claim(&mut conn, &id, "test", Duration::from_secs(30))
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
    assert_eq!(count("WITH claimed AS"), 1, "{prepared:#?}");
    assert_eq!(count("WITH ended AS"), 1, "{prepared:#?}");
    assert_eq!(
        count("UPDATE \"jobs\""),
        1,
        "the progress write: {prepared:#?}"
    );

    #[derive(QueryableByName)]
    struct Statement {
        #[diesel(sql_type = diesel::sql_types::Text)]
        statement: String,
    }
}
