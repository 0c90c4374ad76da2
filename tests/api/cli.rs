//! The command line: usage and configuration errors, migrate, seed, `export --wait` (its
//! waiting state, its summary, Ctrl-C on a terminal and off one) and `job follow|cancel`.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use roster::domain::job::{JobId, JobStatus};

use crate::helpers::{Deployment, Sandbox};
use crate::process::{roster_command, run, Roster};

/// Only warnings in the log: what is left on stderr is what the command itself says.
const QUIET: (&str, &str) = ("RUST_LOG", "warn");
/// Any free port, for `serve` runs that must get past binding.
const ANY_PORT: (&str, &str) = ("ROSTER_BIND", "127.0.0.1:0");

fn status_of(sandbox: &Sandbox, id: &str) -> JobStatus {
    let pool = roster::db::connect(&sandbox.settings().database_url, 1).unwrap();
    let id: JobId = id.parse().unwrap();
    roster::models::job::find(&mut pool.get().unwrap(), &id)
        .unwrap()
        .expect("the job")
        .status
}

/// Polls `done` every 50 ms for up to `limit`.
fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn interrupt(child: &Child) {
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let mut status = None;
    eventually(limit, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status.map(|s| s.code().unwrap_or(-1))
}

#[test]
fn a_bad_setting_stops_start_up_with_one_line_naming_the_variable() {
    let sandbox = Sandbox::new(Deployment::Embedded).unwrap();
    for (var, value) in [
        ("ROSTER_CONCURRENCY", "lots"),
        ("ROSTER_CONCURRENCY", "0"),
        ("ROSTER_BIND", "nowhere"),
        ("DATABASE_URL", "mysql://db/roster"),
        ("BROKER_URL", "amqp://rabbit"),
        ("ROSTER_LEASE_SECS", "-3"),
        ("ROSTER_QUEUE", "a queue"),
    ] {
        let (code, _, stderr) = run(&sandbox, &["serve"], &[(var, value)]);
        assert_eq!(code, 2, "{var}={value}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{var}={value}: {stderr}");
        assert!(stderr.contains(var), "{var}={value}: {stderr}");
    }
}

#[test]
fn a_usage_error_prints_clap_s_whole_message_with_status_2() {
    let sandbox = Sandbox::new(Deployment::Embedded).unwrap();
    let (code, _, stderr) = run(&sandbox, &["seed"], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("required arguments were not provided")
            && stderr.contains("--students <STUDENTS>")
            && stderr.contains("Usage: roster seed"),
        "the missing argument and the usage: {stderr}"
    );
    let (code, _, stderr) = run(&sandbox, &["exprot"], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("unrecognized subcommand 'exprot'") && stderr.contains("'export'"),
        "the did-you-mean hint: {stderr}"
    );
    let (code, _, stderr) = run(&sandbox, &["export", "--min-age", "old"], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--min-age") && stderr.contains("For more information"),
        "{stderr}"
    );
}

#[test]
fn help_shows_each_command_s_own_options_apart_from_the_settings_it_reads() {
    let sandbox = Sandbox::new(Deployment::Embedded).unwrap();
    let (code, stdout, _) = run(&sandbox, &["export", "--help"], &[]);
    assert_eq!(code, 0);
    let (own, settings) = stdout
        .split_once(roster::config::SETTINGS_HEADING)
        .expect("the settings under a heading of their own");
    assert!(
        own.contains("--min-age <AGE>") && own.contains("Only students this old or older"),
        "every option is described: {own}"
    );
    assert!(!own.contains("DATABASE_URL"), "{own}");
    assert!(settings.contains("DATABASE_URL") && settings.contains("BROKER_URL"));
    assert!(
        !settings.contains("ROSTER_ALLOWED_HOSTS") && !settings.contains("ROSTER_CONCURRENCY"),
        "only the settings export reads: {settings}"
    );
    let (_, stdout, _) = run(&sandbox, &["migrate", "--help"], &[]);
    assert!(stdout.contains("DATABASE_URL") && !stdout.contains("ROSTER_BIND"));
}

/// Runs each of `commands` with `env`: each must stop at start with status 2 and one line
/// holding every one of `wanted` and none of `unwanted`.
fn assert_start_up_stops(
    sandbox: &Sandbox,
    commands: &[&[&str]],
    env: &[(&str, &str)],
    wanted: &[&str],
    unwanted: &[&str],
) {
    let env = [env, &[QUIET, ANY_PORT]].concat();
    for args in commands {
        let (code, _, stderr) = run(sandbox, args, &env);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{args:?}: once, on one line: {stderr}"
        );
        for text in wanted {
            assert!(stderr.contains(text), "{args:?}: no {text:?} in {stderr}");
        }
        for text in unwanted {
            assert!(!stderr.contains(text), "{args:?}: {text:?} in {stderr}");
        }
    }
}

#[test]
fn an_unreachable_database_stops_start_up_with_one_line_naming_the_variable_and_the_address() {
    let sandbox = Sandbox::new(Deployment::Embedded).unwrap();
    assert_start_up_stops(
        &sandbox,
        &[&["migrate"], &["serve"], &["worker"], &["export"]],
        &[(
            "DATABASE_URL",
            "postgres://nobody:secret@127.0.0.1:1/roster",
        )],
        &[
            "DATABASE_URL",
            "postgres://nobody:***@127.0.0.1:1/roster",
            "Connection refused",
        ],
        &["secret", "Invalid connection url"],
    );
}

#[test]
fn an_unreachable_broker_stops_start_up_with_one_line_naming_the_variable_and_the_address() {
    let sandbox = Sandbox::new(Deployment::Embedded).unwrap();
    assert_start_up_stops(
        &sandbox,
        &[&["worker"], &["serve"], &["export"]],
        &[("BROKER_URL", "redis://:secret@127.0.0.1:1")],
        &[
            "BROKER_URL",
            "redis://:***@127.0.0.1:1",
            "Connection refused",
        ],
        &["secret"],
    );
    let (_, _, stderr) = run(
        &sandbox,
        &["worker"],
        &[("BROKER_URL", "redis://127.0.0.1:1")],
    );
    assert_eq!(
        stderr.matches("os error").count(),
        1,
        "the cause once: {stderr}"
    );
}

#[test]
fn an_unusable_export_dir_stops_start_up_naming_the_variable_and_the_path() {
    let sandbox = Sandbox::new(Deployment::Embedded).unwrap();
    let file = sandbox.dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let under_a_file = file.join("exports");
    let upload = sandbox.dir.path().join("students.csv");
    std::fs::write(&upload, "name,age\nAda,36\n").unwrap();
    assert_start_up_stops(
        &sandbox,
        &[
            &["serve"],
            &["serve", "--no-workers"],
            &["worker"],
            &["import", upload.to_str().unwrap()],
        ],
        &[("ROSTER_EXPORT_DIR", under_a_file.to_str().unwrap())],
        &[
            "ROSTER_EXPORT_DIR",
            under_a_file.to_str().unwrap(),
            "Not a directory",
        ],
        &[],
    );
    // A missing one is made.
    let fresh = sandbox.dir.path().join("new/exports");
    let (code, _, stderr) = run(
        &sandbox,
        &["import", upload.to_str().unwrap()],
        &[("ROSTER_EXPORT_DIR", fresh.to_str().unwrap()), QUIET],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(fresh.is_dir());
}

#[actix_web::test]
async fn serve_without_workers_on_the_in_process_broker_warns_that_jobs_wait_for_a_worker() {
    let sandbox = Sandbox::new(Deployment::Embedded).unwrap();
    let web = Roster::start(&sandbox, &["serve", "--no-workers"], &[]).await;
    let log = read(&sandbox.dir.path().join("roster.log"));
    assert!(
        log.contains("WARN")
            && log.contains("this process runs no jobs")
            && log.contains("roster worker"),
        "{log}"
    );
    // The warning is true: a worker on the same database takes the job.
    let job = web.post("/api/exports", serde_json::json!({})).await;
    let id = job["id"].as_str().unwrap().to_owned();
    let _worker = Roster::worker(&sandbox, &[], "worker.log");
    let done = web.wait_for(&id, |j| j["status"] == "succeeded").await;
    assert_eq!(done["attempts"], 1);
    web.stop();
}

#[test]
fn migrate_and_seed_work_on_a_fresh_database() {
    for deployment in [Deployment::Embedded, Deployment::Production] {
        let Some(sandbox) = Sandbox::new(deployment) else {
            continue;
        };
        let (code, stdout, stderr) = run(&sandbox, &["migrate"], &[]);
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("migration(s) applied"), "{stdout}");
        let (code, stdout, stderr) = run(
            &sandbox,
            &["seed", "--students", "1000", "--seed", "3"],
            &[],
        );
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("seeded 1000 students"), "{stdout}");
    }
}

#[actix_web::test]
async fn export_wait_follows_the_job_to_its_end_and_says_what_it_made() {
    for deployment in [Deployment::Embedded, Deployment::Production] {
        let Some(sandbox) = Sandbox::new(deployment) else {
            continue;
        };
        let (code, _, stderr) = run(&sandbox, &["seed", "--students", "2000"], &[]);
        assert_eq!(code, 0, "{stderr}");
        let server = Roster::serve(&sandbox, &[]).await;
        let copy = sandbox.dir.path().join("copy.jsonl");
        let (code, stdout, stderr) = run(
            &sandbox,
            &[
                "export",
                "--min-age",
                "10",
                "--max-age",
                "20",
                "--format",
                "jsonl",
                "--output",
                copy.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(code, 0, "{deployment:?}: {stderr}");
        let id = stdout.lines().next().unwrap().to_owned();
        let exported = stdout
            .lines()
            .find_map(|l| l.strip_prefix("exported "))
            .unwrap_or_else(|| panic!("a summary: {stdout}"));
        let rows: u64 = exported
            .split(' ')
            .next()
            .unwrap()
            .replace(',', "")
            .parse()
            .unwrap();
        assert!(rows > 0 && exported.contains("rows ("), "{stdout}");
        let file = stdout
            .lines()
            .find_map(|l| l.strip_prefix("file: "))
            .unwrap_or_else(|| panic!("where the file is: {stdout}"));
        assert!(Path::new(file).is_absolute(), "{file}");
        assert!(
            stdout.contains(&format!("download: /api/jobs/{id}/download")),
            "{stdout}"
        );
        assert!(stdout.contains(&format!("copied to {}", copy.display())));
        assert_eq!(read(&copy), read(Path::new(file)));
        assert_eq!(read(&copy).lines().count() as u64, rows);

        let (code, _, stderr) = run(
            &sandbox,
            &["export", "--min-age", "30", "--max-age", "20"],
            &[],
        );
        assert_ne!(code, 0, "an empty range is refused: {stderr}");
        server.stop();
    }
}

#[test]
fn export_without_wait_prints_the_job_id_and_how_to_follow_it() {
    let sandbox = Sandbox::new(Deployment::Embedded).unwrap();
    let (code, stdout, stderr) = run(&sandbox, &["export"], &[QUIET]);
    assert_eq!(code, 0, "{stderr}");
    let id = stdout.trim();
    assert!(
        id.parse::<JobId>().is_ok(),
        "the id alone on stdout: {stdout}"
    );
    assert!(
        stderr.contains(&format!("export queued as job {id}"))
            && stderr.contains(&format!("roster job follow {id}"))
            && stderr.contains(&format!("roster job cancel {id}")),
        "{stderr}"
    );
    let (code, again, stderr) = run(&sandbox, &["export"], &[QUIET]);
    assert_eq!((code, again.trim()), (0, id), "{stderr}");
    assert!(
        stderr.contains("an identical export is already queued"),
        "{stderr}"
    );
}

#[test]
fn export_wait_says_when_no_worker_takes_the_job_and_ctrl_c_off_a_terminal_leaves_it() {
    let sandbox = Sandbox::new(Deployment::Embedded).unwrap();
    let (out, err) = (
        sandbox.dir.path().join("out"),
        sandbox.dir.path().join("err"),
    );
    let mut child = roster_command(&sandbox)
        .args(["export", "--wait"])
        .env(QUIET.0, QUIET.1)
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let hinted = eventually(Duration::from_secs(20), || {
        read(&err).contains(roster::cli::follow::NO_WORKER_HINT)
    });
    assert!(hinted, "no word about the missing worker: {}", read(&err));
    let stderr = read(&err);
    assert!(stderr.contains(": queued"), "a waiting state: {stderr}");
    assert!(!stderr.contains("0/0"), "no bar while queued: {stderr}");
    let id = read(&out).trim().to_owned();

    interrupt(&child);
    let code = wait_exit(&mut child, Duration::from_secs(10));
    let stderr = read(&err);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        stderr.contains(&format!("job {id} keeps running"))
            && stderr.contains(&format!("roster job follow {id}"))
            && stderr.contains(&format!("roster job cancel {id}"))
            && stderr.contains(&format!("POST /api/jobs/{id}/cancel")),
        "{stderr}"
    );
    assert_eq!(status_of(&sandbox, &id), JobStatus::Queued);

    let (code, stdout, stderr) = run(&sandbox, &["job", "cancel", &id], &[QUIET]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(&format!("job {id} cancelled")), "{stdout}");
    assert_eq!(status_of(&sandbox, &id), JobStatus::Cancelled);
    let (code, _, stderr) = run(&sandbox, &["job", "cancel", &id], &[QUIET]);
    assert_eq!(code, 1);
    assert!(stderr.contains("has already ended (cancelled)"), "{stderr}");
    let (code, _, stderr) = run(&sandbox, &["job", "follow", &id], &[QUIET]);
    assert_eq!(code, 1, "a cancelled job did not succeed: {stderr}");
}

#[actix_web::test]
async fn export_wait_says_the_workers_are_busy_rather_than_absent() {
    let sandbox = Sandbox::new(Deployment::Embedded).unwrap();
    crate::process::seed(&sandbox, 200_000);
    // One worker slot, held by a long export.
    let slow = [
        ("ROSTER_CONCURRENCY", "1"),
        ("ROSTER_EXPORT_BATCH_ROWS", "5"),
    ];
    let _worker = Roster::worker(&sandbox, &slow, "worker.log");
    let (code, first, stderr) = run(&sandbox, &["export"], &[QUIET]);
    assert_eq!(code, 0, "{stderr}");
    let first = first.trim().to_owned();
    assert!(eventually(Duration::from_secs(20), || {
        status_of(&sandbox, &first) == JobStatus::Running
    }));

    let err = sandbox.dir.path().join("err");
    let mut child = roster_command(&sandbox)
        .args(["export", "--wait", "--min-age", "1"])
        .env(QUIET.0, QUIET.1)
        .stdout(Stdio::null())
        .stderr(File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let told = eventually(Duration::from_secs(20), || {
        read(&err).contains("queued; the 1 live worker(s) are busy")
    });
    assert!(told, "{}", read(&err));
    assert!(
        !read(&err).contains(roster::cli::follow::NO_WORKER_HINT),
        "a busy worker is not a missing one: {}",
        read(&err)
    );
    interrupt(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(130));
}

/// A pseudo-terminal: its other side for a child's stdin and stderr; what the child
/// draws there is collected as it comes.
struct Terminal {
    master: File,
    screen: Arc<Mutex<Vec<u8>>>,
}

impl Terminal {
    /// Opens one; returns it with the child's side.
    fn open() -> (Terminal, OwnedFd) {
        let (mut master, mut slave) = (0, 0);
        let size = libc::winsize {
            ws_row: 40,
            ws_col: 120,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let opened = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(opened, 0, "openpty");
        let master = unsafe { File::from_raw_fd(master) };
        let slave = unsafe { OwnedFd::from_raw_fd(slave) };
        let screen = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let drawn = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0; 4096];
            // Ends with EIO once the child's side is closed.
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                drawn.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        (Terminal { master, screen }, slave)
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    fn shows(&self, text: &str, limit: Duration) -> bool {
        eventually(limit, || self.screen().contains(text))
    }

    fn type_line(&mut self, line: &str) {
        self.master.write_all(line.as_bytes()).unwrap();
        self.master.write_all(b"\n").unwrap();
    }
}

/// `roster export --wait` on a terminal (stdin and stderr), its stdout in `out`.
fn export_on_a_terminal(sandbox: &Sandbox, out: &Path) -> (Child, Terminal) {
    let (terminal, slave) = Terminal::open();
    let child = roster_command(sandbox)
        .args(["export", "--wait"])
        .env(QUIET.0, QUIET.1)
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .stdout(File::create(out).unwrap())
        .spawn()
        .unwrap();
    (child, terminal)
}

#[test]
fn ctrl_c_on_a_terminal_offers_to_cancel_the_job_and_a_second_one_exits_at_once() {
    let sandbox = Sandbox::new(Deployment::Embedded).unwrap();
    let out = sandbox.dir.path().join("out");

    // Yes: the job is cancelled.
    let (mut child, mut terminal) = export_on_a_terminal(&sandbox, &out);
    assert!(
        terminal.shows("queued", Duration::from_secs(20)),
        "a waiting state: {}",
        terminal.screen()
    );
    let id = read(&out).trim().to_owned();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !terminal.screen().contains("0/0"),
        "no bar while queued: {}",
        terminal.screen()
    );
    interrupt(&child);
    assert!(
        terminal.shows(&format!("Cancel job {id}? [y/N]"), Duration::from_secs(10)),
        "{}",
        terminal.screen()
    );
    terminal.type_line("y");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(130));
    assert!(
        terminal.shows(&format!("job {id} cancelled"), Duration::from_secs(2)),
        "{}",
        terminal.screen()
    );
    assert_eq!(status_of(&sandbox, &id), JobStatus::Cancelled);

    // A second Ctrl-C at the question: out at once, the job left as it is.
    let (mut child, terminal) = export_on_a_terminal(&sandbox, &out);
    assert!(terminal.shows("queued", Duration::from_secs(20)));
    let id = read(&out).trim().to_owned();
    interrupt(&child);
    assert!(terminal.shows("[y/N]", Duration::from_secs(10)));
    let asked = Instant::now();
    interrupt(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(5)), Some(130));
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(status_of(&sandbox, &id), JobStatus::Queued);
}

#[actix_web::test]
async fn a_job_cancelled_from_the_command_line_ends_live_on_another_process_s_websocket() {
    let Some(sandbox) = Sandbox::new(Deployment::Production) else {
        return;
    };
    // No worker: the job stays queued, and only the command line can announce its end.
    let web = Roster::start(&sandbox, &["serve", "--no-workers"], &[]).await;
    let job = web.post("/api/exports", serde_json::json!({})).await;
    let id = job["id"].as_str().unwrap().to_owned();
    let mut ws = crate::websocket::WsClient::connect(&web.address, &format!("/ws/jobs/{id}")).await;
    let snapshot = ws.next(Duration::from_secs(10)).await.unwrap();
    assert_eq!(snapshot["job"]["status"], "queued", "{snapshot}");

    let (code, stdout, stderr) = run(&sandbox, &["job", "cancel", &id], &[QUIET]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("cancelled"), "{stdout}");
    let ended = ws.next(Duration::from_secs(10)).await.expect("an event");
    assert_eq!(
        (&ended["type"], &ended["status"]),
        (&"status".into(), &"cancelled".into()),
        "{ended}"
    );
    web.stop();
}
