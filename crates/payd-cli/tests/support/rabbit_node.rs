//! A RabbitMQ node of a test's own: its own name, ports and data directory (so that stopping
//! it disturbs no other test).
#![allow(dead_code)] // Each test binary uses a part of it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A RabbitMQ node of one test: its own name, ports, and data directory.
pub(crate) struct RabbitNode {
    name: String,
    port: u16,
    dir: tempfile::TempDir,
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

impl RabbitNode {
    /// Starts one; `None` (after saying so, or failing under `PAYD_REQUIRE_SERVICES=1`) if
    /// `rabbitmq-server` is not installed or does not start.
    pub(crate) fn start(test: &str) -> Option<RabbitNode> {
        let dir = tempfile::tempdir().unwrap();
        let node = RabbitNode {
            name: format!("payd-{}-{}@localhost", std::process::id(), free_port()),
            port: free_port(),
            dir,
        };
        if let Err(error) = node.boot() {
            payd_pgtest::skip(
                test,
                &format!(
                    "cannot start a RabbitMQ node: {error} (install Debian's rabbitmq-server)"
                ),
            );
            return None;
        }
        Some(node)
    }

    pub(crate) fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn boot(&self) -> std::io::Result<()> {
        std::fs::write(
            self.path("rabbitmq.conf"),
            format!(
                "listeners.tcp.local = 127.0.0.1:{}\nloopback_users = none\n",
                self.port
            ),
        )?;
        // As root, rabbitmq-server runs as the rabbitmq user: it must own its directory.
        let _ = Command::new("chown")
            .args(["-R", "rabbitmq"])
            .arg(self.dir.path())
            .stderr(Stdio::null())
            .status();
        let status = Command::new("rabbitmq-server")
            .arg("-detached")
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_CONFIG_FILE", self.path("rabbitmq.conf"))
            .env("RABBITMQ_DIST_PORT", free_port().to_string())
            .env("RABBITMQ_MNESIA_BASE", self.path("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.path("log"))
            .env("RABBITMQ_PID_FILE", self.path("pid"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", self.path("plugins"))
            .env("RABBITMQ_FEATURE_FLAGS_FILE", self.path("feature_flags"))
            .env("RABBITMQ_QUORUM_DIR", self.path("quorum"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if !status.success() {
            return Err(std::io::Error::other(format!("rabbitmq-server: {status}")));
        }
        self.await_listening(Duration::from_secs(60))
    }

    pub(crate) fn await_listening(&self, within: Duration) -> std::io::Result<()> {
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if started.elapsed() > within {
                return Err(std::io::Error::other(format!(
                    "no AMQP listener on port {} after {within:?}",
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    pub(crate) fn ctl(&self, args: &[&str]) -> String {
        let output = Command::new("rabbitmqctl")
            .args(["-n", &self.name])
            .args(args)
            .output()
            .expect("rabbitmqctl");
        assert!(
            output.status.success(),
            "rabbitmqctl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `rabbitmqctl stop_app`, as an operator stops the broker (connections close).
    pub(crate) fn stop_app(&self) {
        self.ctl(&["stop_app"]);
    }

    pub(crate) fn start_app(&self) {
        self.ctl(&["start_app"]);
        self.await_listening(Duration::from_secs(30)).unwrap();
    }

    /// Messages ready in `queue`.
    pub(crate) fn ready(&self, queue: &str) -> u64 {
        self.listed(queue, "messages_ready")
    }

    /// Messages in `queue`, ready or delivered and not acknowledged yet.
    pub(crate) fn messages(&self, queue: &str) -> u64 {
        self.listed(queue, "messages")
    }

    /// `rabbitmqctl list_queues`' `column` for `queue` (0 if it is not listed).
    pub(crate) fn listed(&self, queue: &str, column: &str) -> u64 {
        let listing = self.ctl(&["list_queues", "-q", "--no-table-headers", "name", column]);
        listing
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                (fields.next()? == queue).then(|| fields.next()?.parse().ok())?
            })
            .next()
            .unwrap_or(0)
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        let stopped = Command::new("rabbitmqctl")
            .args(["-n", &self.name, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !stopped && let Ok(pid) = std::fs::read_to_string(self.path("pid")) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        }
    }
}
