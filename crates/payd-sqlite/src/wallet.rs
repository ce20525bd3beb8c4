//! Holds, transfers, withdrawals, stored responses and the outbox in SQLite: the row <->
//! domain conversions, the reads (read pool), and the outbox append the writer calls inside
//! its transaction. The decisions are the command layer's (`payd-ledger`).

use payd_domain::{Amount, CorrelationId, EventKind, Hold, HoldStatus, ResourceId, Transfer};
use payd_ports::{EventPayload, EventView, HoldView, TransferView};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::schema::{account_from_text, category_from_text, corrupt};

/// The columns [`hold_from_row`] reads, in order.
pub(crate) const HOLD_COLUMNS: &str = "id, account, category, amount_cents, captured_cents, status, expires_at_ms, payment, created_at_ms, updated_at_ms";

pub(crate) fn hold_from_row(row: &Row<'_>) -> rusqlite::Result<HoldView> {
    let id: String = row.get(0)?;
    let status: String = row.get(5)?;
    let payment: Option<String> = row.get(7)?;
    Ok(HoldView {
        hold: Hold {
            id: ResourceId::parse(&id).map_err(|_| corrupt("hold id", &id))?,
            account: account_from_text(&row.get::<_, String>(1)?)?,
            category: category_from_text(&row.get::<_, String>(2)?)?,
            amount: Amount::from_cents(row.get(3)?),
            captured: Amount::from_cents(row.get(4)?),
            status: HoldStatus::parse(&status).ok_or_else(|| corrupt("hold status", &status))?,
            expires_at_ms: row.get(6)?,
        },
        payment: payment
            .map(|text| CorrelationId::parse(&text).map_err(|_| corrupt("hold payment", &text)))
            .transpose()?,
        created_at_ms: row.get(8)?,
        updated_at_ms: row.get(9)?,
    })
}

/// The columns [`transfer_from_row`] reads, in order.
pub(crate) const TRANSFER_COLUMNS: &str = "id, from_account, to_account, category, amount_cents, description, status, reason, created_at_ms, updated_at_ms";

pub(crate) fn transfer_from_row(row: &Row<'_>) -> rusqlite::Result<TransferView> {
    let id: String = row.get(0)?;
    let status: String = row.get(6)?;
    let reason: Option<String> = row.get(7)?;
    let status = payd_ledger::columns::transfer_status(&status, reason.as_deref())
        .map_err(|what| corrupt("transfer", &what))?;
    Ok(TransferView {
        transfer: Transfer {
            id: ResourceId::parse(&id).map_err(|_| corrupt("transfer id", &id))?,
            from: account_from_text(&row.get::<_, String>(1)?)?,
            to: account_from_text(&row.get::<_, String>(2)?)?,
            category: category_from_text(&row.get::<_, String>(3)?)?,
            amount: Amount::from_cents(row.get(4)?),
        },
        description: row.get(5)?,
        status,
        created_at_ms: row.get(8)?,
        updated_at_ms: row.get(9)?,
    })
}

// === Reads (read pool) ===

pub(crate) fn hold(conn: &Connection, id: &ResourceId) -> rusqlite::Result<Option<HoldView>> {
    conn.prepare_cached(&format!("SELECT {HOLD_COLUMNS} FROM holds WHERE id = ?1"))?
        .query_row([id.as_str()], hold_from_row)
        .optional()
}

pub(crate) fn transfer(
    conn: &Connection,
    id: &ResourceId,
) -> rusqlite::Result<Option<TransferView>> {
    conn.prepare_cached(&format!(
        "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = ?1"
    ))?
    .query_row([id.as_str()], transfer_from_row)
    .optional()
}

/// The pending transfer `id` (with its row number), and whether no earlier transfer of its
/// accounts is pending; `None` if it is not pending or unknown.
pub(crate) fn pending_turn(
    conn: &Connection,
    id: &ResourceId,
) -> rusqlite::Result<Option<(i64, TransferView, bool)>> {
    let pending = conn
        .prepare_cached(&format!(
            "SELECT {TRANSFER_COLUMNS}, seq FROM transfers WHERE id = ?1 AND status = 'pending'"
        ))?
        .query_row([id.as_str()], |row| {
            Ok((row.get(10)?, transfer_from_row(row)?))
        })
        .optional()?;
    let Some((seq, view)) = pending else {
        return Ok(None);
    };
    let earlier = conn
        .prepare_cached(
            "SELECT EXISTS (
                 SELECT 1 FROM transfers WHERE status = 'pending' AND seq < ?1
                    AND from_account IN (?2, ?3)
                 UNION ALL
                 SELECT 1 FROM transfers WHERE status = 'pending' AND seq < ?1
                    AND to_account IN (?2, ?3))",
        )?
        .query_row(
            params![seq, view.transfer.from.as_str(), view.transfer.to.as_str()],
            |row| row.get::<_, bool>(0),
        )?;
    Ok(Some((seq, view, !earlier)))
}

pub(crate) fn pending_transfers(conn: &Connection) -> rusqlite::Result<u64> {
    let count: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM transfers WHERE status = 'pending'")?
        .query_row([], |row| row.get(0))?;
    Ok(u64::try_from(count).unwrap_or(0))
}

pub(crate) fn events(
    conn: &Connection,
    after_seq: i64,
    limit: u32,
) -> rusqlite::Result<Vec<EventView>> {
    let mut statement = conn.prepare_cached(
        "SELECT seq, kind, subject, payload, created_at_ms FROM events
          WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = statement.query_map(params![after_seq, limit.clamp(1, 1_000)], |row| {
        let kind: String = row.get(1)?;
        Ok(EventView {
            seq: row.get(0)?,
            kind: EventKind::parse(&kind).ok_or_else(|| corrupt("event kind", &kind))?,
            subject: row.get(2)?,
            payload: row.get(3)?,
            created_at_ms: row.get(4)?,
        })
    })?;
    rows.collect()
}

// === The outbox (writer thread, inside its transaction) ===

/// Appends one event in the current transaction.
pub(crate) fn append_event(
    conn: &Connection,
    kind: EventKind,
    subject: &str,
    payload: &EventPayload,
    now_ms: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO events (kind, subject, payload, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![kind.as_str(), subject, payload.to_json(), now_ms])?;
    Ok(())
}
