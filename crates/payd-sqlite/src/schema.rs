//! Connections, pragmas and the numbered migrations, plus the row <-> domain conversions
//! that both the writer and the readers use.

use std::path::Path;
use std::time::Duration;

use payd_domain::{AccountId, Balances, Category, MerchantPattern, MerchantRules, system_account};
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
    Migration {
        version: 3,
        sql: include_str!("../migrations/0003_wallets.sql"),
        seed: seed_nothing,
    },
    Migration {
        version: 4,
        sql: include_str!("../migrations/0004_webhooks.sql"),
        seed: seed_nothing,
    },
    Migration {
        version: 5,
        sql: include_str!("../migrations/0005_summary_covering.sql"),
        seed: seed_nothing,
    },
    Migration {
        version: 6,
        sql: include_str!("../migrations/0006_lease_owner.sql"),
        seed: seed_nothing,
    },
    Migration {
        version: 7,
        sql: include_str!("../migrations/0007_fences.sql"),
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

/// Database page size, fixed when the file is created (an existing database keeps its own).
///
/// Every commit writes each page it dirtied to the WAL (and fsyncs it in strict mode), and
/// an authorization across 10,000 accounts dirties pages nobody else in its batch touches:
/// its account's row (plus the `client_id` leaf when idempotency keys are random; the
/// journal's per-account index is gone since migration 0003, see there). Measured with `tests/throughput.rs` (10,000 accounts, 64
/// callers, 64 MiB cache, checkpoints every 10,000 pages), bytes written per authorization
/// (WAL + checkpoints) and instructions per authorization (callgrind, relaxed): 4 KiB:
/// 11.4 KiB, 66.7k; 2 KiB: 7.3 KiB, 68.5k; 1 KiB: 4.9 KiB, 73.5k (deeper B-trees, more
/// pages to manage per commit). 2 KiB takes most of the I/O saving for 3% more instructions.
pub(crate) const PAGE_SIZE: i64 = 2048;

/// WAL size at which the writer has the WAL start over (see `writer::Checkpointer`): each
/// rewind pauses the writer for a few milliseconds, and across 10,000 accounts at ~25k
/// authorizations/s the WAL grows by ~150 MB/s, so this sets how often that pause comes.
/// The WAL overshoots it while the checkpointer catches up (about twice, measured).
/// Tried with `bench/transfers.sh` (strict, noisy machine): 256 MiB gave transfer p99 8–11 ms
/// at 18–21k/s, 128 MiB 9–11 ms at 19–22k/s, against 10–12 ms at 21–23k/s here: within the
/// noise, so not adopted.
pub(crate) const WAL_RESTART_BYTES: i64 = 64 << 20;

/// The same bound in frames (one page each).
pub(crate) const WAL_RESTART_FRAMES: i64 = WAL_RESTART_BYTES / PAGE_SIZE;

/// The writer's own automatic checkpoint, a safety net only: it fires if the WAL reaches
/// four times [`WAL_RESTART_BYTES`], i.e. if the background checkpointer is gone.
/// Checkpoints otherwise run on their own thread and never inside a COMMIT.
const WAL_AUTOCHECKPOINT_FRAMES: i64 = 4 * WAL_RESTART_FRAMES;

/// The WAL file's size limit: after the WAL starts over, its first commit truncates a
/// bigger file back to this. It is the safety net's bound, not [`WAL_RESTART_BYTES`],
/// because the WAL overshoots that bound every cycle: truncating the file to it then cost
/// the writer an `ftruncate` of 2-8 ms inside a commit once per cycle (about every second
/// at 20k transfers/s, traced with `perf record -e syscalls:sys_enter_ftruncate`), and the
/// file's regrowth allocated blocks again, which every fsync of the growing WAL waited for.
/// Kept at its high-water mark, the file is overwritten in place.
const WAL_FILE_LIMIT_BYTES: i64 = 4 * WAL_RESTART_BYTES;

/// Page cache of the write connection, in KiB. It was 64 MiB, and that cache was most of
/// the 85.5 MB RSS after `bench/auth.sh` (36 MB with 16 MiB). What the writer rereads is
/// small: the accounts (10,000 ≈ 0.5 MiB), the interior pages of each B-tree and the right
/// edges of the append-only tables; the journal index leaves are hit at random about once
/// per batch, and a miss costs a pread from the operating system's cache. Under callgrind
/// (10,000 accounts, 40,000 authorizations) 16 MiB took no reads from the database file
/// beyond the checkpoints' own. SQLite also scans the whole cache's hash table at the end
/// of every write transaction (`pcache1TruncateUnsafe`), so a bigger cache costs
/// instructions on every commit too.
const WRITER_CACHE_KIB: i64 = 16 * 1024;

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
    // Only takes effect on a new, empty database; before `journal_mode`, which writes.
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
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
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_FRAMES)?;
    conn.pragma_update(None, "journal_size_limit", WAL_FILE_LIMIT_BYTES)?;
    Ok(conn)
}

/// Opens the checkpointer's connection: read-write (a checkpoint writes the database file),
/// with the writer's `synchronous` so that a checkpoint syncs as the writer's own would, and
/// a small page cache (a checkpoint copies frames from the WAL file, not through the cache).
pub(crate) fn open_checkpointer(
    path: &Path,
    durability: Durability,
) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", durability.synchronous_pragma())?;
    conn.pragma_update(None, "cache_size", -256)?;
    // It never writes, so it never needs to checkpoint on its own account.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    Ok(conn)
}

/// Runs a PASSIVE checkpoint (copies what it can without waiting for anyone) and returns
/// (frames in the WAL, frames copied into the database so far); `None` if another
/// connection was checkpointing (SQLite answers busy rather than wait).
pub(crate) fn checkpoint_passive(conn: &Connection) -> rusqlite::Result<Option<(i64, i64)>> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        let busy: i64 = row.get(0)?;
        Ok((busy == 0).then_some((row.get(1)?, row.get(2)?)))
    })
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

/// Balances from six columns starting at `first`, in `payd_ledger::columns` order.
pub(crate) fn balances_from_row(row: &Row<'_>, first: usize) -> rusqlite::Result<Balances> {
    let mut columns = [0_i64; 6];
    for (at, column) in columns.iter_mut().enumerate() {
        *column = row.get(first + at)?;
    }
    Ok(payd_ledger::columns::balances_from_columns(columns))
}

pub(crate) use payd_ledger::columns::balance_columns as balance_values;

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
