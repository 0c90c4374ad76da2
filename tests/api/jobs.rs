//! The job routes of every kind: listing with filters and a cursor, retry, delete, unique
//! jobs, and retention of ended jobs.

use std::collections::HashSet;
use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use diesel::prelude::*;
use serde_json::{json, Value};

use crate::both_deployments;
use crate::helpers::{web_only, Deployment};

fn id(job: &Value) -> &str {
    job["id"].as_str().unwrap()
}

both_deployments!(
    a_failed_job_can_be_retried_and_runs_again_with_a_fresh_budget,
    |app| async move {
        let failed = app
            .import("", "text/csv", "name,age\nAda,-1\n")
            .await
            .json();
        let failed = app.wait_until_ended(id(&failed)).await;
        assert_eq!(failed["status"], "failed");
        let seq = failed["seq"].as_i64().unwrap();
        let path = format!("/api/jobs/{}/retry", id(&failed));
        let retried = app.request(Method::POST, &path, None).await;
        assert_eq!(retried.status, StatusCode::ACCEPTED);
        let retried = retried.json();
        assert_eq!(retried["status"], "queued");
        assert!(retried["error"].is_null() && retried["result"].is_null());
        assert!(
            retried["seq"].as_i64().unwrap() > seq,
            "seq goes on growing"
        );
        assert_eq!(retried["max_attempts"], 1 + 3, "a fresh budget of attempts");
        let again = app.wait_until_ended(id(&failed)).await;
        assert_eq!(again["status"], "failed", "same file, same verdict");
        assert_eq!(again["attempts"], 2);
        let attempts = app
            .get(&format!("/api/jobs/{}/attempts", id(&failed)))
            .await
            .json();
        assert_eq!(attempts["items"].as_array().unwrap().len(), 2);

        let export = app.start_export(json!({"min_age": 150})).await;
        app.wait_until_ended(id(&export)).await;
        let path = format!("/api/jobs/{}/retry", id(&export));
        let refused = app.request(Method::POST, &path, None).await;
        assert_eq!(
            refused.status,
            StatusCode::CONFLICT,
            "a success is not retried"
        );
        let missing = app
            .request(
                Method::POST,
                "/api/jobs/00000000-0000-4000-8000-000000000000/retry",
                None,
            )
            .await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
    }
);

#[actix_web::test]
async fn a_cancelled_job_retried_is_queued_and_due_again() {
    for deployment in [Deployment::Embedded, Deployment::Production] {
        let Some(web) = web_only(deployment).await else {
            continue;
        };
        let job = web.start_export(json!({})).await;
        web.cancel(id(&job)).await;
        let path = format!("/api/jobs/{}/retry", id(&job));
        assert_eq!(
            web.request(Method::POST, &path, None).await.status,
            StatusCode::ACCEPTED
        );
        // The retried job is a queued job like any other: due now, no cancel pending.
        let queued = web.get(&format!("/api/jobs/{}", id(&job))).await.json();
        assert_eq!(queued["status"], "queued");
        assert_eq!(queued["cancel_requested"], false);
        let due: chrono::DateTime<chrono::Utc> =
            queued["run_after"].as_str().unwrap().parse().unwrap();
        assert!(
            due <= chrono::Utc::now() + chrono::Duration::seconds(1),
            "{queued}"
        );
    }
}

both_deployments!(
    an_ended_job_is_deleted_with_its_file_and_an_active_one_is_not,
    |app| async move {
        app.seed(10);
        let job = app.start_export(json!({})).await;
        let done = app.wait_until_ended(id(&job)).await;
        let file = app
            .settings
            .export_dir
            .join(done["result"]["file"].as_str().unwrap());
        assert!(file.exists());
        let path = format!("/api/jobs/{}", id(&job));
        let deleted = app.request(Method::DELETE, &path, None).await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);
        assert!(!file.exists(), "its file went with it");
        assert_eq!(app.get(&path).await.status, StatusCode::NOT_FOUND);
        assert_eq!(
            app.request(Method::DELETE, &path, None).await.status,
            StatusCode::NOT_FOUND
        );
    }
);

#[actix_web::test]
async fn a_queued_job_cannot_be_deleted() {
    let Some(web) = web_only(Deployment::Embedded).await else {
        return;
    };
    let job = web.start_export(json!({})).await;
    let path = format!("/api/jobs/{}", id(&job));
    let refused = web.request(Method::DELETE, &path, None).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(web.get(&path).await.json()["status"], "queued");
}

#[actix_web::test]
async fn jobs_are_listed_newest_first_by_kind_and_id_prefix_a_page_at_a_time() {
    for deployment in [Deployment::Embedded, Deployment::Production] {
        let Some(web) = web_only(deployment).await else {
            continue;
        };
        let mut created = Vec::new();
        for i in 0..7 {
            created.push(web.start_export(json!({ "max_age": 100 + i })).await);
        }
        let import = web.import("", "text/csv", "name,age\nAda,3\n").await.json();
        // Every page, following the cursor: each job once, newest first.
        let mut seen = Vec::new();
        let mut path = "/api/jobs?limit=3".to_owned();
        loop {
            let page = web.get(&path).await.json();
            seen.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|j| id(j).to_owned()),
            );
            match page["next_cursor"].as_str() {
                Some(cursor) => path = format!("/api/jobs?limit=3&cursor={cursor}"),
                None => break,
            }
        }
        // Newest first; jobs made in the same clock tick are ordered by id, so compare
        // with the order the listing promises, (created_at, id) descending.
        // As times, not strings: RFC 3339 prints as few fraction digits as it needs, so
        // "…:01Z" would sort after "…:01.5Z".
        let mut expected: Vec<(chrono::DateTime<chrono::FixedOffset>, String)> = created
            .iter()
            .chain([&import])
            .map(|j| {
                let at = j["created_at"].as_str().unwrap();
                (
                    chrono::DateTime::parse_from_rfc3339(at).unwrap(),
                    id(j).to_owned(),
                )
            })
            .collect();
        expected.sort();
        expected.reverse();
        let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();
        assert_eq!(seen, expected, "each job once, newest first");

        let exports = web.get("/api/jobs?kind=students_by_age").await.json();
        assert_eq!(exports["items"].as_array().unwrap().len(), 7);
        let prefix = &id(&import)[..8];
        let found = web.get(&format!("/api/jobs?q={prefix}")).await.json();
        let ids: HashSet<&str> = found["items"].as_array().unwrap().iter().map(id).collect();
        assert!(ids.contains(id(&import)));
        assert!(ids.iter().all(|i| i.starts_with(prefix)));
        for bad in ["kind=nope", "cursor=garbage", "limit=0", "colour=red"] {
            let reply = web.get(&format!("/api/jobs?{bad}")).await;
            assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        }
        let none = web.get("/api/jobs?q=zz%25").await.json();
        assert!(
            none["items"].as_array().unwrap().is_empty(),
            "q is a prefix, not a pattern"
        );
    }
}

both_deployments!(
    an_identical_export_while_one_is_active_is_that_one,
    |app| async move {
        let first = app.post("/api/exports", json!({"min_age": 149})).await;
        assert_eq!(first.status, StatusCode::ACCEPTED);
        let first = first.json();
        let double_click = app.post("/api/exports", json!({"min_age": 149})).await;
        if double_click.status == StatusCode::OK {
            assert_eq!(double_click.json()["id"], first["id"]);
        } else {
            // The first one had already ended: then this is a new one, which must end
            // too before the next request can be new.
            assert_eq!(double_click.status, StatusCode::ACCEPTED);
            app.wait_until_ended(id(&double_click.json())).await;
        }
        app.wait_until_ended(id(&first)).await;
        let later = app.post("/api/exports", json!({"min_age": 149})).await;
        assert_eq!(
            later.status,
            StatusCode::ACCEPTED,
            "the first one has ended"
        );
        assert_ne!(later.json()["id"], first["id"]);
    }
);

#[actix_web::test]
async fn concurrent_identical_requests_make_one_job() {
    for deployment in [Deployment::Embedded, Deployment::Production] {
        let Some(web) = web_only(deployment).await else {
            continue;
        };
        let requests = (0..8).map(|_| web.post("/api/exports", json!({"format": "jsonl"})));
        let replies = futures_util::future::join_all(requests).await;
        let ids: HashSet<String> = replies.iter().map(|r| id(&r.json()).to_owned()).collect();
        assert_eq!(ids.len(), 1, "one job for eight identical requests");
        let created = replies
            .iter()
            .filter(|r| r.status == StatusCode::ACCEPTED)
            .count();
        assert_eq!(created, 1);
    }
}

#[actix_web::test]
async fn an_idempotency_key_returns_the_first_job_and_refuses_other_parameters() {
    for deployment in [Deployment::Embedded, Deployment::Production] {
        let Some(web) = web_only(deployment).await else {
            continue;
        };
        let send = |body: Value, key: &str| {
            web.client
                .post(format!("{}/api/exports", web.address))
                .insert_header(("Idempotency-Key", key.to_owned()))
                .send_json(&body)
        };
        let mut first = send(json!({"min_age": 3}), "k-1").await.unwrap();
        assert_eq!(first.status(), StatusCode::ACCEPTED);
        let location = first.headers().get("location").unwrap().clone();
        let first: Value = first.json().await.unwrap();
        web.cancel(id(&first)).await;
        let again = send(json!({"min_age": 3}), "k-1").await.unwrap();
        assert_eq!(again.status(), StatusCode::OK, "the same job, ended or not");
        assert_eq!(again.headers().get("location"), Some(&location));
        let mut other = send(json!({"min_age": 4}), "k-1").await.unwrap();
        assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body: Value = other.json().await.unwrap();
        assert!(
            body["error"]["fields"]["Idempotency-Key"].is_string(),
            "{body}"
        );
        let fresh = send(json!({"min_age": 3}), "k-2").await.unwrap();
        assert_eq!(
            fresh.status(),
            StatusCode::ACCEPTED,
            "another key, another job"
        );
        let too_long = send(json!({}), &"x".repeat(300)).await.unwrap();
        assert_eq!(too_long.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
}

both_deployments!(
    jobs_ended_longer_ago_than_the_retention_are_deleted_with_their_files,
    |app| async move {
        let old = app.start_export(json!({"min_age": 140})).await;
        let recent = app.start_export(json!({"min_age": 141})).await;
        let old_done = app.wait_until_ended(id(&old)).await;
        app.wait_until_ended(id(&recent)).await;
        let file = app
            .settings
            .export_dir
            .join(old_done["result"]["file"].as_str().unwrap());
        assert!(file.exists());
        {
            use roster::schema::jobs;
            let mut conn = app.pool.get().unwrap();
            let long_ago = chrono::Utc::now().naive_utc() - chrono::Duration::days(31);
            diesel::update(jobs::table.filter(jobs::id.eq(id(&old))))
                .set(jobs::finished_at.eq(long_ago))
                .execute(&mut *conn)
                .unwrap();
        }
        let store = roster::jobs::store::FileStore::new(
            app.settings.export_dir.clone(),
            Duration::from_secs(60),
        );
        let pruned = roster::jobs::maintenance::Housekeeping::run_once(
            &roster::jobs::maintenance::Retention::new(
                app.pool.clone(),
                store.clone(),
                app.settings.job_retention(),
            ),
        )
        .unwrap();
        assert_eq!(pruned, 1);
        assert_eq!(
            app.get(&format!("/api/jobs/{}", id(&old))).await.status,
            StatusCode::NOT_FOUND
        );
        assert!(!file.exists());
        assert_eq!(
            app.get(&format!("/api/jobs/{}", id(&recent))).await.status,
            StatusCode::OK
        );
    }
);
