//! What the PostgreSQL store promises beyond the ports, with other processes on the same
//! database played by side connections and second stores: migrations safe when several
//! processes start at once; the system account's rows taken without waiting; a race on a
//! unique key retried, not answered as a failure; requests in flight held across
//! processes; and an audit that sees what a hand edit breaks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use payd_domain::{Balances, Category, Code, system_account};
use payd_ledger::audit::checks;
use payd_pgtest::TestDatabase;
use payd_ports::testkit::{self, Harness, c, request};
use payd_postgres::{PgStore, SYSTEM_SHARDS};
use support::Pg;

// Goal: of several processes starting at once on a new database, exactly one applies each
// migration and all of them start. Method: four concurrent `migrate` calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processes_starting_at_once_apply_each_migration_once() {
    let Some(database) = TestDatabase::create("processes_starting_at_once").await else {
        return;
    };
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let url = database.url().to_owned();
            tokio::spawn(async move { payd_postgres::migrate(&url, 0).await })
        })
        .collect();
    let mut applied = 0;
    for run in runs {
        applied += run.await.unwrap().expect("migrate");
    }
    assert_eq!(
        applied as i64,
        payd_postgres::latest_version(),
        "each migration applied by one process, the others waited"
    );
    let db = payd_pgtest::connect(database.url()).await.unwrap();
    let versions: i64 = db
        .query_one("SELECT COUNT(*) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions, payd_postgres::latest_version());
    let shards: i64 = db
        .query_one("SELECT COUNT(*) FROM accounts WHERE id = '@external'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(shards, i64::from(SYSTEM_SHARDS), "seeded once");
}

// Goal: a batch never waits on the system account: while another transaction holds one of
// its rows, money still moves, on another row, and the account reads as the sum of its
// rows. Method: a side transaction locks shard 0 and stays open; a deposit goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_held_system_row_does_not_stop_money_moving() {
    let Some((store, harness)) = Pg::fresh("a_held_system_row").await else {
        return;
    };
    testkit::open(&*store, &testkit::account_id("s"), Balances::default())
        .await
        .unwrap();
    let mut side = payd_pgtest::connect(harness.database.url()).await.unwrap();
    let tx = side.transaction().await.unwrap();
    tx.execute(
        "SELECT 1 FROM accounts WHERE id = '@external' AND shard = 0 FOR UPDATE",
        &[],
    )
    .await
    .unwrap();
    let deposit = tokio::time::timeout(
        Duration::from_secs(3),
        store.deposit(payd_ports::DepositRequest {
            key: payd_domain::IdempotencyKey::parse("held").unwrap(),
            account: testkit::account_id("s"),
            category: Category::Cash,
            amount: c(700),
        }),
    )
    .await
    .expect("the deposit did not wait for the held row")
    .unwrap();
    assert_eq!(deposit.available_after, c(700));
    tx.rollback().await.unwrap();
    let shard: i16 = side
        .query_one(
            "SELECT shard FROM accounts WHERE id = '@external' AND cash_available = -700",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_ne!(shard, 0, "another row of the system account took it");
    let system = store.account(&system_account()).await.unwrap().unwrap();
    assert_eq!(system.balances.get(Category::Cash).available, c(-700));
    harness.assert_audit_clean().await;
}

// Goal: a race on a unique key with another process is retried and answered, never a
// failure. Method: a side transaction inserts card transaction `race` (declined) and holds
// it uncommitted; the store decides the same id (seeing no prior decision), and its insert
// waits on the key; the side commits; the store's batch fails on the key, is retried, and
// replays the committed decision: `51`, nothing debited.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_race_on_a_unique_key_is_retried_and_replays_the_winner() {
    let Some((store, harness)) = Pg::fresh("a_race_on_a_unique_key").await else {
        return;
    };
    let account = testkit::account_id("race-acc");
    testkit::open(
        &*store,
        &account,
        Balances::with_available(c(10_000), c(0), c(0)),
    )
    .await
    .unwrap();
    let mut side = payd_pgtest::connect(harness.database.url()).await.unwrap();
    let tx = side.transaction().await.unwrap();
    tx.execute(
        "INSERT INTO transactions (seq, client_id, account, amount_cents, mcc, merchant, code,
                                   category, created_at_ms)
         VALUES (-1, 'race', 'race-acc', 100, 5411, 'RACE', '51', NULL, 0)",
        &[],
    )
    .await
    .unwrap();
    let decision = {
        let store = store.clone();
        let request = request(Some("race"), &account, 100, "5411", "RACE");
        tokio::spawn(async move { store.authorize(request).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!decision.is_finished(), "the store waits on the key");
    tx.commit().await.unwrap();
    assert_eq!(decision.await.unwrap(), Ok(Code::InsufficientFunds));
    let balance = store.account(&account).await.unwrap().unwrap();
    assert_eq!(balance.balances.get(Category::Food).available, c(10_000));
    harness.assert_audit_clean().await;
}

// Goal: a request's idempotency key is held across processes: a second process refuses
// the same key while the first holds it, and takes it once it is released. Method: two
// stores (two processes) on one database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_in_flight_are_held_across_processes() {
    let Some((_store, harness)) = Pg::fresh("requests_in_flight_across").await else {
        return;
    };
    let mut other = Pg::config(&harness.database);
    other.instance = "other".to_owned();
    let other = Arc::new(PgStore::open(other).await.unwrap());
    let (here, there) = (harness.store.in_flight(), other.in_flight());
    let held = here.enter("key:k").await.unwrap().expect("free");
    assert!(here.enter("key:k").await.unwrap().is_none(), "same process");
    assert!(
        there.enter("key:k").await.unwrap().is_none(),
        "other process"
    );
    assert!(there.enter("key:other").await.unwrap().is_some());
    drop(held);
    let mut taken = None;
    for _ in 0..50 {
        taken = there.enter("key:k").await.unwrap();
        if taken.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(taken.is_some(), "released for the other process");
    other.shutdown().await;
}

// Goal: the audit on PostgreSQL finds what a hand edit breaks. Method: a clean store, then a
// balance changed without an entry and an entry's chain link broken.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_audit_sees_a_balance_without_an_entry_and_a_broken_chain() {
    let Some((store, harness)) = Pg::fresh("the_audit_sees").await else {
        return;
    };
    let account = testkit::account_id("edited");
    testkit::open(
        &*store,
        &account,
        Balances::with_available(c(500), c(0), c(300)),
    )
    .await
    .unwrap();
    store
        .authorize(request(Some("e-1"), &account, 100, "5411", "EDIT"))
        .await
        .unwrap();
    harness.assert_audit_clean().await;
    let db = payd_pgtest::connect(harness.database.url()).await.unwrap();
    db.batch_execute(
        "UPDATE accounts SET cash_available = cash_available + 1 WHERE id = 'edited';
         UPDATE entries SET prev = NULL WHERE sequence = (SELECT MAX(sequence) FROM entries);",
    )
    .await
    .unwrap();
    let report = payd_postgres::audit::audit(harness.database.url())
        .await
        .unwrap();
    let failed: Vec<&str> = report.failed().map(|check| check.name).collect();
    assert_eq!(
        failed,
        [checks::BALANCES_MATCH_ENTRIES, checks::ENTRY_CHAINS],
        "{report}"
    );
    let balance = report.check(checks::BALANCES_MATCH_ENTRIES).unwrap();
    assert!(
        balance.violations[0].contains("account edited CASH available"),
        "{report}"
    );
}

// Goal: the processors' shared health has one poller per processor across processes: the
// lease is exclusive until it expires (then another process takes it), a holder renews it,
// and only the holder's reports are published. Method: two instance names on one store;
// a lease of 1 ms to let it expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_lease_has_one_holder_and_only_it_publishes() {
    use payd_domain::gateway::Processor;
    use payd_ports::{HealthBoard, HealthReading, HealthReport};

    let Some((_, harness)) = Pg::fresh("the_health_lease_has_one_holder").await else {
        return;
    };
    let board: &PgStore = &harness.store;
    let reading = |failing: bool, at_ms: i64| HealthReading {
        report: HealthReport {
            failing,
            min_response_ms: 120,
        },
        polled_at_ms: at_ms,
    };
    let default = Processor::Default;
    assert_eq!(board.latest(default).await.unwrap(), None);
    assert!(board.lead(default, "a", 60_000).await.unwrap());
    assert!(
        !board.lead(default, "b", 60_000).await.unwrap(),
        "held by a"
    );
    assert!(board.lead(default, "a", 60_000).await.unwrap(), "renewed");
    board.publish(default, "b", reading(true, 1)).await.unwrap();
    assert_eq!(
        board.latest(default).await.unwrap(),
        None,
        "b does not hold it"
    );
    board
        .publish(default, "a", reading(false, 2))
        .await
        .unwrap();
    assert_eq!(
        board.latest(default).await.unwrap(),
        Some(reading(false, 2))
    );
    assert!(
        board.lead(Processor::Fallback, "b", 60_000).await.unwrap(),
        "one lease per processor"
    );

    assert!(board.lead(default, "a", 1).await.unwrap());
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        board.lead(default, "b", 60_000).await.unwrap(),
        "a's lease expired"
    );
    assert!(
        !board.lead(default, "a", 60_000).await.unwrap(),
        "b holds it now"
    );
    board.publish(default, "a", reading(true, 3)).await.unwrap();
    assert_eq!(
        board.latest(default).await.unwrap(),
        Some(reading(false, 2)),
        "a stale holder publishes nothing"
    );
    board.publish(default, "b", reading(true, 4)).await.unwrap();
    assert_eq!(board.latest(default).await.unwrap(), Some(reading(true, 4)));
}
