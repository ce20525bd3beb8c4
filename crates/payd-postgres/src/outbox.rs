//! The outbox ([`payd_ports::OutboxStore`]): rows written by the intake's commit (see
//! `tx::flush`), taken by any number of relays (`FOR UPDATE SKIP LOCKED`: two relays never
//! take the same row), deleted in the transaction that took them, committed only after the
//! broker confirmed them. A relay that dies mid-publish rolls back: its rows are taken
//! again (and may reach the broker twice; consumers are idempotent).

use payd_ports::{OutboxBacklog, OutboxMessage, Publisher, RelayError};
use tokio_postgres::GenericClient;

use crate::schema::RowResult;

/// Publishes and deletes up to `limit` of the oldest free rows, in one transaction.
pub(crate) async fn relay(
    client: &mut deadpool_postgres::Object,
    limit: u32,
    publisher: &dyn Publisher,
) -> Result<usize, RelayError> {
    let failed = |error: tokio_postgres::Error| -> RelayError {
        crate::failure("relaying the outbox", error).into()
    };
    let tx = client.transaction().await.map_err(failed)?;
    let rows = tx
        .query(
            "DELETE FROM outbox WHERE id IN (
                 SELECT id FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING id, queue, body, created_ms",
            &[&i64::from(limit)],
        )
        .await
        .map_err(failed)?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut messages: Vec<OutboxMessage> = rows
        .iter()
        .map(|row| OutboxMessage {
            id: row.get(0),
            queue: row.get(1),
            body: row.get(2),
            created_ms: row.get(3),
        })
        .collect();
    // RETURNING keeps no order; the queue should see the outbox's.
    messages.sort_by_key(|m| m.id);
    // On an error the transaction is dropped, i.e. rolled back: the rows stay.
    publisher.publish(&messages).await?;
    tx.commit().await.map_err(failed)?;
    Ok(messages.len())
}

pub(crate) async fn backlog(client: &impl GenericClient) -> RowResult<OutboxBacklog> {
    let row = client
        .query_one("SELECT COUNT(*), MIN(created_ms) FROM outbox", &[])
        .await?;
    let pending: i64 = row.get(0);
    Ok(OutboxBacklog {
        pending: u64::try_from(pending).unwrap_or(0),
        oldest_ms: row.get(1),
    })
}
