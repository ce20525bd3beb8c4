//! Reads (`account`, `entries`, `merchants`) on a small pool of read-only connections.
//!
//! In WAL mode a reader sees the last commit at the moment its read starts and never blocks
//! the writer, and the writer answers only after its commit: so a read that starts after an
//! acknowledgement sees that write.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use payd_domain::{AccountId, Amount, Category, EntryCause, MerchantPattern};
use payd_ledger::columns::bucket_from_column;
use payd_ports::{
    AccountView, EntryPage, EntryQuery, EntryView, LedgerError, Refusal, StoreFailure,
};
use rusqlite::{Connection, OptionalExtension};
use tokio::sync::Semaphore;

use crate::schema;

/// Largest page of entries.
const ENTRY_PAGE_MAX: u32 = 1000;

/// The read-only connections and a semaphore that bounds how many reads run at once.
pub(crate) struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    closed: AtomicBool,
}

fn unavailable(reason: &'static str) -> LedgerError {
    LedgerError::unavailable(reason)
}

impl ReaderPool {
    /// Opens `size` connections now, so that a bad path fails at open and not at the first
    /// read.
    pub(crate) fn open(path: PathBuf, size: usize) -> rusqlite::Result<ReaderPool> {
        let size = size.max(1);
        let idle = (0..size)
            .map(|_| schema::open_reader(&path))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(ReaderPool {
            path,
            idle: Mutex::new(idle),
            permits: Arc::new(Semaphore::new(size)),
            closed: AtomicBool::new(false),
        })
    }

    /// Closes every idle connection; later reads are `Unavailable`. Connections in use are
    /// closed when they come back.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.permits.close();
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }

    fn checkout(&self) -> Result<Connection, LedgerError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(unavailable("store is shut down"));
        }
        let pooled = self
            .idle
            .lock()
            .map_err(|_| unavailable("reader pool poisoned"))?
            .pop();
        match pooled {
            Some(conn) => Ok(conn),
            // Only if a connection was lost to a panic: replace it.
            None => schema::open_reader(&self.path)
                .map_err(|error| StoreFailure::new("opening a read connection", error).into()),
        }
    }

    fn checkin(&self, conn: Connection) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }

    /// Runs `read` on the calling thread. For point reads by primary key: they take a few
    /// microseconds, less than handing the work to the blocking pool and back would.
    pub(crate) async fn inline<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| unavailable("store is shut down"))?;
        let conn = self.checkout()?;
        let result = read(&conn);
        self.checkin(conn);
        result
    }

    /// Runs `read` on tokio's blocking pool. For scans (a page of up to 1000 entries, the
    /// merchant table) that could hold an async worker for too long.
    pub(crate) async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        read: impl FnOnce(&Connection) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| unavailable("store is shut down"))?;
        let pool = Arc::clone(self);
        let outcome = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = pool.checkout()?;
            let result = read(&conn);
            pool.checkin(conn);
            result
        })
        .await;
        outcome.map_err(|error| StoreFailure::new("a read task failed", error))?
    }
}

/// A failed read, keeping SQLite's error.
pub(crate) fn sql_error(error: rusqlite::Error) -> LedgerError {
    StoreFailure::new("sqlite read", error).into()
}

/// One account by id.
pub(crate) fn account(
    conn: &Connection,
    id: &AccountId,
) -> Result<Option<AccountView>, LedgerError> {
    let balances = conn
        .prepare_cached(schema::SELECT_BALANCES)
        .and_then(|mut s| {
            s.query_row([id.as_str()], |row| schema::balances_from_row(row, 0))
                .optional()
        })
        .map_err(sql_error)?;
    Ok(balances.map(|balances| AccountView {
        id: id.clone(),
        balances,
    }))
}

/// A page of an account's entries, newest first. Reads one row more than asked to know
/// whether an older page exists, so the last page says so (`next_before_sequence = None`).
pub(crate) fn entries(
    conn: &Connection,
    id: &AccountId,
    query: EntryQuery,
) -> Result<EntryPage, LedgerError> {
    let limit = query.limit.clamp(1, ENTRY_PAGE_MAX);
    let read = || -> rusqlite::Result<Option<EntryPage>> {
        // One snapshot for the existence check and the page.
        conn.execute_batch("BEGIN")?;
        // The journal refers to accounts by their row number; `last_entry` is the head of
        // the account's entry chain (each entry links to the account's previous one).
        let account: Option<(i64, Option<i64>)> = conn
            .prepare_cached("SELECT num, last_entry FROM accounts WHERE id = ?1")?
            .query_row([id.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        let Some((num, head)) = account else {
            return Ok(None);
        };
        let mut entry = conn.prepare_cached(
            "SELECT sequence, category, amount_cents, cause, reference, created_at_ms, bucket, prev
             FROM entries WHERE sequence = ?1 AND account = ?2",
        )?;
        let mut read_entry = |sequence: i64| {
            entry
                .query_row(rusqlite::params![sequence, num], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, i64>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, String>(4)?,
                        row.get::<_, i64>(5)?,
                        row.get::<_, i64>(6)?,
                        row.get::<_, Option<i64>>(7)?,
                    ))
                })
                .optional()
        };
        // Where the page starts: the head, or the first entry older than the cursor. A
        // cursor this page returned is an entry of this account: one lookup. Any other
        // number is found by walking the chain from the head.
        let mut next = head;
        if let Some(before) = query.before_sequence {
            next = match read_entry(before)? {
                Some(row) => row.7,
                None => {
                    let mut at = head;
                    while let Some(sequence) = at.filter(|sequence| *sequence >= before) {
                        at = read_entry(sequence)?
                            .ok_or_else(|| schema::corrupt("entry chain", &sequence.to_string()))?
                            .7;
                    }
                    at
                }
            };
        }
        let mut entries = Vec::with_capacity(limit as usize + 1);
        while let Some(sequence) = next {
            if entries.len() > limit as usize {
                break;
            }
            let (sequence, category, amount, cause, reference, created_at_ms, bucket, prev) =
                read_entry(sequence)?
                    .ok_or_else(|| schema::corrupt("entry chain", &sequence.to_string()))?;
            next = prev;
            let category: Category = schema::category_from_text(&category)?;
            let cause =
                EntryCause::parse(&cause).ok_or_else(|| schema::corrupt("entry cause", &cause))?;
            entries.push(EntryView {
                sequence,
                account: id.clone(),
                category,
                bucket: bucket_from_column(bucket),
                amount: Amount::from_cents(amount),
                cause,
                reference,
                created_at_ms,
            });
        }
        Ok(Some(EntryPage::from_overfetch(entries, limit as usize)))
    };
    let result = read();
    // Ends the read transaction whatever happened; a failure here only means none was open.
    let _ = conn.execute_batch("COMMIT");
    result
        .map_err(sql_error)?
        .ok_or(Refusal::AccountNotFound.into())
}

/// The merchant table, sorted by pattern text.
pub(crate) fn merchants(
    conn: &Connection,
) -> Result<Vec<(MerchantPattern, Category)>, LedgerError> {
    schema::load_merchants(conn).map_err(sql_error)
}
