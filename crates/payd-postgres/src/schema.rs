//! The numbered migrations (`migrations/*.sql`, embedded in the binary), applied under an
//! advisory lock so that any number of processes may start at once; and the row <-> domain
//! conversions every query of this crate shares.

use payd_domain::gateway::payment::PaymentState;
use payd_domain::{
    AccountId, Amount, Balances, Category, CorrelationId, Hold, HoldStatus, MerchantPattern,
    MerchantRules, ResourceId, Transfer, system_account,
};
use payd_ledger::columns::{balances_from_columns, state_from_columns, transfer_status};
use payd_ports::{HoldView, PaymentRecord, TransferView};
use tokio_postgres::{Client, GenericClient, Row};

/// The rows of the system account (`@external`): a batch moves the outside world's side of
/// its movements on one of them, the first no other transaction holds, so batches of
/// different processes never wait for each other there. 16 is well above the writers of a
/// few processes; with no contention every batch takes row 0.
pub const SYSTEM_SHARDS: i16 = 16;

/// A migration: its version and its SQL; what it inserts from Rust is in [`seed`].
struct Migration {
    version: i64,
    sql: &'static str,
}

/// Every migration, in order. Append only; never edit one that has shipped.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("../migrations/0001_schema.sql"),
    },
    Migration {
        version: 2,
        sql: include_str!("../migrations/0002_processor_health.sql"),
    },
    Migration {
        version: 3,
        sql: include_str!("../migrations/0003_outbox.sql"),
    },
    Migration {
        version: 4,
        sql: include_str!("../migrations/0004_fences.sql"),
    },
];

/// The newest schema version this build knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// The advisory lock every migrating process takes first ("paydmigr").
const MIGRATION_LOCK: i64 = 0x7061_7964_6d69_6772;

/// Applies every migration not yet recorded in `schema_migrations`, each in its own
/// transaction together with its record, under a session advisory lock: of several
/// processes starting at once, one migrates and the others wait, then find nothing to do.
/// Returns how many this process applied.
pub(crate) async fn migrate(
    client: &mut Client,
    now_ms: i64,
) -> Result<usize, tokio_postgres::Error> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let applied = apply_pending(client, now_ms).await;
    // Released with the session anyway if this fails (the connection is then dropped).
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    let applied = applied?;
    unlocked?;
    Ok(applied)
}

async fn apply_pending(client: &mut Client, now_ms: i64) -> Result<usize, tokio_postgres::Error> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version       BIGINT PRIMARY KEY,
                 applied_at_ms BIGINT NOT NULL
             )",
        )
        .await?;
    let mut applied = 0;
    for migration in MIGRATIONS {
        let tx = client.transaction().await?;
        let done = tx
            .query_opt(
                "SELECT version FROM schema_migrations WHERE version = $1",
                &[&migration.version],
            )
            .await?;
        if done.is_none() {
            tx.batch_execute(migration.sql).await?;
            seed(&tx, migration.version, now_ms).await?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at_ms) VALUES ($1, $2)",
                &[&migration.version, &now_ms],
            )
            .await?;
            applied += 1;
        }
        tx.commit().await?;
    }
    Ok(applied)
}

/// What a migration inserts from Rust: values whose single source is `payd_domain`.
async fn seed(
    client: &impl GenericClient,
    version: i64,
    now_ms: i64,
) -> Result<(), tokio_postgres::Error> {
    if version == 1 {
        for shard in 0..SYSTEM_SHARDS {
            client
                .execute(
                    "INSERT INTO accounts (id, shard, created_at_ms) VALUES ($1, $2, $3)",
                    &[&system_account().as_str(), &shard, &now_ms],
                )
                .await?;
        }
        for (pattern, category) in MerchantRules::default_entries() {
            client
                .execute(
                    "INSERT INTO merchants (pattern, category) VALUES ($1, $2)",
                    &[&pattern.to_string(), &category.as_str()],
                )
                .await?;
        }
    }
    Ok(())
}

/// The schema version of the database (0: none).
pub(crate) async fn version(client: &impl GenericClient) -> Result<i64, tokio_postgres::Error> {
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM information_schema.tables
                             WHERE table_name = 'schema_migrations'
                               AND table_schema = current_schema())",
            &[],
        )
        .await?
        .try_get(0)?;
    if !exists {
        return Ok(0);
    }
    client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .try_get(0)
}

// ---- row conversions -----------------------------------------------------------------

/// A stored value that does not parse: the database was changed by hand or by a newer
/// version.
#[derive(Debug, thiserror::Error)]
#[error("corrupt {what} in the database: {value}")]
pub(crate) struct Corrupt {
    what: &'static str,
    value: String,
}

pub(crate) fn corrupt(what: &'static str, value: impl Into<String>) -> Corrupt {
    Corrupt {
        what,
        value: value.into(),
    }
}

/// Why a row could not be turned into a value.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RowError {
    #[error(transparent)]
    Column(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

pub(crate) type RowResult<T> = Result<T, RowError>;

/// A `u32` from an `INTEGER` column (counts, attempts: never negative).
pub(crate) fn count(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

pub(crate) fn account_id(text: &str) -> Result<AccountId, Corrupt> {
    match text.strip_prefix('@') {
        Some(name) => Ok(AccountId::system(name)),
        None => AccountId::parse(text).map_err(|_| corrupt("account id", text)),
    }
}

pub(crate) fn category(text: &str) -> Result<Category, Corrupt> {
    text.parse().map_err(|_| corrupt("category", text))
}

pub(crate) fn resource_id(text: &str) -> Result<ResourceId, Corrupt> {
    ResourceId::parse(text).map_err(|_| corrupt("resource id", text))
}

pub(crate) fn correlation_id(text: &str) -> Result<CorrelationId, Corrupt> {
    CorrelationId::parse(text).map_err(|_| corrupt("correlation id", text))
}

/// The six balance columns of `accounts`, in table order.
pub(crate) const BALANCE_COLUMNS: &str =
    "food_available, food_held, meal_available, meal_held, cash_available, cash_held";

/// Balances from the six columns starting at `first`.
pub(crate) fn balances(row: &Row, first: usize) -> RowResult<Balances> {
    let mut columns = [0_i64; 6];
    for (at, column) in columns.iter_mut().enumerate() {
        *column = row.try_get(first + at)?;
    }
    Ok(balances_from_columns(columns))
}

/// The columns [`payment`] reads, in order.
pub(crate) const PAYMENT_COLUMNS: &str = "id, amount_cents, requested_at_ms, status, processor, due_ms, sent_ms, unknown_since_ms, attempts, version, hold";

pub(crate) fn payment(row: &Row) -> RowResult<PaymentRecord> {
    let id: &str = row.try_get(0)?;
    let status: &str = row.try_get(3)?;
    let processor: Option<&str> = row.try_get(4)?;
    let state: PaymentState = state_from_columns(
        status,
        processor,
        row.try_get(5)?,
        row.try_get(6)?,
        row.try_get(7)?,
    )
    .map_err(|what| corrupt("payment", what))?;
    let version: i64 = row.try_get(9)?;
    Ok(PaymentRecord {
        id: correlation_id(id)?,
        amount: Amount::from_cents(row.try_get(1)?),
        requested_at_ms: row.try_get(2)?,
        state,
        attempts: count(row.try_get(8)?),
        version: u64::try_from(version).map_err(|_| corrupt("version", version.to_string()))?,
        hold: row
            .try_get::<_, Option<&str>>(10)?
            .map(resource_id)
            .transpose()?,
    })
}

/// The columns [`hold`] reads, in order (then `fingerprint`, where asked for).
pub(crate) const HOLD_COLUMNS: &str = "id, account, category, amount_cents, captured_cents, status, expires_at_ms, payment, created_at_ms, updated_at_ms";

pub(crate) fn hold(row: &Row) -> RowResult<HoldView> {
    let status: &str = row.try_get(5)?;
    Ok(HoldView {
        hold: Hold {
            id: resource_id(row.try_get(0)?)?,
            account: account_id(row.try_get(1)?)?,
            category: category(row.try_get(2)?)?,
            amount: Amount::from_cents(row.try_get(3)?),
            captured: Amount::from_cents(row.try_get(4)?),
            status: HoldStatus::parse(status).ok_or_else(|| corrupt("hold status", status))?,
            expires_at_ms: row.try_get(6)?,
        },
        payment: row
            .try_get::<_, Option<&str>>(7)?
            .map(correlation_id)
            .transpose()?,
        created_at_ms: row.try_get(8)?,
        updated_at_ms: row.try_get(9)?,
    })
}

/// The columns [`transfer`] reads, in order (then `fingerprint` or `seq`, where asked for).
pub(crate) const TRANSFER_COLUMNS: &str = "id, from_account, to_account, category, amount_cents, description, status, reason, created_at_ms, updated_at_ms";

/// The pending transfer `id` (`$1`, alias `t`) with [`TRANSFER_COLUMNS`], `seq`, and whether
/// it is its accounts' oldest pending transfer, leaving out the transfers `$2` (by `seq`:
/// settled in the asking transaction, not yet written). Append `FOR UPDATE OF t SKIP
/// LOCKED` to take it for settling.
pub(crate) static PENDING_TURN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {TRANSFER_COLUMNS}, seq,
                NOT EXISTS (
                    SELECT 1 FROM transfers e
                     WHERE e.status = 'pending' AND e.seq < t.seq AND NOT (e.seq = ANY($2))
                       AND e.from_account IN (t.from_account, t.to_account)
                    UNION ALL
                    SELECT 1 FROM transfers e
                     WHERE e.status = 'pending' AND e.seq < t.seq AND NOT (e.seq = ANY($2))
                       AND e.to_account IN (t.from_account, t.to_account))
           FROM transfers t WHERE t.id = $1 AND t.status = 'pending'"
    )
});

pub(crate) fn transfer(row: &Row) -> RowResult<TransferView> {
    let status: &str = row.try_get(6)?;
    let reason: Option<&str> = row.try_get(7)?;
    Ok(TransferView {
        transfer: Transfer {
            id: resource_id(row.try_get(0)?)?,
            from: account_id(row.try_get(1)?)?,
            to: account_id(row.try_get(2)?)?,
            category: category(row.try_get(3)?)?,
            amount: Amount::from_cents(row.try_get(4)?),
        },
        description: row.try_get(5)?,
        status: transfer_status(status, reason).map_err(|what| corrupt("transfer", what))?,
        created_at_ms: row.try_get(8)?,
        updated_at_ms: row.try_get(9)?,
    })
}

/// The merchant table as stored, sorted by pattern text.
pub(crate) async fn merchants(
    client: &impl GenericClient,
) -> Result<Vec<(MerchantPattern, Category)>, RowError> {
    let rows = client
        .query(
            "SELECT pattern, category FROM merchants ORDER BY pattern",
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let pattern: &str = row.try_get(0)?;
            let parsed = MerchantPattern::parse(pattern)
                .map_err(|_| corrupt("merchant pattern", pattern))?;
            Ok((parsed, category(row.try_get(1)?)?))
        })
        .collect()
}
