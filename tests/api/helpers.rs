//! Starting roster for a test: a fresh database (a SQLite file, or a PostgreSQL database
//! created and dropped per test), its own Redis queue, a free port, and a client.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix_web::http::{header::HeaderMap, Method, StatusCode};
use roster::config::{BrokerUrl, Settings};
use roster::db::{DatabaseUrl, Pool};
use roster::domain::job::JobKind;
use roster::error::FieldErrors;
use roster::jobs::{Attempt, JobError, JobHandler, Kind};
use roster::kinds::export::StudentsByAge;
use roster::models::job::{Job, NewJob};
use roster::startup::{Application, Hooks};
use serde_json::Value;

/// The two shapes roster runs in; every API test runs on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    /// SQLite and the in-process broker.
    Embedded,
    /// PostgreSQL and Redis.
    Production,
}

pub fn postgres_admin_url() -> String {
    std::env::var("ROSTER_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("ROSTER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// In CI the servers must be there: a test that would be skipped fails instead.
fn services_required() -> bool {
    std::env::var("ROSTER_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

static WARNED: AtomicBool = AtomicBool::new(false);

/// Whether PostgreSQL and Redis answer; loud when they do not.
pub fn production_available() -> bool {
    use diesel::Connection;
    let pg = diesel::PgConnection::establish(&postgres_admin_url()).map(|_| ());
    let redis = redis::Client::open(redis_url())
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        .map(|_| ());
    match (pg, redis) {
        (Ok(()), Ok(())) => true,
        (pg, redis) => {
            let why = format!("PostgreSQL: {pg:?}, Redis: {redis:?}");
            assert!(
                !services_required(),
                "PostgreSQL and Redis are required (ROSTER_TEST_REQUIRE_SERVICES=1): {why}"
            );
            if !WARNED.swap(true, Ordering::SeqCst) {
                eprintln!("\n!!!!! SKIPPING PostgreSQL + Redis TESTS: {why} !!!!!\n");
            }
            false
        }
    }
}

/// A database and queue of the test's own, removed when the test ends.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub database_url: DatabaseUrl,
    pub broker_url: Option<BrokerUrl>,
    pub queue: String,
    pg_database: Option<String>,
}

impl Sandbox {
    pub fn new(deployment: Deployment) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let queue = format!("test-{tag}");
        match deployment {
            Deployment::Embedded => Some(Self {
                database_url: DatabaseUrl::Sqlite(
                    dir.path().join("roster.db").display().to_string(),
                ),
                dir,
                broker_url: None,
                queue,
                pg_database: None,
            }),
            Deployment::Production => {
                if !production_available() {
                    return None;
                }
                use diesel::{Connection, RunQueryDsl};
                let name = format!("roster_test_{tag}");
                let mut admin = diesel::PgConnection::establish(&postgres_admin_url()).unwrap();
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .unwrap();
                let mut url = url::Url::parse(&postgres_admin_url()).unwrap();
                url.set_path(&name);
                Some(Self {
                    dir,
                    database_url: DatabaseUrl::parse(url.as_str()).unwrap(),
                    broker_url: Some(BrokerUrl::parse(&redis_url()).unwrap()),
                    queue,
                    pg_database: Some(name),
                })
            }
        }
    }

    /// A pool of `size` on the sandbox's database, its schema in place: for a test that
    /// plays roster's parts itself.
    pub fn migrated_pool(&self, size: u32) -> Pool {
        let pool = roster::db::connect(&self.database_url, size).unwrap();
        roster::db::migrate(&pool).unwrap();
        pool
    }

    /// Another process's view of the same database and queue (it removes nothing when
    /// dropped; its export directory is its own).
    pub fn sharing(&self) -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().expect("temp dir"),
            database_url: self.database_url.clone(),
            broker_url: self.broker_url.clone(),
            queue: self.queue.clone(),
            pg_database: None,
        }
    }

    /// Settings for a process in this sandbox, tuned for quick tests.
    pub fn settings(&self) -> Settings {
        let mut s = Settings::defaults();
        s.database_url = self.database_url.clone();
        s.broker_url = self.broker_url.clone();
        s.queue = self.queue.clone();
        s.bind = "127.0.0.1:0".parse().unwrap();
        s.export_dir = self.dir.path().join("exports");
        s.concurrency = 2;
        s.lease_secs = 2;
        s.retry_backoff_ms = 50;
        s.shutdown_grace_secs = 5;
        s
    }

    /// The environment for a `roster` child process in this sandbox.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("DATABASE_URL".into(), self.database_url_string()),
            ("ROSTER_QUEUE".into(), self.queue.clone()),
            (
                "ROSTER_EXPORT_DIR".into(),
                self.dir.path().join("exports").display().to_string(),
            ),
            ("ROSTER_LEASE_SECS".into(), "2".into()),
            ("ROSTER_RETRY_BACKOFF_MS".into(), "50".into()),
            ("RUST_LOG".into(), "info".into()),
        ];
        if let Some(b) = &self.broker_url {
            env.push(("BROKER_URL".into(), b.as_str().to_owned()));
        }
        env
    }

    pub fn database_url_string(&self) -> String {
        match &self.database_url {
            DatabaseUrl::Postgres(u) => u.clone(),
            DatabaseUrl::Sqlite(p) => format!("sqlite://{p}"),
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // The deployment's Redis keys are named after it, which its database holds.
        let deployment = self.pg_database.as_ref().and_then(|_| {
            let pool = roster::db::connect(&self.database_url, 1).ok()?;
            let mut conn = pool.get().ok()?;
            roster::models::setting::deployment(&mut conn).ok()
        });
        if let Some(name) = &self.pg_database {
            use diesel::{Connection, RunQueryDsl};
            if let Ok(mut admin) = diesel::PgConnection::establish(&postgres_admin_url()) {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin);
            }
        }
        if let (Some(_), Some(deployment)) = (&self.broker_url, deployment) {
            if let Ok(mut conn) = redis::Client::open(redis_url()).and_then(|c| c.get_connection())
            {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(roster::broker::redis::Keys::for_deployment(&deployment).pattern())
                    .query(&mut conn)
                    .unwrap_or_default();
                for key in keys {
                    let _: redis::RedisResult<()> = redis::cmd("DEL").arg(key).query(&mut conn);
                }
            }
        }
    }
}

/// A response, read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// The error code of an error body.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// A roster process running inside the test.
pub struct TestApp {
    pub deployment: Deployment,
    pub address: String,
    pub pool: Pool,
    pub broker: std::sync::Arc<dyn roster::broker::Broker>,
    pub settings: Settings,
    pub client: awc::Client,
    pub sandbox: Sandbox,
}

impl TestApp {
    pub async fn request(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let req = self
            .client
            .request(method, format!("{}{path}", self.address));
        let mut res = match body {
            Some(b) => req.send_json(&b).await,
            None => req.send().await,
        }
        .expect("request sent");
        let body = res
            .body()
            .limit(512 * 1024 * 1024)
            .await
            .expect("body read");
        Reply {
            status: res.status(),
            headers: res.headers().clone(),
            body: body.to_vec(),
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.request(Method::POST, path, Some(body)).await
    }

    /// Sends raw bytes with a content type.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Reply {
        let mut res = self
            .client
            .request(method, format!("{}{path}", self.address))
            .insert_header(("Content-Type", content_type))
            .send_body(body)
            .await
            .expect("request sent");
        let body = res.body().limit(16 * 1024 * 1024).await.expect("body read");
        Reply {
            status: res.status(),
            headers: res.headers().clone(),
            body: body.to_vec(),
        }
    }

    pub fn broker(&self) -> std::sync::Arc<dyn roster::broker::Broker> {
        self.broker.clone()
    }

    /// Asks to cancel a job.
    pub async fn cancel(&self, job_id: &str) -> Reply {
        self.request(Method::POST, &format!("/api/jobs/{job_id}/cancel"), None)
            .await
    }

    /// Adds `n` generated students straight into the database.
    pub fn seed(&self, n: u64) {
        let mut conn = self.pool.get().unwrap();
        roster::cli::seed::seed(&mut conn, n, 7).unwrap();
    }

    pub async fn create_student(&self, name: &str, age: i64) -> Value {
        let reply = self
            .post(
                "/api/students",
                serde_json::json!({"name": name, "age": age}),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.json()
    }

    /// Starts an export; returns the job.
    pub async fn start_export(&self, body: Value) -> Value {
        let reply = self.post("/api/exports", body).await;
        assert_eq!(
            reply.status,
            StatusCode::ACCEPTED,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.json()
    }

    /// Polls the job until `done` says so, or panics after `limit`.
    pub async fn wait_for(
        &self,
        id: &str,
        limit: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let job = self.get(&format!("/api/jobs/{id}")).await.json();
            if done(&job) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job did not get there in {limit:?}: {job}"
            );
            actix_web::rt::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits for the job to end; returns it.
    pub async fn wait_until_ended(&self, id: &str) -> Value {
        self.wait_for(id, Duration::from_secs(60), |j| {
            matches!(
                j["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            )
        })
        .await
    }
}

/// Starts roster in this test with quick-test settings.
pub async fn spawn_app(deployment: Deployment) -> Option<TestApp> {
    spawn_with(deployment, |_| {}, Hooks::default()).await
}

pub async fn spawn_with(
    deployment: Deployment,
    configure: impl FnOnce(&mut Settings),
    hooks: Hooks,
) -> Option<TestApp> {
    let sandbox = Sandbox::new(deployment)?;
    let mut settings = sandbox.settings();
    configure(&mut settings);
    Some(start_in(sandbox, settings, hooks, true).await)
}

/// A web-only process: jobs stay queued, nothing runs them.
pub async fn web_only(deployment: Deployment) -> Option<TestApp> {
    let sandbox = Sandbox::new(deployment)?;
    let settings = sandbox.settings();
    Some(start_in(sandbox, settings, Hooks::default(), false).await)
}

/// Starts a roster process in an existing sandbox.
pub async fn start_in(
    sandbox: Sandbox,
    settings: Settings,
    hooks: Hooks,
    workers: bool,
) -> TestApp {
    let app = Application::build(settings.clone(), hooks, workers)
        .await
        .expect("the application starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    let pool = app.services().pool.clone();
    let broker = app.services().broker.clone();
    actix_web::rt::spawn(app.run());
    TestApp {
        deployment: Deployment::Embedded,
        address,
        pool,
        broker,
        settings,
        client: awc::Client::builder()
            .timeout(Duration::from_secs(60))
            .finish(),
        sandbox,
    }
    .with_deployment()
}

impl TestApp {
    fn with_deployment(mut self) -> Self {
        self.deployment = if self.sandbox.broker_url.is_some() {
            Deployment::Production
        } else {
            Deployment::Embedded
        };
        self
    }
}

/// Defines a test that runs once on each deployment:
/// `both_deployments!(name, |app| async move { ... });`
#[macro_export]
macro_rules! both_deployments {
    ($name:ident, |$app:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn case($app: $crate::helpers::TestApp) {
                $body.await
            }

            #[actix_web::test]
            async fn on_sqlite_in_process() {
                let app = $crate::helpers::spawn_app($crate::helpers::Deployment::Embedded)
                    .await
                    .unwrap();
                case(app).await;
            }

            #[actix_web::test]
            async fn on_postgres_and_redis() {
                if let Some(app) =
                    $crate::helpers::spawn_app($crate::helpers::Deployment::Production).await
                {
                    case(app).await;
                }
            }
        }
    };
}

/// Defines a test that runs `async fn $name(deployment: Deployment)` once on each
/// deployment (the function skips what the machine cannot run):
/// `each_deployment!(name);` beside `async fn name(deployment: Deployment) { ... }`.
#[macro_export]
macro_rules! each_deployment {
    ($name:ident) => {
        mod $name {
            #[actix_web::test]
            async fn on_sqlite_in_process() {
                super::$name($crate::helpers::Deployment::Embedded).await;
            }

            #[actix_web::test]
            async fn on_postgres_and_redis() {
                super::$name($crate::helpers::Deployment::Production).await;
            }
        }
    };
}

/// A test's stand-in for the export: it runs in place of `students_by_age`, whose
/// parameters it takes.
pub trait StandIn: Send + Sync + 'static {
    fn run(&self, job: &Job, attempt: &mut Attempt<'_>) -> Result<Value, JobError>;
}

struct AsExport<T>(T);

impl<T: StandIn> JobHandler for AsExport<T> {
    fn kind(&self) -> JobKind {
        JobKind::StudentsByAge
    }

    fn accept(&self, raw: &serde_json::Map<String, Value>) -> Result<Value, FieldErrors> {
        StudentsByAge::params(raw).map(|p| serde_json::to_value(p).unwrap())
    }

    fn run(&self, job: &Job, attempt: &mut Attempt<'_>) -> Result<Value, JobError> {
        self.0.run(job, attempt)
    }
}

/// Hooks that run `stand_in` for every export.
pub fn instead_of_export(stand_in: impl StandIn) -> Hooks {
    Hooks::with_kind(AsExport(stand_in))
}

/// Holds every job until the test opens the gate, reporting nothing meanwhile; then
/// reports `steps` steps of progress (each one written and announced) and succeeds.
pub struct Gate {
    pub open: std::sync::Arc<AtomicBool>,
    pub steps: u64,
}

impl Gate {
    pub fn new(open: std::sync::Arc<AtomicBool>) -> Self {
        Self { open, steps: 0 }
    }
}

impl StandIn for Gate {
    fn run(&self, _job: &Job, attempt: &mut Attempt<'_>) -> Result<Value, JobError> {
        while !self.open.load(Ordering::SeqCst) {
            attempt.check()?;
            std::thread::sleep(Duration::from_millis(20));
        }
        for done in 1..=self.steps {
            attempt.progress(done, self.steps, true)?;
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(serde_json::json!({"rows": 0}))
    }
}

/// A new job of `kind` with no parameters, owner or keys, as a test inserts it directly.
pub fn new_job(kind: JobKind, max_attempts: i32) -> NewJob {
    NewJob {
        id: roster::domain::job::JobId::new(),
        kind,
        params: serde_json::json!({}),
        max_attempts,
        created_by: None,
        idempotency_key: None,
        dedup_key: None,
        tick: None,
        queue: roster::domain::queue::QueueName::default_queue(),
        priority: roster::domain::queue::Priority::default(),
        delay: Duration::ZERO,
    }
}

/// Claims job `id` by hand, as a worker of `node` would; `None` when it is not there to
/// take (not queued, not due, cancelled).
pub fn claim(
    conn: &mut roster::db::DbConnection,
    id: &roster::domain::job::JobId,
    node: &str,
    lease: Duration,
) -> diesel::QueryResult<Option<(Job, roster::models::job::AttemptToken)>> {
    Ok(
        roster::models::job::claim(conn, std::slice::from_ref(id), node, lease)?
            .into_iter()
            .next(),
    )
}
