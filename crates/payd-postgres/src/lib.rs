//! payd's shared store: [`PgStore`], every store port ([`payd_ports::Store`]) on PostgreSQL,
//! for any number of payd processes on one database. The use cases are the command
//! layer's (`payd-ledger`), exactly as on the embedded store; this crate adds SQL, locking
//! and batching.
//!
//! # Layout
//! - [`config`]: [`PgConfig`] (URL, pool, statement timeout, writers, instance id).
//! - `schema`: the embedded migrations (`migrations/*.sql`), applied under an advisory lock
//!   ([`migrate`]), and the row <-> domain conversions.
//! - `writer`: the writer tasks: commands in batches, one transaction per batch, retried
//!   whole after a lock conflict (a deadlock, a serialization failure, a key another
//!   process just took), never answered as a failure for it.
//! - `tx`: `PgTx`, the command layer's transaction: one pipelined prefetch that locks every
//!   row the batch names in one global order, the changes kept in memory, one bulk flush.
//! - `reads`: the ports' reads, on pooled connections.
//! - `webhooks`: registration (in a writer's transaction), and scheduling, leasing and
//!   recording deliveries (`SKIP LOCKED`, any number of deliverers).
//! - [`in_flight`]: [`PgInFlight`], requests in flight held as rows, across processes.
//! - `outbox`: the transactional outbox's relay side (publish, then delete, in one
//!   transaction; `SKIP LOCKED`, any number of relays).
//! - `health`: the processors' shared health (the health poller's lease and its last
//!   report), for one poller per processor across processes.
//! - [`audit`]: `payd audit` on one read-only `REPEATABLE READ` snapshot.
//! - this file: [`PgStore`] (open, readiness, shutdown, the port impls).
//!
//! # Durability
//! An answer is sent after its batch's COMMIT returned, so it is as durable as the server
//! makes a commit: with `synchronous_commit = on` (PostgreSQL's default) it is on disk and
//! survives a crash of the server or the machine; `remote_write` / `remote_apply` add a
//! standby's copy; with `off`, a server crash may lose the last few hundred milliseconds
//! of answered writes (a payd crash loses nothing either way). payd does not change the
//! setting, except for the claims on requests in flight (see [`in_flight`]).

pub mod audit;
pub mod config;
mod health;
pub mod in_flight;
mod outbox;
mod reads;
mod schema;
mod tx;
mod webhooks;
mod writer;

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use payd_domain::gateway::Processor;
use payd_domain::{
    AccountId, AuthorizationRequest, Category, Code, CorrelationId, Fence, MerchantPattern,
    ResourceId, Transfer,
};
use payd_ledger::{Command, Reply};
use payd_ports::{
    AccountView, Attempt, AttemptView, Claim, DeliveryView, DepositReceipt, DepositRequest, Effect,
    EntryPage, EntryQuery, EventView, FencedSettle, HoldView, InFlightKeys, Intake, Leased,
    LedgerError, LedgerStore, Mutation, NewPayment, PaymentRecord, PaymentStore, PaymentSummary,
    Replied, StoreFailure, Sweep, TransferView, Transition, WalletStore, WebhookStore, WebhookView,
};
use payd_ports::{HealthBoard, HealthReading, OutboxBacklog, OutboxStore, Publisher, RelayError};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

pub use config::PgConfig;
pub use in_flight::PgInFlight;
pub use schema::{SYSTEM_SHARDS, latest_version};

use tx::WriterState;
use writer::Writer;

/// How long [`PgStore::open`] waits for an unreachable database before giving up.
const OPEN_PATIENCE: Duration = Duration::from_secs(30);

/// How often the readiness watchdog checks the database.
const READY_INTERVAL: Duration = Duration::from_millis(500);

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Connections of the claims pool (requests in flight).
const CLAIMS_POOL_SIZE: usize = 4;

/// The store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL or the bounds are wrong.
    #[error("invalid PostgreSQL configuration: {0}")]
    Config(String),
    /// The database could not be reached in time.
    #[error("cannot reach PostgreSQL at {url}: {reason}")]
    Unreachable {
        /// The URL, without its password.
        url: String,
        /// The last error.
        reason: String,
    },
    /// A migration failed.
    #[error("applying migrations failed: {0}")]
    Migrate(#[source] tokio_postgres::Error),
}

/// A connection pool to `url`, each connection with these extra server options.
fn connect_pool(url: &str, size: usize, options: &str) -> Result<Pool, OpenError> {
    let mut pg: tokio_postgres::Config = url
        .parse()
        .map_err(|error: tokio_postgres::Error| OpenError::Config(error.to_string()))?;
    let existing = pg.get_options().unwrap_or_default().to_owned();
    pg.options(format!("{existing} {options}").trim());
    pg.connect_timeout(CONNECT_TIMEOUT);
    if pg.get_application_name().is_none() {
        pg.application_name("payd");
    }
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size.max(1))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|error| OpenError::Config(error.to_string()))
}

/// Applies pending migrations to the database at `url`, waiting up to 30 s for it to be
/// reachable; how many were applied. Safe with other processes migrating at once.
pub async fn migrate(url: &str, now_ms: i64) -> Result<usize, OpenError> {
    let pool = connect_pool(url, 1, "")?;
    let started = Instant::now();
    let mut client = loop {
        match pool.get().await {
            Ok(client) => break client,
            Err(error) if started.elapsed() < OPEN_PATIENCE => {
                tracing::warn!(target: "payd_postgres", url = %config::redacted(url), %error, "PostgreSQL is not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => {
                return Err(OpenError::Unreachable {
                    url: config::redacted(url),
                    reason: error.to_string(),
                });
            }
        }
    };
    schema::migrate(&mut client, now_ms)
        .await
        .map_err(OpenError::Migrate)
}

/// The shared store. Cheap to share behind an `Arc`; [`PgStore::shutdown`] stops it.
pub struct PgStore {
    pool: Pool,
    in_flight: PgInFlight,
    /// The writers' queues, the request writers' then the background lane's; `None` once
    /// shutdown has begun.
    writers: Mutex<Option<Vec<mpsc::Sender<Command>>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    watchdog: JoinHandle<()>,
    ready: Arc<AtomicBool>,
    instance: String,
    clock: Arc<dyn payd_ports::Clock>,
    url: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &self.url)
            .field("instance", &self.instance)
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

fn failure(
    what: &'static str,
    error: impl std::error::Error + Send + Sync + 'static,
) -> LedgerError {
    StoreFailure::new(what, error).into()
}

impl PgStore {
    /// Migrates the database (waiting up to 30 s for it), then starts the writers and the
    /// readiness watchdog on the current tokio runtime.
    pub async fn open(config: PgConfig) -> Result<PgStore, OpenError> {
        if config.writers == 0 || config.batch_max == 0 || config.queue_capacity == 0 {
            return Err(OpenError::Config(
                "writers, batch_max and queue_capacity must be at least 1".to_owned(),
            ));
        }
        let applied = migrate(&config.url, config.clock.now_ms()).await?;
        // Every statement is planned for its own keys, never from a cached generic plan:
        // a generic plan made while a table was nearly empty (a new database) is a
        // sequential scan that outlives the table's growth until autovacuum analyzes it,
        // and cost the card benchmark 60% of its throughput; planning each time costs
        // about a tenth of the database's CPU (bench/README.md, PostgreSQL).
        let mut options = String::from("-c plan_cache_mode=force_custom_plan");
        if config.statement_timeout_ms > 0 {
            options.push_str(&format!(
                " -c statement_timeout={}",
                config.statement_timeout_ms
            ));
        }
        let pool = connect_pool(
            &config.url,
            config.pool_size.max(config.writers + 3),
            &options,
        )?;
        let claims = connect_pool(
            &config.url,
            CLAIMS_POOL_SIZE,
            &format!("{options} -c synchronous_commit=off"),
        )?;
        tracing::info!(
            target: "payd_postgres",
            url = %config::redacted(&config.url),
            instance = %config.instance,
            writers = config.writers,
            migrations_applied = applied,
            schema_version = schema::latest_version(),
            "PostgreSQL store opened"
        );
        let ready = Arc::new(AtomicBool::new(true));
        // The request writers, then the background lane's.
        let lanes = config.writers + 1;
        let per_writer = (config.queue_capacity / lanes).max(1);
        let mut senders = Vec::with_capacity(lanes);
        let mut tasks = Vec::with_capacity(lanes);
        for slot in 0..lanes {
            let (sender, receiver) = mpsc::channel(per_writer);
            let writer = Writer {
                pool: pool.clone(),
                state: WriterState::new(
                    config.mcc_map.clone(),
                    i16::try_from(slot).unwrap_or(i16::MAX),
                    config.instance.clone(),
                    config.outbox,
                ),
                clock: config.clock.clone(),
                batch_max: config.batch_max,
                ready: ready.clone(),
                jitter: 0x9e37_79b9_7f4a_7c15 ^ (slot as u64 + 1),
            };
            senders.push(sender);
            tasks.push(tokio::spawn(writer.run(receiver)));
        }
        let watchdog = tokio::spawn(watch_readiness(pool.clone(), ready.clone()));
        Ok(PgStore {
            in_flight: PgInFlight::new(claims, &config.instance, config.clock.clone()),
            pool,
            writers: Mutex::new(Some(senders)),
            tasks: Mutex::new(tasks),
            watchdog,
            ready,
            instance: config.instance,
            clock: config.clock,
            url: config::redacted(&config.url),
        })
    }

    /// The requests-in-flight port of this store (claims held as rows).
    pub fn in_flight(&self) -> Arc<dyn InFlightKeys> {
        Arc::new(self.in_flight.clone())
    }

    /// Stops taking commands, lets the writers commit and answer what is queued, and waits
    /// for them. Idempotent. Afterwards every call answers `Unavailable`.
    pub async fn shutdown(&self) {
        let senders = match self.writers.lock() {
            Ok(mut writers) => writers.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        drop(senders);
        let tasks: Vec<JoinHandle<()>> = match self.tasks.lock() {
            Ok(mut tasks) => tasks.drain(..).collect(),
            Err(poisoned) => poisoned.into_inner().drain(..).collect(),
        };
        for task in tasks {
            if let Err(error) = task.await {
                tracing::error!(target: "payd_postgres", %error, "a writer task failed");
            }
        }
        self.watchdog.abort();
        self.ready.store(false, Ordering::Release);
    }

    /// Queues a command on the writer of `lane` and waits for its answer (given after its
    /// commit).
    async fn submit<T>(
        &self,
        lane: Lane<'_>,
        command: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, LedgerError> {
        let sender = {
            let writers = self
                .writers
                .lock()
                .map_err(|_| LedgerError::unavailable("store lock poisoned"))?;
            let writers = writers
                .as_ref()
                .ok_or_else(|| LedgerError::unavailable("store is shut down"))?;
            let requests = writers.len().saturating_sub(1).max(1);
            let index = match lane {
                Lane::Request(route) => {
                    let mut hasher = std::collections::hash_map::DefaultHasher::new();
                    route.hash(&mut hasher);
                    (hasher.finish() % requests as u64) as usize
                }
                Lane::Background => writers.len() - 1,
            };
            writers[index].clone()
        };
        let (reply, answer) = oneshot::channel();
        let started = Instant::now();
        sender
            .send(command(reply))
            .await
            .map_err(|_| LedgerError::unavailable("store is shutting down"))?;
        let answer = answer
            .await
            .map_err(|_| LedgerError::unavailable("the writer stopped before answering"))?;
        metrics::histogram!("payd_store_write_seconds").record(started.elapsed().as_secs_f64());
        answer
    }

    /// Runs a read on a pooled connection.
    async fn read<T>(
        &self,
        what: &'static str,
        read: impl AsyncFnOnce(&tokio_postgres::Client) -> Result<T, schema::RowError>,
    ) -> Result<T, LedgerError> {
        let client = self
            .pool
            .get()
            .await
            .map_err(|error| failure(what, error))?;
        read(&client).await.map_err(|error| failure(what, error))
    }

    /// A pooled connection for a transaction of its own.
    async fn connection(
        &self,
        what: &'static str,
    ) -> Result<deadpool_postgres::Object, LedgerError> {
        self.pool.get().await.map_err(|error| failure(what, error))
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.watchdog.abort();
    }
}

/// Keeps [`PgStore`]'s readiness: a cheap query every [`READY_INTERVAL`]; the writers also
/// clear it as soon as a batch finds the database unreachable.
async fn watch_readiness(pool: Pool, ready: Arc<AtomicBool>) {
    loop {
        let check = async {
            let client = pool.get().await.ok()?;
            client.query_one("SELECT 1", &[]).await.ok()
        };
        let up = tokio::time::timeout(CONNECT_TIMEOUT, check)
            .await
            .ok()
            .flatten()
            .is_some();
        if up != ready.swap(up, Ordering::AcqRel) {
            if up {
                tracing::info!(target: "payd_postgres", "PostgreSQL is reachable again");
            } else {
                tracing::warn!(target: "payd_postgres", "PostgreSQL is unreachable");
            }
        }
        tokio::time::sleep(READY_INTERVAL).await;
    }
}

/// Which writer a command goes to.
#[derive(Clone, Copy)]
enum Lane<'a> {
    /// A request writer, by the hash of the route (an account where the command has one),
    /// so that one account's commands batch together.
    Request(&'a str),
    /// The writer of the gateway's bookkeeping and of the sweeps, so that requests never
    /// wait behind them. Its commands take the same row locks as the requests', so the
    /// database orders them as it orders two processes.
    Background,
}

/// The writer route of a mutation: its account where it has one, so that one account's
/// commands batch together.
fn mutation_route(mutation: &Mutation) -> &str {
    match mutation {
        Mutation::OpenAccount(account) => account.id.as_str(),
        Mutation::PlaceHold(hold) => hold.account.as_str(),
        Mutation::CaptureHold { id, .. } | Mutation::VoidHold { id } => id.as_str(),
        Mutation::Withdraw(withdrawal) => withdrawal.account.as_str(),
        Mutation::SubmitTransfer(new) => new.transfer.from.as_str(),
        Mutation::PutMerchant { .. } | Mutation::DeleteMerchant { .. } => "merchants",
        Mutation::CreateWebhook(_) | Mutation::DeleteWebhook { .. } => "webhooks",
    }
}

#[async_trait]
impl LedgerStore for PgStore {
    async fn authorize(&self, request: AuthorizationRequest) -> Result<Code, LedgerError> {
        let route = request.account.as_str().to_owned();
        self.submit(Lane::Request(&route), |reply| Command::Authorize {
            request,
            reply,
        })
        .await
    }

    async fn authorize_fenced(
        &self,
        request: AuthorizationRequest,
        fence: Fence,
    ) -> Result<Option<Code>, LedgerError> {
        let route = request.account.as_str().to_owned();
        self.submit(Lane::Request(&route), |reply| Command::AuthorizeFenced {
            request,
            fence,
            reply,
        })
        .await
    }

    async fn deposit(&self, deposit: DepositRequest) -> Result<DepositReceipt, LedgerError> {
        let route = deposit.account.as_str().to_owned();
        self.submit(Lane::Request(&route), |reply| Command::Deposit {
            deposit,
            reply,
        })
        .await
    }

    async fn account(&self, id: &AccountId) -> Result<Option<AccountView>, LedgerError> {
        self.read("reading an account", async |client| {
            reads::account(client, id).await
        })
        .await
    }

    async fn entries(&self, id: &AccountId, query: EntryQuery) -> Result<EntryPage, LedgerError> {
        self.read("reading entries", async |client| {
            reads::entries(client, id, query).await
        })
        .await?
        .map_err(LedgerError::from)
    }

    async fn merchants(&self) -> Result<Vec<(MerchantPattern, Category)>, LedgerError> {
        self.read("reading merchants", async |client| {
            reads::merchants(client).await
        })
        .await
    }

    fn is_ready(&self) -> bool {
        let accepting = self
            .writers
            .lock()
            .map(|writers| writers.is_some())
            .unwrap_or(false);
        accepting && self.ready.load(Ordering::Acquire)
    }
}

#[async_trait]
impl HealthBoard for PgStore {
    async fn lead(
        &self,
        processor: Processor,
        instance: &str,
        lease_ms: i64,
    ) -> Result<bool, LedgerError> {
        self.read("taking the health lease", async |client| {
            health::lead(client, processor, instance, lease_ms).await
        })
        .await
    }

    async fn publish(
        &self,
        processor: Processor,
        instance: &str,
        reading: HealthReading,
    ) -> Result<(), LedgerError> {
        self.read("publishing a health report", async |client| {
            health::publish(client, processor, instance, reading).await
        })
        .await
    }

    async fn latest(&self, processor: Processor) -> Result<Option<HealthReading>, LedgerError> {
        self.read("reading the health board", async |client| {
            health::latest(client, processor).await
        })
        .await
    }
}

#[async_trait]
impl PaymentStore for PgStore {
    async fn accept_payment(&self, payment: NewPayment) -> Result<Intake, LedgerError> {
        let route = match &payment.payer {
            Some(payer) => payer.account.as_str().to_owned(),
            None => payment.id.as_str().to_owned(),
        };
        self.submit(Lane::Request(&route), |reply| Command::AcceptPayment {
            payment,
            reply,
        })
        .await
    }

    async fn payment(&self, id: &CorrelationId) -> Result<Option<PaymentRecord>, LedgerError> {
        self.read("reading a payment", async |client| {
            reads::payment(client, id).await
        })
        .await
    }

    async fn payments_summary(
        &self,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<PaymentSummary, LedgerError> {
        self.read("reading the summary", async |client| {
            reads::summary(client, from_ms, to_ms).await
        })
        .await
    }

    async fn purge_payments(&self) -> Result<u64, LedgerError> {
        self.submit(Lane::Background, |reply| Command::PurgePayments { reply })
            .await
    }

    async fn due_payments(
        &self,
        now_ms: i64,
        fresh_due_ms: i64,
        limit: u32,
    ) -> Result<Vec<PaymentRecord>, LedgerError> {
        self.read("reading due payments", async |client| {
            reads::due_payments(client, now_ms, fresh_due_ms, limit).await
        })
        .await
    }

    async fn payments_by_id(
        &self,
        ids: &[CorrelationId],
    ) -> Result<Vec<PaymentRecord>, LedgerError> {
        self.read("reading payments", async |client| {
            reads::payments_by_id(client, ids).await
        })
        .await
    }

    async fn orphaned_payments(&self, limit: u32) -> Result<Vec<PaymentRecord>, LedgerError> {
        // Only this instance's: a lease of another instance may be a live process's.
        self.read("reading orphaned payments", async |client| {
            reads::leased_by(client, &self.instance, limit).await
        })
        .await
    }

    async fn pending_payments(&self) -> Result<u64, LedgerError> {
        self.read("counting the backlog", async |client| {
            reads::pending_payments(client).await
        })
        .await
    }

    async fn apply_transitions(
        &self,
        transitions: Vec<Transition>,
    ) -> Result<Vec<bool>, LedgerError> {
        self.submit(Lane::Background, |reply| Command::Transitions {
            transitions,
            reply,
        })
        .await
    }
}

#[async_trait]
impl OutboxStore for PgStore {
    async fn relay_outbox(
        &self,
        limit: u32,
        publisher: &dyn Publisher,
    ) -> Result<usize, RelayError> {
        let mut client = self.connection("relaying the outbox").await?;
        outbox::relay(&mut client, limit, publisher).await
    }

    async fn outbox_backlog(&self) -> Result<OutboxBacklog, LedgerError> {
        self.read("reading the outbox", async |client| {
            outbox::backlog(client).await
        })
        .await
    }
}

#[async_trait]
impl WalletStore for PgStore {
    async fn execute(
        &self,
        mutation: Mutation,
        claim: Option<Claim>,
    ) -> Result<Replied<Effect>, LedgerError> {
        let route = mutation_route(&mutation).to_owned();
        self.submit(Lane::Request(&route), |reply| Command::Execute {
            mutation,
            claim,
            reply,
        })
        .await
    }

    async fn hold(&self, id: &ResourceId) -> Result<Option<HoldView>, LedgerError> {
        self.read("reading a hold", async |client| {
            reads::hold(client, id).await
        })
        .await
    }

    async fn transfer(&self, id: &ResourceId) -> Result<Option<TransferView>, LedgerError> {
        self.read("reading a transfer", async |client| {
            reads::transfer(client, id).await
        })
        .await
    }

    async fn pending_among(&self, ids: &[ResourceId]) -> Result<Vec<ResourceId>, LedgerError> {
        self.read("reading pending transfers", async |client| {
            reads::pending_among(client, ids).await
        })
        .await
    }

    async fn expire_holds(&self, now_ms: i64, limit: u32) -> Result<Sweep, LedgerError> {
        self.submit(Lane::Background, |reply| Command::ExpireHolds {
            now_ms,
            limit,
            reply,
        })
        .await
    }

    async fn settle_transfers(&self, limit: u32) -> Result<Sweep, LedgerError> {
        self.submit(Lane::Background, |reply| Command::SettleTransfers {
            limit,
            reply,
        })
        .await
    }

    async fn pending_turn(&self, id: &ResourceId) -> Result<Option<(Transfer, bool)>, LedgerError> {
        self.read("reading a transfer's turn", async |client| {
            reads::pending_turn(client, id).await
        })
        .await
    }

    async fn settle_fenced(
        &self,
        id: &ResourceId,
        fences: &[Fence],
    ) -> Result<FencedSettle, LedgerError> {
        self.submit(Lane::Background, |reply| Command::SettleFenced {
            id: id.clone(),
            fences: fences.to_vec(),
            reply,
        })
        .await
    }

    async fn pending_transfers(&self) -> Result<u64, LedgerError> {
        self.read("counting pending transfers", async |client| {
            reads::pending_transfers(client).await
        })
        .await
    }

    async fn purge_idempotency(&self, now_ms: i64, limit: u32) -> Result<Sweep, LedgerError> {
        self.submit(Lane::Background, |reply| Command::PurgeIdempotency {
            now_ms,
            limit,
            reply,
        })
        .await
    }

    async fn events(&self, after_seq: i64, limit: u32) -> Result<Vec<EventView>, LedgerError> {
        self.read("reading events", async |client| {
            reads::events(client, after_seq, limit).await
        })
        .await
    }
}

#[async_trait]
impl WebhookStore for PgStore {
    async fn webhooks(&self) -> Result<Vec<WebhookView>, LedgerError> {
        self.read("reading webhooks", async |client| {
            webhooks::webhooks(client).await
        })
        .await
    }

    async fn webhook(&self, id: &ResourceId) -> Result<Option<WebhookView>, LedgerError> {
        self.read("reading a webhook", async |client| {
            webhooks::find(client, id).await
        })
        .await
    }

    async fn lease_deliveries(
        &self,
        now_ms: i64,
        limit: u32,
        lease_ms: i64,
    ) -> Result<Leased, LedgerError> {
        let mut client = self.connection("leasing deliveries").await?;
        // An idle deliverer polls often: plain reads when there is nothing to do.
        let idle = webhooks::idle(&**client, now_ms)
            .await
            .map_err(|f| LedgerError::from(f.into_store_failure()))?;
        if let Some(next_due_ms) = idle {
            return Ok(Leased {
                deliveries: Vec::new(),
                more: false,
                next_due_ms,
            });
        }
        webhooks::lease(&mut client, now_ms, limit, lease_ms)
            .await
            .map_err(|f| f.into_store_failure().into())
    }

    async fn record_attempt(&self, attempt: Attempt) -> Result<bool, LedgerError> {
        let mut client = self.connection("recording an attempt").await?;
        webhooks::record(&mut client, &attempt, self.clock.now_ms())
            .await
            .map_err(|f| f.into_store_failure().into())
    }

    async fn delivery_attempts(
        &self,
        webhook: &ResourceId,
        limit: u32,
    ) -> Result<Vec<AttemptView>, LedgerError> {
        self.read("reading attempts", async |client| {
            webhooks::attempts(client, webhook, limit).await
        })
        .await
    }

    async fn delivery(
        &self,
        webhook: &ResourceId,
        event_seq: i64,
    ) -> Result<Option<DeliveryView>, LedgerError> {
        self.read("reading a delivery", async |client| {
            webhooks::delivery(client, webhook, event_seq).await
        })
        .await
    }
}
