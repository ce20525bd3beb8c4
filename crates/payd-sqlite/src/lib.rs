//! payd's embedded store: [`SqliteStore`], every store port ([`payd_ports::Store`]) on
//! SQLite in WAL mode, for one process (a lock file keeps a second one out).
//!
//! # Layout
//! - [`audit`]: `payd audit`, an offline, read-only check of the store's invariants.
//! - [`config`]: [`SqliteConfig`] and [`Durability`] (strict = fsync per group commit,
//!   relaxed = survives a process crash).
//! - `schema`: connections and pragmas, the numbered migrations (`migrations/*.sql`,
//!   embedded), and row <-> domain conversions.
//! - `writer`: the `payd-writer` thread, the single sequencer: it owns the only write
//!   connection, applies queued commands with the command layer (`payd_ledger::apply`, over
//!   `writer::tx::SqliteTx`) in batches, commits each batch once (group commit), then
//!   answers. It keeps the merchant table and a bounded account-balance cache in memory,
//!   both coherent because it is the only writer. Its `payd-checkpoint` thread copies the
//!   WAL into the database on a connection of its own, so checkpoints never run inside a
//!   COMMIT; the writer only rewinds the WAL between batches once it reaches
//!   `schema::WAL_RESTART_BYTES`.
//! - `payments`: the gateway's payments ([`PaymentStore`]): intake, compare-and-set
//!   transitions and per-second booked totals (writer side), the due queue and the summary
//!   (reader side). Migration `0002_payments.sql` holds their tables.
//! - `wallet`: holds, transfers, withdrawals, the outbox ([`WalletStore`]): row
//!   conversions and reads. Migration `0003_wallets.sql` holds their tables and the stored
//!   idempotent responses.
//! - `webhooks`: registered webhooks, one delivery per (webhook, event) scheduled from a
//!   per-webhook cursor into the outbox, leases of due deliveries and the attempt log
//!   ([`WebhookStore`]). Migration `0004_webhooks.sql` holds their tables.
//! - `reader`: a small pool of read-only connections for `account`, `entries` and
//!   `merchants`; reads never touch the write connection.
//! - this file: [`SqliteStore`] (open, shutdown, the port impls: commands go to the
//!   writer, reads to the pool) and [`OpenError`].
//!
//! # Metrics (via the `metrics` facade; the binary installs the recorder)
//! `payd_writer_batch_size` (histogram, commands per commit), `payd_writer_commit_seconds`
//! (histogram, BEGIN to durable COMMIT), `payd_writer_commits_total` (counter),
//! `payd_writer_failed_batches_total` (counter, batches rolled back and retried one by one),
//! `payd_writer_queue_depth` (gauge, commands waiting when a batch starts).

pub mod audit;
pub mod config;
mod lock;
mod payments;
mod reader;
mod ready;
mod schema;
mod wallet;
mod webhooks;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use payd_domain::{
    AccountId, AuthorizationRequest, Category, Code, CorrelationId, Fence, MerchantPattern,
    MerchantRules, ResourceId, Rules, Transfer,
};
use payd_ledger::Command;
use payd_ports::{
    AccountView, Claim, DepositReceipt, DepositRequest, Effect, EntryPage, EntryQuery, EventView,
    FencedSettle, HoldView, Intake, LedgerError, LedgerStore, Mutation, NewPayment, PaymentRecord,
    PaymentStore, PaymentSummary, Replied, Sweep, TransferView, Transition, WalletStore,
};
use payd_ports::{Attempt, AttemptView, DeliveryView, Leased, WebhookStore, WebhookView};
use tokio::sync::{mpsc, oneshot};

pub use config::{DATABASE_FILE, Durability, LOCK_FILE, SqliteConfig, UnknownDurability};

use reader::ReaderPool;
use writer::{Job, Writer};

/// The store could not be opened. The message names the database and the step that failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the SQLite ledger at {}: {step}: {reason}", path.display())]
pub struct OpenError {
    path: PathBuf,
    step: &'static str,
    reason: String,
}

impl OpenError {
    fn new(path: &Path, step: &'static str, reason: impl std::fmt::Display) -> OpenError {
        OpenError {
            path: path.to_owned(),
            step,
            reason: reason.to_string(),
        }
    }

    /// The database file (or data directory) that could not be opened.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The embedded ledger store. Cheap to share behind an `Arc`; [`SqliteStore::shutdown`]
/// (also run on drop) drains and stops the writer.
pub struct SqliteStore {
    /// The queue to the writer; `None` once shutdown has begun.
    queue: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    writer_alive: Arc<AtomicBool>,
    readers: Arc<ReaderPool>,
    path: PathBuf,
    /// The data directory's lock, held until shutdown (or drop).
    lock: Mutex<Option<lock::DirLock>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("ready", &self.is_ready())
            .finish()
    }
}

fn unavailable(reason: &'static str) -> LedgerError {
    LedgerError::unavailable(reason)
}

impl SqliteStore {
    /// Creates the data directory if needed, opens the database, applies pending
    /// migrations, loads the merchant table and starts the writer thread.
    pub fn open(config: SqliteConfig) -> Result<SqliteStore, OpenError> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir)
            .map_err(|e| OpenError::new(dir, "creating the data directory", e))?;
        let lock = lock::DirLock::acquire(&dir.join(LOCK_FILE))
            .map_err(|e| OpenError::new(dir, "locking the data directory", e))?;
        let path = config.database_path();
        let mut conn = schema::open_writer(&path, config.durability)
            .map_err(|e| OpenError::new(&path, "opening the database", e))?;
        let applied = schema::migrate(&mut conn, config.clock.now_ms())
            .map_err(|e| OpenError::new(&path, "applying migrations", e))?;
        let merchants = schema::load_merchants(&conn)
            .map_err(|e| OpenError::new(&path, "loading the merchant table", e))?;
        let checkpointer = schema::open_checkpointer(&path, config.durability)
            .map_err(|e| OpenError::new(&path, "opening the checkpoint connection", e))?;
        let readers = ReaderPool::open(path.clone(), config.readers)
            .map_err(|e| OpenError::new(&path, "opening read connections", e))?;
        tracing::info!(
            target: "payd_sqlite",
            path = %path.display(),
            durability = %config.durability,
            migrations_applied = applied,
            schema_version = schema::latest_version(),
            "ledger opened"
        );

        let rules = Rules {
            mcc: config.mcc_map,
            merchants: MerchantRules::new(merchants),
        };
        let (sender, receiver) = mpsc::channel(config.queue_capacity.max(1));
        let writer_alive = Arc::new(AtomicBool::new(true));
        let alive = Arc::clone(&writer_alive);
        let writer = Writer::new(
            conn,
            checkpointer,
            rules,
            config.batch_max,
            config.clock,
            config.instance,
        );
        let handle = std::thread::Builder::new()
            .name("payd-writer".to_owned())
            .spawn(move || writer.run(receiver, alive))
            .map_err(|e| OpenError::new(&path, "starting the writer thread", e))?;
        Ok(SqliteStore {
            queue: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(handle)),
            writer_alive,
            readers: Arc::new(readers),
            path,
            lock: Mutex::new(Some(lock)),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops taking commands, lets the writer apply, commit and answer everything already
    /// queued, and waits for it to exit. Blocks (call it from a blocking context, or accept
    /// a short block at the end of a program). Idempotent. Afterwards [`is_ready`] is false,
    /// every call answers [`LedgerError::Unavailable`], and the data directory's lock is
    /// released.
    ///
    /// [`is_ready`]: LedgerStore::is_ready
    pub fn shutdown(&self) {
        let sender = match self.queue.lock() {
            Ok(mut queue) => queue.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(sender) = sender {
            // `try_send` and not `blocking_send`: this may run on an async worker thread,
            // where blocking_send panics. The writer drains the queue, so space appears.
            let mut stop = Job::Stop;
            loop {
                match sender.try_send(stop) {
                    Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => break,
                    Err(mpsc::error::TrySendError::Full(back)) => {
                        stop = back;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        }
        let handle = match self.writer.lock() {
            Ok(mut writer) => writer.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::error!(target: "payd_sqlite", "the writer thread panicked");
        }
        self.readers.close();
        // Nothing is written any more: another process may open the directory.
        match self.lock.lock() {
            Ok(mut lock) => lock.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
    }

    /// Queues a command of the command layer and waits for its answer (given only after
    /// its commit).
    async fn submit<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, LedgerError>>) -> Command,
    ) -> Result<T, LedgerError> {
        self.send(|reply| Job::Ledger(command(reply))).await
    }

    /// Queues a job and waits for its answer (given only after its commit).
    async fn send<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, LedgerError>>) -> Job,
    ) -> Result<T, LedgerError> {
        let sender = self
            .queue
            .lock()
            .map_err(|_| unavailable("store lock poisoned"))?
            .clone()
            .ok_or_else(|| unavailable("store is shut down"))?;
        let (reply, answer) = oneshot::channel();
        let started = std::time::Instant::now();
        sender
            .send(job(reply))
            .await
            .map_err(|_| unavailable("store is shutting down"))?;
        drop(sender);
        let answer = answer
            .await
            .map_err(|_| unavailable("the writer stopped before answering"))?;
        // What a caller waits for a write: queueing, its batch's commit, and the wake-up.
        metrics::histogram!("payd_store_write_seconds").record(started.elapsed().as_secs_f64());
        answer
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[async_trait]
impl LedgerStore for SqliteStore {
    async fn authorize(&self, request: AuthorizationRequest) -> Result<Code, LedgerError> {
        self.submit(|reply| Command::Authorize { request, reply })
            .await
    }

    async fn authorize_fenced(
        &self,
        request: AuthorizationRequest,
        fence: Fence,
    ) -> Result<Option<Code>, LedgerError> {
        self.submit(|reply| Command::AuthorizeFenced {
            request,
            fence,
            reply,
        })
        .await
    }

    async fn deposit(&self, deposit: DepositRequest) -> Result<DepositReceipt, LedgerError> {
        self.submit(|reply| Command::Deposit { deposit, reply })
            .await
    }

    async fn account(&self, id: &AccountId) -> Result<Option<AccountView>, LedgerError> {
        // Inline: one primary-key lookup on a warm connection is a few microseconds.
        self.readers.inline(|conn| reader::account(conn, id)).await
    }

    async fn entries(&self, id: &AccountId, query: EntryQuery) -> Result<EntryPage, LedgerError> {
        let id = id.clone();
        self.readers
            .blocking(move |conn| reader::entries(conn, &id, query))
            .await
    }

    async fn merchants(&self) -> Result<Vec<(MerchantPattern, Category)>, LedgerError> {
        self.readers.blocking(reader::merchants).await
    }

    fn is_ready(&self) -> bool {
        let accepting = self
            .queue
            .lock()
            .map(|queue| queue.is_some())
            .unwrap_or(false);
        accepting && self.writer_alive.load(Ordering::Acquire)
    }
}

#[async_trait]
impl PaymentStore for SqliteStore {
    async fn accept_payment(&self, payment: NewPayment) -> Result<Intake, LedgerError> {
        self.submit(|reply| Command::AcceptPayment { payment, reply })
            .await
    }

    async fn payment(&self, id: &CorrelationId) -> Result<Option<PaymentRecord>, LedgerError> {
        // Inline: one primary-key lookup.
        self.readers
            .inline(|conn| payments::payment(conn, id).map_err(reader::sql_error))
            .await
    }

    async fn payments_summary(
        &self,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<PaymentSummary, LedgerError> {
        // Inline: a bounded number of index range reads (see `payments::summary`), and the
        // summary is polled under load, where a hop to the blocking pool costs more.
        self.readers
            .inline(|conn| payments::summary(conn, from_ms, to_ms).map_err(reader::sql_error))
            .await
    }

    async fn purge_payments(&self) -> Result<u64, LedgerError> {
        self.submit(|reply| Command::PurgePayments { reply }).await
    }

    async fn due_payments(
        &self,
        now_ms: i64,
        fresh_due_ms: i64,
        limit: u32,
    ) -> Result<Vec<PaymentRecord>, LedgerError> {
        self.readers
            .blocking(move |conn| {
                payments::due(conn, now_ms, fresh_due_ms, limit).map_err(reader::sql_error)
            })
            .await
    }

    async fn orphaned_payments(&self, limit: u32) -> Result<Vec<PaymentRecord>, LedgerError> {
        // One process owns this store (the lock file): every payment in flight was leased
        // by a run that has ended.
        self.readers
            .blocking(move |conn| payments::in_flight(conn, limit).map_err(reader::sql_error))
            .await
    }

    async fn pending_payments(&self) -> Result<u64, LedgerError> {
        // On the blocking pool: a count over the backlog grows with it (thousands of rows
        // while processors are down) and must not stall an HTTP worker thread.
        self.readers
            .blocking(|conn| payments::pending(conn).map_err(reader::sql_error))
            .await
    }

    async fn apply_transitions(
        &self,
        transitions: Vec<Transition>,
    ) -> Result<Vec<bool>, LedgerError> {
        self.submit(|reply| Command::Transitions { transitions, reply })
            .await
    }
}

#[async_trait]
impl WalletStore for SqliteStore {
    async fn execute(
        &self,
        mutation: Mutation,
        claim: Option<Claim>,
    ) -> Result<Replied<Effect>, LedgerError> {
        self.submit(|reply| Command::Execute {
            mutation,
            claim,
            reply,
        })
        .await
    }

    async fn hold(&self, id: &ResourceId) -> Result<Option<HoldView>, LedgerError> {
        self.readers
            .inline(|conn| wallet::hold(conn, id).map_err(reader::sql_error))
            .await
    }

    async fn transfer(&self, id: &ResourceId) -> Result<Option<TransferView>, LedgerError> {
        self.readers
            .inline(|conn| wallet::transfer(conn, id).map_err(reader::sql_error))
            .await
    }

    async fn expire_holds(&self, now_ms: i64, limit: u32) -> Result<Sweep, LedgerError> {
        self.submit(|reply| Command::ExpireHolds {
            now_ms,
            limit,
            reply,
        })
        .await
    }

    async fn settle_transfers(&self, limit: u32) -> Result<Sweep, LedgerError> {
        self.submit(|reply| Command::SettleTransfers { limit, reply })
            .await
    }

    async fn pending_turn(&self, id: &ResourceId) -> Result<Option<(Transfer, bool)>, LedgerError> {
        self.readers
            .inline(|conn| {
                let turn = wallet::pending_turn(conn, id).map_err(reader::sql_error)?;
                Ok(turn.map(|(_, view, first)| (view.transfer, first)))
            })
            .await
    }

    async fn settle_fenced(
        &self,
        id: &ResourceId,
        fences: &[Fence],
    ) -> Result<FencedSettle, LedgerError> {
        self.submit(|reply| Command::SettleFenced {
            id: id.clone(),
            fences: fences.to_vec(),
            reply,
        })
        .await
    }

    async fn pending_transfers(&self) -> Result<u64, LedgerError> {
        self.readers
            .blocking(|conn| wallet::pending_transfers(conn).map_err(reader::sql_error))
            .await
    }

    async fn purge_idempotency(&self, now_ms: i64, limit: u32) -> Result<Sweep, LedgerError> {
        self.submit(|reply| Command::PurgeIdempotency {
            now_ms,
            limit,
            reply,
        })
        .await
    }

    async fn events(&self, after_seq: i64, limit: u32) -> Result<Vec<EventView>, LedgerError> {
        self.readers
            .blocking(move |conn| wallet::events(conn, after_seq, limit).map_err(reader::sql_error))
            .await
    }
}

impl SqliteStore {
    /// Runs one webhook command on the writer.
    async fn webhook_command(
        &self,
        command: webhooks::WebhookCommand,
    ) -> Result<webhooks::WebhookAnswer, LedgerError> {
        self.send(|reply| Job::Webhook { command, reply }).await
    }
}

fn mismatched_webhook_answer() -> LedgerError {
    unavailable("internal error: mismatched webhook answer")
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn webhooks(&self) -> Result<Vec<WebhookView>, LedgerError> {
        self.readers
            .blocking(|conn| webhooks::webhooks(conn).map_err(reader::sql_error))
            .await
    }

    async fn webhook(&self, id: &ResourceId) -> Result<Option<WebhookView>, LedgerError> {
        self.readers
            .inline(|conn| webhooks::webhook(conn, id).map_err(reader::sql_error))
            .await
    }

    async fn lease_deliveries(
        &self,
        now_ms: i64,
        limit: u32,
        lease_ms: i64,
    ) -> Result<Leased, LedgerError> {
        // An idle deliverer polls often: answer from a read connection when there is
        // nothing to schedule or lease, and leave the writer alone.
        let idle = self
            .readers
            .inline(|conn| webhooks::idle(conn, now_ms).map_err(reader::sql_error))
            .await?;
        if let Some(next_due_ms) = idle {
            return Ok(Leased {
                deliveries: Vec::new(),
                more: false,
                next_due_ms,
            });
        }
        match self
            .webhook_command(webhooks::WebhookCommand::Lease {
                now_ms,
                limit,
                lease_ms,
            })
            .await?
        {
            webhooks::WebhookAnswer::Leased(leased) => Ok(leased),
            _ => Err(mismatched_webhook_answer()),
        }
    }

    async fn record_attempt(&self, attempt: Attempt) -> Result<bool, LedgerError> {
        match self
            .webhook_command(webhooks::WebhookCommand::Record(attempt))
            .await?
        {
            webhooks::WebhookAnswer::Recorded(updated) => Ok(updated),
            _ => Err(mismatched_webhook_answer()),
        }
    }

    async fn delivery_attempts(
        &self,
        webhook: &ResourceId,
        limit: u32,
    ) -> Result<Vec<AttemptView>, LedgerError> {
        let webhook = webhook.clone();
        self.readers
            .blocking(move |conn| {
                webhooks::attempts(conn, &webhook, limit).map_err(reader::sql_error)
            })
            .await
    }

    async fn delivery(
        &self,
        webhook: &ResourceId,
        event_seq: i64,
    ) -> Result<Option<DeliveryView>, LedgerError> {
        self.readers
            .inline(|conn| webhooks::delivery(conn, webhook, event_seq).map_err(reader::sql_error))
            .await
    }
}
