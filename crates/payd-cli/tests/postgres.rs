//! Several `payd serve --database-url` processes on one PostgreSQL database behave like one:
//! one decision per account at a time, money conserved, transfers in acceptance order per
//! account, and after a `kill -9` of one of them everything it acknowledged is there
//! exactly once, its unfinished work finished by the survivor. Each test has a database of
//! its own (`payd_pgtest`) and ends with `payd audit` on it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers fail loudly by design.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use payd_pgtest::{TestDatabase, count_among};
use serde_json::{Value, json};
use support::{Proc, assert_pg_audit_clean, await_one_health_poller, health_pollers};

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let response = http.post(url).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn get(http: &reqwest::Client, url: String) -> (u16, Value) {
    let response = http.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// An account's available CASH in cents.
async fn cash(http: &reqwest::Client, payd: &str, account: &str) -> i64 {
    let (status, body) = get(http, format!("{payd}/accounts/{account}")).await;
    assert_eq!(status, 200, "{account}: {body}");
    let text = body["balances"]["CASH"]["available"].to_string();
    let (units, cents) = text.split_once('.').unwrap_or((&text, "0"));
    let sign = if units.starts_with('-') { -1 } else { 1 };
    units.parse::<i64>().unwrap() * 100 + sign * cents.parse::<i64>().unwrap()
}

fn amount(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Two processes on `database`, instances `a` and `b`, with `extra` flags.
fn two(database: &TestDatabase, dir: &Path, extra: &[&str]) -> (Proc, Proc) {
    let mut flags = vec!["--dev"];
    flags.extend_from_slice(extra);
    let a = Proc::serve_pg(database.url(), "a", &dir.join("a.log"), &flags);
    let b = Proc::serve_pg(database.url(), "b", &dir.join("b.log"), &flags);
    (a, b)
}

/// Goal: one decision per account at a time across processes (L4 on many nodes): no
/// overdraft, no lost update, no `07` from contention. Method: 200 parallel authorizations
/// of 1.00 at one account, half through each process, the balance covering exactly 37.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_decide_one_account_at_a_time() {
    let Some(database) = TestDatabase::create("two_processes_decide_one_account_at_a_time").await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two(&database, dir.path(), &[]);
    let http = http();
    let (status, body) = post(
        &http,
        format!("{}/accounts", a.url),
        json!({"id": "hot", "balances": {"CASH": "37.00"}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let url = format!("{}/transactions", if i % 2 == 0 { &a.url } else { &b.url });
            let body = json!({"id": format!("hot-{i}"), "account": "hot", "totalAmount": 1,
                              "mcc": "5999", "merchant": "MULTI PROCESS"});
            let http = http.clone();
            tokio::spawn(async move { post(&http, url, body).await })
        })
        .collect();
    let mut codes: HashMap<String, usize> = HashMap::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200);
        *codes
            .entry(body["code"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(codes.get("00"), Some(&37), "{codes:?}");
    assert_eq!(codes.get("51"), Some(&163), "{codes:?}");
    assert_eq!(
        codes.get("07"),
        None,
        "contention never answers 07: {codes:?}"
    );
    assert_eq!(cash(&http, &a.url, "hot").await, 0);
    assert_eq!(cash(&http, &b.url, "hot").await, 0);
    assert_pg_audit_clean(database.url());
}

/// Every transfer's final status, polled through `payd` until none is pending.
async fn settled(
    http: &reqwest::Client,
    payd: &str,
    ids: &[String],
    within: Duration,
) -> HashMap<String, String> {
    let started = Instant::now();
    let mut statuses = HashMap::new();
    let mut pending: Vec<&String> = ids.iter().collect();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for id in pending {
            let (status, body) = get(http, format!("{payd}/transfers/{id}")).await;
            assert_eq!(status, 200, "{id}: {body}");
            match body["status"].as_str().unwrap() {
                "pending" => still.push(id),
                done => {
                    statuses.insert(id.clone(), done.to_owned());
                }
            }
        }
        pending = still;
        assert!(
            started.elapsed() < within,
            "{} transfers still pending",
            pending.len()
        );
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    statuses
}

/// Goal: with a settler in each process, transfers in opposite directions between the same
/// accounts neither deadlock nor lose a cent, and per account they settle in acceptance
/// order (a transfer funded by an earlier one always finds the money). Method: 1,000
/// transfers among four accounts in both directions, alternating processes; plus 100
/// chains `source → p → q` where the second leg, sent to the other process after the first
/// was acknowledged, is funded only by the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn opposite_transfers_through_two_processes_settle_exactly_and_in_order() {
    let Some(database) = TestDatabase::create("opposite_transfers_through_two_processes").await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two(&database, dir.path(), &[]);
    let http = http();
    let names = ["x0", "x1", "x2", "x3"];
    for name in names.iter().chain(&["source"]) {
        let (status, body) = post(
            &http,
            format!("{}/accounts", a.url),
            json!({"id": name, "balances": {"CASH": "100000.00"}}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    for chain in 0..100 {
        for end in ["p", "q"] {
            let (status, _) = post(
                &http,
                format!("{}/accounts", b.url),
                json!({"id": format!("{end}{chain}")}),
            )
            .await;
            assert_eq!(status, 201);
        }
    }
    let payds = [a.url.clone(), b.url.clone()];
    let mut tasks = Vec::new();
    for worker in 0..16_usize {
        let (http, payds) = (http.clone(), payds.clone());
        tasks.push(tokio::spawn(async move {
            let mut net = [0_i64; 4];
            let mut ids = Vec::new();
            for i in 0..63_usize {
                let x = (worker + i) % 4;
                let y = (x + 1 + (i % 3)) % 4;
                let (from, to) = if i % 2 == 0 { (x, y) } else { (y, x) };
                let cents = 1 + (i as i64 % 7);
                let id = format!("o-{worker}-{i}");
                let body = json!({"id": id, "from": names[from], "to": names[to],
                                  "amount": amount(cents)});
                let (status, body) = post(&http, format!("{}/transfers", payds[i % 2]), body).await;
                assert_eq!(status, 202, "{body}");
                net[from] -= cents;
                net[to] += cents;
                ids.push(id);
            }
            (net, ids)
        }));
    }
    let mut chains = Vec::new();
    for chain in 0..100 {
        let (http, payds) = (http.clone(), payds.clone());
        chains.push(tokio::spawn(async move {
            let first = format!("c-{chain}-1");
            let second = format!("c-{chain}-2");
            let (status, _) = post(
                &http,
                format!("{}/transfers", payds[chain % 2]),
                json!({"id": first, "from": "source", "to": format!("p{chain}"), "amount": "1.00"}),
            )
            .await;
            assert_eq!(status, 202);
            let (status, _) = post(
                &http,
                format!("{}/transfers", payds[(chain + 1) % 2]),
                json!({"id": second, "from": format!("p{chain}"), "to": format!("q{chain}"), "amount": "1.00"}),
            )
            .await;
            assert_eq!(status, 202);
            [first, second]
        }));
    }
    let mut expected = [10_000_000_i64; 4];
    let mut ids = Vec::new();
    for task in tasks {
        let (net, worker_ids) = task.await.unwrap();
        for k in 0..4 {
            expected[k] += net[k];
        }
        ids.extend(worker_ids);
    }
    for chain in chains {
        ids.extend(chain.await.unwrap());
    }
    assert_eq!(ids.len(), 1_008 + 200);
    let statuses = settled(&http, &a.url, &ids, Duration::from_secs(90)).await;
    let rejected: Vec<_> = statuses
        .iter()
        .filter(|(_, status)| *status != "completed")
        .collect();
    assert!(
        rejected.is_empty(),
        "every transfer is covered when settled in order: {rejected:?}"
    );
    for (k, name) in names.iter().enumerate() {
        assert_eq!(cash(&http, &b.url, name).await, expected[k], "{name}");
    }
    assert_eq!(cash(&http, &a.url, "source").await, 10_000_000 - 100 * 100);
    for chain in 0..100 {
        assert_eq!(cash(&http, &a.url, &format!("p{chain}")).await, 0);
        assert_eq!(cash(&http, &b.url, &format!("q{chain}")).await, 100);
    }
    assert_pg_audit_clean(database.url());
}

/// What the load was told was done, by kind.
#[derive(Default)]
struct Acknowledged {
    approved: Vec<String>,
    transfers: Vec<String>,
    payments: Vec<(String, i64)>,
}

/// Mixed load (authorizations, transfers, pay-ins), each with its id, round robin over
/// `targets` (an emptied slot is skipped), until `stop`.
fn mixed_load(
    http: reqwest::Client,
    targets: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<Acknowledged>>,
) -> tokio::task::JoinHandle<()> {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(4));
        let mut inflight = tokio::task::JoinSet::new();
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let n = SERIAL.fetch_add(1, Ordering::Relaxed);
            let payd = {
                let targets = targets.lock().unwrap();
                targets[n as usize % targets.len()].clone()
            };
            let (http, acknowledged) = (http.clone(), acknowledged.clone());
            inflight.spawn(async move {
                let account = format!("m{}", n % 10);
                match n % 3 {
                    0 => {
                        let id = format!("auth-{n}");
                        let body = json!({"id": id, "account": account, "totalAmount": "0.10",
                                          "mcc": "5999", "merchant": "MIXED LOAD"});
                        if let Ok(response) = http.post(format!("{payd}/transactions")).json(&body).send().await
                            && let Ok(answer) = response.json::<Value>().await
                            && answer["code"] == "00"
                        {
                            acknowledged.lock().unwrap().approved.push(id);
                        }
                    }
                    1 => {
                        let id = format!("tr-{n}");
                        let to = format!("m{}", (n + 3) % 10);
                        let body = json!({"id": id, "from": account, "to": to, "amount": "0.25"});
                        if let Ok(response) = http.post(format!("{payd}/transfers")).json(&body).send().await
                            && response.status() == 202
                        {
                            acknowledged.lock().unwrap().transfers.push(id);
                        }
                    }
                    _ => {
                        let id = format!("0000beef-0000-4000-8000-{n:012x}");
                        let cents = 100 + (n % 50) as i64;
                        let body = json!({"correlationId": id, "amount": amount(cents), "account": account});
                        if let Ok(response) = http.post(format!("{payd}/payments")).json(&body).send().await
                            && response.status() == 202
                        {
                            acknowledged.lock().unwrap().payments.push((id, cents));
                        }
                    }
                }
            });
            while inflight.try_join_next().is_some() {}
        }
        while inflight.join_next().await.is_some() {}
    })
}

/// Goal: `kill -9` of one of two processes under mixed load loses and doubles nothing: every
/// acknowledged authorization, transfer and pay-in is in the database exactly once and
/// finished, the dead process's payments in flight are resolved by the survivor after their
/// leases expire (at the processor they were sent to), and the ledger audits clean.
/// Method: both processes take authorizations, transfers and pay-ins (the default
/// processor slow, so calls are in flight); one is killed mid-load; the load goes on
/// through the other; then every acknowledged id is checked in the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_one_process_loses_and_doubles_nothing() {
    let Some(database) =
        TestDatabase::create("kill_9_of_one_process_loses_and_doubles_nothing").await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let default = Proc::processor_sim("default", dir.path());
    let fallback = Proc::processor_sim("fallback", dir.path());
    let http = http();
    default
        .configure_sim(&http, "delay", json!({"delay": 400}))
        .await;
    let flags = [
        "--default-processor-url",
        &default.url,
        "--fallback-processor-url",
        &fallback.url,
    ];
    let (mut a, b) = two(&database, dir.path(), &flags);
    for k in 0..10 {
        let (status, _) = post(
            &http,
            format!("{}/accounts", a.url),
            json!({"id": format!("m{k}"), "balances": {"CASH": "100000.00"}}),
        )
        .await;
        assert_eq!(status, 201);
    }
    let targets = Arc::new(Mutex::new(vec![a.url.clone(), b.url.clone()]));
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let load = mixed_load(
        http.clone(),
        targets.clone(),
        stop.clone(),
        acknowledged.clone(),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    *targets.lock().unwrap() = vec![b.url.clone()];
    a.kill_9();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());
    assert!(
        acknowledged.approved.len() > 100
            && acknowledged.transfers.len() > 100
            && acknowledged.payments.len() > 100,
        "too little load: {} / {} / {}",
        acknowledged.approved.len(),
        acknowledged.transfers.len(),
        acknowledged.payments.len()
    );

    // The survivor finishes everything: transfers settled, payments booked (the dead
    // process's in-flight ones once their 30 s leases expire).
    let db = payd_pgtest::connect(database.url()).await.unwrap();
    let started = Instant::now();
    loop {
        let open: i64 = db
            .query_one(
                "SELECT (SELECT COUNT(*) FROM transfers WHERE status = 'pending')
                      + (SELECT COUNT(*) FROM payments WHERE status <> 'booked' AND status <> 'failed')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if open == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{open} transfers or payments still open"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Exactly once, each kind.
    let approved = acknowledged.approved.iter().map(String::as_str);
    let once = count_among(
        &db,
        "SELECT COUNT(*) FROM transactions WHERE client_id = ANY($1) AND code = '00'",
        approved.clone(),
    )
    .await
    .unwrap();
    assert_eq!(once, acknowledged.approved.len(), "each approval once");
    let legs = count_among(
        &db,
        "SELECT COUNT(*) FROM entries WHERE cause = 'transaction' AND reference = ANY($1)",
        approved,
    )
    .await
    .unwrap();
    assert_eq!(
        legs,
        2 * acknowledged.approved.len(),
        "two legs per approval"
    );
    let completed = count_among(
        &db,
        "SELECT COUNT(*) FROM transfers WHERE id = ANY($1) AND status = 'completed'",
        acknowledged.transfers.iter().map(String::as_str),
    )
    .await
    .unwrap();
    assert_eq!(
        completed,
        acknowledged.transfers.len(),
        "each transfer once, completed"
    );
    let booked = count_among(
        &db,
        "SELECT COUNT(*) FROM payments WHERE id = ANY($1) AND status = 'booked'",
        acknowledged.payments.iter().map(|(id, _)| id.as_str()),
    )
    .await
    .unwrap();
    assert_eq!(
        booked,
        acknowledged.payments.len(),
        "each pay-in once, booked"
    );
    let mut at_default = HashSet::new();
    for (id, _) in &acknowledged.payments {
        let (d, _) = get(&http, format!("{}/payments/{id}", default.url)).await;
        let (f, _) = get(&http, format!("{}/payments/{id}", fallback.url)).await;
        assert!(!(d == 200 && f == 200), "{id} booked at both processors");
        assert!(d == 200 || f == 200, "{id} booked nowhere");
        if d == 200 {
            at_default.insert(id.clone());
        }
    }
    let leftovers: i64 = db
        .query_one(
            "SELECT COUNT(*) FROM payments WHERE lease_owner = 'a' AND status = 'processing'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leftovers, 0, "no lease of the dead process is left");
    drop(b);
    assert_pg_audit_clean(database.url());
    eprintln!(
        "{} approvals, {} transfers, {} pay-ins acknowledged ({} at the default); all once",
        acknowledged.approved.len(),
        acknowledged.transfers.len(),
        acknowledged.payments.len(),
        at_default.len()
    );
}

/// Goal: the scale-out roles split the work and nothing else: `payd api` accepts but runs no
/// background work (its transfers stay pending, its hold stays held past its expiry),
/// `payd worker` settles and expires what an API accepted, each role answers its probes and
/// metrics, and the worker serves nothing else. Method: transfers and a short hold through
/// an API alone, then a worker started beside it; exact balances and audit at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_accepts_and_a_worker_settles() {
    let Some(database) = TestDatabase::create("api_accepts_and_a_worker_settles").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let http = http();
    let api = Proc::role_pg(
        "api",
        database.url(),
        "api-a",
        &dir.path().join("api.log"),
        &["--dev"],
    );
    for name in ["r0", "r1"] {
        let (status, body) = post(
            &http,
            format!("{}/accounts", api.url),
            json!({"id": name, "balances": {"CASH": "100.00"}}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let mut ids = Vec::new();
    for i in 0..30 {
        let (from, to, cents) = if i % 3 == 2 {
            ("r1", "r0", 50)
        } else {
            ("r0", "r1", 100)
        };
        let id = format!("role-{i}");
        let body = json!({"id": id, "from": from, "to": to, "amount": amount(cents)});
        let (status, body) = post(&http, format!("{}/transfers", api.url), body).await;
        assert_eq!(status, 202, "{body}");
        ids.push(id);
    }
    let (status, body) = post(
        &http,
        format!("{}/accounts/r0/holds", api.url),
        json!({"id": "role-hold", "amount": "5.00", "expiresInMs": 200}),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // Without a worker nothing moves: the API does no background work.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for id in &ids {
        let (_, body) = get(&http, format!("{}/transfers/{id}", api.url)).await;
        assert_eq!(
            body["status"], "pending",
            "{id} settled without a worker: {body}"
        );
    }
    let (_, hold) = get(&http, format!("{}/holds/role-hold", api.url)).await;
    assert_eq!(
        hold["status"], "active",
        "hold released without a worker: {hold}"
    );

    let worker = Proc::role_pg(
        "worker",
        database.url(),
        "worker-a",
        &dir.path().join("w.log"),
        &[],
    );
    let statuses = settled(&http, &api.url, &ids, Duration::from_secs(15)).await;
    assert!(
        statuses.values().all(|status| status == "completed"),
        "{statuses:?}"
    );
    // 20 × 1.00 out of r0, 10 × 0.50 back; the hold's 5.00 returns once expired.
    let started = Instant::now();
    loop {
        let (_, hold) = get(&http, format!("{}/holds/role-hold", api.url)).await;
        if hold["status"] == "expired" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "hold never expired: {hold}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cash(&http, &api.url, "r0").await, 10_000 - 2_000 + 500);
    assert_eq!(cash(&http, &api.url, "r1").await, 10_000 + 2_000 - 500);

    // Each role's probes and metrics; the worker serves no API.
    for (url, path) in [
        (&worker.url, "/health"),
        (&worker.url, "/ready"),
        (&api.url, "/ready"),
    ] {
        let (status, body) = get(&http, format!("{url}{path}")).await;
        assert_eq!(status, 200, "{url}{path}: {body}");
    }
    for url in [&worker.url, &api.url] {
        let response = http.get(format!("{url}/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        assert!(text.contains("payd_"), "{url}/metrics: {text}");
    }
    let response = http
        .get(format!("{}/metrics", worker.url))
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    assert!(
        text.contains("payd_transfers_settled_total"),
        "the worker's metrics lack its settling: {text}"
    );
    let (status, body) = get(&http, format!("{}/transfers/role-0", worker.url)).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    drop((api, worker));
    assert_pg_audit_clean(database.url());
}

/// Goal: `payd api` and `payd worker` share their store with other processes, so they
/// refuse the embedded one with a clear message instead of starting a lone half.
#[test]
fn api_and_worker_refuse_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    for role in ["api", "worker"] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_payd"))
            .args([role, "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env_remove("PAYD_DATABASE_URL")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "payd {role} started on SQLite");
        assert!(
            stderr.contains("needs --database-url"),
            "payd {role}: {stderr}"
        );
        assert!(
            !dir.path().join(payd_sqlite::DATABASE_FILE).exists(),
            "payd {role} created an embedded store"
        );
    }
}

/// Goal: of several workers, exactly one polls each processor's health (the processors
/// allow one call per 5 s from all callers together), and when it dies another takes
/// over within a few seconds. Method: two workers with a 1 s interval (a 2 s lease); their
/// `payd_health_lease_held` gauges; `kill -9` of the default's holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_polls_each_processor_and_another_takes_over() {
    let Some(database) = TestDatabase::create("one_worker_polls_each_processor").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let http = http();
    // Nothing listens there: the calls fail at once, which the leases do not care about.
    let flags = [
        "--health-interval-ms",
        "1000",
        "--default-processor-url",
        "http://127.0.0.1:9",
        "--fallback-processor-url",
        "http://127.0.0.1:9",
    ];
    let mut workers = Proc::workers_pg(database.url(), &["w-a", "w-b"], dir.path(), &flags);
    await_one_health_poller(&http, &workers, Duration::from_secs(5), "two workers").await;
    let held = async |worker: &Proc, processor: &str| {
        health_pollers(&http, std::slice::from_ref(worker), processor).await[0]
    };
    let holder = usize::from(!held(&workers[0], "default").await);
    workers.remove(holder).kill_9();
    let survivor = &workers[0];
    let started = Instant::now();
    while !held(survivor, "default").await {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no takeover 5 s after the holder died (lease 2 s)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(held(survivor, "fallback").await, "the survivor holds both");
}
