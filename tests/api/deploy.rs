//! docker-compose.yml and the Dockerfile, checked by reading them (there is no Docker
//! engine on the development machines): the services, ports, commands, variables and
//! volumes they name must be ones roster has.

use std::collections::HashSet;

use clap::CommandFactory;
use serde_norway::Value;

fn compose() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"))
        .expect("docker-compose.yml exists");
    serde_norway::from_str(&text).expect("docker-compose.yml is YAML")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Every environment variable roster reads.
fn roster_variables() -> HashSet<String> {
    let mut vars: HashSet<String> = roster::cli::Cli::command()
        .get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    vars.insert("RUST_LOG".into());
    vars
}

#[test]
fn compose_runs_postgres_redis_a_web_process_and_worker_replicas() {
    let doc = compose();
    let services = &doc["services"];
    for name in ["postgres", "redis", "migrate", "web", "worker"] {
        assert!(services.get(name).is_some(), "service {name}");
    }
    assert_eq!(
        strings(&services["web"]["command"]),
        ["serve", "--no-workers"]
    );
    assert_eq!(strings(&services["worker"]["command"]), ["worker"]);
    assert_eq!(strings(&services["migrate"]["command"]), ["migrate"]);
    assert!(strings(&services["web"]["ports"]).contains(&"8080:8080".to_owned()));
    assert!(services["worker"]["deploy"]["replicas"].as_u64().unwrap() >= 2);
    for name in ["postgres", "redis", "web"] {
        assert!(
            services[name]["healthcheck"]["test"].is_sequence(),
            "{name} health check"
        );
    }
    let web_health = strings(&services["web"]["healthcheck"]["test"]).join(" ");
    assert!(web_health.contains("/readyz"), "{web_health}");
}

#[test]
fn compose_names_only_variables_roster_reads_and_points_them_at_its_services() {
    let doc = compose();
    let known = roster_variables();
    for name in ["migrate", "web", "worker"] {
        let env = doc["services"][name]["environment"]
            .as_mapping()
            .expect("environment");
        for (key, value) in env {
            let key = key.as_str().unwrap();
            assert!(known.contains(key), "{name}: roster does not read {key}");
            let value = value.as_str().unwrap_or_default();
            let parsed = roster::cli::Cli::try_parse_from_env_value(key, value);
            assert!(
                parsed.is_ok(),
                "{name}: {key}={value} is refused: {parsed:?}"
            );
        }
        let get = |k: &str| env[&Value::from(k)].as_str().unwrap().to_owned();
        assert!(get("DATABASE_URL").contains("@postgres:5432/"));
        assert_eq!(get("BROKER_URL"), "redis://redis:6379");
        assert!(get("ROSTER_BIND").ends_with(":8080"));
    }
}

#[test]
fn web_and_workers_share_the_export_volume_at_the_export_dir() {
    let doc = compose();
    let dir = doc["services"]["web"]["environment"]["ROSTER_EXPORT_DIR"]
        .as_str()
        .unwrap()
        .to_owned();
    for name in ["web", "worker"] {
        let mounts = strings(&doc["services"][name]["volumes"]);
        assert!(
            mounts.contains(&format!("exports:{dir}")),
            "{name}: {mounts:?}"
        );
    }
    assert!(doc["volumes"].get("exports").is_some());
    // A worker must get longer than its shutdown grace period to stop.
    let grace: u64 = doc["services"]["worker"]["environment"]["ROSTER_SHUTDOWN_GRACE_SECS"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let stop = doc["services"]["worker"]["stop_grace_period"]
        .as_str()
        .unwrap();
    assert!(stop.trim_end_matches('s').parse::<u64>().unwrap() > grace);
}

#[test]
fn the_dockerfile_builds_in_one_stage_and_runs_roster_in_another() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    let stages = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert_eq!(stages, 2, "multi-stage");
    assert!(text.contains("cargo build --release --locked"));
    assert!(text.contains("ENTRYPOINT [\"roster\"]"));
    // Everything the build reads is copied in.
    for path in ["Cargo.toml", "Cargo.lock", "src", "migrations"] {
        assert!(text.contains(path), "{path}");
        assert!(std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(path)
            .exists());
    }
}
