//! Webhooks on PostgreSQL: registration and deletion run inside a writer's transaction (they
//! are wallet mutations); scheduling, leasing and recording deliveries run in transactions
//! of their own, safe for any number of deliverers: a webhook being scheduled and a
//! delivery being leased are locked `FOR UPDATE SKIP LOCKED`, so two deliverers never take
//! the same one, and a recorded attempt is a compare-and-set on the delivery's attempt
//! count, as in the embedded store.

use std::collections::HashMap;

use payd_domain::ResourceId;
use payd_ledger::Failure;
use payd_ports::webhooks::{ATTEMPTS_PAGE_MAX, LEASE_MAX, SCHEDULE_MAX, WEBHOOKS_MAX};
use payd_ports::{
    Attempt, AttemptOutcome, AttemptResult, AttemptView, Delivery, DeliveryStatus, DeliveryView,
    Leased, NewWebhook, Refusal, WebhookView,
};
use tokio_postgres::{GenericClient, Row};

use crate::reads::event;
use crate::schema::{self, RowResult, corrupt};

/// Taken by a registration until its commit, so that two processes registering at once
/// cannot pass the limit of live webhooks together ("paydhook").
const REGISTRATION_LOCK: i64 = 0x7061_7964_686f_6f6b;

const WEBHOOK_COLUMNS: &str = "id, url, created_at_ms, start_seq";

fn webhook(row: &Row) -> RowResult<WebhookView> {
    Ok(WebhookView {
        id: schema::resource_id(row.try_get(0)?)?,
        url: row.try_get(1)?,
        created_at_ms: row.try_get(2)?,
        after_seq: row.try_get(3)?,
    })
}

fn status_code(value: Option<i32>) -> Option<u16> {
    value.and_then(|code| u16::try_from(code).ok())
}

fn rows(error: schema::RowError) -> Failure {
    Failure::store("reading a webhook row", error)
}

/// The newest committed event (0 if none).
async fn newest_event(client: &impl GenericClient) -> Result<i64, tokio_postgres::Error> {
    client
        .query_one("SELECT seq FROM event_head", &[])
        .await?
        .try_get(0)
}

// ---- inside a writer's transaction ---------------------------------------------------

pub(crate) async fn create(
    client: &impl GenericClient,
    webhook: &NewWebhook,
    now_ms: i64,
) -> Result<Result<WebhookView, Refusal>, Failure> {
    client
        .execute("SELECT pg_advisory_xact_lock($1)", &[&REGISTRATION_LOCK])
        .await?;
    let taken = client
        .query_opt(
            "SELECT 1 FROM webhooks WHERE id = $1",
            &[&webhook.id.as_str()],
        )
        .await?
        .is_some();
    if taken {
        return Ok(Err(Refusal::ResourceExists));
    }
    let live: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM webhooks WHERE deleted_at_ms IS NULL",
            &[],
        )
        .await?
        .try_get(0)?;
    if live >= WEBHOOKS_MAX {
        return Ok(Err(Refusal::Invalid(format!(
            "at most {WEBHOOKS_MAX} webhooks can be registered; delete one first"
        ))));
    }
    // Events get their sequence at commit, in order: every event committed after this
    // read has a greater one, so the webhook misses none committed after it registered.
    let start = newest_event(client).await?;
    client
        .execute(
            "INSERT INTO webhooks (id, url, secret, start_seq, cursor, created_at_ms)
             VALUES ($1, $2, $3, $4, $4, $5)",
            &[
                &webhook.id.as_str(),
                &webhook.url,
                &webhook.secret,
                &start,
                &now_ms,
            ],
        )
        .await?;
    Ok(Ok(WebhookView {
        id: webhook.id.clone(),
        url: webhook.url.clone(),
        created_at_ms: now_ms,
        after_seq: start,
    }))
}

pub(crate) async fn delete(
    client: &impl GenericClient,
    id: &ResourceId,
    now_ms: i64,
) -> Result<bool, Failure> {
    let deleted = client
        .execute(
            "UPDATE webhooks SET deleted_at_ms = $2 WHERE id = $1 AND deleted_at_ms IS NULL",
            &[&id.as_str(), &now_ms],
        )
        .await?;
    if deleted == 0 {
        return Ok(false);
    }
    client
        .execute(
            "UPDATE webhook_deliveries SET status = 'cancelled', next_attempt_ms = NULL,
                    updated_at_ms = $2
              WHERE webhook = $1 AND status = 'pending'",
            &[&id.as_str(), &now_ms],
        )
        .await?;
    Ok(true)
}

// ---- deliveries, each in a transaction of its own ------------------------------------

/// Whether a lease at `now_ms` would find work (a live webhook behind the outbox, or a
/// pending delivery due); when not, also the next due time. Lets an idle deliverer poll
/// with plain reads.
pub(crate) async fn idle(
    client: &impl GenericClient,
    now_ms: i64,
) -> Result<Option<Option<i64>>, Failure> {
    let newest = newest_event(client).await?;
    let behind: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM webhooks WHERE deleted_at_ms IS NULL AND cursor < $1)",
            &[&newest],
        )
        .await?
        .try_get(0)?;
    if behind {
        return Ok(None);
    }
    let due = next_due(client).await?;
    Ok(match due {
        Some(at) if at <= now_ms => None,
        _ => Some(due),
    })
}

async fn next_due(client: &impl GenericClient) -> Result<Option<i64>, tokio_postgres::Error> {
    client
        .query_one(
            "SELECT MIN(next_attempt_ms) FROM webhook_deliveries WHERE status = 'pending'",
            &[],
        )
        .await?
        .try_get(0)
}

/// Schedules events past each live webhook's cursor (at most [`SCHEDULE_MAX`] in all);
/// whether some were left. A webhook another deliverer is scheduling is skipped.
async fn schedule(client: &impl GenericClient, now_ms: i64) -> Result<bool, Failure> {
    let newest = newest_event(client).await?;
    let behind = client
        .query(
            "SELECT id, cursor FROM webhooks WHERE deleted_at_ms IS NULL AND cursor < $1
              ORDER BY created_at_ms, id FOR UPDATE SKIP LOCKED",
            &[&newest],
        )
        .await?;
    let mut budget = i64::from(SCHEDULE_MAX);
    for row in &behind {
        if budget == 0 {
            return Ok(true);
        }
        let id: &str = row.try_get(0)?;
        let cursor: i64 = row.try_get(1)?;
        let upto: i64 = client
            .query_one(
                "SELECT COALESCE(MAX(seq), $1) FROM
                   (SELECT seq FROM events WHERE seq > $1 ORDER BY seq LIMIT $2) AS next",
                &[&cursor, &budget],
            )
            .await?
            .try_get(0)?;
        let scheduled = client
            .execute(
                "INSERT INTO webhook_deliveries
                        (webhook, event_seq, status, attempts, next_attempt_ms, scheduled_at_ms,
                         updated_at_ms)
                 SELECT $1, seq, 'pending', 0, $4, $4, $4 FROM events
                  WHERE seq > $2 AND seq <= $3
                 ON CONFLICT (webhook, event_seq) DO NOTHING",
                &[&id, &cursor, &upto, &now_ms],
            )
            .await?;
        client
            .execute(
                "UPDATE webhooks SET cursor = $2 WHERE id = $1",
                &[&id, &upto],
            )
            .await?;
        budget = budget.saturating_sub(i64::try_from(scheduled).unwrap_or(i64::MAX));
        if upto < newest && budget == 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

pub(crate) async fn lease(
    client: &mut deadpool_postgres::Client,
    now_ms: i64,
    limit: u32,
    lease_ms: i64,
) -> Result<Leased, Failure> {
    let tx = client.transaction().await?;
    let mut more = schedule(&*tx, now_ms).await?;
    let limit = limit.min(LEASE_MAX);
    let mut deliveries = Vec::new();
    if limit > 0 {
        let due = tx
            .query(
                "SELECT d.webhook, d.attempts, d.scheduled_at_ms, w.url, w.secret,
                        e.seq, e.kind, e.subject, e.payload, e.created_at_ms
                   FROM webhook_deliveries d
                   JOIN webhooks w ON w.id = d.webhook
                   JOIN events e ON e.seq = d.event_seq
                  WHERE d.status = 'pending' AND d.next_attempt_ms <= $1
                  ORDER BY d.next_attempt_ms LIMIT $2
                  FOR UPDATE OF d SKIP LOCKED",
                &[&now_ms, &i64::from(limit)],
            )
            .await?;
        more |= due.len() == limit as usize;
        let mut webhooks = Vec::with_capacity(due.len());
        let mut seqs = Vec::with_capacity(due.len());
        let mut urls: HashMap<String, (String, String)> = HashMap::new();
        for row in &due {
            let webhook: String = row.try_get(0)?;
            let attempts: i32 = row.try_get(1)?;
            urls.entry(webhook.clone())
                .or_insert((row.try_get(3)?, row.try_get(4)?));
            let event = event(row, 5).map_err(rows)?;
            seqs.push(event.seq);
            let (url, secret) = urls[&webhook].clone();
            deliveries.push(Delivery {
                webhook: schema::resource_id(&webhook).map_err(|e| rows(e.into()))?,
                url,
                secret,
                event,
                attempt: schema::count(attempts.saturating_add(1)),
                scheduled_at_ms: row.try_get(2)?,
            });
            webhooks.push(webhook);
        }
        if !webhooks.is_empty() {
            tx.execute(
                "UPDATE webhook_deliveries AS d
                    SET attempts = d.attempts + 1, next_attempt_ms = $3, updated_at_ms = $4
                   FROM unnest($1::text[], $2::bigint[]) AS l(webhook, seq)
                  WHERE d.webhook = l.webhook AND d.event_seq = l.seq",
                &[
                    &webhooks,
                    &seqs,
                    &now_ms.saturating_add(lease_ms.max(0)),
                    &now_ms,
                ],
            )
            .await?;
        }
    }
    let next_due_ms = next_due(&*tx).await?;
    tx.commit().await?;
    Ok(Leased {
        deliveries,
        more,
        next_due_ms,
    })
}

pub(crate) async fn record(
    client: &mut deadpool_postgres::Client,
    attempt: &Attempt,
    now_ms: i64,
) -> Result<bool, Failure> {
    let outcome = &attempt.outcome;
    let (result, error, retry_at_ms) = (outcome.result(), outcome.error(), outcome.retry_at_ms());
    let status = outcome.status().map(i32::from);
    let number = i32::try_from(attempt.attempt).unwrap_or(i32::MAX);
    let duration_ms = i64::try_from(attempt.duration_ms).unwrap_or(i64::MAX);
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO webhook_attempts
                (webhook, event_seq, attempt, at_ms, duration_ms, http_status, error, result)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &attempt.webhook.as_str(),
            &attempt.event_seq,
            &number.max(1),
            &attempt.at_ms,
            &duration_ms,
            &status,
            &error,
            &result.as_str(),
        ],
    )
    .await?;
    let key: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
        &attempt.webhook.as_str(),
        &attempt.event_seq,
        &number,
        &now_ms,
        &status,
        &error,
    ];
    let updated = match (&attempt.outcome, retry_at_ms) {
        (AttemptOutcome::Delivered { .. }, _) => {
            tx.execute(
                "UPDATE webhook_deliveries SET status = 'delivered', next_attempt_ms = NULL,
                        last_status = $5, last_error = $6, delivered_at_ms = $4,
                        updated_at_ms = $4
                  WHERE webhook = $1 AND event_seq = $2 AND attempts = $3
                    AND status = 'pending'",
                &key,
            )
            .await?
        }
        (AttemptOutcome::Failed { .. }, Some(at)) => {
            tx.execute(
                "UPDATE webhook_deliveries SET next_attempt_ms = $7,
                        last_status = $5, last_error = $6, updated_at_ms = $4
                  WHERE webhook = $1 AND event_seq = $2 AND attempts = $3
                    AND status = 'pending'",
                &[key[0], key[1], key[2], key[3], key[4], key[5], &at],
            )
            .await?
        }
        (AttemptOutcome::Failed { .. }, None) => {
            tx.execute(
                "UPDATE webhook_deliveries SET status = 'failed', next_attempt_ms = NULL,
                        last_status = $5, last_error = $6, updated_at_ms = $4
                  WHERE webhook = $1 AND event_seq = $2 AND attempts = $3
                    AND status = 'pending'",
                &key,
            )
            .await?
        }
    };
    tx.commit().await?;
    Ok(updated == 1)
}

// ---- reads ---------------------------------------------------------------------------

pub(crate) async fn webhooks(client: &impl GenericClient) -> RowResult<Vec<WebhookView>> {
    client
        .query(
            &format!(
                "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE deleted_at_ms IS NULL
                  ORDER BY created_at_ms, id"
            ),
            &[],
        )
        .await?
        .iter()
        .map(webhook)
        .collect()
}

pub(crate) async fn find(
    client: &impl GenericClient,
    id: &ResourceId,
) -> RowResult<Option<WebhookView>> {
    client
        .query_opt(
            &format!(
                "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1 AND deleted_at_ms IS NULL"
            ),
            &[&id.as_str()],
        )
        .await?
        .as_ref()
        .map(webhook)
        .transpose()
}

pub(crate) async fn attempts(
    client: &impl GenericClient,
    webhook: &ResourceId,
    limit: u32,
) -> RowResult<Vec<AttemptView>> {
    let rows = client
        .query(
            "SELECT event_seq, attempt, at_ms, duration_ms, http_status, error, result
               FROM webhook_attempts WHERE webhook = $1 ORDER BY seq DESC LIMIT $2",
            &[
                &webhook.as_str(),
                &i64::from(limit.clamp(1, ATTEMPTS_PAGE_MAX)),
            ],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let result: &str = row.try_get(6)?;
            Ok(AttemptView {
                event_seq: row.try_get(0)?,
                attempt: schema::count(row.try_get(1)?),
                at_ms: row.try_get(2)?,
                duration_ms: u64::try_from(row.try_get::<_, i64>(3)?).unwrap_or(0),
                status: status_code(row.try_get(4)?),
                error: row.try_get(5)?,
                result: AttemptResult::parse(result)
                    .ok_or_else(|| corrupt("attempt result", result))?,
            })
        })
        .collect()
}

pub(crate) async fn delivery(
    client: &impl GenericClient,
    webhook: &ResourceId,
    event_seq: i64,
) -> RowResult<Option<DeliveryView>> {
    let Some(row) = client
        .query_opt(
            "SELECT event_seq, status, attempts, next_attempt_ms, last_status, last_error,
                    scheduled_at_ms, delivered_at_ms
               FROM webhook_deliveries WHERE webhook = $1 AND event_seq = $2",
            &[&webhook.as_str(), &event_seq],
        )
        .await?
    else {
        return Ok(None);
    };
    let status: &str = row.try_get(1)?;
    Ok(Some(DeliveryView {
        event_seq: row.try_get(0)?,
        status: DeliveryStatus::parse(status).ok_or_else(|| corrupt("delivery status", status))?,
        attempts: schema::count(row.try_get(2)?),
        next_attempt_ms: row.try_get(3)?,
        last_status: status_code(row.try_get(4)?),
        last_error: row.try_get(5)?,
        scheduled_at_ms: row.try_get(6)?,
        delivered_at_ms: row.try_get(7)?,
    }))
}
