//! The gateway's payments in SQLite: intake, compare-and-set transitions, the due queue and
//! the booked summary.
//!
//! Writes run on the writer thread (inside its group-commit transaction, for the command
//! layer's decisions), reads on the read pool; both are plain functions over a
//! `Connection` here. A payment's `PaymentState` is stored in columns (status, processor,
//! due_ms, sent_ms, unknown_since_ms) as `payd_ledger::columns` lays them out, the one
//! mapping every backend uses.

use payd_domain::gateway::Processor;
use payd_domain::gateway::payment::PaymentState;
use payd_domain::{Amount, CorrelationId, ResourceId};
use payd_ports::{NewPayment, PaymentRecord, PaymentSummary, Transition};
use rusqlite::{Connection, OptionalExtension, Row, params};

use payd_ledger::columns::{DUE_PAYMENT_CLASSES, state_columns, state_from_columns};

use crate::schema::corrupt;

/// Rebuilds a state from columns `first..first + 5` of `row` (the order of [`Columns`]).
fn state_from_row(row: &Row<'_>, first: usize) -> rusqlite::Result<PaymentState> {
    let status: String = row.get(first)?;
    let processor: Option<String> = row.get(first + 1)?;
    state_from_columns(
        &status,
        processor.as_deref(),
        row.get(first + 2)?,
        row.get(first + 3)?,
        row.get(first + 4)?,
    )
    .map_err(|what| corrupt("payment", &what))
}

const RECORD_COLUMNS: &str = "id, amount_cents, requested_at_ms, status, processor, due_ms, sent_ms, unknown_since_ms, attempts, version, hold";

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<PaymentRecord> {
    let id: String = row.get(0)?;
    Ok(PaymentRecord {
        id: CorrelationId::parse(&id).map_err(|_| corrupt("payment id", &id))?,
        amount: Amount::from_cents(row.get(1)?),
        requested_at_ms: row.get(2)?,
        state: state_from_row(row, 3)?,
        attempts: row.get(8)?,
        version: u64::try_from(row.get::<_, i64>(9)?)
            .map_err(|_| corrupt("version", "negative"))?,
        hold: row
            .get::<_, Option<String>>(10)?
            .map(|text| ResourceId::parse(&text).map_err(|_| corrupt("payment hold", &text)))
            .transpose()?,
    })
}

// === Writes (writer thread, inside its transaction) ===

/// Stores and queues a payment (`hold`: the pay-in's hold, placed by the caller); `false`
/// if its id exists (nothing changes).
pub(crate) fn insert(
    conn: &Connection,
    payment: &NewPayment,
    hold: Option<&str>,
    now_ms: i64,
) -> rusqlite::Result<bool> {
    let (status, processor, due_ms, sent_ms, unknown_since_ms) =
        state_columns(&PaymentState::new(payment.requested_at_ms));
    let inserted = conn
        .prepare_cached(
            "INSERT INTO payments (id, amount_cents, requested_at_ms, status, processor, due_ms,
                                   sent_ms, unknown_since_ms, created_at_ms, updated_at_ms, hold)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10)
             ON CONFLICT (id) DO NOTHING",
        )?
        .execute(params![
            payment.id.as_str(),
            payment.amount.cents(),
            payment.requested_at_ms,
            status,
            processor,
            due_ms,
            sent_ms,
            unknown_since_ms,
            now_ms,
            hold
        ])?;
    Ok(inserted == 1)
}

/// Stores a transition of a payment still at `expected_version` (and not final); whether
/// it was. `owner` is recorded as the lease's owner when the payment becomes `processing`.
pub(crate) fn update(
    conn: &Connection,
    change: &Transition,
    owner: &str,
    now_ms: i64,
) -> rusqlite::Result<bool> {
    let (status, processor, due_ms, sent_ms, unknown_since_ms) = state_columns(&change.next);
    let owner = matches!(change.next, PaymentState::Processing { .. }).then_some(owner);
    let updated = conn
        .prepare_cached(
            "UPDATE payments
                SET status = ?3, processor = ?4, due_ms = ?5, sent_ms = ?6, unknown_since_ms = ?7,
                    attempts = attempts + ?8, version = version + 1, updated_at_ms = ?9,
                    lease_owner = ?10
              WHERE id = ?1 AND version = ?2 AND status <> 'booked' AND status <> 'failed'",
        )?
        .execute(params![
            change.id.as_str(),
            i64::try_from(change.expected_version).unwrap_or(i64::MAX),
            status,
            processor,
            due_ms,
            sent_ms,
            unknown_since_ms,
            u32::from(change.counts_attempt),
            now_ms,
            owner
        ])?;
    Ok(updated == 1)
}

/// Adds a booked payment to its processor's total for the second of its `requestedAt`.
pub(crate) fn add_booked(
    conn: &Connection,
    processor: Processor,
    requested_at_ms: i64,
    amount: Amount,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO payment_totals (processor, second, requests, amount_cents)
         VALUES (?1, ?2, 1, ?3)
         ON CONFLICT (processor, second)
         DO UPDATE SET requests = requests + 1, amount_cents = amount_cents + excluded.amount_cents",
    )?
    .execute(params![
        processor.as_str(),
        requested_at_ms.div_euclid(1_000),
        amount.cents()
    ])?;
    Ok(())
}

/// Deletes every plain payment and every booked total (test resets); how many payments
/// were deleted. Pay-ins are kept: their holds and journal entries refer to them.
pub(crate) fn purge(conn: &Connection) -> rusqlite::Result<u64> {
    let deleted = conn
        .prepare_cached("DELETE FROM payments WHERE hold IS NULL")?
        .execute([])?;
    conn.prepare_cached("DELETE FROM payment_totals")?
        .execute([])?;
    Ok(deleted as u64)
}

// === Reads (read pool) ===

/// One payment.
pub(crate) fn payment(
    conn: &Connection,
    id: &CorrelationId,
) -> rusqlite::Result<Option<PaymentRecord>> {
    conn.prepare_cached(&format!(
        "SELECT {RECORD_COLUMNS} FROM payments WHERE id = ?1"
    ))?
    .query_row([id.as_str()], record_from_row)
    .optional()
}

/// Every payment in flight (`processing`), at most `limit`: on a store one process owns,
/// all of them are a previous run's.
pub(crate) fn in_flight(conn: &Connection, limit: u32) -> rusqlite::Result<Vec<PaymentRecord>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {RECORD_COLUMNS} FROM payments
          WHERE status = 'processing' ORDER BY due_ms LIMIT ?1"
    ))?;
    let rows = statement.query_map([limit], record_from_row)?;
    rows.collect()
}

/// Due payments: bound ones first, then queued, each most overdue first.
pub(crate) fn due(
    conn: &Connection,
    now_ms: i64,
    fresh_due_ms: i64,
    limit: u32,
) -> rusqlite::Result<Vec<PaymentRecord>> {
    let mut records = Vec::new();
    for (class, graced) in DUE_PAYMENT_CLASSES {
        let room = i64::from(limit) - records.len() as i64;
        if room <= 0 {
            break;
        }
        let (grace, values) = if graced {
            (
                "AND (attempts > 0 OR due_ms <= ?3)",
                vec![now_ms, room, fresh_due_ms],
            )
        } else {
            ("", vec![now_ms, room])
        };
        let mut statement = conn.prepare_cached(&format!(
            "SELECT {RECORD_COLUMNS} FROM payments
              WHERE ({class}) AND due_ms <= ?1 {grace} ORDER BY due_ms LIMIT ?2"
        ))?;
        let rows = statement.query_map(rusqlite::params_from_iter(values), record_from_row)?;
        for row in rows {
            records.push(row?);
        }
    }
    Ok(records)
}

/// How many payments are not final.
pub(crate) fn pending(conn: &Connection) -> rusqlite::Result<u64> {
    let queued: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM payments WHERE status = 'queued'")?
        .query_row([], |row| row.get(0))?;
    let bound: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM payments WHERE status = 'processing' OR status = 'unknown'",
        )?
        .query_row([], |row| row.get(0))?;
    Ok(u64::try_from(queued + bound).unwrap_or(0))
}

/// Booked totals per processor of the payments requested in `[?1, ?2]` (ms), read from the
/// covering index `payments_booked_at` alone (migration 0005 says why).
const BOOKED_BETWEEN: &str = "SELECT processor, COUNT(*), SUM(amount_cents) FROM payments
    WHERE status = 'booked' AND requested_at_ms BETWEEN ?1 AND ?2 GROUP BY processor";

/// Booked totals per processor over `requested_at_ms` in `[from_ms, to_ms]`, read as
/// `payd_ledger::summary` plans it: whole seconds from `payment_totals`, the partial seconds
/// at the edges from the booked payments (through their covering index).
pub(crate) fn summary(
    conn: &Connection,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
) -> rusqlite::Result<PaymentSummary> {
    let plan = payd_ledger::summary::plan(from_ms, to_ms);
    let mut summary = PaymentSummary::default();
    let mut add = |processor: String, requests: i64, cents: i64| -> rusqlite::Result<()> {
        let processor: Processor = processor
            .parse()
            .map_err(|_| corrupt("processor", &processor))?;
        let requests = u64::try_from(requests).unwrap_or(0);
        payd_ledger::summary::add(&mut summary, processor, requests, Amount::from_cents(cents))
            .ok_or_else(|| corrupt("summary", "amount overflow"))
    };
    if let Some((first, last)) = plan.seconds {
        let mut statement = conn.prepare_cached(
            "SELECT processor, SUM(requests), SUM(amount_cents) FROM payment_totals
              WHERE second BETWEEN ?1 AND ?2 GROUP BY processor",
        )?;
        let mut rows = statement.query(params![first, last])?;
        while let Some(row) = rows.next()? {
            add(row.get(0)?, row.get(1)?, row.get(2)?)?;
        }
    }
    for (low_ms, high_ms) in plan.edges {
        let mut statement = conn.prepare_cached(BOOKED_BETWEEN)?;
        let mut rows = statement.query(params![low_ms, high_ms])?;
        while let Some(row) = rows.next()? {
            add(row.get(0)?, row.get(1)?, row.get(2)?)?;
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::{BOOKED_BETWEEN, summary};
    use crate::Durability;
    use crate::schema;

    fn migrated(dir: &tempfile::TempDir) -> Connection {
        let mut conn =
            schema::open_writer(&dir.path().join("payd.db"), Durability::Relaxed).unwrap();
        schema::migrate(&mut conn, 0).unwrap();
        conn
    }

    fn reads_covering_index(conn: &Connection) -> bool {
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {BOOKED_BETWEEN}"))
            .unwrap()
            .query_map([0_i64, 1_000], |row| row.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        plan.iter()
            .any(|step| step.contains("USING COVERING INDEX payments_booked_at"))
    }

    #[test]
    fn the_summary_edges_read_the_covering_index_alone() {
        let dir = tempfile::tempdir().unwrap();
        assert!(reads_covering_index(&migrated(&dir)));
    }

    // A database of version 4 (the index without processor and amount) with booked
    // payments: migration 5 rebuilds the index, and the same summary answers the same.
    #[test]
    fn migration_5_keeps_the_summary_of_an_existing_database() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = migrated(&dir);
        conn.execute_batch(
            "DROP INDEX payments_booked_at;
             CREATE INDEX payments_booked_at ON payments (requested_at_ms)
                 WHERE status = 'booked';
             DELETE FROM schema_migrations WHERE version = 5;
             INSERT INTO payments (id, amount_cents, requested_at_ms, status, processor,
                                   created_at_ms, updated_at_ms) VALUES
                 ('a', 1990, 1100, 'booked', 'default', 0, 0),
                 ('b', 10, 1500, 'booked', 'default', 0, 0),
                 ('c', 700, 1700, 'booked', 'fallback', 0, 0),
                 ('d', 500, 1800, 'queued', NULL, 0, 0),
                 ('e', 300, 2100, 'booked', 'default', 0, 0);",
        )
        .unwrap();
        assert!(!reads_covering_index(&conn));
        // Within one second: read from the payments alone, not from `payment_totals`.
        let before = summary(&conn, Some(1_050), Some(1_950)).unwrap();
        assert_eq!(schema::migrate(&mut conn, 0).unwrap(), 1);
        assert!(reads_covering_index(&conn));
        let after = summary(&conn, Some(1_050), Some(1_950)).unwrap();
        assert_eq!(after, before);
        assert_eq!(
            (after.default.requests, after.default.amount.cents()),
            (2, 2000)
        );
        assert_eq!(
            (after.fallback.requests, after.fallback.amount.cents()),
            (1, 700)
        );
    }
}
