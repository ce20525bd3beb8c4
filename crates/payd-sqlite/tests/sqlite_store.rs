//! What the SQLite store promises beyond the port: persistence across restarts, idempotent
//! migrations, an orderly shutdown, relaxed durability, and isolation of a failing command
//! inside a group commit.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use payd_domain::{AccountId, Balances, Category, Code, IdempotencyKey, system_account};
use payd_ports::testkit::{self, Harness, c, pattern, request as auth};
use payd_ports::{DepositRequest, EntryQuery, LedgerError, LedgerStore};
use payd_sqlite::{Durability, SqliteConfig, SqliteStore};
use tempfile::TempDir;

fn id(text: &str) -> AccountId {
    AccountId::parse(text).unwrap()
}

fn deposit(key: &str, account: &AccountId, category: Category, cents: i64) -> DepositRequest {
    DepositRequest {
        key: IdempotencyKey::parse(key).unwrap(),
        account: account.clone(),
        category,
        amount: c(cents),
    }
}

fn open_store(dir: &TempDir) -> SqliteStore {
    SqliteStore::open(SqliteConfig::new(dir.path())).unwrap()
}

async fn available(store: &SqliteStore, account: &AccountId) -> [i64; 3] {
    let balances = store.account(account).await.unwrap().unwrap().balances;
    Category::ALL.map(|category| balances.get(category).available.cents())
}

/// A side connection to the database, for inspecting (or sabotaging) it.
fn side_connection(dir: &TempDir) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(dir.path().join(payd_sqlite::DATABASE_FILE)).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn
}

// Goal: every acknowledged fact survives shutdown + reopen. Method: write balances,
// transaction ids (00 and 51), a deposit and merchant changes; reopen; replay them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_shutdown_and_reopen() {
    let dir = TempDir::new().unwrap();
    let acc = id("persist");
    let shop = "MERCADO PERSIST";
    let approved = auth(Some("p-1"), &acc, 300, "5411", shop);
    let declined = auth(Some("p-2"), &acc, 1_000_000, "5411", shop);
    let first_receipt = {
        let store = open_store(&dir);
        testkit::open(
            &store,
            &acc.clone(),
            Balances::with_available(c(1000), c(0), c(0)),
        )
        .await
        .unwrap();
        assert_eq!(store.authorize(approved.clone()).await, Ok(Code::Approved));
        assert_eq!(
            store.authorize(declined.clone()).await,
            Ok(Code::InsufficientFunds)
        );
        let receipt = store
            .deposit(deposit("p-dep", &acc, Category::Meal, 500))
            .await
            .unwrap();
        assert_eq!(
            testkit::put_merchant(&store, "PERSIST BAR", Category::Cash).await,
            Ok(true)
        );
        assert_eq!(
            testkit::delete_merchant(&store, "UBER EATS").await,
            Ok(true)
        );
        store.shutdown();
        receipt
    };

    let store = open_store(&dir);
    assert_eq!(available(&store, &acc).await, [700, 500, 0], "balances");
    assert_eq!(
        store.authorize(approved).await,
        Ok(Code::Approved),
        "00 replays after restart"
    );
    assert_eq!(
        store.authorize(declined.clone()).await,
        Ok(Code::InsufficientFunds),
        "51 replays after restart"
    );
    let mut conflict = declined;
    conflict.amount = c(1);
    assert_eq!(
        store.authorize(conflict).await,
        Ok(Code::Rejected),
        "a conflict is still a conflict"
    );
    assert_eq!(
        available(&store, &acc).await,
        [700, 500, 0],
        "replays debit nothing"
    );
    let replay = store
        .deposit(deposit("p-dep", &acc, Category::Meal, 500))
        .await
        .unwrap();
    assert_eq!(
        replay,
        payd_ports::DepositReceipt {
            replayed: true,
            ..first_receipt
        }
    );
    let merchants = store.merchants().await.unwrap();
    assert!(merchants.contains(&(pattern("PERSIST BAR"), Category::Cash)));
    assert!(
        !merchants.iter().any(|(p, _)| p == &pattern("UBER EATS")),
        "a deleted default stays deleted"
    );
    // The reloaded table drives decisions: 5812 would be MEAL, the override says CASH.
    store
        .deposit(deposit("p-cash", &acc, Category::Cash, 100))
        .await
        .unwrap();
    assert_eq!(
        store
            .authorize(auth(None, &acc, 40, "5812", "PERSIST BAR"))
            .await,
        Ok(Code::Approved)
    );
    assert_eq!(available(&store, &acc).await, [700, 500, 60]);
    store.shutdown();
}

// Goal: reopening applies no migration twice and re-seeds nothing. Method: open three
// times, then count migrations, system accounts and default merchants with a side
// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent_on_reopen() {
    let dir = TempDir::new().unwrap();
    for _ in 0..3 {
        let store = open_store(&dir);
        assert!(store.is_ready());
        store.shutdown();
    }
    let conn = side_connection(&dir);
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |row| row.get(0)).unwrap() };
    // One row per migration file, each applied once whatever the number of reopens.
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .count() as i64;
    assert_eq!(count("SELECT count(*) FROM schema_migrations"), files);
    assert_eq!(count("SELECT max(version) FROM schema_migrations"), files);
    assert_eq!(
        count("SELECT count(*) FROM accounts WHERE id = '@external'"),
        1
    );
    assert_eq!(
        count("SELECT count(*) FROM merchants"),
        4,
        "the default table, once"
    );
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

// Goal: shutdown answers everything it accepted (durably) and refuses the rest. Method:
// 400 authorizations in flight, shutdown in the middle; every answer is a code or
// `Unavailable`; after reopening, the balance matches exactly the `00`s; later calls are
// `Unavailable` and a second shutdown is a no-op.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_queued_commands_and_refuses_later_ones() {
    let dir = TempDir::new().unwrap();
    let store = Arc::new(open_store(&dir));
    let acc = id("drain");
    let start_cents = 1_000_000;
    testkit::open(
        &*store,
        &acc.clone(),
        Balances::with_available(c(0), c(0), c(start_cents)),
    )
    .await
    .unwrap();
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let (store, request) = (
                Arc::clone(&store),
                auth(Some(&format!("d-{i}")), &acc, 100, "5999", "DRAIN"),
            );
            tokio::spawn(async move { store.authorize(request).await })
        })
        .collect();
    // Shut down mid-stream: once the first answer is in, the rest are queued or in flight.
    while !tasks.iter().any(|task| task.is_finished()) {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let stopper = Arc::clone(&store);
    tokio::task::spawn_blocking(move || stopper.shutdown())
        .await
        .unwrap();
    assert!(!store.is_ready());

    let (mut approved, mut refused) = (0i64, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(Code::Approved) => approved += 1,
            Err(LedgerError::Unavailable(_)) => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(
        approved > 0,
        "commands queued before shutdown were answered"
    );
    assert_eq!(approved + refused, 400);

    assert!(matches!(
        store.authorize(auth(None, &acc, 1, "5999", "X")).await,
        Err(LedgerError::Unavailable(_))
    ));
    assert!(matches!(
        store
            .deposit(deposit("late", &acc, Category::Cash, 1))
            .await,
        Err(LedgerError::Unavailable(_))
    ));
    assert!(matches!(
        testkit::put_merchant(&*store, "LATE", Category::Cash).await,
        Err(LedgerError::Unavailable(_))
    ));
    assert!(matches!(
        store.account(&acc).await,
        Err(LedgerError::Unavailable(_))
    ));
    store.shutdown(); // idempotent
    drop(store);

    let reopened = open_store(&dir);
    assert_eq!(
        available(&reopened, &acc).await,
        [0, 0, start_cents - 100 * approved],
        "every 00 was durable"
    );
    reopened.shutdown();
}

// Goal: relaxed durability is a working store too. Method: two checks of the suite, each
// on a fresh relaxed store, then a reopen that still sees the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaxed_mode_works() {
    let relaxed = || {
        support::Sqlite::with(|mut config| {
            config.durability = "relaxed".parse::<Durability>().unwrap();
            config
        })
    };
    let (first, mut first_harness) = relaxed();
    testkit::ledger::concurrent_authorizations_many_accounts(first, &mut first_harness).await;
    first_harness.assert_audit_clean().await;
    let (second, mut second_harness) = relaxed();
    testkit::ledger::entries_and_conservation(second, &mut second_harness).await;
    second_harness.assert_audit_clean().await;
    let dir = first_harness.into_dir();
    let store = SqliteStore::open(SqliteConfig::new(dir.path())).unwrap();
    assert_eq!(available(&store, &id("many-19")).await, [0, 0, 0]);
    assert_eq!(
        store
            .entries(
                &id("many-19"),
                EntryQuery {
                    before_sequence: None,
                    limit: 1000
                }
            )
            .await
            .unwrap()
            .entries
            .len(),
        2 + 174
    );
    store.shutdown();
}

// Goal: id-less approvals are referenced as `transaction <seq>` in the journal, a form no
// client id can take (client ids have no spaces), even one that looks alike (`txn-1`).
// Method: an id-less approval next to one whose client id mimics a generated reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_less_transactions_reference_their_sequence() {
    let dir = TempDir::new().unwrap();
    let store = open_store(&dir);
    let acc = id("anon");
    testkit::open(
        &store,
        &acc.clone(),
        Balances::with_available(c(100), c(0), c(0)),
    )
    .await
    .unwrap();
    assert_eq!(
        store
            .authorize(auth(Some("transaction"), &acc, 5, "5411", "ANON"))
            .await,
        Ok(Code::Approved)
    );
    assert_eq!(
        store.authorize(auth(None, &acc, 10, "5411", "ANON")).await,
        Ok(Code::Approved)
    );
    let page = store
        .entries(
            &acc,
            EntryQuery {
                before_sequence: None,
                limit: 1,
            },
        )
        .await
        .unwrap();
    let reference = &page.entries[0].reference;
    assert!(
        reference
            .strip_prefix("transaction ")
            .is_some_and(|n| n.parse::<i64>().is_ok()),
        "reference {reference:?}"
    );
    let system_page = store
        .entries(
            &system_account(),
            EntryQuery {
                before_sequence: None,
                limit: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        &system_page.entries[0].reference, reference,
        "both legs share the reference"
    );
    store.shutdown();
}

// Goal: a command that fails in SQLite by itself fails alone; the rest of its group commit
// is retried and succeeds, with balances still exact (the cache is dropped on rollback).
// Method: a trigger (added from a side connection) aborts inserts for account `poison`;
// 200 good authorizations race with poisoned ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_command_fails_alone() {
    let dir = TempDir::new().unwrap();
    let store = Arc::new(open_store(&dir));
    let good = id("good");
    let poison = id("poison");
    for account in [&good, &poison] {
        testkit::open(
            &*store,
            &account.clone(),
            Balances::with_available(c(0), c(0), c(10_000)),
        )
        .await
        .unwrap();
    }
    side_connection(&dir)
        .execute_batch(
            "CREATE TRIGGER poison BEFORE INSERT ON transactions WHEN NEW.account = 'poison'
             BEGIN SELECT RAISE(ABORT, 'poisoned for the test'); END;",
        )
        .unwrap();
    let tasks: Vec<_> = (0..220)
        .map(|i| {
            let account = if i % 11 == 0 { &poison } else { &good };
            let (store, request) = (
                Arc::clone(&store),
                auth(None, account, 50, "5999", "POISON"),
            );
            let account = account.clone();
            tokio::spawn(async move { (account, store.authorize(request).await) })
        })
        .collect();
    let mut good_approved = 0;
    for task in tasks {
        match task.await.unwrap() {
            (account, Ok(Code::Approved)) if account == good => good_approved += 1,
            (account, Err(LedgerError::Unavailable(_))) if account == poison => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(good_approved, 200);
    assert_eq!(available(&store, &good).await, [0, 0, 0], "exactly drained");
    assert_eq!(
        available(&store, &poison).await,
        [0, 0, 10_000],
        "failed commands changed nothing"
    );
    let system = store
        .account(&system_account())
        .await
        .unwrap()
        .unwrap()
        .balances;
    assert_eq!(
        system.get(Category::Cash).available,
        c(-10_000),
        "money is conserved"
    );
    assert!(store.is_ready(), "a failed batch does not stop the writer");
    store.shutdown();
}
