//! Connections, pragmas and the numbered migrations, plus the row <-> domain conversions
//! that both the writer and the readers use.

use std::path::Path;
use std::time::Duration;

use payd_domain::{
    AccountId, Amount, Balances, Category, CategoryBalance, MerchantPattern, MerchantRules,
    system_account,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row};

use crate::config::Durability;

/// A migration: its version, its SQL, and what it inserts from Rust (values that have their
/// single source in `payd_domain`).
struct Migration {
    version: i64,
    sql: &'static str,
    seed: fn(&Connection, i64) -> rusqlite::Result<()>,
}

/// Every migration, in order. Append only; never edit one that has shipped.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("../migrations/0001_init.sql"),
        seed: seed_0001,
    },
    Migration {
        version: 2,
        sql: include_str!("../migrations/0002_payments.sql"),
        seed: seed_nothing,
    },
];

/// The newest schema version this build knows.
pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// How long a connection waits on a lock before failing. Only checkpoints and a second
/// process could make us wait; the writer thread is the only writer.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Statements the writer keeps prepared; a handful are used per command.
const STATEMENT_CACHE_CAPACITY: usize = 64;

/// WAL pages between checkpoints (SQLite's default is 1000). A checkpoint copies each
/// changed page once however often it changed, and the hot pages (balances of busy accounts,
/// the right edge of the journal's B-trees) change in every batch: checkpointing ten times
/// less often took the writer from ~46k to ~74k authorizations/s. The price is a WAL of up
/// to ~40 MiB and a longer pause in the writer at each checkpoint.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 10_000;

/// Opens the single read-write connection, in WAL mode with the requested durability.
pub(crate) fn open_writer(path: &Path, durability: Durability) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    // `journal_mode` answers with the mode actually in force; anything but WAL (e.g. a
    // filesystem without shared memory) would silently lose the reader/writer split.
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode is {mode}, WAL is required"
        )));
    }
    conn.pragma_update(None, "synchronous", durability.synchronous_pragma())?;
    // 64 MiB of page cache: the hot part of accounts and the indexes stay in memory.
    conn.pragma_update(None, "cache_size", -65_536)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
    Ok(conn)
}

/// Opens one read-only connection. Readers never block the writer in WAL mode and see the
/// last committed state when their read starts.
pub(crate) fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(16);
    Ok(conn)
}

/// Applies every migration not yet recorded in `schema_migrations`, each in its own
/// transaction together with its record, so a crash leaves each one applied or not at all.
/// Returns how many were applied (0 on a reopen).
pub(crate) fn migrate(conn: &mut Connection, now_ms: i64) -> rusqlite::Result<usize> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version       INTEGER PRIMARY KEY NOT NULL,
             applied_at_ms INTEGER NOT NULL
         )",
    )?;
    let mut applied = 0;
    for migration in MIGRATIONS {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let done: Option<i64> = tx
            .query_row(
                "SELECT version FROM schema_migrations WHERE version = ?1",
                [migration.version],
                |row| row.get(0),
            )
            .optional()?;
        if done.is_none() {
            tx.execute_batch(migration.sql)?;
            (migration.seed)(&tx, now_ms)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at_ms) VALUES (?1, ?2)",
                [migration.version, now_ms],
            )?;
            applied += 1;
        }
        tx.commit()?;
    }
    Ok(applied)
}

/// Version 1's data: the system account and the default merchant overrides.
/// For migrations that only change the schema.
fn seed_nothing(_: &Connection, _: i64) -> rusqlite::Result<()> {
    Ok(())
}

fn seed_0001(conn: &Connection, now_ms: i64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO accounts (id, created_at_ms) VALUES (?1, ?2)",
        rusqlite::params![system_account().as_str(), now_ms],
    )?;
    for (pattern, category) in MerchantRules::default_entries() {
        conn.execute(
            "INSERT INTO merchants (pattern, category) VALUES (?1, ?2)",
            [pattern.to_string().as_str(), category.as_str()],
        )?;
    }
    Ok(())
}

/// One account's balances by id; in the column order of [`balances_from_row`].
pub(crate) const SELECT_BALANCES: &str = "SELECT food_available, food_held, meal_available, meal_held, \
     cash_available, cash_held FROM accounts WHERE id = ?1";

/// Balances from six columns starting at `first`: food available, food held, meal
/// available, meal held, cash available, cash held.
pub(crate) fn balances_from_row(row: &Row<'_>, first: usize) -> rusqlite::Result<Balances> {
    let part = |at: usize| -> rusqlite::Result<CategoryBalance> {
        Ok(CategoryBalance {
            available: Amount::from_cents(row.get(first + at)?),
            held: Amount::from_cents(row.get(first + at + 1)?),
        })
    };
    Ok(Balances::from_parts([part(0)?, part(2)?, part(4)?]))
}

/// The six column values for `balances`, in the order of [`balances_from_row`].
pub(crate) fn balance_values(balances: &Balances) -> [i64; 6] {
    let [food, meal, cash] = Category::ALL.map(|c| balances.get(c));
    [
        food.available.cents(),
        food.held.cents(),
        meal.available.cents(),
        meal.held.cents(),
        cash.available.cents(),
        cash.held.cents(),
    ]
}

/// An error for a stored value that does not parse: the database was changed by hand or by
/// a newer version.
pub(crate) fn corrupt(what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::InvalidParameterName(format!("corrupt {what} in the database: {value:?}"))
}

/// A category from its stored name.
pub(crate) fn category_from_text(text: &str) -> rusqlite::Result<Category> {
    text.parse().map_err(|_| corrupt("category", text))
}

/// An account id from its stored text; system accounts (`@name`) included.
pub(crate) fn account_from_text(text: &str) -> rusqlite::Result<AccountId> {
    match text.strip_prefix('@') {
        Some(name) => Ok(AccountId::system(name)),
        None => AccountId::parse(text).map_err(|_| corrupt("account id", text)),
    }
}

/// The merchant table as stored, sorted by pattern text.
pub(crate) fn load_merchants(
    conn: &Connection,
) -> rusqlite::Result<Vec<(MerchantPattern, Category)>> {
    let mut statement =
        conn.prepare_cached("SELECT pattern, category FROM merchants ORDER BY pattern")?;
    let rows = statement.query_map([], |row| {
        let pattern: String = row.get(0)?;
        let category: String = row.get(1)?;
        Ok((pattern, category))
    })?;
    let mut table = Vec::new();
    for row in rows {
        let (pattern, category) = row?;
        let parsed =
            MerchantPattern::parse(&pattern).map_err(|_| corrupt("merchant pattern", &pattern))?;
        table.push((parsed, category_from_text(&category)?));
    }
    Ok(table)
}
