#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `payd_sqlite::audit`: a store written through the API, plus wallet rows written the way
//! the writer writes them, audits clean; then each test breaks one invariant with raw SQL
//! and checks that the check guarding it (and only the checks that must) reports it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use payd_domain::{AccountId, Balances, Category, Code, IdempotencyKey};
use payd_ports::testkit::{self, c, request as auth};
use payd_ports::{DepositRequest, LedgerStore};
use payd_sqlite::audit::{AuditError, AuditReport, audit, checks};
use payd_sqlite::{SqliteConfig, SqliteStore};
use rusqlite::{Connection, params};
use tempfile::TempDir;

fn id(text: &str) -> AccountId {
    AccountId::parse(text).unwrap()
}

fn database(dir: &TempDir) -> PathBuf {
    dir.path().join(payd_sqlite::DATABASE_FILE)
}

/// A side connection that may write what the schema's CHECKs would refuse.
fn side_connection(dir: &TempDir) -> Connection {
    let conn = Connection::open(database(dir)).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.pragma_update(None, "ignore_check_constraints", true)
        .unwrap();
    conn
}

/// Writes through the store's API: two accounts, a deposit, an approved and a declined
/// card transaction.
async fn write_through_the_api(store: &SqliteStore) {
    for (name, balances) in [
        ("alice", Balances::with_available(c(1000), c(500), c(300))),
        ("bob", Balances::with_available(c(0), c(0), c(100))),
    ] {
        testkit::open(store, &id(name), balances).await.unwrap();
    }
    store
        .deposit(DepositRequest {
            key: IdempotencyKey::parse("dep-1").unwrap(),
            account: id("alice"),
            category: Category::Cash,
            amount: c(200),
        })
        .await
        .unwrap();
    let alice = id("alice");
    assert_eq!(
        store
            .authorize(auth(Some("tx-1"), &alice, 300, "5411", "MERCADO"))
            .await,
        Ok(Code::Approved)
    );
    assert_eq!(
        store
            .authorize(auth(Some("tx-2"), &alice, 1_000_000, "5411", "MERCADO"))
            .await,
        Ok(Code::InsufficientFunds)
    );
}

const NOW: i64 = 1_700_000_000_000;

/// The balance column of a category and bucket (0 = available, 1 = held).
fn column(category: &str, bucket: u8) -> String {
    let part = if bucket == 0 { "available" } else { "held" };
    format!("{}_{part}", category.to_ascii_lowercase())
}

/// One movement written as the writer writes it: two entries summing to zero, and both
/// balances updated.
fn movement(
    conn: &Connection,
    from: (&str, u8),
    to: (&str, u8),
    category: &str,
    cents: i64,
    cause: &str,
    reference: &str,
) {
    for ((account, bucket), amount) in [(from, -cents), (to, cents)] {
        conn.execute(
            "INSERT INTO entries (account, category, bucket, amount_cents, cause, reference, created_at_ms, prev)
             VALUES ((SELECT num FROM accounts WHERE id = ?1), ?2, ?3, ?4, ?5, ?6, ?7,
                     (SELECT last_entry FROM accounts WHERE id = ?1))",
            params![account, category, bucket, amount, cause, reference, NOW],
        )
        .unwrap();
        conn.execute(
            "UPDATE accounts SET last_entry = last_insert_rowid() WHERE id = ?1",
            params![account],
        )
        .unwrap();
        let col = column(category, bucket);
        let changed = conn
            .execute(
                &format!("UPDATE accounts SET {col} = {col} + ?1 WHERE id = ?2"),
                params![amount, account],
            )
            .unwrap();
        assert_eq!(changed, 1, "account {account}");
    }
}

#[allow(clippy::too_many_arguments)]
fn hold(
    conn: &Connection,
    hold: &str,
    account: &str,
    category: &str,
    cents: i64,
    captured: i64,
    status: &str,
    payment: Option<&str>,
) {
    conn.execute(
        "INSERT INTO holds (id, account, category, amount_cents, captured_cents, status,
                            expires_at_ms, payment, created_at_ms, updated_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
        params![
            hold,
            account,
            category,
            cents,
            captured,
            status,
            NOW + 60_000,
            payment,
            NOW
        ],
    )
    .unwrap();
}

fn payment(conn: &Connection, payment: &str, cents: i64, status: &str, hold: Option<&str>) {
    conn.execute(
        "INSERT INTO payments (id, amount_cents, requested_at_ms, status, created_at_ms,
                               updated_at_ms, hold)
         VALUES (?1, ?2, ?3, ?4, ?3, ?3, ?5)",
        params![payment, cents, NOW, status, hold],
    )
    .unwrap();
}

fn transfer(
    conn: &Connection,
    transfer: &str,
    from: &str,
    to: &str,
    category: &str,
    cents: i64,
    status: &str,
) {
    let reason = (status == "rejected").then_some("insufficient_funds");
    conn.execute(
        "INSERT INTO transfers (id, from_account, to_account, category, amount_cents, status,
                                reason, created_at_ms, updated_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
        params![transfer, from, to, category, cents, status, reason, NOW],
    )
    .unwrap();
}

/// Wallet rows, consistent, as the writer will write them: transfers in every status, a
/// captured pay-in, an open one, a failed one, a plain hold, a withdrawal, and a gateway
/// payment without a hold.
fn write_wallet_rows(conn: &Connection) {
    let ext = "@external";
    transfer(conn, "t-1", "alice", "bob", "CASH", 50, "completed");
    movement(
        conn,
        ("alice", 0),
        ("bob", 0),
        "CASH",
        50,
        "transfer",
        "t-1",
    );
    transfer(conn, "t-2", "bob", "alice", "FOOD", 5, "pending");
    transfer(conn, "t-3", "bob", "alice", "MEAL", 7_000, "rejected");

    // pay-1: booked, its hold of 100 captured for 60, the rest released.
    hold(
        conn,
        "h-1",
        "alice",
        "FOOD",
        100,
        60,
        "captured",
        Some("pay-1"),
    );
    movement(conn, ("alice", 0), ("alice", 1), "FOOD", 100, "hold", "h-1");
    movement(conn, ("alice", 1), (ext, 0), "FOOD", 60, "capture", "h-1");
    movement(
        conn,
        ("alice", 1),
        ("alice", 0),
        "FOOD",
        40,
        "capture",
        "h-1",
    );
    payment(conn, "pay-1", 60, "booked", Some("h-1"));

    // pay-2: still processing, its hold active.
    hold(conn, "h-2", "alice", "MEAL", 20, 0, "active", Some("pay-2"));
    movement(conn, ("alice", 0), ("alice", 1), "MEAL", 20, "hold", "h-2");
    payment(conn, "pay-2", 20, "processing", Some("h-2"));

    // pay-3: failed, its hold voided.
    hold(conn, "h-4", "alice", "CASH", 10, 0, "voided", Some("pay-3"));
    movement(conn, ("alice", 0), ("alice", 1), "CASH", 10, "hold", "h-4");
    movement(conn, ("alice", 1), ("alice", 0), "CASH", 10, "void", "h-4");
    payment(conn, "pay-3", 10, "failed", Some("h-4"));

    // A plain hold, and a withdrawal.
    hold(conn, "h-3", "bob", "CASH", 30, 0, "active", None);
    movement(conn, ("bob", 0), ("bob", 1), "CASH", 30, "hold", "h-3");
    movement(conn, ("bob", 0), (ext, 0), "CASH", 5, "withdrawal", "w-1");

    // A gateway payment: no wallet, no hold.
    payment(conn, "pay-4", 999, "queued", None);
}

/// A clean store: API writes, then wallet rows; the store is shut down.
async fn clean_store() -> TempDir {
    let dir = TempDir::new().unwrap();
    let store = SqliteStore::open(SqliteConfig::new(dir.path())).unwrap();
    write_through_the_api(&store).await;
    store.shutdown();
    let mut conn = side_connection(&dir);
    let tx = conn.transaction().unwrap();
    write_wallet_rows(&tx);
    tx.commit().unwrap();
    dir
}

/// Applies `sql` to a clean store and audits it.
async fn audit_after(sql: &str) -> AuditReport {
    let dir = clean_store().await;
    side_connection(&dir).execute_batch(sql).unwrap();
    audit(&database(&dir)).unwrap()
}

fn failed(report: &AuditReport) -> BTreeSet<&'static str> {
    report.failed().map(|check| check.name).collect()
}

/// Exactly the checks in `expected` failed; returns the violations of the first one.
fn assert_failed(report: &AuditReport, expected: &[&'static str]) -> Vec<String> {
    assert_eq!(
        failed(report),
        expected.iter().copied().collect(),
        "report:\n{report}"
    );
    assert!(!report.is_clean());
    report.check(expected[0]).unwrap().violations.clone()
}

fn assert_mentions(violations: &[String], parts: &[&str]) {
    assert!(
        violations
            .iter()
            .any(|line| parts.iter().all(|part| line.contains(part))),
        "no violation mentions all of {parts:?}: {violations:#?}"
    );
}

// ---- clean ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consistent_store_audits_clean() {
    let dir = clean_store().await;
    let report = audit(&database(&dir)).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.schema_version, 7);
    let names: Vec<&str> = report.checks.iter().map(|check| check.name).collect();
    assert_eq!(names, checks::ALL);
    // alice, bob, @external; 4 openings + 1 deposit + 1 transaction + 9 wallet movements.
    let entries = report.check(checks::ENTRIES_BALANCE).unwrap();
    assert_eq!(entries.examined, 2 * (4 + 1 + 1 + 9), "{report}");
    assert_eq!(
        report
            .check(checks::BALANCES_MATCH_ENTRIES)
            .unwrap()
            .examined,
        3
    );
    assert_eq!(
        report
            .check(checks::TRANSFERS_HAVE_ENTRIES)
            .unwrap()
            .examined,
        3
    );
    let text = report.to_string();
    assert!(
        text.starts_with("ok   entries balance per category (3 categories, 30 entries)\n"),
        "{text}"
    );
    assert!(text.ends_with("clean: 9 checks passed"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_written_only_through_the_api_audits_clean_while_open() {
    let dir = TempDir::new().unwrap();
    let store = SqliteStore::open(SqliteConfig::new(dir.path())).unwrap();
    write_through_the_api(&store).await;
    // The store is still open (writer, checkpointer and readers alive): a WAL reader.
    let report = audit(&database(&dir)).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(
        report.check(checks::ENTRIES_BALANCE).unwrap().examined,
        2 * (4 + 1 + 1)
    );
    // And the store keeps working afterwards.
    assert_eq!(
        store
            .authorize(auth(None, &id("alice"), 1, "5812", "BAR"))
            .await,
        Ok(Code::Approved)
    );
    store.shutdown();
    assert!(audit(&database(&dir)).unwrap().is_clean());
}

#[test]
fn a_missing_database_cannot_be_audited() {
    let dir = TempDir::new().unwrap();
    let error = audit(&database(&dir)).unwrap_err();
    assert!(matches!(error, AuditError::NotFound(_)), "{error}");
    assert!(!database(&dir).exists(), "the audit created nothing");
}

#[test]
fn a_foreign_or_old_database_cannot_be_audited() {
    let dir = TempDir::new().unwrap();
    let path = database(&dir);
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
    let error = audit(&path).unwrap_err();
    assert!(matches!(error, AuditError::NotPayd(_)), "{error}");
    conn.execute_batch(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at_ms INTEGER);
         INSERT INTO schema_migrations VALUES (1, 0), (2, 0);",
    )
    .unwrap();
    let error = audit(&path).unwrap_err();
    assert!(
        matches!(
            error,
            AuditError::SchemaTooOld {
                found: 2,
                needed: 3,
                ..
            }
        ),
        "{error}"
    );
}

// ---- 1. entries balance per category ---------------------------------------------------

// Money from nothing: an entry whose account balance was raised to match. Every balance
// still equals its entries; only the journal as a whole (and its movement) is off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_created_from_nothing_unbalances_the_journal() {
    let report = audit_after(
        "INSERT INTO entries (account, category, bucket, amount_cents, cause, reference, created_at_ms, prev)
             VALUES ((SELECT num FROM accounts WHERE id = 'bob'), 'MEAL', 0, 70, 'deposit', 'forged', 0,
                     (SELECT last_entry FROM accounts WHERE id = 'bob'));
         UPDATE accounts SET meal_available = meal_available + 70, last_entry = last_insert_rowid()
          WHERE id = 'bob';",
    )
    .await;
    let violations = assert_failed(
        &report,
        &[checks::ENTRIES_BALANCE, checks::MOVEMENTS_BALANCE],
    );
    assert_eq!(violations, ["MEAL: its 5 entries sum to 70, expected 0"]);
    let movements = &report.check(checks::MOVEMENTS_BALANCE).unwrap().violations;
    assert_mentions(movements, &["deposit forged MEAL", "1 entry", "70"]);
}

// ---- 2. balances equal the sum of their entries ----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balance_changed_without_an_entry_is_reported() {
    let report =
        audit_after("UPDATE accounts SET cash_available = cash_available + 1 WHERE id = 'alice'")
            .await;
    let violations = assert_failed(&report, &[checks::BALANCES_MATCH_ENTRIES]);
    assert_eq!(
        violations,
        ["account alice CASH available: balance 451, its entries sum to 450 (off by 1)"]
    );
}

// Held and available are checked separately: an entry booked to the wrong bucket leaves
// the category's total right but both buckets wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_in_the_wrong_bucket_is_reported() {
    let report = audit_after(
        "UPDATE entries SET bucket = 0 WHERE cause = 'hold' AND reference = 'h-2' AND bucket = 1",
    )
    .await;
    let violations = assert_failed(&report, &[checks::BALANCES_MATCH_ENTRIES]);
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert_mentions(
        &violations,
        &["alice MEAL available", "balance 480", "sum to 500"],
    );
    assert_mentions(&violations, &["alice MEAL held", "balance 20", "sum to 0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_on_a_missing_account_and_a_balance_without_entries_are_reported() {
    let report = audit_after(
        "INSERT INTO entries (account, category, bucket, amount_cents, cause, reference, created_at_ms)
             VALUES (999, 'FOOD', 0, 5, 'deposit', 'orphan', 0);
         INSERT INTO entries (account, category, bucket, amount_cents, cause, reference, created_at_ms, prev)
             VALUES (999, 'FOOD', 1, -5, 'deposit', 'orphan', 0, last_insert_rowid());
         INSERT INTO accounts (id, food_available, created_at_ms) VALUES ('ghost', 5, 0);",
    )
    .await;
    let violations = assert_failed(&report, &[checks::BALANCES_MATCH_ENTRIES]);
    assert_eq!(
        violations,
        [
            "2 entries name account number 999, which does not exist",
            "account ghost FOOD available: balance 5, its entries sum to 0 (off by 5)",
        ]
    );
}

// ---- 3. no negative balances -----------------------------------------------------------

// An overdraft written consistently (entries and balance agree) and a negative held on the
// system account: only the sign rule catches them. @external's negative available (it paid
// for every deposit) is allowed, as the clean audit shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_balances_are_reported() {
    let dir = clean_store().await;
    let conn = side_connection(&dir);
    movement(
        &conn,
        ("alice", 0),
        ("@external", 0),
        "CASH",
        451,
        "withdrawal",
        "w-over",
    );
    movement(
        &conn,
        ("@external", 1),
        ("@external", 0),
        "FOOD",
        8,
        "void",
        "v-sys",
    );
    let report = audit(&database(&dir)).unwrap();
    let violations = assert_failed(&report, &[checks::NO_NEGATIVE_BALANCES]);
    assert_eq!(
        violations,
        [
            "account @external FOOD held: -8, expected >= 0",
            "account alice CASH available: -1, expected >= 0",
        ]
    );
}

// ---- 4. active holds equal held balances -----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_hold_without_a_held_balance_is_reported() {
    let report = audit_after(
        "INSERT INTO holds (id, account, category, amount_cents, status, created_at_ms, updated_at_ms)
             VALUES ('h-ghost', 'bob', 'FOOD', 10, 'active', 0, 0);",
    )
    .await;
    let violations = assert_failed(&report, &[checks::HOLDS_MATCH_HELD]);
    assert_eq!(
        violations,
        ["account bob FOOD: held 0, expected 10 (the sum of its 1 active hold)"]
    );
}

// An expiry that forgot to release the money: the hold is no longer active, the balance
// still held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_balance_without_its_hold_is_reported() {
    let report = audit_after(
        "UPDATE holds SET status = 'expired' WHERE id = 'h-3';
         INSERT INTO holds (id, account, category, amount_cents, status, created_at_ms, updated_at_ms)
             VALUES ('h-nobody', 'nobody', 'CASH', 3, 'active', 0, 0);",
    )
    .await;
    let violations = assert_failed(&report, &[checks::HOLDS_MATCH_HELD]);
    assert_mentions(
        &violations,
        &["account bob CASH: held 30, expected 0 (the sum of its 0 active holds)"],
    );
    assert_mentions(
        &violations,
        &["account nobody does not exist, yet has 1 active hold of 3 CASH"],
    );
    assert_eq!(violations.len(), 2, "{violations:?}");
}

// ---- 5. captured amounts within their holds --------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_beyond_its_hold_is_reported() {
    let report = audit_after(
        "UPDATE holds SET captured_cents = 101 WHERE id = 'h-1';
         UPDATE holds SET captured_cents = 4 WHERE id = 'h-4';",
    )
    .await;
    let violations = assert_failed(&report, &[checks::CAPTURES_WITHIN_HOLDS]);
    assert_eq!(
        violations,
        [
            "hold h-1 (alice FOOD, captured): amount 100, captured 101, expected 0 < captured <= 100",
            "hold h-4 (alice CASH, voided): amount 10, captured 4, expected captured 0",
        ]
    );
}

// ---- 6. pay-in holds follow their payments ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booked_payment_whose_hold_is_still_active_is_reported() {
    let report = audit_after("UPDATE payments SET status = 'booked' WHERE id = 'pay-2'").await;
    let violations = assert_failed(&report, &[checks::PAYMENT_HOLDS]);
    assert_eq!(
        violations,
        ["payment pay-2 (booked): its hold h-2 is active, expected captured"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_and_holds_that_disagree_are_reported() {
    let report = audit_after(
        "UPDATE payments SET status = 'failed' WHERE id = 'pay-1';
         UPDATE payments SET status = 'unknown' WHERE id = 'pay-3';
         UPDATE holds SET payment = 'pay-missing' WHERE id = 'h-2';",
    )
    .await;
    let violations = assert_failed(&report, &[checks::PAYMENT_HOLDS]);
    assert_mentions(
        &violations,
        &["payment pay-1 (failed)", "h-1 is captured, expected voided"],
    );
    assert_mentions(
        &violations,
        &["payment pay-3 (unknown)", "h-4 is voided, expected active"],
    );
    assert_mentions(
        &violations,
        &["payment pay-2 (processing): its hold h-2 backs payment pay-missing"],
    );
    assert_mentions(
        &violations,
        &["hold h-2 backs payment pay-missing, which does not exist"],
    );
    assert_eq!(violations.len(), 4, "{violations:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_whose_hold_is_missing_is_reported() {
    let report = audit_after("UPDATE payments SET hold = 'h-gone' WHERE id = 'pay-4'").await;
    let violations = assert_failed(&report, &[checks::PAYMENT_HOLDS]);
    assert_eq!(
        violations,
        ["payment pay-4 (queued): its hold h-gone does not exist"]
    );
}

// ---- 7. transfers have their entries ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_transfer_without_entries_is_reported() {
    let report = audit_after(
        "INSERT INTO transfers (id, from_account, to_account, category, amount_cents, status,
                                created_at_ms, updated_at_ms)
             VALUES ('t-ghost', 'alice', 'bob', 'CASH', 10, 'completed', 0, 0);",
    )
    .await;
    let violations = assert_failed(&report, &[checks::TRANSFERS_HAVE_ENTRIES]);
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_mentions(
        &violations,
        &["transfer t-ghost (completed, alice -> bob, CASH 10): 0 transfer entries"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_entries_in_the_wrong_place_are_reported() {
    let dir = clean_store().await;
    let conn = side_connection(&dir);
    // t-2 is still pending but already moved money; t-4 completed in the wrong direction.
    movement(
        &conn,
        ("bob", 0),
        ("alice", 0),
        "CASH",
        5,
        "transfer",
        "t-2",
    );
    transfer(&conn, "t-4", "alice", "bob", "FOOD", 3, "completed");
    movement(
        &conn,
        ("bob", 0),
        ("alice", 0),
        "FOOD",
        3,
        "transfer",
        "t-4",
    );
    // And two entries referencing no transfer at all.
    movement(
        &conn,
        ("alice", 0),
        ("bob", 0),
        "MEAL",
        1,
        "transfer",
        "t-none",
    );
    // bob's FOOD went negative through t-4's wrong direction; give it back from outside.
    movement(
        &conn,
        ("@external", 0),
        ("bob", 0),
        "FOOD",
        3,
        "deposit",
        "dep-bob",
    );
    let report = audit(&database(&dir)).unwrap();
    let violations = assert_failed(&report, &[checks::TRANSFERS_HAVE_ENTRIES]);
    assert_mentions(
        &violations,
        &["transfer t-2 (pending", "2 transfer entries, expected none"],
    );
    assert_mentions(
        &violations,
        &[
            "transfer t-4 (completed",
            "0 matching debit of alice and 0 matching credit of bob",
        ],
    );
    assert_mentions(
        &violations,
        &["transfer t-none does not exist, yet has 2 transfer entries"],
    );
    assert_eq!(violations.len(), 3, "{violations:?}");
}

// ---- 8. movements balance per cause and reference --------------------------------------

// One leg of the deposit re-labelled: every balance and the journal's total are still
// right, but the deposit no longer explains itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_movement_split_across_references_is_reported() {
    let report = audit_after(
        "UPDATE entries SET reference = 'elsewhere' WHERE cause = 'deposit' AND amount_cents < 0",
    )
    .await;
    let violations = assert_failed(&report, &[checks::MOVEMENTS_BALANCE]);
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert_mentions(
        &violations,
        &["deposit elsewhere CASH: 1 entry summing to -200"],
    );
    assert_mentions(&violations, &["deposit ", "CASH: 1 entry summing to 200"]);
}

// ---- the report ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_lists_twenty_violations_and_counts_the_rest() {
    let dir = clean_store().await;
    let conn = side_connection(&dir);
    for i in 0..30 {
        conn.execute(
            "INSERT INTO transfers (id, from_account, to_account, category, amount_cents, status,
                                    created_at_ms, updated_at_ms)
             VALUES (?1, 'alice', 'bob', 'CASH', 1, 'completed', 0, 0)",
            [format!("t-x{i:02}")],
        )
        .unwrap();
    }
    let report = audit(&database(&dir)).unwrap();
    assert_failed(&report, &[checks::TRANSFERS_HAVE_ENTRIES]);
    let check = report.check(checks::TRANSFERS_HAVE_ENTRIES).unwrap();
    assert_eq!(check.violation_count(), 30);
    let text = report.to_string();
    assert!(
        text.contains("FAIL transfers have their entries (33 transfers, 31 completed, 2 transfer entries): 30 violations\n"),
        "{text}"
    );
    assert_eq!(text.matches("       transfer t-x").count(), 20, "{text}");
    assert!(text.contains("       ... and 10 more\n"), "{text}");
    assert!(
        text.ends_with("NOT CLEAN: 30 violations in 1 of 9 checks"),
        "{text}"
    );
}

// A broken chain: an entry unlinked from its account's chain, and an account whose head
// is not its newest entry. Balances and sums are untouched; only the chain check fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_entry_chain_is_reported() {
    let report = audit_after(
        "UPDATE entries SET prev = NULL
          WHERE sequence = (SELECT last_entry FROM accounts WHERE id = 'alice');
         UPDATE accounts SET last_entry = NULL WHERE id = 'bob';",
    )
    .await;
    let violations = assert_failed(&report, &[checks::ENTRY_CHAINS]);
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert!(
        violations[0].starts_with("account alice: entry ")
            && violations[0].contains("links to none, expected entry"),
        "{violations:?}"
    );
    assert!(
        violations[1].starts_with("account bob: its chain starts at none"),
        "{violations:?}"
    );
}
