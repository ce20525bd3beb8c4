//! Webhooks in SQLite ([`WebhookStore`](payd_ports::WebhookStore)): the registered
//! endpoints, one delivery row per (webhook, event), and the attempt log (migration
//! `0004_webhooks.sql`). Reads run on the read pool; [`apply`] runs on the writer thread,
//! inside its transaction, for the one `Command::Webhook`.
//!
//! Finding work never scans the outbox: each webhook keeps a cursor (the last event already
//! scheduled for it), so scheduling reads only `events.seq > cursor`; due deliveries come
//! from the partial index `webhook_deliveries_due` over pending rows only.

use std::collections::HashMap;

use payd_domain::{EventKind, ResourceId};
use payd_ports::{
    Attempt, AttemptOutcome, AttemptResult, AttemptView, Delivery, DeliveryStatus, DeliveryView,
    EventView, Leased, NewWebhook, Refusal, WebhookView,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::schema::corrupt;

use payd_ports::webhooks::{ATTEMPTS_PAGE_MAX, LEASE_MAX, SCHEDULE_MAX, WEBHOOKS_MAX};

/// What the store asks of the writer for webhooks (one variant of the writer's `Command`).
pub(crate) enum WebhookCommand {
    Lease {
        now_ms: i64,
        limit: u32,
        lease_ms: i64,
    },
    Record(Attempt),
}

/// The writer's answer to a [`WebhookCommand`].
pub(crate) enum WebhookAnswer {
    Leased(Leased),
    Recorded(bool),
}

// === Row conversions ===

const WEBHOOK_COLUMNS: &str = "id, url, created_at_ms, start_seq";

fn webhook_from_row(row: &Row<'_>) -> rusqlite::Result<WebhookView> {
    let id: String = row.get(0)?;
    Ok(WebhookView {
        id: ResourceId::parse(&id).map_err(|_| corrupt("webhook id", &id))?,
        url: row.get(1)?,
        created_at_ms: row.get(2)?,
        after_seq: row.get(3)?,
    })
}

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<EventView> {
    let kind: String = row.get(1)?;
    Ok(EventView {
        seq: row.get(0)?,
        kind: EventKind::parse(&kind).ok_or_else(|| corrupt("event kind", &kind))?,
        subject: row.get(2)?,
        payload: row.get(3)?,
        created_at_ms: row.get(4)?,
    })
}

fn status_code(value: Option<i64>) -> Option<u16> {
    value.and_then(|code| u16::try_from(code).ok())
}

fn attempt_number(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

// === Reads (read pool) ===

pub(crate) fn webhooks(conn: &Connection) -> rusqlite::Result<Vec<WebhookView>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE deleted_at_ms IS NULL
          ORDER BY created_at_ms, id"
    ))?;
    let rows = statement.query_map([], webhook_from_row)?;
    rows.collect()
}

pub(crate) fn webhook(conn: &Connection, id: &ResourceId) -> rusqlite::Result<Option<WebhookView>> {
    conn.prepare_cached(&format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?1 AND deleted_at_ms IS NULL"
    ))?
    .query_row([id.as_str()], webhook_from_row)
    .optional()
}

pub(crate) fn attempts(
    conn: &Connection,
    webhook: &ResourceId,
    limit: u32,
) -> rusqlite::Result<Vec<AttemptView>> {
    let mut statement = conn.prepare_cached(
        "SELECT event_seq, attempt, at_ms, duration_ms, http_status, error, result
           FROM webhook_attempts WHERE webhook = ?1 ORDER BY seq DESC LIMIT ?2",
    )?;
    let rows = statement.query_map(
        params![webhook.as_str(), limit.clamp(1, ATTEMPTS_PAGE_MAX)],
        |row| {
            let result: String = row.get(6)?;
            Ok(AttemptView {
                event_seq: row.get(0)?,
                attempt: attempt_number(row.get(1)?),
                at_ms: row.get(2)?,
                duration_ms: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
                status: status_code(row.get(4)?),
                error: row.get(5)?,
                result: AttemptResult::parse(&result)
                    .ok_or_else(|| corrupt("attempt result", &result))?,
            })
        },
    )?;
    rows.collect()
}

pub(crate) fn delivery(
    conn: &Connection,
    webhook: &ResourceId,
    event_seq: i64,
) -> rusqlite::Result<Option<DeliveryView>> {
    conn.prepare_cached(
        "SELECT event_seq, status, attempts, next_attempt_ms, last_status, last_error,
                scheduled_at_ms, delivered_at_ms
           FROM webhook_deliveries WHERE webhook = ?1 AND event_seq = ?2",
    )?
    .query_row(params![webhook.as_str(), event_seq], |row| {
        let status: String = row.get(1)?;
        Ok(DeliveryView {
            event_seq: row.get(0)?,
            status: DeliveryStatus::parse(&status)
                .ok_or_else(|| corrupt("delivery status", &status))?,
            attempts: attempt_number(row.get(2)?),
            next_attempt_ms: row.get(3)?,
            last_status: status_code(row.get(4)?),
            last_error: row.get(5)?,
            scheduled_at_ms: row.get(6)?,
            delivered_at_ms: row.get(7)?,
        })
    })
    .optional()
}

/// The earliest due time among pending deliveries.
fn next_due(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(
        "SELECT MIN(next_attempt_ms) FROM webhook_deliveries WHERE status = 'pending'",
    )?
    .query_row([], |row| row.get(0))
}

/// The newest event (0 if none).
fn newest_event(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM events")?
        .query_row([], |row| row.get(0))
}

/// Whether a lease at `now_ms` would find work, without the writer: a live webhook behind
/// the outbox, or a pending delivery due. When there is none, also the next due time.
/// Lets an idle deliverer poll on a read connection.
pub(crate) fn idle(conn: &Connection, now_ms: i64) -> rusqlite::Result<Option<Option<i64>>> {
    let newest = newest_event(conn)?;
    let behind: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM webhooks WHERE deleted_at_ms IS NULL AND cursor < ?1)",
        )?
        .query_row([newest], |row| row.get(0))?;
    if behind {
        return Ok(None);
    }
    let due = next_due(conn)?;
    Ok(match due {
        Some(at) if at <= now_ms => None,
        _ => Some(due),
    })
}

// === Writes (writer thread, inside its transaction) ===

/// Applies one command.
pub(crate) fn apply(
    conn: &Connection,
    command: &WebhookCommand,
    now_ms: i64,
) -> rusqlite::Result<WebhookAnswer> {
    Ok(match command {
        WebhookCommand::Lease {
            now_ms: at_ms,
            limit,
            lease_ms,
        } => WebhookAnswer::Leased(lease(conn, *at_ms, *limit, *lease_ms)?),
        WebhookCommand::Record(attempt) => WebhookAnswer::Recorded(record(conn, attempt, now_ms)?),
    })
}

pub(crate) fn create(
    conn: &Connection,
    webhook: &NewWebhook,
    now_ms: i64,
) -> rusqlite::Result<Result<WebhookView, Refusal>> {
    let taken = conn
        .prepare_cached("SELECT 1 FROM webhooks WHERE id = ?1")?
        .query_row([webhook.id.as_str()], |_| Ok(()))
        .optional()?
        .is_some();
    if taken {
        return Ok(Err(Refusal::ResourceExists));
    }
    let live: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM webhooks WHERE deleted_at_ms IS NULL")?
        .query_row([], |row| row.get(0))?;
    if live >= WEBHOOKS_MAX {
        return Ok(Err(Refusal::Invalid(format!(
            "at most {WEBHOOKS_MAX} webhooks can be registered; delete one first"
        ))));
    }
    let start = newest_event(conn)?;
    conn.prepare_cached(
        "INSERT INTO webhooks (id, url, secret, start_seq, cursor, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
    )?
    .execute(params![
        webhook.id.as_str(),
        webhook.url,
        webhook.secret,
        start,
        now_ms
    ])?;
    Ok(Ok(WebhookView {
        id: webhook.id.clone(),
        url: webhook.url.clone(),
        created_at_ms: now_ms,
        after_seq: start,
    }))
}

pub(crate) fn delete(conn: &Connection, id: &ResourceId, now_ms: i64) -> rusqlite::Result<bool> {
    let deleted = conn
        .prepare_cached(
            "UPDATE webhooks SET deleted_at_ms = ?2 WHERE id = ?1 AND deleted_at_ms IS NULL",
        )?
        .execute(params![id.as_str(), now_ms])?;
    if deleted == 0 {
        return Ok(false);
    }
    conn.prepare_cached(
        "UPDATE webhook_deliveries SET status = 'cancelled', next_attempt_ms = NULL,
                updated_at_ms = ?2
          WHERE webhook = ?1 AND status = 'pending'",
    )?
    .execute(params![id.as_str(), now_ms])?;
    Ok(true)
}

/// Schedules events past each live webhook's cursor (at most [`SCHEDULE_MAX`] in all);
/// whether some were left for the next pass.
fn schedule(conn: &Connection, now_ms: i64) -> rusqlite::Result<bool> {
    let newest = newest_event(conn)?;
    let behind: Vec<(String, i64)> = {
        let mut statement = conn.prepare_cached(
            "SELECT id, cursor FROM webhooks WHERE deleted_at_ms IS NULL AND cursor < ?1
              ORDER BY created_at_ms, id",
        )?;
        let rows = statement.query_map([newest], |row| Ok((row.get(0)?, row.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut budget = SCHEDULE_MAX;
    for (webhook, cursor) in behind {
        if budget == 0 {
            return Ok(true);
        }
        let upto: i64 = conn
            .prepare_cached(
                "SELECT COALESCE(MAX(seq), ?1) FROM
                   (SELECT seq FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2)",
            )?
            .query_row(params![cursor, budget], |row| row.get(0))?;
        let scheduled = conn
            .prepare_cached(
                "INSERT INTO webhook_deliveries
                        (webhook, event_seq, status, attempts, next_attempt_ms,
                         scheduled_at_ms, updated_at_ms)
                 SELECT ?1, seq, 'pending', 0, ?4, ?4, ?4 FROM events
                  WHERE seq > ?2 AND seq <= ?3",
            )?
            .execute(params![webhook, cursor, upto, now_ms])?;
        conn.prepare_cached("UPDATE webhooks SET cursor = ?2 WHERE id = ?1")?
            .execute(params![webhook, upto])?;
        budget = budget.saturating_sub(u32::try_from(scheduled).unwrap_or(u32::MAX));
        if upto < newest && budget == 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

fn lease(conn: &Connection, now_ms: i64, limit: u32, lease_ms: i64) -> rusqlite::Result<Leased> {
    let mut more = schedule(conn, now_ms)?;
    let limit = limit.min(LEASE_MAX);
    let mut deliveries = Vec::new();
    if limit > 0 {
        let due: Vec<(String, i64, i64, i64)> = {
            let mut statement = conn.prepare_cached(
                "SELECT webhook, event_seq, attempts, scheduled_at_ms FROM webhook_deliveries
                  WHERE status = 'pending' AND next_attempt_ms <= ?1
                  ORDER BY next_attempt_ms LIMIT ?2",
            )?;
            let rows = statement.query_map(params![now_ms, limit], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        more |= due.len() == limit as usize;
        let mut endpoints: HashMap<String, (String, String)> = HashMap::new();
        for (webhook, event_seq, attempts, scheduled_at_ms) in due {
            let (url, secret) = match endpoints.get(&webhook) {
                Some(endpoint) => endpoint.clone(),
                None => {
                    let endpoint: (String, String) = conn
                        .prepare_cached("SELECT url, secret FROM webhooks WHERE id = ?1")?
                        .query_row([&webhook], |row| Ok((row.get(0)?, row.get(1)?)))?;
                    endpoints.insert(webhook.clone(), endpoint.clone());
                    endpoint
                }
            };
            let event = conn
                .prepare_cached(
                    "SELECT seq, kind, subject, payload, created_at_ms FROM events WHERE seq = ?1",
                )?
                .query_row([event_seq], event_from_row)?;
            conn.prepare_cached(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_ms = ?3,
                        updated_at_ms = ?4
                  WHERE webhook = ?1 AND event_seq = ?2",
            )?
            .execute(params![
                webhook,
                event_seq,
                now_ms.saturating_add(lease_ms.max(0)),
                now_ms
            ])?;
            deliveries.push(Delivery {
                webhook: ResourceId::parse(&webhook)
                    .map_err(|_| corrupt("webhook id", &webhook))?,
                url,
                secret,
                event,
                attempt: attempt_number(attempts.saturating_add(1)),
                scheduled_at_ms,
            });
        }
    }
    Ok(Leased {
        deliveries,
        more,
        next_due_ms: next_due(conn)?,
    })
}

fn record(conn: &Connection, attempt: &Attempt, now_ms: i64) -> rusqlite::Result<bool> {
    let outcome = &attempt.outcome;
    let (result, status, error) = (outcome.result(), outcome.status(), outcome.error());
    let duration_ms = i64::try_from(attempt.duration_ms).unwrap_or(i64::MAX);
    conn.prepare_cached(
        "INSERT INTO webhook_attempts
                (webhook, event_seq, attempt, at_ms, duration_ms, http_status, error, result)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        attempt.webhook.as_str(),
        attempt.event_seq,
        attempt.attempt.max(1),
        attempt.at_ms,
        duration_ms,
        status,
        error,
        result.as_str()
    ])?;
    let key = params![
        attempt.webhook.as_str(),
        attempt.event_seq,
        attempt.attempt,
        now_ms,
        status,
        error
    ];
    let updated = match &attempt.outcome {
        AttemptOutcome::Delivered { .. } => conn
            .prepare_cached(
                "UPDATE webhook_deliveries SET status = 'delivered', next_attempt_ms = NULL,
                        last_status = ?5, last_error = ?6, delivered_at_ms = ?4,
                        updated_at_ms = ?4
                  WHERE webhook = ?1 AND event_seq = ?2 AND attempts = ?3
                    AND status = 'pending'",
            )?
            .execute(key)?,
        AttemptOutcome::Failed {
            retry_at_ms: Some(at),
            ..
        } => conn
            .prepare_cached(
                "UPDATE webhook_deliveries SET next_attempt_ms = ?7,
                        last_status = ?5, last_error = ?6, updated_at_ms = ?4
                  WHERE webhook = ?1 AND event_seq = ?2 AND attempts = ?3
                    AND status = 'pending'",
            )?
            .execute(params![
                attempt.webhook.as_str(),
                attempt.event_seq,
                attempt.attempt,
                now_ms,
                status,
                error,
                at
            ])?,
        AttemptOutcome::Failed {
            retry_at_ms: None, ..
        } => conn
            .prepare_cached(
                "UPDATE webhook_deliveries SET status = 'failed', next_attempt_ms = NULL,
                        last_status = ?5, last_error = ?6, updated_at_ms = ?4
                  WHERE webhook = ?1 AND event_seq = ?2 AND attempts = ?3
                    AND status = 'pending'",
            )?
            .execute(key)?,
    };
    Ok(updated == 1)
}
