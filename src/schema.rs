// @generated automatically by Diesel CLI.

diesel::table! {
    api_tokens (id) {
        id -> Text,
        user_name -> Text,
        name -> Text,
        token_sha256 -> Text,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    import_rows (job_id, attempt, n) {
        job_id -> Text,
        attempt -> Int4,
        n -> Int8,
        name -> Text,
        age -> Int4,
    }
}

diesel::table! {
    job_attempts (job_id, worker) {
        job_id -> Text,
        worker -> Text,
        number -> Int4,
        started_at -> Timestamp,
        ended_at -> Nullable<Timestamp>,
        outcome -> Nullable<Text>,
        error -> Nullable<Text>,
        resumed_from -> Nullable<Int8>,
    }
}

diesel::table! {
    jobs (id) {
        id -> Text,
        kind -> Text,
        params -> Text,
        status -> Text,
        progress_done -> Int8,
        progress_total -> Int8,
        attempts -> Int4,
        max_attempts -> Int4,
        error -> Nullable<Text>,
        result -> Nullable<Text>,
        cancel_requested -> Bool,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamp>,
        run_after -> Timestamp,
        seq -> Int8,
        created_at -> Timestamp,
        started_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
        checkpoint -> Nullable<Text>,
        created_by -> Nullable<Text>,
        idempotency_key -> Nullable<Text>,
        dedup_key -> Nullable<Text>,
        schedule_id -> Nullable<Text>,
        fire_at -> Nullable<Timestamp>,
        queue -> Text,
        priority -> Int4,
        turn -> Int8,
    }
}

diesel::table! {
    schedules (id) {
        id -> Text,
        name -> Text,
        cron -> Text,
        timezone -> Text,
        kind -> Text,
        params -> Text,
        enabled -> Bool,
        next_fire_at -> Timestamp,
        last_fired_at -> Nullable<Timestamp>,
        created_by -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        queue -> Nullable<Text>,
        priority -> Int4,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        user_name -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    settings (key) {
        key -> Text,
        value -> Text,
    }
}

diesel::table! {
    students (id) {
        id -> Int8,
        name -> Text,
        age -> Int4,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    users (name) {
        name -> Text,
        role -> Text,
        password_hash -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    workers (id) {
        id -> Text,
        node -> Text,
        name -> Text,
        pid -> Int4,
        queue -> Text,
        concurrency -> Int4,
        busy -> Int4,
        running -> Text,
        started_at -> Timestamp,
        last_seen -> Timestamp,
    }
}

diesel::joinable!(api_tokens -> users (user_name));
diesel::joinable!(job_attempts -> jobs (job_id));
diesel::joinable!(sessions -> users (user_name));

diesel::table! {
    queue_pauses (queue) {
        queue -> Text,
        paused_at -> Timestamp,
        paused_by -> Nullable<Text>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    api_tokens,
    import_rows,
    job_attempts,
    jobs,
    queue_pauses,
    schedules,
    sessions,
    settings,
    students,
    users,
    workers,
);
