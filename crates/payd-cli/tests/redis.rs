//! Workers coordinating on Redis, with PostgreSQL behind it, against real servers: a
//! Redis server of each test's own (on a free port, so that stopping it disturbs no other
//! test) and a database of its own.
//!
//! Skipped loudly where `redis-server` or PostgreSQL is missing; failed instead with
//! `PAYD_REQUIRE_SERVICES=1` (CI).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers fail loudly by design.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use payd_pgtest::TestDatabase;
use support::redis_server::RedisServer;
use support::{
    Proc, await_one_health_poller, counter_sum, get_json, health_pollers, metrics, signal,
};

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Two workers on `database` sharing health through `redis_url` (1 s interval: a 2 s
/// lease); the processors' URLs lead nowhere, which the leases do not care about.
fn two_workers(database: &TestDatabase, redis_url: &str, dir: &Path) -> Vec<Proc> {
    ["w-a", "w-b"]
        .iter()
        .map(|name| {
            Proc::role_pg(
                "worker",
                database.url(),
                name,
                &dir.join(name),
                &[
                    "--health-interval-ms",
                    "1000",
                    "--default-processor-url",
                    "http://127.0.0.1:9",
                    "--fallback-processor-url",
                    "http://127.0.0.1:9",
                    "--redis-url",
                    redis_url,
                    "--redis-prefix",
                    "payd-test:",
                ],
            )
        })
        .collect()
}

/// Goal: with Redis, exactly one worker polls each processor's health, the lease lives in
/// Redis (not in the database), and when the holder dies the other takes over within a
/// few seconds. Method: two workers on a private Redis; the lease keys in Redis and the
/// database's `processor_health` table; `kill -9` of the default's holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_elect_one_health_poller_on_redis() {
    let Some(database) = TestDatabase::create("redis_health_poller").await else {
        return;
    };
    let Some(redis) = RedisServer::start("workers_elect_one_health_poller_on_redis") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let http = http();
    let mut workers = two_workers(&database, &redis.url(), dir.path());
    await_one_health_poller(&http, &workers, Duration::from_secs(5), "on Redis").await;

    let holder_in_redis = Command::new("redis-cli")
        .args([
            "-p",
            &redis.port.to_string(),
            "get",
            "payd-test:health:default:lease",
        ])
        .output()
        .unwrap();
    let holder_in_redis = String::from_utf8_lossy(&holder_in_redis.stdout)
        .trim()
        .to_owned();
    assert!(
        holder_in_redis == "w-a" || holder_in_redis == "w-b",
        "the lease is not in Redis: {holder_in_redis:?}"
    );
    let db = payd_pgtest::connect(database.url()).await.unwrap();
    let leases_in_db: i64 = db
        .query_one("SELECT COUNT(*) FROM processor_health", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        leases_in_db, 0,
        "with Redis up, the database elects no poller"
    );

    let holder = usize::from(holder_in_redis == "w-b");
    assert!(health_pollers(&http, &workers[holder..=holder], "default").await[0]);
    workers.remove(holder).kill_9();
    let started = Instant::now();
    while !health_pollers(&http, &workers, "default").await[0] {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no takeover 5 s after the holder died (lease 2 s)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(health_pollers(&http, &workers, "fallback").await[0]);
}

/// Goal: Redis stopped (`SHUTDOWN NOSAVE`) and started again under the workers: nothing
/// stops, there is one health poller throughout (elected by PostgreSQL while Redis is
/// away, by Redis again once it is back), and the failures are counted. Method: two
/// workers on a private Redis; their gauges and `payd_redis_errors_total` across the
/// outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_leaves_one_health_poller() {
    let Some(database) = TestDatabase::create("redis_restart_health").await else {
        return;
    };
    let Some(mut redis) = RedisServer::start("a_redis_restart_leaves_one_health_poller") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let http = http();
    let workers = two_workers(&database, &redis.url(), dir.path());
    await_one_health_poller(&http, &workers, Duration::from_secs(5), "before").await;

    redis.shutdown();
    let db = payd_pgtest::connect(database.url()).await.unwrap();
    let started = Instant::now();
    loop {
        let elected_in_db: i64 = db
            .query_one("SELECT COUNT(*) FROM processor_health", &[])
            .await
            .unwrap()
            .get(0);
        if elected_in_db == 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "PostgreSQL did not elect both pollers within 8 s of Redis going away"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    await_one_health_poller(&http, &workers, Duration::from_secs(8), "Redis down").await;
    let mut errors = 0.0;
    for worker in &workers {
        let text = metrics(&http, worker).await;
        errors += counter_sum(&text, "payd_redis_errors_total");
        assert!(
            text.contains("payd_broker_up{broker=\"redis\"} 0"),
            "{text}"
        );
        let ready = http
            .get(format!("{}/ready", worker.url))
            .send()
            .await
            .unwrap();
        assert!(
            ready.status().is_success(),
            "a worker is not ready without Redis"
        );
    }
    assert!(errors > 0.0, "the failed Redis commands are not counted");

    redis.run().expect("restart redis-server");
    let started = Instant::now();
    loop {
        let mut up = 0;
        for worker in &workers {
            up += usize::from(
                metrics(&http, worker)
                    .await
                    .contains("payd_broker_up{broker=\"redis\"} 1"),
            );
        }
        if up == workers.len() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the workers did not use Redis again within 10 s of its return"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The leases go back to Redis, each taken by whichever worker asks first: it may be
    // another than the one PostgreSQL had elected (a handover, never two pollers), so the
    // pollers are compared once the leases are in Redis and every worker looked again.
    let started = Instant::now();
    while !["default", "fallback"]
        .iter()
        .all(|processor| redis.exists(&format!("payd-test:health:{processor}:lease")))
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the leases are not back in Redis within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    await_one_health_poller(&http, &workers, Duration::from_secs(8), "Redis back").await;
}

async fn authorize(http: &reqwest::Client, api: &Proc, id: &str, amount: &str) -> String {
    let body = serde_json::json!({
        "id": id, "account": "card-1", "totalAmount": amount, "mcc": "5411", "merchant": "MERCADO"
    });
    let response = http
        .post(format!("{}/transactions", api.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    answer["code"].as_str().unwrap().to_owned()
}

/// Goal: `payd api --redis-url --decision-cache` remembers each committed card decision in Redis and
/// answers a replay from it; with Redis gone, replays and new decisions are answered by
/// PostgreSQL, the same codes, no second debit. Method: a private Redis; the key in Redis,
/// `payd_decision_cache_total`, the balance; Redis shut down, then the same requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_replays_from_redis_and_without_it() {
    let Some(database) = TestDatabase::create("redis_decisions").await else {
        return;
    };
    let Some(mut redis) = RedisServer::start("the_api_answers_replays_from_redis_and_without_it")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let http = http();
    let redis_url = redis.url();
    let api = Proc::role_pg(
        "api",
        database.url(),
        "api-a",
        &dir.path().join("api"),
        &[
            "--dev",
            "--redis-url",
            &redis_url,
            "--redis-prefix",
            "payd-test:",
            "--decision-cache",
        ],
    );
    let opened = http
        .post(format!("{}/accounts", api.url))
        .json(&serde_json::json!({"id": "card-1", "balances": {"FOOD": 100, "MEAL": 0, "CASH": 0}}))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status().as_u16(), 201);

    assert_eq!(authorize(&http, &api, "tx-1", "30.00").await, "00");
    let started = Instant::now();
    loop {
        let cached = Command::new("redis-cli")
            .args(["-p", &redis.port.to_string(), "get", "payd-test:tx:tx-1"])
            .output()
            .unwrap();
        let cached = String::from_utf8_lossy(&cached.stdout).trim().to_owned();
        if cached == "00 card-1 3000 5411 MERCADO" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "tx-1 is not cached in Redis: {cached:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(authorize(&http, &api, "tx-1", "30.00").await, "00");
    let text = metrics(&http, &api).await;
    assert!(
        text.contains("payd_decision_cache_total{result=\"hit\"} 1"),
        "the replay was not a cache hit:\n{text}"
    );

    redis.shutdown();
    assert_eq!(
        authorize(&http, &api, "tx-1", "30.00").await,
        "00",
        "replay, Redis down"
    );
    assert_eq!(
        authorize(&http, &api, "tx-2", "80.00").await,
        "51",
        "new, Redis down"
    );
    assert_eq!(
        authorize(&http, &api, "tx-3", "70.00").await,
        "00",
        "new, Redis down"
    );
    let account = get_json(&http, &format!("{}/accounts/card-1", api.url)).await;
    assert_eq!(
        account["balances"]["FOOD"]["available"], 0.0,
        "30 + 70 of 100: {account}"
    );
    assert!(counter_sum(&metrics(&http, &api).await, "payd_redis_errors_total") > 0.0);
    support::assert_pg_audit_clean(database.url());
}

/// Goal: with `--account-lock redis`, two API instances decide one account's card
/// transactions under its Redis lock, exactly: 200 concurrent 1.00 transactions (16 clients)
/// on 100.00 approve exactly 100 (no overdraft, no double debit), every decision taken under
/// a grant or, past the lock's 50 ms wait, by PostgreSQL alone; with Redis shut down, decisions go on
/// (the store alone, counted as `unavailable`), never a `07`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_apis_decide_under_redis_account_locks_and_without_redis() {
    let test = "two_apis_decide_under_redis_account_locks_and_without_redis";
    let Some(database) = TestDatabase::create("redis_account_locks").await else {
        return;
    };
    let Some(mut redis) = RedisServer::start(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let http = http();
    let redis_url = redis.url();
    let flags = [
        "--redis-url",
        redis_url.as_str(),
        "--redis-prefix",
        "locks-test:",
        "--account-lock",
        "redis",
    ];
    let apis: Vec<Proc> = ["api-a", "api-b"]
        .iter()
        .map(|name| Proc::role_pg("api", database.url(), name, &dir.path().join(name), &flags))
        .collect();
    let opened = http
        .post(format!("{}/accounts", apis[0].url))
        .json(&serde_json::json!({"id": "card-1", "balances": {"FOOD": 100, "MEAL": 0, "CASH": 0}}))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status().as_u16(), 201);

    let apis = std::sync::Arc::new(apis);
    let tasks: Vec<_> = (0..16)
        .map(|client| {
            let (http, apis) = (http.clone(), apis.clone());
            tokio::spawn(async move {
                let mut codes = Vec::new();
                for n in (client..200).step_by(16) {
                    let api = &apis[n % 2];
                    codes.push(authorize(&http, api, &format!("lock-{n}"), "1.00").await);
                }
                codes
            })
        })
        .collect();
    let mut codes = Vec::new();
    for task in tasks {
        codes.extend(task.await.unwrap());
    }
    let approved = codes.iter().filter(|code| *code == "00").count();
    let declined = codes.iter().filter(|code| *code == "51").count();
    assert_eq!((approved, declined), (100, 100), "{codes:?}");
    let account = get_json(&http, &format!("{}/accounts/card-1", apis[0].url)).await;
    assert_eq!(account["balances"]["FOOD"]["available"], 0.0, "{account}");
    let lock_series = |outcome: &str| format!("payd_account_lock_total{{outcome=\"{outcome}\"}}");
    let sum = async |outcome: &str| {
        let mut total = 0.0;
        for api in apis.iter() {
            total += counter_sum(&metrics(&http, api).await, &lock_series(outcome));
        }
        total
    };
    let (granted, busy) = (sum("granted").await, sum("busy").await);
    // How many wait past the lock's 50 ms depends on the machine's load; the lock must
    // still be the common path.
    assert!(granted >= 20.0, "{granted} of 200 decisions under a grant");
    assert_eq!(
        granted + busy,
        200.0,
        "each decision took a grant or gave up waiting"
    );
    assert_eq!(sum("stale").await, 0.0, "no grant expired (1 s TTL)");

    redis.shutdown();
    for n in 200..210 {
        let api = &apis[n % 2];
        assert_eq!(
            authorize(&http, api, &format!("lock-{n}"), "1.00").await,
            "51"
        );
    }
    assert!(sum("unavailable").await >= 10.0);
    support::assert_pg_audit_clean(database.url());
}

/// Goal: Redis flags that cannot take effect are refused at start with a clear message,
/// never silently ignored: `--redis-url` on the embedded store (one process: nothing to
/// coordinate), `--decision-cache` or `--account-lock redis` without `--redis-url`.
#[test]
fn redis_flags_that_cannot_work_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    for (args, expected) in [
        (
            vec![
                "serve",
                "--data-dir",
                data,
                "--redis-url",
                "redis://127.0.0.1:1",
            ],
            "--redis-url needs --database-url",
        ),
        (
            vec!["serve", "--data-dir", data, "--decision-cache"],
            "--decision-cache needs --redis-url",
        ),
        (
            vec![
                "api",
                "--database-url",
                "postgres://127.0.0.1:1/x",
                "--decision-cache",
            ],
            "--decision-cache needs --redis-url",
        ),
        (
            vec![
                "api",
                "--database-url",
                "postgres://127.0.0.1:1/x",
                "--account-lock",
                "redis",
            ],
            "--account-lock redis needs --redis-url",
        ),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_payd"))
            .args(&args)
            .args(["--listen", "127.0.0.1:0"])
            .env_remove("PAYD_DATABASE_URL")
            .env_remove("PAYD_REDIS_URL")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} started");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

/// Goal: a health poller paused past its lease (`SIGSTOP`) is replaced, and once resumed it
/// does not take the lease back or poll beside the new holder: its lease is gone from Redis,
/// so its renewal and any report it was about to publish are refused there. Method: two
/// workers on a private Redis (2 s leases); the default's holder stopped for 4 s, then
/// continued; who holds the lease in Redis, and the gauges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_health_poller_does_not_come_back_as_a_second_one() {
    let Some(database) = TestDatabase::create("redis_paused_poller").await else {
        return;
    };
    let Some(redis) = RedisServer::start("a_paused_health_poller_does_not_come_back") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let http = http();
    let workers = two_workers(&database, &redis.url(), dir.path());
    await_one_health_poller(&http, &workers, Duration::from_secs(5), "before").await;
    let lease_holder = || {
        let output = Command::new("redis-cli")
            .args([
                "-p",
                &redis.port.to_string(),
                "get",
                "payd-test:health:default:lease",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    let paused = usize::from(lease_holder() == "w-b");
    let other = 1 - paused;
    let names = ["w-a", "w-b"];

    signal(workers[paused].pid(), "STOP");
    let started = Instant::now();
    while lease_holder() != names[other] {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{} did not take the lease from the paused {}",
            names[other],
            names[paused]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    signal(workers[paused].pid(), "CONT");

    await_one_health_poller(&http, &workers, Duration::from_secs(5), "after the pause").await;
    assert_eq!(
        lease_holder(),
        names[other],
        "the paused poller took the lease back"
    );
    assert!(health_pollers(&http, &workers[other..=other], "default").await[0]);
    assert!(!health_pollers(&http, &workers[paused..=paused], "default").await[0]);
}

/// What the load of [`a_redis_restart_under_load_loses_and_doubles_nothing`] saw.
#[derive(Default)]
struct Seen {
    payments: Vec<String>,
    /// Card transaction ids answered `00` (each sent once, and some replayed).
    approved: std::collections::BTreeSet<String>,
    replays: u64,
    other: Vec<String>,
}

/// Goal: Redis stopped (`SHUTDOWN NOSAVE`) and started again under load, with everything
/// on it (the workers' health lease, the API's decision cache): every request keeps being
/// answered, nothing is processed twice (a payment booked once at one processor, a card
/// approval and its debit once, a replay answered with the first decision whether Redis
/// had it or not), and the failures are counted. Method: an API and two workers on a
/// private Redis; payments and card authorizations (every third one a replay of an earlier
/// id) every 5 ms; Redis shut down after 2 s, started again 3 s later, 3 s more of load.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restart_under_load_loses_and_doubles_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let Some(database) = TestDatabase::create("redis_restart_under_load").await else {
        return;
    };
    let Some(mut redis) =
        RedisServer::start("a_redis_restart_under_load_loses_and_doubles_nothing")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let http = http();
    let redis_url = redis.url();
    let redis_flags = ["--redis-url", &redis_url, "--redis-prefix", "payd-test:"];
    let default = Proc::processor_sim("default", dir.path());
    let fallback = Proc::processor_sim("fallback", dir.path());
    let mut api_flags = vec!["--dev", "--decision-cache"];
    api_flags.extend_from_slice(&redis_flags);
    let api = Proc::role_pg(
        "api",
        database.url(),
        "api",
        &dir.path().join("api"),
        &api_flags,
    );
    let mut worker_flags = vec![
        "--default-processor-url",
        &default.url,
        "--fallback-processor-url",
        &fallback.url,
    ];
    worker_flags.extend_from_slice(&redis_flags);
    let workers = Proc::workers_pg(database.url(), &["w-a", "w-b"], dir.path(), &worker_flags);
    let opened = http
        .post(format!("{}/accounts", api.url))
        .json(&serde_json::json!({"id": "load", "balances": {"CASH": "10000.00"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status().as_u16(), 201);

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let load = {
        let (http, url, stop, seen) = (http.clone(), api.url.clone(), stop.clone(), seen.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            let mut inflight = tokio::task::JoinSet::new();
            let mut n = 0_u32;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                let (http, url, seen) = (http.clone(), url.clone(), seen.clone());
                inflight.spawn(async move {
                    if n.is_multiple_of(2) {
                        let id = support::payment_id(7, n);
                        match support::pay(&http, &url, &id).await {
                            202 => seen.lock().unwrap().payments.push(id),
                            status => seen.lock().unwrap().other.push(format!("payment {status}")),
                        }
                        return;
                    }
                    // Every third card request (n odd, a multiple of 3) replays the one sent
                    // 32 ticks earlier: odd too (a card request), never a multiple of 3 (sent
                    // under its own id, not itself a replay).
                    let replay = n.is_multiple_of(3) && n > 32;
                    let id = format!("card-{}", if replay { n - 32 } else { n });
                    let body = serde_json::json!({"id": id, "account": "load", "totalAmount": "0.01",
                                                  "mcc": "5999", "merchant": "REDIS"});
                    let answer = http.post(format!("{url}/transactions")).json(&body).send().await;
                    let code = match answer {
                        Ok(response) => response.json::<serde_json::Value>().await.unwrap_or_default()
                            ["code"]
                            .as_str()
                            .map(str::to_owned),
                        Err(_) => None,
                    };
                    let mut seen = seen.lock().unwrap();
                    match code.as_deref() {
                        Some("00") => {
                            seen.replays += u64::from(replay);
                            seen.approved.insert(id);
                        }
                        other => seen.other.push(format!("card {id} {other:?}")),
                    }
                });
                while inflight.try_join_next().is_some() {}
            }
            while inflight.join_next().await.is_some() {}
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.shutdown();
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.run().expect("restart redis-server");
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(
        seen.other.is_empty(),
        "answers other than 202 / 00: {:?}",
        seen.other
    );
    assert!(seen.replays > 0, "replays were sent");

    let mut errors = counter_sum(&metrics(&http, &api).await, "payd_redis_errors_total");
    for worker in &workers {
        errors += counter_sum(&metrics(&http, worker).await, "payd_redis_errors_total");
    }
    assert!(errors > 0.0, "the outage was seen (and counted)");

    let db = payd_pgtest::connect(database.url()).await.unwrap();
    support::await_booked(&db, &seen.payments, Duration::from_secs(30)).await;
    support::assert_exactly_once(&http, &[&default, &fallback], &api.url, &seen.payments).await;
    let approved = payd_pgtest::count_among(
        &db,
        "SELECT COUNT(*) FROM transactions WHERE client_id = ANY($1) AND code = '00'",
        seen.approved.iter().map(String::as_str),
    )
    .await
    .unwrap();
    assert_eq!(approved, seen.approved.len(), "each approval recorded once");
    let account = get_json(&http, &format!("{}/accounts/load", api.url)).await;
    let cash_cents = (account["balances"]["CASH"]["available"].as_f64().unwrap() * 100.0).round();
    assert_eq!(
        cash_cents as usize,
        1_000_000 - seen.approved.len(),
        "each approval debited once, replays never: {account}"
    );
    eprintln!(
        "{} payments and {} approvals ({} replays) acknowledged across the Redis restart; \
         {errors} Redis commands failed over to PostgreSQL",
        seen.payments.len(),
        seen.approved.len(),
        seen.replays
    );
    drop(workers);
    drop(api);
    support::assert_pg_audit_clean(database.url());
}

/// The sum of the series of counter `name` whose labels include every one of `labels`
/// (`key="value"`), in a Prometheus text page.
fn series_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Per worker: the default's breaker announcements it sent and received, its calls booked
/// at the default, and whether it listens to the announcements.
async fn breaker_view(http: &reqwest::Client, workers: &[Proc]) -> Vec<(f64, f64, f64, f64)> {
    let mut view = Vec::new();
    for worker in workers {
        let text = metrics(http, worker).await;
        let default = r#"processor="default""#;
        view.push((
            series_sum(
                &text,
                "payd_breaker_shared_total",
                &[default, r#"direction="sent""#],
            ),
            series_sum(
                &text,
                "payd_breaker_shared_total",
                &[default, r#"direction="received""#],
            ),
            series_sum(
                &text,
                "payd_gateway_calls_total",
                &[default, r#"outcome="booked""#],
            ),
            counter_sum(&text, "payd_breaker_listening"),
        ));
    }
    view
}

/// Waits (at most 15 s) until `done` holds for the view of `workers`; fails with `what`.
async fn await_view(
    http: &reqwest::Client,
    workers: &[Proc],
    what: &str,
    done: impl Fn(&[(f64, f64, f64, f64)]) -> bool,
) -> Vec<(f64, f64, f64, f64)> {
    let started = Instant::now();
    loop {
        let view = breaker_view(http, workers).await;
        if done(&view) {
            return view;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{what}: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether, since `before`, one worker sent an announcement and another received one.
fn crossed(before: &[(f64, f64, f64, f64)], now: &[(f64, f64, f64, f64)]) -> bool {
    (0..now.len()).any(|sender| {
        now[sender].0 > before[sender].0
            && (0..now.len())
                .any(|receiver| receiver != sender && now[receiver].1 > before[receiver].1)
    })
}

/// Goal: with Redis, a worker whose calls open the default's breaker tells the other
/// workers at once (they stop calling it too, without each paying its own failures), never
/// itself; after a Redis restart the workers subscribe again and the next opening crosses
/// too; payments stay exactly once through all of it. Method: an API and two workers on a
/// private Redis (the health poll every minute, so that only calls open breakers); a
/// steady stream of payments; the default set failing, healthy, Redis restarted, failing
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opened_breaker_is_told_to_the_other_workers() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let Some(database) = TestDatabase::create("redis_breakers").await else {
        return;
    };
    let Some(mut redis) = RedisServer::start("an_opened_breaker_is_told_to_the_other_workers")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let http = http();
    let redis_url = redis.url();
    let default = Proc::processor_sim("default", dir.path());
    let fallback = Proc::processor_sim("fallback", dir.path());
    let api = Proc::role_pg("api", database.url(), "api", &dir.path().join("api"), &[]);
    let flags = [
        "--default-processor-url",
        &default.url,
        "--fallback-processor-url",
        &fallback.url,
        "--health-interval-ms",
        "60000",
        "--redis-url",
        &redis_url,
        "--redis-prefix",
        "payd-test:",
    ];
    let workers = Proc::workers_pg(database.url(), &["w-a", "w-b"], dir.path(), &flags);

    let stop = Arc::new(AtomicBool::new(false));
    let paid = Arc::new(Mutex::new(Vec::new()));
    let load = {
        let (http, url, stop, paid) = (http.clone(), api.url.clone(), stop.clone(), paid.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let id = support::payment_id(9, n);
                let status = support::pay(&http, &url, &id).await;
                paid.lock().unwrap().push((id, status));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let failing = async |failure: bool| {
        default
            .configure_sim(&http, "failure", serde_json::json!({"failure": failure}))
            .await;
    };
    let start = await_view(
        &http,
        &workers,
        "both workers listening and booking",
        |view| {
            view.iter()
                .all(|(_, _, booked, listening)| *booked > 0.0 && *listening == 1.0)
        },
    )
    .await;
    failing(true).await;
    await_view(&http, &workers, "no announcement crossed", |now| {
        crossed(&start, now)
    })
    .await;

    // Healthy again: both breakers close on their probes. A half-open breaker lets one
    // probe out at a time and closes after two good ones, so three more calls booked at
    // the default say it is closed (a probing breaker that meets the next failure would
    // re-open, which is not announced).
    failing(false).await;
    let failed = breaker_view(&http, &workers).await;
    await_view(&http, &workers, "the breakers did not close", |now| {
        now.iter()
            .zip(&failed)
            .all(|(now, then)| now.2 >= then.2 + 3.0)
    })
    .await;
    // Redis restarted: both subscribe again (and stay closed meanwhile).
    redis.shutdown();
    await_view(
        &http,
        &workers,
        "the lost subscription was not noticed",
        |view| view.iter().all(|(_, _, _, listening)| *listening == 0.0),
    )
    .await;
    redis.run().expect("restart redis-server");
    let back = await_view(
        &http,
        &workers,
        "the workers did not subscribe again",
        |view| view.iter().all(|(_, _, _, listening)| *listening == 1.0),
    )
    .await;
    // Failing again: the next opening crosses on the new subscription.
    failing(true).await;
    await_view(
        &http,
        &workers,
        "no announcement crossed after the restart",
        |now| crossed(&back, now),
    )
    .await;
    failing(false).await;

    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let sent = std::mem::take(&mut *paid.lock().unwrap());
    let refused: Vec<_> = sent.iter().filter(|(_, status)| *status != 202).collect();
    assert!(refused.is_empty(), "payments not accepted: {refused:?}");
    let paid: Vec<String> = sent.into_iter().map(|(id, _)| id).collect();
    let db = payd_pgtest::connect(database.url()).await.unwrap();
    support::await_booked(&db, &paid, Duration::from_secs(30)).await;
    support::assert_exactly_once(&http, &[&default, &fallback], &api.url, &paid).await;
    drop(workers);
    drop(api);
    support::assert_pg_audit_clean(database.url());
}

/// Goal: account locks on a real Redis are all or nothing (a grant that cannot have every
/// account takes none), are released only by their owner, expire by their TTL, and every
/// grant's tokens are larger than any earlier grant's on the same account, even after Redis
/// lost everything in a restart (the tokens' clock floor); with Redis down, acquiring says
/// so instead of granting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_locks_are_all_or_nothing_owned_and_fenced_across_a_restart() {
    use payd_ports::{AccountLocks, Grant};
    let test = "account_locks_are_all_or_nothing_owned_and_fenced_across_a_restart";
    let Some(mut redis) = RedisServer::start(test) else {
        return;
    };
    let client = payd_redis::Redis::new(&redis.url(), "locks:").unwrap();
    let locks = payd_redis::RedisLocks::new(std::sync::Arc::new(client));
    let account = |name: &str| payd_domain::AccountId::parse(name).unwrap();
    let (a, b, c, d) = (account("a"), account("b"), account("c"), account("d"));
    let token = |grant: &Grant, of: &payd_domain::AccountId| {
        grant
            .fences
            .iter()
            .find(|fence| &fence.account == of)
            .unwrap()
            .token
    };

    let first = locks.acquire(&[b.clone(), a.clone()], "o1", 60_000).await;
    let first = first.unwrap().expect("both free");
    assert_eq!(
        first.fences.iter().map(|f| &f.account).collect::<Vec<_>>(),
        [&a, &b],
        "in account order"
    );
    let refused = locks.acquire(&[c.clone(), b.clone()], "o2", 60_000).await;
    assert_eq!(refused.unwrap(), None, "b is held");
    let alone = locks.acquire(std::slice::from_ref(&c), "o3", 60_000).await;
    assert!(alone.unwrap().is_some(), "the refused grant took none of c");

    // Only the owner releases.
    let stranger = Grant {
        owner: "someone else".to_owned(),
        ..first.clone()
    };
    locks.release(&stranger).await.unwrap();
    let held = locks.acquire(std::slice::from_ref(&a), "o4", 60_000).await;
    assert_eq!(held.unwrap(), None, "a stranger's release leaves the lock");
    locks.release(&first).await.unwrap();
    let second = locks.acquire(&[a.clone(), b.clone()], "o5", 60_000).await;
    let second = second.unwrap().expect("released by its owner");
    assert!(token(&second, &a) > token(&first, &a));
    assert!(token(&second, &b) > token(&first, &b));

    // A TTL frees a lock nobody released.
    let brief = locks.acquire(std::slice::from_ref(&d), "o6", 50).await;
    let brief = brief.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    let after = locks.acquire(std::slice::from_ref(&d), "o7", 60_000).await;
    assert!(token(&after.unwrap().unwrap(), &d) > token(&brief, &d));

    // Redis down: an error, not a grant.
    redis.shutdown();
    let down = locks.acquire(std::slice::from_ref(&a), "o8", 60_000).await;
    assert!(down.is_err(), "{down:?}");
    // Back, empty: the tokens still grow.
    redis.run().unwrap();
    let started = Instant::now();
    let third = loop {
        if let Ok(grant) = locks.acquire(&[a.clone(), b.clone()], "o9", 60_000).await {
            break grant.expect("Redis lost the old locks");
        }
        assert!(started.elapsed() < Duration::from_secs(10), "Redis is back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(token(&third, &a) > token(&second, &a));
    assert!(token(&third, &b) > token(&second, &b));
}
