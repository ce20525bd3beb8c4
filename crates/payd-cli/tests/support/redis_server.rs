//! A `redis-server` of a test's own, on a free port (so that stopping it disturbs no other
//! test), keeping nothing on disk.
#![allow(dead_code)] // Each test binary uses a part of it.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child on 127.0.0.1 that keeps nothing on disk.
pub(crate) struct RedisServer {
    pub(crate) port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one on a free port; `None` (after saying so, or failing under
    /// `PAYD_REQUIRE_SERVICES=1`) if `redis-server` is not installed.
    pub(crate) fn start(test: &str) -> Option<RedisServer> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut server = RedisServer { port, child: None };
        if let Err(error) = server.run() {
            payd_pgtest::skip(
                test,
                &format!("cannot start redis-server: {error} (install Debian's redis-server)"),
            );
            return None;
        }
        Some(server)
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on its port and waits until it answers.
    pub(crate) fn run(&mut self) -> std::io::Result<()> {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let started = Instant::now();
        while !self.answers() {
            if started.elapsed() > Duration::from_secs(10) {
                return Err(std::io::Error::other("redis-server did not answer in 10 s"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    pub(crate) fn answers(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let mut reply = [0u8; 7];
        stream.set_read_timeout(Some(Duration::from_secs(1))).ok();
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    /// Whether `key` exists.
    pub(crate) fn exists(&self, key: &str) -> bool {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "exists", key])
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    }

    /// `SHUTDOWN NOSAVE`, as an operator stops it: everything in it is gone.
    pub(crate) fn shutdown(&mut self) {
        let status = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "shutdown", "nosave"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut child) = self.child.take() {
            if !status.is_ok_and(|s| s.success()) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        assert!(!self.answers(), "redis-server still answers after shutdown");
    }

    /// `redis-cli -p <port> <args>`, its output trimmed.
    pub(crate) fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
