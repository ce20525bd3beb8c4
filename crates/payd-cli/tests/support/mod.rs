//! Child processes of the `payd` binary for the end-to-end tests.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub(crate) mod rabbit_node;
pub(crate) mod redis_server;

/// A `payd` child process (any subcommand), killed when dropped so that a failing test
/// leaves nothing behind.
pub(crate) struct Proc {
    child: Child,
    /// The base URL it printed on its first line of stdout.
    pub(crate) url: String,
}

impl Proc {
    /// Starts `payd <args>` with stderr appended to `log`, and waits for its first stdout
    /// line, `<banner><url>`, which says it is listening.
    pub(crate) fn spawn(args: &[&str], log: &Path, banner: &str) -> Proc {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_payd"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn payd");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the listening line");
        let url = line
            .trim()
            .strip_prefix(banner)
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Proc { child, url }
    }

    /// `payd processor-sim --role <role>` on a free port, its log in `dir`.
    #[allow(dead_code)] // Not every test binary needs processors.
    pub(crate) fn processor_sim(role: &str, dir: &Path) -> Proc {
        Proc::spawn(
            &["processor-sim", "--role", role, "--listen", "127.0.0.1:0"],
            &dir.join(format!("sim-{role}.log")),
            "processor-sim listening on ",
        )
    }

    /// Sets this simulator's `what` (`delay`, `failure`) to `body` through its admin API.
    #[allow(dead_code)] // Not every test binary reconfigures processors.
    pub(crate) async fn configure_sim(
        &self,
        http: &reqwest::Client,
        what: &str,
        body: serde_json::Value,
    ) {
        let response = http
            .put(format!("{}/admin/configurations/{what}", self.url))
            .header("X-Rinha-Token", "123")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "configuring {what}: {}",
            response.status()
        );
    }

    /// `payd serve` on a free port with its data in `data_dir`, plus `extra` flags.
    #[allow(dead_code)] // The PostgreSQL tests start `serve_pg` instead.
    pub(crate) fn serve(data_dir: &Path, extra: &[&str]) -> Proc {
        let data = data_dir.to_str().expect("utf-8 path");
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--data-dir", data];
        args.extend_from_slice(extra);
        Proc::spawn(&args, &data_dir.with_extension("log"), "payd listening on ")
    }

    /// `payd serve` on a free port on the PostgreSQL database `url` as instance `instance`,
    /// plus `extra` flags; its log in `log`.
    #[allow(dead_code)] // Only the PostgreSQL tests run it.
    pub(crate) fn serve_pg(url: &str, instance: &str, log: &Path, extra: &[&str]) -> Proc {
        Proc::role_pg("serve", url, instance, log, extra)
    }

    /// `payd <role>` (`serve`, `api` or `worker`) on a free port on the PostgreSQL database `url` as
    /// instance `instance`, plus `extra` flags; its log in `log`.
    #[allow(dead_code)] // Only the PostgreSQL tests run it.
    pub(crate) fn role_pg(
        role: &str,
        url: &str,
        instance: &str,
        log: &Path,
        extra: &[&str],
    ) -> Proc {
        let mut args = vec![
            role,
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            url,
            "--instance-id",
            instance,
        ];
        args.extend_from_slice(extra);
        let banner = match role {
            "serve" => "payd listening on ".to_owned(),
            _ => format!("payd {role} listening on "),
        };
        Proc::spawn(&args, log, &banner)
    }

    /// One `payd worker` per name in `names` (its instance id; its log `dir/<name>`) on the
    /// PostgreSQL database `url`, each with `flags`.
    #[allow(dead_code)] // Only the PostgreSQL tests run workers.
    pub(crate) fn workers_pg(url: &str, names: &[&str], dir: &Path, flags: &[&str]) -> Vec<Proc> {
        names
            .iter()
            .map(|name| Proc::role_pg("worker", url, name, &dir.join(name), flags))
            .collect()
    }

    /// The process id.
    #[allow(dead_code)] // Not every test binary that includes this module looks at it.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and reap.
    #[allow(dead_code)] // Not every test binary that includes this module kills.
    pub(crate) fn kill_9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    /// SIGTERM, and wait (at most 20 s) for the exit.
    #[allow(dead_code)] // Not every test binary that includes this module stops gracefully.
    pub(crate) fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "payd did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `payd audit` on the store in `data` and fails the test, with the report, unless the
/// ledger's invariants all hold.
#[allow(dead_code)] // Not every test binary that includes this module audits.
pub(crate) fn assert_audit_clean(data: &std::path::Path) {
    assert_audited(&["audit", "--data-dir", data.to_str().unwrap()]);
}

/// `payd audit` on the PostgreSQL database `url`, as [`assert_audit_clean`].
#[allow(dead_code)] // Only the PostgreSQL tests audit a database.
pub(crate) fn assert_pg_audit_clean(url: &str) {
    assert_audited(&["audit", "--database-url", url]);
}

fn assert_audited(args: &[&str]) {
    let audit = std::process::Command::new(env!("CARGO_BIN_EXE_payd"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        audit.status.success(),
        "payd audit failed:\n{}{}",
        String::from_utf8_lossy(&audit.stdout),
        String::from_utf8_lossy(&audit.stderr)
    );
}

/// The value of a gauge labelled only with `processor` in a Prometheus text page.
#[allow(dead_code)] // Only the tests of shared health read it.
pub(crate) fn gauge(metrics: &str, name: &str, processor: &str) -> Option<f64> {
    let prefix = format!("{name}{{processor=\"{processor}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
}

/// Sends `kill -<signal>` (`STOP`, `CONT`, ...) to `pid`.
#[allow(dead_code)] // Only the tests that pause processes send signals.
pub(crate) fn signal(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(sent.success(), "kill -{signal} {pid}");
}

/// A counter's (or gauge's) value summed over its series in a Prometheus text page.
#[allow(dead_code)] // Only the tests of the brokers sum metrics.
pub(crate) fn counter_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The Prometheus page of a payd process.
#[allow(dead_code)] // Only the tests of the brokers read metrics.
pub(crate) async fn metrics(http: &reqwest::Client, process: &Proc) -> String {
    http.get(format!("{}/metrics", process.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Which of `workers` say (`payd_health_lease_held`) that they poll `processor`'s health.
#[allow(dead_code)] // Only the tests of shared health ask.
pub(crate) async fn health_pollers(
    http: &reqwest::Client,
    workers: &[Proc],
    processor: &str,
) -> Vec<bool> {
    let mut held = Vec::with_capacity(workers.len());
    for worker in workers {
        let text = http
            .get(format!("{}/metrics", worker.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        held.push(gauge(&text, "payd_health_lease_held", processor) == Some(1.0));
    }
    held
}

/// Waits (at most `within`) until exactly one of `workers` polls each processor's health,
/// and that it stays so for a second; fails the test with what each said otherwise.
#[allow(dead_code)] // Only the tests of shared health wait for it.
pub(crate) async fn await_one_health_poller(
    http: &reqwest::Client,
    workers: &[Proc],
    within: Duration,
    what: &str,
) {
    let started = Instant::now();
    loop {
        let default = health_pollers(http, workers, "default").await;
        let fallback = health_pollers(http, workers, "fallback").await;
        let one = |held: &[bool]| held.iter().filter(|h| **h).count() == 1;
        if one(&default) && one(&fallback) {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let again = (
                    health_pollers(http, workers, "default").await,
                    health_pollers(http, workers, "fallback").await,
                );
                assert_eq!(
                    again,
                    (default.clone(), fallback.clone()),
                    "{what}: the pollers changed"
                );
            }
            return;
        }
        assert!(
            started.elapsed() < within,
            "{what}: not exactly one health poller within {within:?}: default {default:?}, \
             fallback {fallback:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A payment's `correlationId` (a UUID), distinct per `test` and `i`.
#[allow(dead_code)] // Only the gateway tests on PostgreSQL pay.
pub(crate) fn payment_id(test: u8, i: u32) -> String {
    format!("{test:08x}-0000-4000-8000-{i:012x}")
}

/// POSTs one payment; its status (202 accepted, or whatever went wrong; 0 for no answer).
#[allow(dead_code)] // Only the gateway tests on PostgreSQL pay.
pub(crate) async fn pay(http: &reqwest::Client, api: &str, id: &str) -> u16 {
    http.post(format!("{api}/payments"))
        .json(&serde_json::json!({"correlationId": id, "amount": 19.90}))
        .send()
        .await
        .map_or(0, |response| response.status().as_u16())
}

/// Waits (at most `within`) until every one of `ids` is booked; fails with how many are not.
#[allow(dead_code)] // Only the gateway tests on PostgreSQL wait for bookings.
pub(crate) async fn await_booked(
    db: &payd_pgtest::tokio_postgres::Client,
    ids: &[String],
    within: Duration,
) {
    let started = Instant::now();
    loop {
        let booked = payd_pgtest::count_among(
            db,
            "SELECT COUNT(*) FROM payments WHERE id = ANY($1) AND status = 'booked'",
            ids.iter().map(String::as_str),
        )
        .await
        .unwrap();
        if booked == ids.len() {
            return;
        }
        assert!(
            started.elapsed() < within,
            "{} of {} payments booked after {within:?}",
            booked,
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every id booked at exactly one of the `[default, fallback]` processors, and the summary
/// that the payd at `api` answers equal to theirs.
#[allow(dead_code)] // Only the gateway tests on PostgreSQL check bookings.
pub(crate) async fn assert_exactly_once(
    http: &reqwest::Client,
    [default, fallback]: &[&Proc; 2],
    api: &str,
    ids: &[String],
) {
    let mut at_default = 0_u64;
    for id in ids {
        let at = |sim: &Proc| {
            let url = format!("{}/payments/{id}", sim.url);
            async move { http.get(url).send().await.unwrap().status().as_u16() }
        };
        let (d, f) = (at(default).await, at(fallback).await);
        assert!(!(d == 200 && f == 200), "{id} booked at both processors");
        assert!(d == 200 || f == 200, "{id} booked nowhere");
        at_default += u64::from(d == 200);
    }
    let summary = get_json(http, &format!("{api}/payments-summary")).await;
    let requests = |side: &str| summary[side]["totalRequests"].as_u64().unwrap();
    assert_eq!(
        (requests("default"), requests("fallback")),
        (at_default, ids.len() as u64 - at_default),
        "payd's summary is the processors': {summary}"
    );
}

/// GETs `url` and parses its body as JSON, whatever the status.
#[allow(dead_code)] // Not every test binary reads JSON this way.
pub(crate) async fn get_json(http: &reqwest::Client, url: &str) -> serde_json::Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}
