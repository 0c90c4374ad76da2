//! Running the real `roster` binary as a child process.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::Sandbox;

/// `roster` with the sandbox's environment (and nothing inherited that could redirect it).
pub fn roster_command(sandbox: &Sandbox) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_roster"));
    for var in [
        "DATABASE_URL",
        "BROKER_URL",
        "ROSTER_BIND",
        "ROSTER_QUEUE",
        "ROSTER_CONCURRENCY",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(sandbox.env()).stdin(Stdio::null());
    cmd
}

/// `roster seed --students n` in the sandbox.
/// Runs `roster ARGS` to its end: (exit status, stdout, stderr).
pub fn run(sandbox: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
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

pub fn seed(sandbox: &Sandbox, students: u64) {
    let out = roster_command(sandbox)
        .args(["seed", "--students", &students.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `roster` child process serving HTTP.
pub struct Roster {
    pub child: Child,
    pub address: String,
    client: awc::Client,
}

impl Roster {
    /// Starts `roster serve` and waits until it answers.
    pub async fn serve(sandbox: &Sandbox, env: &[(&str, &str)]) -> Self {
        Self::start(sandbox, &["serve"], env).await
    }

    pub async fn start(sandbox: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Self {
        let me = Self::spawn(sandbox, args, env, "roster.log");
        me.wait_until_healthy().await;
        me
    }

    /// Starts `roster worker` (no HTTP), logging to `log`.
    pub fn worker(sandbox: &Sandbox, env: &[(&str, &str)], log: &str) -> Self {
        Self::spawn(sandbox, &["worker"], env, log)
    }

    /// Starts the binary without waiting for it; its output goes to `log` in the sandbox.
    pub fn spawn(sandbox: &Sandbox, args: &[&str], env: &[(&str, &str)], log: &str) -> Self {
        let port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(sandbox.dir.path().join(log))
            .unwrap();
        let child = roster_command(sandbox)
            .args(args)
            .env("ROSTER_BIND", format!("127.0.0.1:{port}"))
            .envs(env.iter().copied())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("roster starts");
        Self {
            child,
            address: format!("http://127.0.0.1:{port}"),
            client: awc::Client::builder()
                .timeout(Duration::from_secs(30))
                .finish(),
        }
    }

    async fn wait_until_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let url = format!("{}/healthz", self.address);
            if let Ok(res) = self.client.get(url).send().await {
                if res.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "roster did not start; see roster.log"
            );
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the process to exit by itself, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM without waiting.
    pub fn signal_term(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Sends `signal` without waiting.
    pub fn signal(&self, signal: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// Sends `signal`, and again as soon as the process has taken the first: the second
    /// comes while the process is still reacting to the first (as a hurried Ctrl-C
    /// Ctrl-C), yet not while the first is pending, when the kernel would merge the two.
    pub fn signal_twice(&self, signal: i32) {
        self.signal(signal);
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.pending_signals() & (1 << (signal - 1)) != 0 && Instant::now() < deadline {
            std::hint::spin_loop();
        }
        self.signal(signal);
    }

    /// The process-wide pending signals (`ShdPnd` in /proc), as a mask.
    fn pending_signals(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("ShdPnd:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .unwrap_or(0)
    }

    pub async fn get(&self, path: &str) -> Value {
        let mut res = self
            .client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .unwrap();
        res.json().limit(16 * 1024 * 1024).await.unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let mut res = self
            .client
            .post(format!("{}{path}", self.address))
            .send_json(&body)
            .await
            .unwrap();
        assert!(res.status().is_success(), "{}", res.status());
        res.json().await.unwrap()
    }

    /// Polls a job until `done` holds (60 s at most).
    pub async fn wait_for(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let job = self.get(&format!("/api/jobs/{id}")).await;
            if done(&job) {
                return job;
            }
            assert!(Instant::now() < deadline, "job never got there: {job}");
            actix_web::rt::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGKILL: no clean-up of any kind.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then wait for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().unwrap()
    }

    pub fn stop(mut self) {
        self.terminate();
    }
}

impl Drop for Roster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
