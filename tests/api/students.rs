//! The students API: every route, every error case, on both deployments.

use actix_web::http::{Method, StatusCode};
use serde_json::json;

use crate::both_deployments;

both_deployments!(
    creating_a_student_returns_201_with_its_location,
    |app| async move {
        let reply = app
            .post(
                "/api/students",
                json!({"name": "  Ada Lovelace ", "age": 36}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED);
        let created = reply.json();
        assert_eq!(created["name"], "Ada Lovelace", "the name is trimmed");
        assert_eq!(created["age"], 36);
        let location = reply.header("location").unwrap();
        assert_eq!(location, format!("/api/students/{}", created["id"]));
        let fetched = app.get(&location).await;
        assert_eq!(fetched.status, StatusCode::OK);
        assert_eq!(fetched.json(), created);
    }
);

both_deployments!(unicode_names_round_trip_exactly, |app| async move {
    let name = "Zoë Łukasz-Ñúñez 山田 🎓 O'Brien, \"Jr\"";
    let created = app.create_student(name, 20).await;
    let fetched = app
        .get(&format!("/api/students/{}", created["id"]))
        .await
        .json();
    assert_eq!(fetched["name"], name);
});

both_deployments!(
    invalid_fields_get_422_naming_each_field_and_change_nothing,
    |app| async move {
        for (body, fields) in [
            (json!({"name": "", "age": 20}), vec!["name"]),
            (json!({"name": "   ", "age": 20}), vec!["name"]),
            (json!({"name": "x".repeat(201), "age": 20}), vec!["name"]),
            (json!({"name": "Ada", "age": 151}), vec!["age"]),
            (json!({"name": "Ada", "age": -1}), vec!["age"]),
            (json!({"name": "Ada", "age": "12"}), vec!["age"]),
            (json!({"name": "Ada", "age": 12.5}), vec!["age"]),
            (json!({"name": 5, "age": null}), vec!["age", "name"]),
            (json!({"age": 20}), vec!["name"]),
            (json!({"name": "Ada"}), vec!["age"]),
            (
                json!({"name": "Ada", "age": 3, "grade": "A"}),
                vec!["grade"],
            ),
        ] {
            let reply = app.post("/api/students", body.clone()).await;
            assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert_eq!(reply.code(), "invalid");
            let named: Vec<String> = reply.json()["error"]["fields"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            assert_eq!(named, fields, "{body}");
        }
        let list = app.get("/api/students").await.json();
        assert_eq!(list["total"], 0, "nothing was created");
    }
);

both_deployments!(
    malformed_bodies_get_400_wrong_types_415_and_huge_ones_413,
    |app| async move {
        let malformed = app
            .send_raw(
                Method::POST,
                "/api/students",
                "application/json",
                b"{\"name\":".to_vec(),
            )
            .await;
        assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
        assert_eq!(malformed.code(), "malformed");

        let not_object = app
            .send_raw(
                Method::POST,
                "/api/students",
                "application/json",
                b"[1,2]".to_vec(),
            )
            .await;
        assert_eq!(not_object.status, StatusCode::BAD_REQUEST);

        let form = app
            .send_raw(
                Method::POST,
                "/api/students",
                "text/plain",
                b"{\"name\":\"a\",\"age\":1}".to_vec(),
            )
            .await;
        assert_eq!(form.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(form.code(), "unsupported_media_type");

        let huge = format!("{{\"name\":\"{}\",\"age\":1}}", "a".repeat(100_000));
        let too_large = app
            .send_raw(
                Method::POST,
                "/api/students",
                "application/json",
                huge.into_bytes(),
            )
            .await;
        assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(too_large.code(), "too_large");

        assert_eq!(app.get("/api/students").await.json()["total"], 0);
    }
);

both_deployments!(unknown_students_and_routes_are_404, |app| async move {
    for path in [
        "/api/students/999999",
        "/api/students/abc",
        "/api/students/-1",
        "/api/nothing",
    ] {
        let reply = app.get(path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(reply.code(), "not_found");
    }
    let put = app
        .request(
            Method::PUT,
            "/api/students/999999",
            Some(json!({"name": "A", "age": 1})),
        )
        .await;
    assert_eq!(put.status, StatusCode::NOT_FOUND);
    let delete = app
        .request(Method::DELETE, "/api/students/999999", None)
        .await;
    assert_eq!(delete.status, StatusCode::NOT_FOUND);
});

both_deployments!(put_replaces_and_requires_every_field, |app| async move {
    let created = app.create_student("Grace", 30).await;
    let path = format!("/api/students/{}", created["id"]);
    let partial = app
        .request(Method::PUT, &path, Some(json!({"name": "Grace Hopper"})))
        .await;
    assert_eq!(partial.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(partial.json()["error"]["fields"]["age"].is_string());

    let replaced = app
        .request(
            Method::PUT,
            &path,
            Some(json!({"name": "Grace Hopper", "age": 85})),
        )
        .await;
    assert_eq!(replaced.status, StatusCode::OK);
    let body = replaced.json();
    assert_eq!(
        (body["name"].as_str(), body["age"].as_i64()),
        (Some("Grace Hopper"), Some(85))
    );
    assert_eq!(body["created_at"], created["created_at"]);
    assert_ne!(body["updated_at"], created["updated_at"]);
});

both_deployments!(patch_changes_only_the_fields_given, |app| async move {
    let created = app.create_student("Edsger", 40).await;
    let path = format!("/api/students/{}", created["id"]);
    let patched = app
        .request(Method::PATCH, &path, Some(json!({"age": 72})))
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    assert_eq!(patched.json()["name"], "Edsger");
    assert_eq!(patched.json()["age"], 72);

    let bad = app
        .request(Method::PATCH, &path, Some(json!({"name": ""})))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        app.get(&path).await.json()["name"],
        "Edsger",
        "a refused patch changes nothing"
    );
});

both_deployments!(
    delete_returns_204_and_the_student_is_gone,
    |app| async move {
        let created = app.create_student("Barbara", 50).await;
        let path = format!("/api/students/{}", created["id"]);
        let deleted = app.request(Method::DELETE, &path, None).await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);
        assert!(deleted.body.is_empty());
        assert_eq!(app.get(&path).await.status, StatusCode::NOT_FOUND);
    }
);

both_deployments!(
    listing_pages_and_filters_by_age_and_name,
    |app| async move {
        for (name, age) in [
            ("Ada", 10),
            ("adam", 20),
            ("Brian", 30),
            ("ÉMILE", 40),
            ("Dora 50%", 50),
        ] {
            app.create_student(name, age).await;
        }
        let all = app.get("/api/students?per_page=2&page=2").await.json();
        assert_eq!(
            (
                all["page"].as_i64(),
                all["per_page"].as_i64(),
                all["total"].as_i64()
            ),
            (Some(2), Some(2), Some(5))
        );
        let names: Vec<&str> = all["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Brian", "ÉMILE"]);

        let ages = app.get("/api/students?min_age=20&max_age=40").await.json();
        assert_eq!(ages["total"], 3);

        let search = app.get("/api/students?q=AD").await.json();
        assert_eq!(search["total"], 2, "case-insensitive: Ada and adam");
        let unicode = app.get("/api/students?q=%C3%A9mile").await.json();
        assert_eq!(unicode["total"], 1, "case folding beyond ASCII");
        let literal = app.get("/api/students?q=50%25").await.json();
        assert_eq!(literal["total"], 1, "% is taken literally");
        let wildcard = app.get("/api/students?q=_").await.json();
        assert_eq!(wildcard["total"], 0, "_ is taken literally");
        let beyond = app.get("/api/students?page=9").await.json();
        assert_eq!(beyond["items"].as_array().unwrap().len(), 0);
        assert_eq!(beyond["total"], 5);
    }
);

both_deployments!(bad_listing_parameters_get_422, |app| async move {
    for (query, field) in [
        ("per_page=1001", "per_page"),
        ("per_page=0", "per_page"),
        ("page=0", "page"),
        ("page=x", "page"),
        ("min_age=-1", "min_age"),
        ("max_age=abc", "max_age"),
        ("min_age=50&max_age=10", "min_age"),
        ("color=red", "color"),
    ] {
        let reply = app.get(&format!("/api/students?{query}")).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert!(
            reply.json()["error"]["fields"][field].is_string(),
            "{query}"
        );
    }
    let max = app.get("/api/students?per_page=1000").await;
    assert_eq!(max.status, StatusCode::OK);
});
