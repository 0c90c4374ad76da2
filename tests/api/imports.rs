//! `students_import`: uploads streamed to disk and checked as they arrive, both modes,
//! the rejects report, and no row inserted twice.

use actix_web::http::{Method, StatusCode};
use serde_json::Value;

use crate::both_deployments;
use crate::helpers::{spawn_with, Deployment, Reply, TestApp};

impl TestApp {
    /// Uploads `body` to `/api/imports` (with `query`, e.g. `?mode=skip_invalid`).
    pub async fn import(&self, query: &str, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        self.send_raw(
            Method::POST,
            &format!("/api/imports{query}"),
            content_type,
            body.into(),
        )
        .await
    }

    /// How many students there are (read from the database: the API caches counts).
    pub async fn student_count(&self) -> i64 {
        use diesel::prelude::*;
        use roster::schema::students;
        let mut conn = self.pool.get().unwrap();
        students::table.count().get_result(&mut *conn).unwrap()
    }

    /// The lines of a job's download.
    pub async fn download_lines(&self, id: &str) -> Vec<String> {
        let reply = self.get(&format!("/api/jobs/{id}/download")).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        String::from_utf8(reply.body)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn id(job: &Value) -> &str {
    job["id"].as_str().unwrap()
}

const MIXED_CSV: &str = "name,age\r\nAda Lovelace,36\r\n  ,20\r\nAlan Turing,41\r\nGrace,-3\r\n\"Hopper, Grace\",85\r\n";

both_deployments!(
    a_valid_csv_is_imported_whole_and_an_export_file_imports_back,
    |app| async move {
        let accepted = app
            .import(
                "",
                "text/csv",
                "id,name,age\r\n9,Ada,36\r\n10,\"=Bob, Jr.\",7\r\n",
            )
            .await;
        assert_eq!(
            accepted.status,
            StatusCode::ACCEPTED,
            "{}",
            String::from_utf8_lossy(&accepted.body)
        );
        assert!(accepted
            .header("location")
            .unwrap()
            .starts_with("/api/jobs/"));
        let job = accepted.json();
        assert_eq!(job["kind"], "students_import");
        assert_eq!(job["params"]["mode"], "all_or_nothing");
        let done = app.wait_until_ended(id(&job)).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(done["result"]["inserted"], 2);
        assert_eq!(done["result"]["rejected"], 0);
        assert_eq!(done["progress"]["done"], 2);
        assert!(
            done["result"].get("file").is_none(),
            "no report without rejects"
        );
        let names: Vec<Value> = app.get("/api/students?q=Bob").await.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].clone())
            .collect();
        assert_eq!(
            names,
            ["=Bob, Jr."],
            "the id column is ignored; the name kept as is"
        );
        let nothing = app.get(&format!("/api/jobs/{}/download", id(&job))).await;
        assert_eq!(nothing.status, StatusCode::CONFLICT);
    }
);

both_deployments!(
    skip_invalid_inserts_the_valid_rows_and_reports_each_invalid_field,
    |app| async move {
        let before = app.student_count().await;
        let job = app
            .import("?mode=skip_invalid", "text/csv", MIXED_CSV)
            .await
            .json();
        let done = app.wait_until_ended(id(&job)).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(done["result"]["inserted"], 3);
        assert_eq!(done["result"]["rejected"], 2);
        assert_eq!(done["result"]["rows"], 5);
        assert_eq!(app.student_count().await, before + 3);
        let report = app.download_lines(id(&job)).await;
        assert_eq!(report[0], "line,field,message");
        assert!(report[1].starts_with("3,name,"), "{report:?}");
        assert!(report[2].starts_with("5,age,"), "{report:?}");
        assert_eq!(report.len(), 3);
    }
);

both_deployments!(
    all_or_nothing_with_an_invalid_row_imports_nothing_and_keeps_its_report,
    |app| async move {
        let before = app.student_count().await;
        let job = app
            .import("?mode=all_or_nothing", "text/csv", MIXED_CSV)
            .await
            .json();
        let done = app.wait_until_ended(id(&job)).await;
        assert_eq!(done["status"], "failed", "{done}");
        assert_eq!(done["error"], "2 invalid rows; nothing was imported");
        assert_eq!(done["attempts"], 1, "not retried: no attempt could succeed");
        assert_eq!(done["result"]["inserted"], 0);
        assert_eq!(app.student_count().await, before);
        let report = app.download_lines(id(&job)).await;
        assert_eq!(report.len(), 3, "{report:?}");
    }
);

both_deployments!(
    json_lines_are_imported_with_their_own_line_numbers,
    |app| async move {
        let body = "{\"name\":\"Ada\",\"age\":36}\n\n{\"name\":7,\"age\":3}\n[1]\n{\"name\":\"Zoë\",\"age\":9}";
        let job = app
            .import("?mode=skip_invalid", "application/x-ndjson", body)
            .await
            .json();
        let done = app.wait_until_ended(id(&job)).await;
        assert_eq!(done["result"]["inserted"], 2, "{done}");
        let report = app.download_lines(id(&job)).await;
        assert!(
            report[1].starts_with("3,name,must be a string"),
            "{report:?}"
        );
        assert!(
            report[2].starts_with("4,row,is not a JSON object"),
            "{report:?}"
        );
    }
);

both_deployments!(
    bad_files_are_refused_before_any_job_exists,
    |app| async move {
        let jobs_before = app.get("/api/jobs").await.json()["items"]
            .as_array()
            .unwrap()
            .len();
        let cases: [(&str, Vec<u8>, StatusCode, &str); 5] = [
            (
                "text/csv",
                b"name,age\nJos\xe9,3\n".to_vec(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "UTF-8",
            ),
            (
                "text/csv",
                b"name,years\nAda,3\n".to_vec(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "name and age",
            ),
            (
                "text/csv",
                Vec::new(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "empty",
            ),
            (
                "application/x-ndjson",
                [b"{\"name\":\"".as_slice(), &vec![b'a'; 2 << 20]].concat(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "longer than",
            ),
            (
                "application/json",
                b"[]".to_vec(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "text/csv",
            ),
        ];
        for (content_type, body, status, says) in cases {
            let reply = app.import("", content_type, body).await;
            assert_eq!(
                reply.status,
                status,
                "{}",
                String::from_utf8_lossy(&reply.body)
            );
            let message = reply.json()["error"].to_string();
            assert!(message.contains(says), "{message} should say {says}");
        }
        let bad_mode = app.import("?mode=some", "text/csv", "name,age\n").await;
        assert_eq!(bad_mode.status, StatusCode::UNPROCESSABLE_ENTITY);
        let jobs_after = app.get("/api/jobs").await.json()["items"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(jobs_before, jobs_after, "no job for a refused file");
        let uploads: Vec<_> = std::fs::read_dir(&app.settings.export_dir)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            uploads.is_empty(),
            "refused uploads are not kept: {uploads:?}"
        );
    }
);

#[actix_web::test]
async fn a_file_larger_than_the_limit_is_refused_while_it_streams() {
    for deployment in [Deployment::Embedded, Deployment::Production] {
        let Some(app) = spawn_with(
            deployment,
            |s| s.max_import_bytes = 1000,
            Default::default(),
        )
        .await
        else {
            continue;
        };
        let body = format!("name,age\n{}", "Ada,3\n".repeat(400));
        let reply = app.import("", "text/csv", body).await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
        let fits = app.import("", "text/csv", "name,age\nAda,3\n").await;
        assert_eq!(fits.status, StatusCode::ACCEPTED);
    }
}

both_deployments!(
    the_same_idempotency_key_returns_the_first_import,
    |app| async move {
        let send = |body: &'static str| {
            app.client
                .post(format!("{}/api/imports", app.address))
                .insert_header(("Content-Type", "text/csv"))
                .insert_header(("Idempotency-Key", "upload-1"))
                .send_body(body)
        };
        let mut first = send("name,age\nAda,3\n").await.unwrap();
        assert_eq!(first.status(), StatusCode::ACCEPTED);
        let first: Value = first.json().await.unwrap();
        let mut again = send("name,age\nAda,3\n").await.unwrap();
        assert_eq!(again.status(), StatusCode::OK);
        let again: Value = again.json().await.unwrap();
        assert_eq!(first["id"], again["id"]);
        let other = send("name,age\nBob,4\n").await.unwrap();
        assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
        app.wait_until_ended(id(&first)).await;
        assert_eq!(app.get("/api/students?q=Ada").await.json()["total"], 1);
    }
);

both_deployments!(
    a_big_import_reports_progress_and_a_cancel_imports_nothing,
    |app| async move {
        let before = app.student_count().await;
        let body: String = std::iter::once("name,age\n".to_owned())
            .chain((0..200_000).map(|i| format!("Student {i},{}\n", i % 100)))
            .collect();
        let job = app.import("", "text/csv", body).await.json();
        app.wait_for(id(&job), std::time::Duration::from_secs(60), |j: &Value| {
            j["progress"]["done"].as_i64() > Some(0)
        })
        .await;
        let cancelled = app.cancel(id(&job)).await;
        let done = app.wait_until_ended(id(&job)).await;
        if cancelled.status == StatusCode::ACCEPTED && done["status"] == "cancelled" {
            assert_eq!(app.student_count().await, before, "all or nothing: nothing");
        } else {
            // It finished first: then every row is in, once.
            assert_eq!(done["status"], "succeeded");
            assert_eq!(app.student_count().await, before + 200_000);
        }
        assert_eq!(done["progress"]["total"], 200_000);
    }
);
