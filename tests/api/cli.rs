//! The command line: configuration errors, migrate, seed and `export --wait`.

use crate::helpers::{Deployment, Sandbox};
use crate::process::{roster_command, Roster};

fn run(sandbox: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = roster_command(sandbox)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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
fn an_unreachable_database_is_reported_with_its_real_cause() {
    let sandbox = Sandbox::new(Deployment::Embedded).unwrap();
    let (code, _, stderr) = run(
        &sandbox,
        &["migrate"],
        &[("DATABASE_URL", "postgres://nobody@127.0.0.1:1/roster")],
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("127.0.0.1") && !stderr.contains("Invalid connection url"),
        "{stderr}"
    );
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
async fn export_wait_follows_the_job_to_its_end() {
    for deployment in [Deployment::Embedded, Deployment::Production] {
        let Some(sandbox) = Sandbox::new(deployment) else {
            continue;
        };
        let (code, _, stderr) = run(&sandbox, &["seed", "--students", "2000"], &[]);
        assert_eq!(code, 0, "{stderr}");
        let server = Roster::serve(&sandbox, &[]).await;
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
                "--wait",
            ],
            &[],
        );
        assert_eq!(code, 0, "{deployment:?}: {stderr}");
        let result: serde_json::Value =
            serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        assert!(result["rows"].as_i64().unwrap() > 0, "{stdout}");
        let (code, _, stderr) = run(
            &sandbox,
            &["export", "--min-age", "30", "--max-age", "20"],
            &[],
        );
        assert_ne!(code, 0, "an empty range is refused: {stderr}");
        server.stop();
    }
}
