//! Reads, on a pooled connection, outside any writer: each sees every committed write (an
//! acknowledged command is committed before it is answered).

use payd_domain::gateway::Processor;
use payd_domain::{
    AccountId, Amount, Category, CorrelationId, EntryCause, EventKind, ResourceId, Transfer,
};
use payd_ledger::columns::{DUE_PAYMENT_CLASSES, bucket_from_column};
use payd_ports::{
    AccountView, EntryPage, EntryQuery, EntryView, EventView, HoldView, PaymentRecord,
    PaymentSummary, Refusal, TransferView,
};
use tokio_postgres::GenericClient;

use crate::schema::{
    self, BALANCE_COLUMNS, HOLD_COLUMNS, PAYMENT_COLUMNS, RowError, RowResult, TRANSFER_COLUMNS,
    corrupt,
};

/// Largest page of entries.
const ENTRY_PAGE_MAX: u32 = 1_000;

/// An account: a customer's row, or the sum of a system account's rows.
pub(crate) async fn account(
    client: &impl GenericClient,
    id: &AccountId,
) -> RowResult<Option<AccountView>> {
    let rows = client
        .query(
            &format!("SELECT {BALANCE_COLUMNS} FROM accounts WHERE id = $1"),
            &[&id.as_str()],
        )
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut total = [0_i64; 6];
    for row in &rows {
        let part = payd_ledger::columns::balance_columns(&schema::balances(row, 0)?);
        for (sum, value) in total.iter_mut().zip(part) {
            *sum = sum.checked_add(value).ok_or_else(|| {
                corrupt("balance", format!("{id}: the sum of its rows overflows"))
            })?;
        }
    }
    Ok(Some(AccountView {
        id: id.clone(),
        balances: payd_ledger::columns::balances_from_columns(total),
    }))
}

/// A page of an account's entries (all rows of a system account), newest first. Reads one
/// row more than asked to know whether an older page exists.
pub(crate) async fn entries(
    client: &impl GenericClient,
    id: &AccountId,
    query: EntryQuery,
) -> Result<Result<EntryPage, Refusal>, RowError> {
    let nums: Vec<i64> = client
        .query("SELECT num FROM accounts WHERE id = $1", &[&id.as_str()])
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    if nums.is_empty() {
        return Ok(Err(Refusal::AccountNotFound));
    }
    let limit = query.limit.clamp(1, ENTRY_PAGE_MAX);
    let rows = client
        .query(
            "SELECT sequence, category, bucket, amount_cents, cause, reference, created_at_ms
               FROM entries
              WHERE account = ANY($1) AND ($2::bigint IS NULL OR sequence < $2)
              ORDER BY sequence DESC LIMIT $3",
            &[&nums, &query.before_sequence, &(i64::from(limit) + 1)],
        )
        .await?;
    let mut entries = Vec::with_capacity(rows.len());
    for row in &rows {
        let cause: &str = row.try_get(4)?;
        let bucket: i16 = row.try_get(2)?;
        entries.push(EntryView {
            sequence: row.try_get(0)?,
            account: id.clone(),
            category: schema::category(row.try_get(1)?)?,
            bucket: bucket_from_column(bucket.into()),
            amount: Amount::from_cents(row.try_get(3)?),
            cause: EntryCause::parse(cause).ok_or_else(|| corrupt("entry cause", cause))?,
            reference: row.try_get(5)?,
            created_at_ms: row.try_get(6)?,
        });
    }
    Ok(Ok(EntryPage::from_overfetch(entries, limit as usize)))
}

pub(crate) async fn payment(
    client: &impl GenericClient,
    id: &CorrelationId,
) -> RowResult<Option<PaymentRecord>> {
    client
        .query_opt(
            &format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1"),
            &[&id.as_str()],
        )
        .await?
        .as_ref()
        .map(schema::payment)
        .transpose()
}

/// Due payments: bound ones first, then queued, each most overdue first.
pub(crate) async fn due_payments(
    client: &impl GenericClient,
    now_ms: i64,
    fresh_due_ms: i64,
    limit: u32,
) -> RowResult<Vec<PaymentRecord>> {
    let mut records = Vec::new();
    for (class, graced) in DUE_PAYMENT_CLASSES {
        let room = i64::from(limit) - records.len() as i64;
        if room <= 0 {
            break;
        }
        let (grace, params): (&str, &[&(dyn tokio_postgres::types::ToSql + Sync)]) = if graced {
            (
                "AND (attempts > 0 OR due_ms <= $3)",
                &[&now_ms, &room, &fresh_due_ms],
            )
        } else {
            ("", &[&now_ms, &room])
        };
        let rows = client
            .query(
                &format!(
                    "SELECT {PAYMENT_COLUMNS} FROM payments
                      WHERE ({class}) AND due_ms <= $1 {grace} ORDER BY due_ms LIMIT $2"
                ),
                params,
            )
            .await?;
        for row in &rows {
            records.push(schema::payment(row)?);
        }
    }
    Ok(records)
}

pub(crate) async fn payments_by_id(
    client: &impl GenericClient,
    ids: &[CorrelationId],
) -> RowResult<Vec<PaymentRecord>> {
    let ids: Vec<&str> = ids.iter().map(CorrelationId::as_str).collect();
    let rows = client
        .query(
            &format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = ANY($1)"),
            &[&ids],
        )
        .await?;
    rows.iter().map(schema::payment).collect()
}

/// Payments in flight under `owner`'s leases.
pub(crate) async fn leased_by(
    client: &impl GenericClient,
    owner: &str,
    limit: u32,
) -> RowResult<Vec<PaymentRecord>> {
    let rows = client
        .query(
            &format!(
                "SELECT {PAYMENT_COLUMNS} FROM payments
                  WHERE status = 'processing' AND lease_owner = $1 ORDER BY due_ms LIMIT $2"
            ),
            &[&owner, &i64::from(limit)],
        )
        .await?;
    rows.iter().map(schema::payment).collect()
}

pub(crate) async fn pending_payments(client: &impl GenericClient) -> RowResult<u64> {
    let count: i64 = client
        .query_one(
            "SELECT (SELECT COUNT(*) FROM payments WHERE status = 'queued')
                  + (SELECT COUNT(*) FROM payments WHERE status = 'processing' OR status = 'unknown')",
            &[],
        )
        .await?
        .try_get(0)?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Booked totals per processor, as `payd_ledger::summary` plans the window.
pub(crate) async fn summary(
    client: &impl GenericClient,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
) -> RowResult<PaymentSummary> {
    let plan = payd_ledger::summary::plan(from_ms, to_ms);
    let mut summary = PaymentSummary::default();
    let mut rows = Vec::new();
    if let Some((first, last)) = plan.seconds {
        rows.extend(
            client
                .query(
                    "SELECT processor, CAST(SUM(requests) AS BIGINT), CAST(SUM(amount_cents) AS BIGINT)
                       FROM payment_totals WHERE second BETWEEN $1 AND $2 GROUP BY processor",
                    &[&first, &last],
                )
                .await?,
        );
    }
    for (low_ms, high_ms) in plan.edges {
        rows.extend(
            client
                .query(
                    "SELECT processor, COUNT(*), CAST(SUM(amount_cents) AS BIGINT) FROM payments
                      WHERE status = 'booked' AND requested_at_ms BETWEEN $1 AND $2
                      GROUP BY processor",
                    &[&low_ms, &high_ms],
                )
                .await?,
        );
    }
    for row in &rows {
        let processor: &str = row.try_get(0)?;
        let processor: Processor = processor
            .parse()
            .map_err(|_| corrupt("processor", processor))?;
        let requests: i64 = row.try_get(1)?;
        let cents: i64 = row.try_get(2)?;
        payd_ledger::summary::add(
            &mut summary,
            processor,
            u64::try_from(requests).unwrap_or(0),
            Amount::from_cents(cents),
        )
        .ok_or_else(|| corrupt("summary", "amount overflow"))?;
    }
    Ok(summary)
}

pub(crate) async fn hold(
    client: &impl GenericClient,
    id: &ResourceId,
) -> RowResult<Option<HoldView>> {
    client
        .query_opt(
            &format!("SELECT {HOLD_COLUMNS} FROM holds WHERE id = $1"),
            &[&id.as_str()],
        )
        .await?
        .as_ref()
        .map(schema::hold)
        .transpose()
}

pub(crate) async fn transfer(
    client: &impl GenericClient,
    id: &ResourceId,
) -> RowResult<Option<TransferView>> {
    client
        .query_opt(
            &format!("SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = $1"),
            &[&id.as_str()],
        )
        .await?
        .as_ref()
        .map(schema::transfer)
        .transpose()
}

/// Which of `ids` are pending transfers.
pub(crate) async fn pending_among(
    client: &impl GenericClient,
    ids: &[ResourceId],
) -> RowResult<Vec<ResourceId>> {
    let ids: Vec<&str> = ids.iter().map(ResourceId::as_str).collect();
    let rows = client
        .query(
            "SELECT id FROM transfers WHERE id = ANY($1) AND status = 'pending'",
            &[&ids],
        )
        .await?;
    rows.iter()
        .map(|row| Ok(schema::resource_id(row.try_get(0)?)?))
        .collect()
}

/// The pending transfer `id`, and whether no earlier transfer of its accounts is pending.
pub(crate) async fn pending_turn(
    client: &impl GenericClient,
    id: &ResourceId,
) -> RowResult<Option<(Transfer, bool)>> {
    let none: &[i64] = &[];
    let rows = client
        .query(schema::PENDING_TURN.as_str(), &[&id.as_str(), &none])
        .await?;
    rows.first()
        .map(|row| Ok((schema::transfer(row)?.transfer, row.try_get(11)?)))
        .transpose()
}

pub(crate) async fn pending_transfers(client: &impl GenericClient) -> RowResult<u64> {
    let count: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM transfers WHERE status = 'pending'",
            &[],
        )
        .await?
        .try_get(0)?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// An event from `seq, kind, subject, payload, created_at_ms` starting at column `first`.
pub(crate) fn event(row: &tokio_postgres::Row, first: usize) -> RowResult<EventView> {
    let kind: &str = row.try_get(first + 1)?;
    Ok(EventView {
        seq: row.try_get(first)?,
        kind: EventKind::parse(kind).ok_or_else(|| corrupt("event kind", kind))?,
        subject: row.try_get(first + 2)?,
        payload: row.try_get(first + 3)?,
        created_at_ms: row.try_get(first + 4)?,
    })
}

pub(crate) async fn events(
    client: &impl GenericClient,
    after_seq: i64,
    limit: u32,
) -> RowResult<Vec<EventView>> {
    let rows = client
        .query(
            "SELECT seq, kind, subject, payload, created_at_ms FROM events
              WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&after_seq, &i64::from(limit.clamp(1, 1_000))],
        )
        .await?;
    rows.iter().map(|row| event(row, 0)).collect()
}

pub(crate) async fn merchants(
    client: &impl GenericClient,
) -> RowResult<Vec<(payd_domain::MerchantPattern, Category)>> {
    schema::merchants(client).await
}
