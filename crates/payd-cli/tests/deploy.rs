//! The deployment folder (`deploy/`), checked offline: no cluster, no Docker engine.
//!
//! - The compose files validate against the compose specification, and the contest
//!   profile's limits add up to at most 1.5 CPU and 350 MB, with what the contest forbids
//!   absent.
//! - nginx's configuration passes `nginx -t` (the upstream names mapped to 127.0.0.1).
//! - Prometheus' configuration and payd's alerting rules pass `promtool check`.
//! - Every PromQL expression of the Grafana dashboard and of the alerts parses, and names
//!   only metrics that a real `payd api` and `payd worker` (on PostgreSQL, RabbitMQ and
//!   Redis) export, in a scrape this test takes after some traffic; the scrape passes
//!   `promtool check metrics` (`deploy/checks/promql.py`).
//! - The Kubernetes overlays render and validate, and the KEDA trigger and the probes,
//!   limits and grace periods are what the deploy README says (`deploy/checks/k8s.sh`).
//!
//! The tools (python3 with PyYAML, check-jsonschema, nginx, promtool, kubectl,
//! kubernetes-validate) are installed by `.ci/run`; where one is missing the test is skipped
//! loudly, or fails with `PAYD_REQUIRE_SERVICES=1` (CI).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers fail loudly by design.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use payd_pgtest::TestDatabase;
use serde_json::json;
use support::rabbit_node::RabbitNode;
use support::redis_server::RedisServer;
use support::{Proc, metrics, pay, payment_id};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn deploy(path: &str) -> PathBuf {
    repo().join("deploy").join(path)
}

/// Whether every one of `tools` runs here; if not, says so (or fails in CI).
fn have(test: &str, tools: &[&str]) -> bool {
    for tool in tools {
        let found = if *tool == "yaml" {
            Command::new("python3")
                .args(["-c", "import yaml"])
                .output()
                .is_ok_and(|o| o.status.success())
        } else {
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !found {
            let why = format!("{tool} is not installed (.ci/run installs it)");
            payd_pgtest::skip(test, &why);
            return false;
        }
    }
    true
}

/// Runs `program args`, and fails with its output unless it succeeded.
fn run_ok(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|error| panic!("{program}: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A compose file as JSON (YAML anchors and merge keys resolved by PyYAML).
fn compose(profile: &str) -> serde_json::Value {
    let path = deploy(&format!("compose/{profile}/compose.yaml"));
    let script = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))";
    let output = run_ok("python3", &["-c", script, path.to_str().unwrap()]);
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Compose's memory notation in bytes (`20M`, `1G`, `512m`).
fn memory_bytes(text: &str) -> u64 {
    let text = text.trim().trim_end_matches(['b', 'B']);
    let (number, scale) = match text.chars().last() {
        Some('k' | 'K') => (&text[..text.len() - 1], 1 << 10),
        Some('m' | 'M') => (&text[..text.len() - 1], 1 << 20),
        Some('g' | 'G') => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    number.parse::<u64>().unwrap() * scale
}

/// Goal: both compose files are valid compose, and the contest profile is within its
/// budget (≤ 1.5 CPU, ≤ 350 MB in all, a limit on every service) and its rules (the load
/// balancer on 9999, two payd APIs, the external processors' network; no host networking,
/// no privileged service, no replicas).
#[test]
fn the_compose_profiles_are_valid_and_the_contest_fits_its_limits() {
    let test = "the_compose_profiles_are_valid_and_the_contest_fits_its_limits";
    if !have(test, &["python3", "yaml", "check-jsonschema"]) {
        return;
    }
    let contest_file = deploy("compose/contest/compose.yaml");
    let full_file = deploy("compose/full/compose.yaml");
    run_ok(
        "check-jsonschema",
        &[
            "--builtin-schema",
            "vendor.compose-spec",
            contest_file.to_str().unwrap(),
            full_file.to_str().unwrap(),
        ],
    );

    let contest = compose("contest");
    let services = contest["services"].as_object().unwrap();
    let (mut cpus_milli, mut memory) = (0_u64, 0_u64);
    for (name, service) in services {
        let limits = &service["deploy"]["resources"]["limits"];
        let cpus = limits["cpus"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no CPU limit"));
        let cpus: f64 = cpus.parse().unwrap();
        cpus_milli += (cpus * 1000.0).round() as u64;
        memory += memory_bytes(
            limits["memory"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: no memory limit")),
        );
        assert!(
            service.get("network_mode").is_none(),
            "{name}: network_mode"
        );
        assert!(service.get("privileged").is_none(), "{name}: privileged");
        assert!(
            service["deploy"].get("replicas").is_none(),
            "{name}: replicas"
        );
    }
    assert!(
        cpus_milli <= 1_500,
        "the contest profile asks for {cpus_milli} mCPU"
    );
    assert!(
        memory <= 350 << 20,
        "the contest profile asks for {} MB",
        memory >> 20
    );
    let apis = services
        .values()
        .filter(|s| s["command"] == json!(["api"]))
        .count();
    assert_eq!(apis, 2, "two payd APIs behind the load balancer");
    assert_eq!(services["nginx"]["ports"], json!(["9999:9999"]));
    assert_eq!(contest["networks"]["payment-processor"]["external"], true);
    let worker = services
        .values()
        .find(|s| s["command"] == json!(["worker"]))
        .expect("a worker");
    assert_eq!(
        worker["environment"]["PAYD_DEFAULT_PROCESSOR_URL"],
        "http://payment-processor-default:8080"
    );
    assert_eq!(
        worker["environment"]["PAYD_FALLBACK_PROCESSOR_URL"],
        "http://payment-processor-fallback:8080"
    );
    assert!(
        worker["networks"]
            .as_array()
            .unwrap()
            .contains(&json!("payment-processor"))
    );

    // The full profile has every piece the deploy README lists.
    let full = compose("full");
    for name in [
        "nginx",
        "api-1",
        "api-2",
        "worker-1",
        "worker-2",
        "processor-default",
        "processor-fallback",
        "postgres",
        "rabbitmq",
        "redis",
        "prometheus",
        "grafana",
    ] {
        assert!(full["services"].get(name).is_some(), "full profile: {name}");
    }
}

/// Goal: the load balancer's configuration is one nginx accepts. Method: `nginx -t` on it,
/// with the upstream names (`api-1`, `api-2`, resolved by compose's DNS) mapped to
/// 127.0.0.1 as `deploy/local/run.py` does.
#[test]
fn nginx_accepts_the_load_balancer_configuration() {
    let test = "nginx_accepts_the_load_balancer_configuration";
    if !have(test, &["nginx"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = std::fs::read_to_string(deploy("nginx/nginx.conf"))
        .unwrap()
        .replace("api-1:", "127.0.0.1:")
        .replace("api-2:", "127.0.0.1:");
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let pid = format!("pid {}/nginx.pid;", dir.path().display());
    let prefix = dir.path().to_str().unwrap();
    run_ok(
        "nginx",
        &["-t", "-p", prefix, "-c", path.to_str().unwrap(), "-g", &pid],
    );
}

/// Goal: Prometheus' configuration (its scrape jobs and rule files) and payd's alerting
/// rules are ones Prometheus loads.
#[test]
fn promtool_accepts_the_prometheus_configuration_and_rules() {
    let test = "promtool_accepts_the_prometheus_configuration_and_rules";
    if !have(test, &["promtool"]) {
        return;
    }
    run_ok(
        "promtool",
        &[
            "check",
            "config",
            deploy("prometheus/prometheus.yml").to_str().unwrap(),
        ],
    );
    run_ok(
        "promtool",
        &[
            "check",
            "rules",
            deploy("prometheus/alerts.yml").to_str().unwrap(),
        ],
    );
}

/// Goal: the Kubernetes overlays render, every object validates against the Kubernetes
/// (and KEDA) schemas, and the rules of `deploy/k8s/README.md` hold (the KEDA trigger, no
/// HPA on the worker, probes, limits, non-root, grace periods, a migration Job).
#[test]
fn the_kubernetes_overlays_render_and_validate() {
    let test = "the_kubernetes_overlays_render_and_validate";
    if !have(
        test,
        &[
            "python3",
            "yaml",
            "kubectl",
            "kubernetes-validate",
            "check-jsonschema",
        ],
    ) {
        return;
    }
    let script = deploy("checks/k8s.sh");
    run_ok("bash", &[script.to_str().unwrap()]);
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Goal: no panel of the dashboard and no alert is on a metric payd does not export, and
/// every expression parses. Method: a `payd api` and a `payd worker` on a database, a
/// RabbitMQ node and a Redis of the test's own, with the optional features on (Redis
/// account locks and decision cache, the transfer pipeline); a payment, a card decision,
/// a transfer and a webhook delivery through them; then both scrapes, checked by
/// `deploy/checks/promql.py` (and `promtool check metrics`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_the_alerts_use_only_metrics_payd_exports() {
    let test = "the_dashboard_and_the_alerts_use_only_metrics_payd_exports";
    if !have(test, &["python3", "promtool"]) {
        return;
    }
    let Some(database) = TestDatabase::create("deploy_metrics").await else {
        return;
    };
    let Some(node) = RabbitNode::start(test) else {
        return;
    };
    let Some(redis) = RedisServer::start(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let http = http();
    let (amqp, redis_url) = (node.url(), redis.url());
    let default = Proc::processor_sim("default", dir.path());
    let fallback = Proc::processor_sim("fallback", dir.path());
    let brokers = ["--amqp-url", &amqp, "--redis-url", &redis_url];
    let api = Proc::role_pg(
        "api",
        database.url(),
        "api-1",
        &dir.path().join("api.log"),
        &[
            &brokers[..],
            &["--account-lock", "redis", "--decision-cache", "--dev"],
        ]
        .concat(),
    );
    let worker = Proc::role_pg(
        "worker",
        database.url(),
        "worker-1",
        &dir.path().join("worker.log"),
        &[
            &brokers[..],
            &[
                "--transfer-pipeline",
                "locks",
                "--default-processor-url",
                &default.url,
                "--fallback-processor-url",
                &fallback.url,
            ],
        ]
        .concat(),
    );

    // Traffic: a webhook (to an address that refuses it: an attempt that fails), accounts,
    // a card decision, a transfer, a payment.
    let registered = http
        .post(format!("{}/webhooks", api.url))
        .json(&json!({"id": "hook", "url": format!("{}/no-such-hook", default.url)}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    for account in ["a", "b"] {
        let opened = http
            .post(format!("{}/accounts", api.url))
            .json(&json!({"id": account, "balances": {"FOOD": 100, "MEAL": 0, "CASH": 100}}))
            .send()
            .await
            .unwrap();
        assert_eq!(opened.status(), 201);
    }
    let decided = http
        .post(format!("{}/transactions", api.url))
        .json(&json!({"id": "tx-1", "account": "a", "totalAmount": "1.00", "mcc": "5411", "merchant": "MERCADO"}))
        .send()
        .await
        .unwrap();
    assert_eq!(decided.status(), 200);
    let transferred = http
        .post(format!("{}/transfers", api.url))
        .json(&json!({"id": "t-1", "from": "a", "to": "b", "amount": "1.00"}))
        .send()
        .await
        .unwrap();
    assert_eq!(transferred.status(), 202);
    assert_eq!(pay(&http, &api.url, &payment_id(9, 1)).await, 202);

    // The worker's metrics of that traffic, once it has done it all.
    let wanted = [
        "payd_gateway_call_seconds_bucket",
        "payd_webhook_attempt_seconds_bucket",
        "payd_amqp_queue_depth",
        "payd_transfer_pipeline_total",
        "payd_outbox_lag_seconds",
    ];
    let started = Instant::now();
    let worker_scrape = loop {
        let scrape = metrics(&http, &worker).await;
        let missing: Vec<_> = wanted
            .iter()
            .filter(|name| !scrape.contains(*name))
            .collect();
        if missing.is_empty() {
            break scrape;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the worker's scrape still lacks {missing:?} after 30 s:\n{scrape}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let api_scrape = metrics(&http, &api).await;
    let api_file = dir.path().join("api.prom");
    let worker_file = dir.path().join("worker.prom");
    std::fs::write(&api_file, api_scrape).unwrap();
    std::fs::write(&worker_file, worker_scrape).unwrap();

    let checker = deploy("checks/promql.py");
    let dashboard = deploy("grafana/dashboards/payd.json");
    let rules = deploy("prometheus/alerts.yml");
    let output = run_ok(
        "python3",
        &[
            checker.to_str().unwrap(),
            "--dashboard",
            dashboard.to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
            "--scrape",
            api_file.to_str().unwrap(),
            "--scrape",
            worker_file.to_str().unwrap(),
        ],
    );
    eprintln!("{}", String::from_utf8_lossy(&output.stdout));
    drop((api, worker, default, fallback));
}
