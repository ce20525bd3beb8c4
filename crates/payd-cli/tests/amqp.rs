//! The work transport on RabbitMQ against real servers: a RabbitMQ node of each test's own
//! (on free ports, so that stopping it disturbs no other test), a database of its own, and
//! the processor simulators.
//!
//! Skipped loudly where `rabbitmq-server` or PostgreSQL is missing; failed instead with
//! `PAYD_REQUIRE_SERVICES=1` (CI).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers fail loudly by design.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use payd_pgtest::TestDatabase;
use serde_json::json;
use support::rabbit_node::RabbitNode;
use support::redis_server::RedisServer;
use support::{
    Proc, assert_exactly_once, assert_pg_audit_clean, await_booked, counter_sum, get_json, metrics,
    pay, payment_id, signal,
};

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The deployment of one test: processors, an API and workers, all on RabbitMQ.
struct Topology {
    default: Proc,
    fallback: Proc,
    api: Proc,
    workers: Vec<Proc>,
}

impl Topology {
    /// Processors, an API, and `workers` workers, each with `worker_flags` too.
    fn start(
        database: &TestDatabase,
        node: &RabbitNode,
        dir: &Path,
        workers: usize,
        worker_flags: &[&str],
    ) -> Topology {
        let default = Proc::processor_sim("default", dir);
        let fallback = Proc::processor_sim("fallback", dir);
        let amqp = node.url();
        let api = Proc::role_pg(
            "api",
            database.url(),
            "api-a",
            &dir.join("api.log"),
            &["--amqp-url", &amqp],
        );
        let workers = (0..workers)
            .map(|i| {
                let name = format!("worker-{i}");
                let mut flags = vec![
                    "--amqp-url",
                    &amqp,
                    "--default-processor-url",
                    &default.url,
                    "--fallback-processor-url",
                    &fallback.url,
                ];
                flags.extend_from_slice(worker_flags);
                Proc::role_pg(
                    "worker",
                    database.url(),
                    &name,
                    &dir.join(format!("{name}.log")),
                    &flags,
                )
            })
            .collect();
        Topology {
            default,
            fallback,
            api,
            workers,
        }
    }

    fn processors(&self) -> [&Proc; 2] {
        [&self.default, &self.fallback]
    }

    /// Sums a counter over every worker.
    async fn workers_counter(&self, http: &reqwest::Client, name: &str) -> f64 {
        let mut sum = 0.0;
        for worker in &self.workers {
            sum += counter_sum(&metrics(http, worker).await, name);
        }
        sum
    }
}

/// What each test runs on: its database, its RabbitMQ node, and the payd processes (two
/// workers). Fields drop in order: the processes before the services.
struct World {
    topology: Topology,
    node: RabbitNode,
    db: payd_pgtest::tokio_postgres::Client,
    database: TestDatabase,
    http: reqwest::Client,
    /// The processes' logs.
    _dir: tempfile::TempDir,
}

impl World {
    async fn start(test: &str) -> Option<World> {
        World::start_with(test, &[]).await
    }

    /// Two workers, each with `worker_flags` too.
    async fn start_with(test: &str, worker_flags: &[&str]) -> Option<World> {
        let database = TestDatabase::create(test).await?;
        let node = RabbitNode::start(test)?;
        let dir = tempfile::tempdir().unwrap();
        let db = payd_pgtest::connect(database.url()).await.unwrap();
        let topology = Topology::start(&database, &node, dir.path(), 2, worker_flags);
        Some(World {
            topology,
            node,
            db,
            database,
            http: http(),
            _dir: dir,
        })
    }

    /// Stops every payd process (kill), then audits the database.
    fn audit(self) {
        let World {
            topology, database, ..
        } = self;
        drop(topology);
        assert_pg_audit_clean(database.url());
    }
}

async fn outbox_rows(db: &payd_pgtest::tokio_postgres::Client) -> i64 {
    db.query_one("SELECT COUNT(*) FROM outbox", &[])
        .await
        .unwrap()
        .get(0)
}

/// Goal: with RabbitMQ, the API's commit writes each payment's message to the outbox, the
/// workers' relay publishes it (and deletes the row only after the broker's confirm), and
/// the workers consume it: every payment booked once, at one processor. A malformed message
/// is dead-lettered (counted, in the dead-letter queue) and the consumer goes on. Method:
/// 300 payments through an API and two workers; then a malformed row in the outbox, and 50
/// more payments behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payments_travel_through_rabbitmq_and_a_malformed_message_is_dead_lettered() {
    let test = "payments_travel_through_rabbitmq_and_a_malformed_message_is_dead_lettered";
    let Some(world) = World::start(test).await else {
        return;
    };
    let (topology, node, db, http) = (&world.topology, &world.node, &world.db, &world.http);

    let ids: Vec<String> = (0..300).map(|i| payment_id(1, i)).collect();
    for id in &ids {
        assert_eq!(pay(http, &topology.api.url, id).await, 202, "{id}");
    }
    await_booked(db, &ids, Duration::from_secs(30)).await;
    // The queue carried them: every message consumed (a redelivery may add some).
    let consumed = topology
        .workers_counter(http, "payd_amqp_consumed_total")
        .await;
    assert!(
        consumed >= 300.0,
        "{consumed} messages consumed for 300 payments"
    );
    let published = topology
        .workers_counter(http, "payd_outbox_published_total")
        .await;
    assert!(
        published >= 300.0,
        "{published} messages relayed for 300 payments"
    );

    // A malformed message: dead-lettered, counted, and the payments behind it still flow.
    db.execute(
        "INSERT INTO outbox (queue, body, created_ms) VALUES ('payd.payments', 'not-a-payment', 0)",
        &[],
    )
    .await
    .unwrap();
    let more: Vec<String> = (0..50).map(|i| payment_id(2, i)).collect();
    for id in &more {
        assert_eq!(pay(http, &topology.api.url, id).await, 202, "{id}");
    }
    await_booked(db, &more, Duration::from_secs(30)).await;
    let started = Instant::now();
    while node.ready("payd.payments.dead") != 1 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the malformed message never reached the dead-letter queue"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        topology
            .workers_counter(http, "payd_amqp_dead_lettered_total")
            .await,
        1.0
    );
    assert_eq!(
        node.ready("payd.payments"),
        0,
        "nothing left in the work queue"
    );
    assert_eq!(outbox_rows(db).await, 0, "the outbox is empty once relayed");

    let all: Vec<String> = ids.into_iter().chain(more).collect();
    assert_exactly_once(http, &topology.processors(), &topology.api.url, &all).await;
    world.audit();
}

/// Goal: RabbitMQ stopped (`rabbitmqctl stop_app`) and started again under load: intake
/// keeps answering 202 (the outbox holds the messages), the workers go on by polling
/// PostgreSQL meanwhile, reconnect by themselves when it returns (counted), the outbox
/// drains, and every acknowledged payment is booked exactly once. Method: a steady stream
/// of payments for 9 s, the broker down from 2 s to about 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rabbitmq_restarted_under_load_loses_and_doubles_nothing() {
    let Some(world) = World::start("rabbitmq_restarted_under_load_loses_and_doubles_nothing").await
    else {
        return;
    };
    let (topology, node, db, http) = (&world.topology, &world.node, &world.db, &world.http);
    // Connected before the load starts (the workers connect in the background).
    let started = Instant::now();
    while topology.workers_counter(http, "payd_broker_up").await < 2.0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "workers never connected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let running = Arc::new(AtomicBool::new(true));
    let load = {
        let (http, api, running) = (http.clone(), topology.api.url.clone(), running.clone());
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut refused = Vec::new();
            let mut i = 0;
            while running.load(Ordering::Relaxed) {
                let id = payment_id(3, i);
                i += 1;
                match pay(&http, &api, &id).await {
                    202 => acknowledged.push(id),
                    status => refused.push((id, status)),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (acknowledged, refused)
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| node.stop_app());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = outbox_rows(db).await;
    tokio::task::block_in_place(|| node.start_app());
    tokio::time::sleep(Duration::from_secs(4)).await;
    running.store(false, Ordering::Relaxed);
    let (acknowledged, refused) = load.await.unwrap();
    assert!(
        refused.is_empty(),
        "intake refused during the outage: {refused:?}"
    );
    assert!(held > 0, "the outbox held nothing while RabbitMQ was down");

    await_booked(db, &acknowledged, Duration::from_secs(60)).await;
    let started = Instant::now();
    while outbox_rows(db).await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the outbox did not drain after RabbitMQ returned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reconnects = topology
        .workers_counter(http, "payd_amqp_reconnects_total")
        .await;
    assert!(reconnects >= 2.0, "{reconnects} reconnects of two workers");
    let up = topology.workers_counter(http, "payd_broker_up").await;
    assert_eq!(up, 2.0, "both workers connected again");
    assert_eq!(node.ready("payd.payments"), 0, "the backlog drained");
    assert_exactly_once(
        http,
        &topology.processors(),
        &topology.api.url,
        &acknowledged,
    )
    .await;
    let unique: HashSet<&String> = acknowledged.iter().collect();
    assert_eq!(unique.len(), acknowledged.len());
    eprintln!(
        "{} payments acknowledged, {held} messages held in the outbox during the outage, all booked once",
        acknowledged.len()
    );
    world.audit();
}

/// Goal: a worker killed (`kill -9`) with processor calls in flight and messages in hand
/// loses and doubles nothing: its unacknowledged messages go to the other worker, which
/// sees whose lease each payment is under, and its leased payments are resumed by the other
/// worker once their leases expire (as unknown outcomes, at their processor). Method: 300
/// payments against processors answering in 300 ms, the first worker killed 300 ms in,
/// 100 more payments after it; every one booked once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_call_on_rabbitmq_loses_and_doubles_nothing() {
    let Some(mut world) =
        World::start("a_worker_killed_mid_call_on_rabbitmq_loses_and_doubles_nothing").await
    else {
        return;
    };
    for sim in [&world.topology.default, &world.topology.fallback] {
        sim.configure_sim(&world.http, "delay", json!({"delay": 300}))
            .await;
    }
    let mut ids: Vec<String> = (0..300).map(|i| payment_id(4, i)).collect();
    for id in &ids {
        assert_eq!(
            pay(&world.http, &world.topology.api.url, id).await,
            202,
            "{id}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    world.topology.workers[0].kill_9();
    for i in 300..400 {
        let id = payment_id(4, i);
        assert_eq!(
            pay(&world.http, &world.topology.api.url, &id).await,
            202,
            "{id}"
        );
        ids.push(id);
    }
    // The dead worker's leases expire after 30 s; then its payments are unknown outcomes,
    // re-posted to their processor (which answers "already booked" where it booked them).
    await_booked(&world.db, &ids, Duration::from_secs(90)).await;
    let survivor = metrics(&world.http, &world.topology.workers[1]).await;
    eprintln!(
        "400 payments booked once; the surviving worker consumed {} messages ({} redelivered)",
        counter_sum(&survivor, "payd_amqp_consumed_total") as u64,
        counter_sum(&survivor, "payd_amqp_redelivered_total") as u64
    );
    world.topology.workers.remove(0);
    assert_exactly_once(
        &world.http,
        &world.topology.processors(),
        &world.topology.api.url,
        &ids,
    )
    .await;
    world.audit();
}

/// The status of every transfer among `ids`, polled through `api` until none is pending
/// (at most `within`).
async fn await_transfers(
    http: &reqwest::Client,
    api: &str,
    ids: &[String],
    within: Duration,
) -> Vec<String> {
    let started = Instant::now();
    loop {
        let mut statuses = Vec::with_capacity(ids.len());
        for id in ids {
            let body = get_json(http, &format!("{api}/transfers/{id}")).await;
            statuses.push(body["status"].as_str().unwrap_or("?").to_owned());
        }
        if statuses.iter().all(|status| status != "pending") {
            return statuses;
        }
        let pending = statuses.iter().filter(|s| *s == "pending").count();
        assert!(
            started.elapsed() < within,
            "{pending} of {} transfers still pending after {within:?}",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Opens each `(id, cash)` account through `api`.
async fn open_accounts(http: &reqwest::Client, api: &str, accounts: &[(&str, &str)]) {
    for (account, cash) in accounts {
        let opened = http
            .post(format!("{api}/accounts"))
            .json(&json!({"id": account, "balances": {"CASH": cash}}))
            .send()
            .await
            .unwrap();
        assert_eq!(opened.status(), 201);
    }
}

/// Submits 1.00 from `from` to `to` as transfer `id`; asserts it was accepted.
async fn submit_transfer(http: &reqwest::Client, api: &str, id: &str, from: &str, to: &str) {
    let accepted = http
        .post(format!("{api}/transfers"))
        .json(&json!({"id": id, "from": from, "to": to, "amount": "1.00"}))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202, "{id}");
}

/// Chains `a → b → c` of 1.00 (the second leg sent once the first was accepted, and funded
/// by it alone: settled out of order it would be rejected); their ids.
async fn send_chains(
    http: &reqwest::Client,
    api: &str,
    range: std::ops::Range<u32>,
) -> Vec<String> {
    let mut ids = Vec::new();
    for chain in range {
        for (leg, from, to) in [(1, "a", "b"), (2, "b", "c")] {
            let id = format!("chain-{chain}-{leg}");
            submit_transfer(http, api, &id, from, to).await;
            ids.push(id);
        }
    }
    ids
}

/// Goal: with RabbitMQ, the commit that accepts a transfer writes its message to the
/// outbox, and the message wakes a worker's settler at once: with the settlers' own poll at
/// ten minutes, transfers accepted by the API still settle within seconds, in acceptance
/// order per account, and each message is acknowledged once its transfer is settled. A
/// malformed transfer message is dead-lettered. Method: 100 chains `a → b → c` through the
/// API, where each second leg is sent only once the first was accepted and is funded by it
/// alone (so a leg settled out of order would be rejected); then a malformed row in the
/// outbox and 20 more chains.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfers_travel_through_rabbitmq_and_settle_in_order() {
    let test = "transfers_travel_through_rabbitmq_and_settle_in_order";
    let Some(world) = World::start_with(test, &["--transfer-poll-ms", "600000"]).await else {
        return;
    };
    let (topology, node, db, http) = (&world.topology, &world.node, &world.db, &world.http);
    let api = &topology.api.url;
    open_accounts(http, api, &[("a", "120.00"), ("b", "0.00"), ("c", "0.00")]).await;
    let send_chains = async |range| send_chains(http, api, range).await;
    let transfers_series = |name: &str| format!("{name}{{queue=\"payd.transfers\"}}");

    let ids = send_chains(0..100).await;
    let statuses = await_transfers(http, api, &ids, Duration::from_secs(20)).await;
    assert!(
        statuses.iter().all(|status| status == "completed"),
        "every leg completed, in order: {statuses:?}"
    );
    let consumed = topology
        .workers_counter(http, &transfers_series("payd_amqp_consumed_total"))
        .await;
    assert!(
        consumed >= 200.0,
        "{consumed} messages consumed for 200 transfers"
    );

    // A malformed message: dead-lettered, counted, and the transfers behind it still flow.
    db.execute(
        "INSERT INTO outbox (queue, body, created_ms) VALUES ('payd.transfers', 'not a transfer', 0)",
        &[],
    )
    .await
    .unwrap();
    let more = send_chains(100..120).await;
    let statuses = await_transfers(http, api, &more, Duration::from_secs(20)).await;
    assert!(
        statuses.iter().all(|status| status == "completed"),
        "{statuses:?}"
    );
    let started = Instant::now();
    while node.ready("payd.transfers.dead") != 1 || node.messages("payd.transfers") != 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "dead letters {}, messages left {}: the malformed message is dead-lettered and \
             every other one acknowledged",
            node.ready("payd.transfers.dead"),
            node.messages("payd.transfers")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        topology
            .workers_counter(http, &transfers_series("payd_amqp_dead_lettered_total"))
            .await,
        1.0
    );
    assert_eq!(outbox_rows(db).await, 0, "the outbox is empty once relayed");
    let balances = get_json(http, &format!("{api}/accounts/c")).await;
    assert_eq!(
        balances["balances"]["CASH"]["available"], 120.0,
        "{balances}"
    );
    world.audit();
}

/// How many account locks in `redis` (under `prefix`) a grant of `instance` holds.
fn locks_held_by(redis: &RedisServer, prefix: &str, instance: &str) -> u64 {
    let script = "local n = 0 for _, key in ipairs(redis.call('KEYS', ARGV[1])) do \
                  local owner = redis.call('GET', key) \
                  if owner and string.sub(owner, 1, #ARGV[2]) == ARGV[2] then n = n + 1 end \
                  end return n";
    let pattern = format!("{prefix}lock:*");
    let owner = format!("{instance}/");
    redis
        .cli(&["EVAL", script, "0", &pattern, &owner])
        .parse()
        .unwrap_or(0)
}

/// What the pipeline did, for a failure message: pending transfers, and each worker's
/// pipeline, settler and outbox counters.
async fn pipeline_report(world: &World, http: &reqwest::Client) -> String {
    let pending: i64 = world
        .db
        .query_one(
            "SELECT COUNT(*) FROM transfers WHERE status = 'pending'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let mut report = format!("{pending} transfers pending\n");
    for worker in &world.topology.workers {
        let text = metrics(http, worker).await;
        let counters = [
            "payd_transfer",
            "payd_fencing",
            "payd_amqp_",
            "payd_outbox_pending",
        ];
        for line in text
            .lines()
            .filter(|line| counters.iter().any(|name| line.starts_with(name)))
        {
            report.push_str(line);
            report.push('\n');
        }
        report.push_str("--\n");
    }
    report
}

/// Goal: with `--transfer-pipeline locks` (stage A locks both accounts in Redis and queues
/// the transfer; stage B settles it under the grant), transfers settle through the pipeline
/// in acceptance order per account; and a worker stopped (`SIGSTOP`) while it holds a
/// grant, for longer than the locks' TTL, finds its late write refused by PostgreSQL's
/// fencing check when it resumes (counted in `payd_fencing_rejections_total`), while every
/// transfer is settled exactly once and the balances are exact. Method: 30 chains `x → y →
/// z` on accounts of their own (each second leg funded only by the first); then eight rings
/// of four accounts, each fed 1.00 transfers by a client of its own, 10 ms apart (every
/// transfer shares an account with the next of its ring), during which a worker is stopped
/// for 3 s (TTL 300 ms, settlers' poll 2 s) whenever it holds a lock, until a refusal is
/// counted. Not every pause gives one (the holder may be stopped inside its PostgreSQL
/// transaction, which holds the others back until it resumes, or the other worker may run
/// the grant's second stage), hence up to twenty pauses.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_lock_pipeline_settles_in_order_and_fences_a_paused_holder() {
    const PAUSES: u32 = 20;
    let test = "the_lock_pipeline_settles_in_order_and_fences_a_paused_holder";
    let Some(redis) = RedisServer::start(test) else {
        return;
    };
    let (redis_url, prefix) = (redis.url(), "pipe:");
    let flags = [
        "--redis-url",
        &redis_url,
        "--redis-prefix",
        prefix,
        "--transfer-pipeline",
        "locks",
        "--transfer-lock-ttl-ms",
        "300",
        "--transfer-poll-ms",
        "2000",
    ];
    let Some(world) = World::start_with(test, &flags).await else {
        return;
    };
    let (topology, http) = (&world.topology, &world.http);
    let api = topology.api.url.clone();
    let pipeline_series = |stage: &str, outcome: &str| {
        format!("payd_transfer_pipeline_total{{stage=\"{stage}\",outcome=\"{outcome}\"}}")
    };

    // Thirty chains x → y → z, each on accounts of its own (so the chains settle side by
    // side), each second leg funded by the first alone.
    let mut chains = Vec::new();
    for chain in 0..30 {
        let [x, y, z] = ["x", "y", "z"].map(|account| format!("{account}{chain}"));
        open_accounts(http, &api, &[(&x, "1.00"), (&y, "0.00"), (&z, "0.00")]).await;
        for (leg, from, to) in [(1, &x, &y), (2, &y, &z)] {
            let id = format!("chain-{chain}-{leg}");
            submit_transfer(http, &api, &id, from, to).await;
            chains.push(id);
        }
    }
    let statuses = await_transfers(http, &api, &chains, Duration::from_secs(30)).await;
    assert!(
        statuses.iter().all(|status| status == "completed"),
        "every leg completed, in order: {statuses:?}"
    );
    let piped = topology
        .workers_counter(http, &pipeline_series("settle", "settled"))
        .await;
    assert!(
        piped >= 40.0,
        "{piped} of 60 transfers settled by the pipeline (the rest by the settlers' poll)"
    );

    // Eight rings of four accounts, each fed by a client of its own.
    const RINGS: usize = 8;
    let rings: Vec<[String; 4]> = (0..RINGS)
        .map(|ring| [0, 1, 2, 3].map(|i| format!("r{ring}-{i}")))
        .collect();
    for ring in &rings {
        let accounts = ring.each_ref().map(|account| (account.as_str(), "1000.00"));
        open_accounts(http, &api, &accounts).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = rings
        .iter()
        .cloned()
        .map(|ring| {
            let (http, api, stop) = (http.clone(), api.clone(), stop.clone());
            tokio::spawn(async move {
                let mut sent = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let n = sent.len();
                    let id = format!("{}-{n}", ring[0]);
                    submit_transfer(&http, &api, &id, &ring[n % 4], &ring[(n + 1) % 4]).await;
                    sent.push(id);
                    // Think time: unpaced, eight clients outran the outbox relay on a
                    // loaded machine, and the pipeline only saw messages of transfers the
                    // settlers had long settled.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                sent
            })
        })
        .collect();
    let (mut refused, mut pauses) = (0.0, 0);
    while pauses < PAUSES {
        pauses += 1;
        // Whichever worker holds a lock now (one may win most of the turns: a settle wakes
        // its own waiting transfers first).
        let started = Instant::now();
        let paused = loop {
            let holder = (0..2).find(|i| locks_held_by(&redis, prefix, &format!("worker-{i}")) > 0);
            if let Some(holder) = holder {
                break &topology.workers[holder];
            }
            if started.elapsed() > Duration::from_secs(30) {
                let finished = loads.iter().filter(|load| load.is_finished()).count();
                let report = pipeline_report(&world, http).await;
                panic!(
                    "no worker took a lock in 30 s (pause {pauses}); {finished} of {RINGS} \
                     clients stopped; {report}"
                );
            }
        };
        signal(paused.pid(), "STOP");
        tokio::time::sleep(Duration::from_millis(3_000)).await;
        signal(paused.pid(), "CONT");
        tokio::time::sleep(Duration::from_millis(700)).await;
        refused = topology
            .workers_counter(http, "payd_fencing_rejections_total")
            .await;
        if refused > 0.0 {
            break;
        }
    }
    stop.store(true, Ordering::SeqCst);
    let mut sent = Vec::new();
    for load in loads {
        sent.push(load.await.unwrap());
    }
    assert!(
        refused >= 1.0,
        "no stale write refused in {PAUSES} pauses of a lock holder"
    );
    let all: Vec<String> = sent.iter().flatten().cloned().collect();
    let statuses = await_transfers(http, &api, &all, Duration::from_secs(60)).await;
    assert!(
        statuses.iter().all(|status| status == "completed"),
        "every ring transfer completed: {statuses:?}"
    );
    for (ring, sent) in rings.iter().zip(&sent) {
        for (i, account) in ring.iter().enumerate() {
            let out = (0..sent.len()).filter(|n| n % 4 == i).count();
            let into = (0..sent.len()).filter(|n| (n + 1) % 4 == i).count();
            let expected = 1_000.0 + into as f64 - out as f64;
            let body = get_json(http, &format!("{api}/accounts/{account}")).await;
            assert_eq!(
                body["balances"]["CASH"]["available"].as_f64(),
                Some(expected),
                "{account} after {} transfers of its ring: each applied exactly once",
                sent.len()
            );
        }
    }
    let granted = topology
        .workers_counter(http, &pipeline_series("lock", "granted"))
        .await;
    eprintln!(
        "{} ring transfers, {refused} stale writes refused after {pauses} pauses, {granted} grants",
        all.len()
    );
    world.audit();
}

/// Goal: RabbitMQ flags that cannot take effect (and the transfer pipeline without both
/// brokers) are refused before anything starts.
#[test]
fn amqp_flags_that_cannot_work_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (args, says) in [
        (
            vec![
                "serve",
                "--data-dir",
                data.to_str().unwrap(),
                "--amqp-url",
                "amqp://127.0.0.1:5672/%2f",
            ],
            "--amqp-url needs --database-url",
        ),
        (
            vec![
                "worker",
                "--database-url",
                "postgres://postgres@127.0.0.1:1/none",
                "--amqp-url",
                "http://not-amqp",
            ],
            "invalid --amqp-url",
        ),
        (
            vec![
                "worker",
                "--database-url",
                "postgres://postgres@127.0.0.1:1/none",
                "--amqp-url",
                "amqp://127.0.0.1:5672/%2f",
                "--transfer-pipeline",
                "locks",
            ],
            "--transfer-pipeline locks needs --amqp-url and --redis-url",
        ),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_payd"))
            .args(&args)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?} started");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
