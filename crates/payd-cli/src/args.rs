//! The command line: every subcommand's flags (clap; each flag also reads a `PAYD_*`
//! environment variable) and their validation into the settings of the parts they
//! configure. Every check runs before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use payd_domain::MccMap;
use payd_sqlite::{Durability, SqliteConfig};

use crate::store;

/// payd: a payment engine. Card authorization on multi-category balances, with an embedded,
/// durable ledger.
#[derive(Debug, Parser)]
#[command(name = "payd", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    #[command(flatten)]
    pub(crate) log: LogArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the HTTP API and the background engine in one process, on the embedded store
    /// (or on PostgreSQL with --database-url).
    // Boxed: the serve flags are much larger than the other commands' (clippy).
    Serve(Box<ServeArgs>),
    /// Run the HTTP API only, on PostgreSQL (--database-url): stateless, any number of
    /// instances, beside `payd worker`s that do the background work.
    Api(Box<ApiArgs>),
    /// Run the background engine only, on PostgreSQL (--database-url): the gateway's
    /// processor calls and unknown-outcome resolution, transfer settling, hold expiry, the
    /// key purge and webhook deliveries; any number of instances. `/health`, `/ready` and
    /// `/metrics` on --listen.
    Worker(Box<WorkerArgs>),
    /// Apply pending schema migrations to the store (SQLite, or PostgreSQL with
    /// --database-url), then exit. Safe while other processes start or run.
    Migrate(StoreArgs),
    /// Check the store's invariants (ledger balanced, balances equal their entries, holds,
    /// pay-ins and transfers consistent) read-only on one snapshot, and print a report. Safe
    /// while payd runs. Exit code: 0 clean, 1 violations found, 2 the audit could not run.
    Audit(AuditArgs),
    /// Run a simulated payment processor (default role: 127.0.0.1:8001, fee 5%; fallback
    /// role: 127.0.0.1:8002, fee 15%).
    ProcessorSim(SimArgs),
    /// Print the OpenAPI document (JSON) generated from the code.
    Openapi,
    /// Ask a payd process on this host for `GET --path` (default `/health`) and exit 0 if it
    /// answers 200, else 1: a container's health check (the image has no shell or curl).
    Probe(ProbeArgs),
}

/// `payd probe`.
#[derive(Debug, Args)]
pub(crate) struct ProbeArgs {
    /// The address the process listens on.
    #[arg(long, default_value = "127.0.0.1:9999")]
    pub(crate) address: SocketAddr,
    /// The path to ask for (`/health`: alive; `/ready`: ready to serve).
    #[arg(long, default_value = "/health")]
    pub(crate) path: String,
    /// How long to wait for the connection and the answer.
    #[arg(long, default_value_t = 2_000)]
    pub(crate) timeout_ms: u64,
}

#[derive(Debug, Args)]
pub(crate) struct LogArgs {
    /// Log format.
    #[arg(long, env = "PAYD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub(crate) log_format: LogFormat,
    /// Log filter, in `tracing` EnvFilter syntax (e.g. `info`, `payd_sqlite=debug`).
    #[arg(long, env = "PAYD_LOG", default_value = "info", global = true)]
    pub(crate) log: String,
}

/// How transfers are settled across workers (`--transfer-pipeline`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum TransferPipelineArg {
    /// The settler, under the store's row locks.
    Store,
    /// Redis account locks, then settling under them (fenced).
    Locks,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `payd serve`: the API's flags and the engine's.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address and port the HTTP API listens on.
    #[arg(long, env = "PAYD_LISTEN", default_value = "0.0.0.0:9999")]
    pub(crate) listen: SocketAddr,
    #[command(flatten)]
    pub(crate) http: HttpArgs,
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    #[command(flatten)]
    pub(crate) intake: IntakeArgs,
    #[command(flatten)]
    pub(crate) gateway: GatewayArgs,
    #[command(flatten)]
    pub(crate) background: BackgroundArgs,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
    #[command(flatten)]
    pub(crate) amqp: AmqpArgs,
}

/// `payd api`: serve's HTTP flags, without the engine's.
#[derive(Debug, Args)]
pub(crate) struct ApiArgs {
    /// Address and port the HTTP API listens on.
    #[arg(long, env = "PAYD_LISTEN", default_value = "0.0.0.0:9999")]
    pub(crate) listen: SocketAddr,
    #[command(flatten)]
    pub(crate) http: HttpArgs,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    #[command(flatten)]
    pub(crate) intake: IntakeArgs,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
    #[command(flatten)]
    pub(crate) amqp: AmqpArgs,
}

/// `payd worker`: serve's engine and processor flags, without the API's.
#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// Address and port of the worker's `/health`, `/ready` and `/metrics`.
    #[arg(long, env = "PAYD_LISTEN", default_value = "0.0.0.0:9998")]
    pub(crate) listen: SocketAddr,
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    #[command(flatten)]
    pub(crate) gateway: GatewayArgs,
    #[command(flatten)]
    pub(crate) background: BackgroundArgs,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
    #[command(flatten)]
    pub(crate) amqp: AmqpArgs,
}

/// RabbitMQ, the work transport between the API and the workers.
#[derive(Debug, Args)]
pub(crate) struct AmqpArgs {
    /// RabbitMQ, `amqp://user:password@host:port/vhost` (`%2f` is the vhost `/`). Give it
    /// to every role: the API then writes each accepted payment's message to the outbox in
    /// the same commit, and the workers relay the outbox to a quorum queue (with publisher
    /// confirms) and consume it, each payment going to one worker. Without it, or while
    /// RabbitMQ is down, the workers find the work by polling PostgreSQL. Needs
    /// --database-url.
    #[arg(long, env = "PAYD_AMQP_URL", hide_env_values = true)]
    amqp_url: Option<String>,
    /// Messages a worker holds unacknowledged at once.
    #[arg(long, env = "PAYD_AMQP_PREFETCH", default_value_t = payd_amqp::AmqpConfig::PREFETCH_DEFAULT, value_parser = clap::value_parser!(u16).range(1..))]
    amqp_prefetch: u16,
    /// Deliveries of one message before RabbitMQ dead-letters it.
    #[arg(long, env = "PAYD_AMQP_DELIVERY_LIMIT", default_value_t = payd_amqp::AmqpConfig::DELIVERY_LIMIT_DEFAULT, value_parser = clap::value_parser!(i64).range(1..=1_000))]
    amqp_delivery_limit: i64,
    /// With --amqp-url: how overdue a new payment must be before a worker's poll of
    /// PostgreSQL takes it rather than leaving it to the worker its message went to, in
    /// ms. Retries, expired leases and unknown outcomes, which no message announces, do not
    /// wait for it.
    #[arg(long, env = "PAYD_AMQP_SWEEP_GRACE_MS", default_value_t = 500, value_parser = clap::value_parser!(i64).range(0..=60_000))]
    amqp_sweep_grace_ms: i64,
}

impl AmqpArgs {
    /// The connection's settings and the sweep's grace, if a URL is given (checked now;
    /// the connection opens later, so a process starts while RabbitMQ is down).
    pub(crate) fn config(
        &self,
        shared_store: bool,
    ) -> anyhow::Result<Option<(payd_amqp::AmqpConfig, i64)>> {
        let Some(url) = &self.amqp_url else {
            return Ok(None);
        };
        anyhow::ensure!(
            shared_store,
            "--amqp-url needs --database-url: the outbox that feeds RabbitMQ is in the \
             shared PostgreSQL database"
        );
        let config = payd_amqp::AmqpConfig::new(url, self.amqp_prefetch, self.amqp_delivery_limit)
            .map_err(|error| anyhow::anyhow!("invalid --amqp-url: {error}"))?;
        Ok(Some((config, self.amqp_sweep_grace_ms)))
    }
}

/// Redis, for what the processes on one PostgreSQL database share fast.
#[derive(Debug, Args)]
pub(crate) struct RedisArgs {
    /// Redis, `redis://host:port[/db]`: the workers share the processors' health there
    /// (one poller for all), and with --decision-cache the API remembers recent card
    /// decisions there. Without it, or while it does not answer, PostgreSQL does both.
    /// Needs --database-url.
    #[arg(long, env = "PAYD_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// Prefix of every key payd keeps in Redis (one per deployment sharing a server).
    #[arg(long, env = "PAYD_REDIS_PREFIX", default_value = "payd:")]
    redis_prefix: String,
    /// Answer replayed card transaction ids from Redis (needs --redis-url): about 3x the
    /// throughput of replays, but a Redis round trip more on every first decision
    /// (measured: about 25% fewer fresh decisions per second; bench/README.md). Worth it
    /// where clients retry a lot.
    #[arg(long, env = "PAYD_DECISION_CACHE")]
    pub(crate) decision_cache: bool,
    /// How long Redis remembers a card decision for replays, in ms (after it, the database
    /// answers them, as it always can).
    #[arg(long, env = "PAYD_DECISION_CACHE_TTL_MS", default_value_t = 600_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) decision_cache_ttl_ms: u64,
    /// How card decisions of one account take turns across API instances: `store`,
    /// PostgreSQL's row lock on the account in the deciding transaction; or `redis`, a
    /// per-account lock in Redis first (needs --redis-url; each grant carries a fencing
    /// token that PostgreSQL checks, and the row lock stays underneath).
    #[arg(long, env = "PAYD_ACCOUNT_LOCK", value_enum, default_value = "store")]
    pub(crate) account_lock: AccountLockArg,
    /// With --account-lock redis: how long an account's lock lasts unless released, in ms.
    #[arg(long, env = "PAYD_ACCOUNT_LOCK_TTL_MS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub(crate) account_lock_ttl_ms: u64,
}

/// How card decisions of one account take turns (`--account-lock`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum AccountLockArg {
    /// The store's row lock alone.
    Store,
    /// A Redis lock first, fenced by the store.
    Redis,
}

impl RedisArgs {
    /// The connection, if a URL is given; the URL is checked now, the connection opens at
    /// first use (so a process starts while Redis is down).
    pub(crate) fn open(&self, shared_store: bool) -> anyhow::Result<Option<payd_redis::Redis>> {
        let Some(url) = &self.redis_url else {
            anyhow::ensure!(
                !self.decision_cache,
                "--decision-cache needs --redis-url (the decisions are cached in Redis)"
            );
            anyhow::ensure!(
                self.account_lock == AccountLockArg::Store,
                "--account-lock redis needs --redis-url (the locks are in Redis)"
            );
            return Ok(None);
        };
        anyhow::ensure!(
            shared_store,
            "--redis-url needs --database-url: Redis coordinates processes that share one \
             PostgreSQL database, and the embedded store has one process"
        );
        anyhow::ensure!(
            !self.redis_prefix.is_empty() && self.redis_prefix.len() <= 64,
            "--redis-prefix must be 1 to 64 characters"
        );
        let redis = payd_redis::Redis::new(url, &self.redis_prefix)
            .map_err(|error| anyhow::anyhow!("invalid --redis-url: {error}"))?;
        Ok(Some(redis))
    }
}

/// The HTTP API's process settings.
#[derive(Debug, Args)]
pub(crate) struct HttpArgs {
    /// How long graceful shutdown waits for in-flight requests before giving up, in ms.
    #[arg(long, env = "PAYD_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub(crate) shutdown_grace_ms: u64,
    /// Tokio worker threads for HTTP (0 = one per core).
    #[arg(long, env = "PAYD_HTTP_THREADS", default_value_t = 0)]
    pub(crate) http_threads: usize,
    /// Admin token for `POST /purge-payments` (`Authorization: Bearer <token>`). Without it
    /// (and without --dev) admin endpoints are disabled.
    #[arg(long, env = "PAYD_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Development mode: admin endpoints need no token. Never in production.
    #[arg(long, env = "PAYD_DEV")]
    dev: bool,
}

impl HttpArgs {
    /// Who may call the admin endpoints.
    pub(crate) fn admin(&self) -> payd_api::AdminAccess {
        match (&self.admin_token, self.dev) {
            (Some(token), _) if !token.is_empty() => payd_api::AdminAccess::Token(token.clone()),
            (_, true) => payd_api::AdminAccess::Open,
            _ => payd_api::AdminAccess::Closed,
        }
    }
}

/// The background engine's threads.
#[derive(Debug, Args)]
pub(crate) struct EngineArgs {
    /// Tokio worker threads for the background engine: the gateway's processor calls, the
    /// wallet worker and the webhook deliverer.
    #[arg(long, env = "PAYD_ENGINE_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) engine_threads: u16,
    /// Niceness added to the engine's threads (0-19), so that when the cores are busy,
    /// requests are answered before background work runs (0 = same priority as HTTP).
    #[arg(long, env = "PAYD_ENGINE_NICE", default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=19))]
    pub(crate) engine_nice: u8,
}

/// Holds and idempotency, as the API applies them at intake.
#[derive(Debug, Args)]
pub(crate) struct IntakeArgs {
    /// Lifetime of a hold placed without `expiresInMs`, in ms (default 7 days).
    #[arg(long, env = "PAYD_HOLD_TTL_MS", default_value_t = 7 * 24 * 3_600_000)]
    hold_ttl_ms: u64,
    /// Longest hold lifetime a client may ask for, in ms (default 30 days).
    #[arg(long, env = "PAYD_HOLD_TTL_MAX_MS", default_value_t = 30 * 24 * 3_600_000)]
    hold_ttl_max_ms: u64,
    /// How long an `Idempotency-Key` and its stored response are kept, in ms (default 24 h;
    /// client-chosen resource ids are kept forever).
    #[arg(long, env = "PAYD_IDEMPOTENCY_RETENTION_MS", default_value_t = 24 * 3_600_000)]
    idempotency_retention_ms: u64,
}

/// Transfer settling and webhook deliveries.
#[derive(Debug, Args)]
pub(crate) struct BackgroundArgs {
    /// Pending transfers settled per store command.
    #[arg(long, env = "PAYD_TRANSFER_BATCH", default_value_t = 4_096)]
    transfer_batch: u32,
    /// Pause after a settling pass that found work, in ms, so that the next pass settles
    /// more transfers in one commit (fewer bytes written per transfer, more throughput;
    /// intake waits behind bigger commits, so a longer tail).
    #[arg(long, env = "PAYD_TRANSFER_COALESCE_MS", default_value_t = 0)]
    transfer_coalesce_ms: u64,
    /// Longest wait between two settling passes with nothing announced, in ms: how late a
    /// worker finds a transfer that another process accepted, without RabbitMQ (with it,
    /// each accepted transfer's message wakes a worker at once, and this is the safety net).
    #[arg(
        long,
        env = "PAYD_TRANSFER_POLL_MS",
        default_value_t = payd_engine::WalletWorkerConfig::SETTLE_POLL_MS_DEFAULT
    )]
    transfer_poll_ms: u64,
    /// How workers settle transfers: `store`, each worker's settler under PostgreSQL's row
    /// locks alone; or `locks`, the design notes' pipeline: a first stage takes both
    /// accounts' locks in Redis (each grant with fencing tokens) and queues the transfer on
    /// RabbitMQ for a second stage that settles it under them (PostgreSQL refuses a write
    /// whose token is stale). `locks` needs --amqp-url and --redis-url; the poll above
    /// stays the safety net.
    #[arg(
        long,
        env = "PAYD_TRANSFER_PIPELINE",
        value_enum,
        default_value = "store"
    )]
    transfer_pipeline: TransferPipelineArg,
    /// With --transfer-pipeline locks: how long an account lock lasts unless released, in
    /// ms (the longest an account waits for a holder that died or paused).
    #[arg(long, env = "PAYD_TRANSFER_LOCK_TTL_MS", default_value_t = payd_engine::PipelineConfig::LOCK_TTL_MS_DEFAULT, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    transfer_lock_ttl_ms: u64,
    /// Timeout of one webhook delivery request, in ms (past it: retried).
    #[arg(long, env = "PAYD_WEBHOOK_TIMEOUT_MS", default_value_t = 10_000)]
    webhook_timeout_ms: u64,
    /// Webhook requests in flight at most, over all endpoints.
    #[arg(long, env = "PAYD_WEBHOOK_CONCURRENCY", default_value_t = 32)]
    webhook_concurrency: u32,
    /// How long a failing delivery is retried (jittered doubling delays from 1 s to 1 h),
    /// in ms, before it is marked failed (default 24 h; at least 1 h).
    #[arg(long, env = "PAYD_WEBHOOK_RETRY_WINDOW_MS", default_value_t = 24 * 3_600_000)]
    webhook_retry_window_ms: i64,
}

impl IntakeArgs {
    pub(crate) fn config(&self) -> anyhow::Result<payd_api::WalletConfig> {
        anyhow::ensure!(self.hold_ttl_ms > 0, "--hold-ttl-ms must be positive");
        anyhow::ensure!(
            self.hold_ttl_ms <= self.hold_ttl_max_ms,
            "--hold-ttl-ms must not exceed --hold-ttl-max-ms"
        );
        anyhow::ensure!(
            self.idempotency_retention_ms >= 3_600_000,
            "--idempotency-retention-ms must be at least one hour"
        );
        Ok(payd_api::WalletConfig {
            hold_ttl_ms: self.hold_ttl_ms,
            hold_ttl_max_ms: self.hold_ttl_max_ms,
            idempotency_retention_ms: self.idempotency_retention_ms,
        })
    }
}

impl BackgroundArgs {
    pub(crate) fn webhook_config(&self) -> anyhow::Result<payd_engine::WebhookDelivererConfig> {
        anyhow::ensure!(
            (100..=120_000).contains(&self.webhook_timeout_ms),
            "--webhook-timeout-ms must be from 100 to 120000"
        );
        anyhow::ensure!(
            (1..=1_024).contains(&self.webhook_concurrency),
            "--webhook-concurrency must be from 1 to 1024"
        );
        anyhow::ensure!(
            self.webhook_retry_window_ms >= 3_600_000,
            "--webhook-retry-window-ms must be at least one hour"
        );
        let defaults = payd_engine::WebhookDelivererConfig::default();
        Ok(payd_engine::WebhookDelivererConfig {
            concurrency: self.webhook_concurrency,
            request_timeout_ms: self.webhook_timeout_ms,
            retry: payd_domain::webhook::RetryPolicy {
                give_up_after_ms: self.webhook_retry_window_ms,
                ..defaults.retry
            },
            ..defaults
        })
    }

    /// The transfer pipeline's settings, with `--transfer-pipeline locks`.
    pub(crate) fn pipeline_config(&self) -> Option<payd_engine::PipelineConfig> {
        (self.transfer_pipeline == TransferPipelineArg::Locks).then(|| {
            payd_engine::PipelineConfig {
                lock_ttl_ms: self.transfer_lock_ttl_ms,
                ..payd_engine::PipelineConfig::default()
            }
        })
    }

    pub(crate) fn worker_config(&self) -> anyhow::Result<payd_engine::WalletWorkerConfig> {
        anyhow::ensure!(
            (1..=100_000).contains(&self.transfer_batch),
            "--transfer-batch must be from 1 to 100000"
        );
        anyhow::ensure!(
            self.transfer_coalesce_ms <= 1_000,
            "--transfer-coalesce-ms must be at most 1000"
        );
        anyhow::ensure!(
            (10..=600_000).contains(&self.transfer_poll_ms),
            "--transfer-poll-ms must be from 10 to 600000"
        );
        Ok(payd_engine::WalletWorkerConfig {
            settle_batch: self.transfer_batch,
            settle_coalesce_ms: self.transfer_coalesce_ms,
            settle_poll_ms: self.transfer_poll_ms,
            ..payd_engine::WalletWorkerConfig::default()
        })
    }
}

/// The payment gateway: processors, bounds, routing thresholds.
#[derive(Debug, Args)]
pub(crate) struct GatewayArgs {
    /// Base URL of the default (cheaper) payment processor.
    #[arg(
        long,
        env = "PAYD_DEFAULT_PROCESSOR_URL",
        default_value = "http://127.0.0.1:8001"
    )]
    default_processor_url: String,
    /// Base URL of the fallback payment processor.
    #[arg(
        long,
        env = "PAYD_FALLBACK_PROCESSOR_URL",
        default_value = "http://127.0.0.1:8002"
    )]
    fallback_processor_url: String,
    /// Timeout of one payment submission; past it the outcome is unknown, in ms.
    #[arg(long, env = "PAYD_PROCESSOR_TIMEOUT_MS", default_value_t = 10_000)]
    processor_timeout_ms: u64,
    /// Most calls in flight per processor.
    #[arg(long, env = "PAYD_PROCESSOR_IN_FLIGHT_MAX", default_value_t = 256)]
    processor_in_flight_max: u32,
    /// Interval between health polls of one processor (its endpoint allows one per 5 s), in ms.
    #[arg(long, env = "PAYD_HEALTH_INTERVAL_MS", default_value_t = 5_000)]
    health_interval_ms: u64,
    /// Route new payments to the fallback when the default would need longer than this to
    /// drain the backlog (and the fallback is much faster), in ms.
    #[arg(long, env = "PAYD_DRAIN_TARGET_MS", default_value_t = 2_000)]
    drain_target_ms: u64,
    /// How many times faster the fallback must be to take payments from a slow default.
    #[arg(long, env = "PAYD_FALLBACK_SPEEDUP_MIN", default_value_t = 3)]
    fallback_speedup_min: u64,
    /// Consecutive failures that open a processor's circuit breaker.
    #[arg(long, env = "PAYD_BREAKER_FAILURES", default_value_t = 5)]
    breaker_failures: u32,
    /// First open period of a breaker (doubles up to 10x on repeated failures), in ms.
    #[arg(long, env = "PAYD_BREAKER_OPEN_MS", default_value_t = 500)]
    breaker_open_ms: u64,
    /// After this long since the last uncertain call, a 404 from the processor proves a
    /// payment was not booked there and frees it for the other processor, in ms. Must exceed
    /// the processors' longest delay plus --processor-timeout-ms' margin.
    #[arg(long, env = "PAYD_SETTLE_MS", default_value_t = 15_000)]
    settle_ms: i64,
    /// How long the gateway lets new payments, and the outcomes of finished calls, gather
    /// before committing them together (fewer syncs for intake to wait behind), in ms.
    #[arg(long, env = "PAYD_GATEWAY_COALESCE_MS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=1_000))]
    gateway_coalesce_ms: u64,
}

impl GatewayArgs {
    pub(crate) fn config(
        &self,
    ) -> anyhow::Result<(
        payd_processors::HttpProcessorsConfig,
        payd_engine::GatewayConfig,
    )> {
        anyhow::ensure!(
            self.processor_in_flight_max >= 1,
            "--processor-in-flight-max must be at least 1"
        );
        anyhow::ensure!(
            self.health_interval_ms >= 1,
            "--health-interval-ms must be at least 1"
        );
        anyhow::ensure!(self.settle_ms >= 0, "--settle-ms must not be negative");
        let timeout_ms = i64::try_from(self.processor_timeout_ms)
            .context("--processor-timeout-ms is too large")?;
        let clients = payd_processors::HttpProcessorsConfig {
            default_url: self.default_processor_url.clone(),
            fallback_url: self.fallback_processor_url.clone(),
            submit_timeout_ms: self.processor_timeout_ms,
            in_flight_max: self.processor_in_flight_max as usize,
            ..payd_processors::HttpProcessorsConfig::default()
        };
        let defaults = payd_engine::GatewayConfig::default();
        let engine = payd_engine::GatewayConfig {
            in_flight_max: self.processor_in_flight_max,
            // A live worker's lease must outlast its call, so it never expires mid-call.
            lease_ms: timeout_ms.saturating_mul(2).max(defaults.lease_ms),
            settle_ms: self.settle_ms.max(timeout_ms),
            health_interval_ms: self.health_interval_ms,
            coalesce_ms: self.gateway_coalesce_ms,
            breaker: payd_domain::gateway::breaker::BreakerConfig {
                failure_threshold: self.breaker_failures.max(1),
                open_ms: self.breaker_open_ms,
                open_cap_ms: self.breaker_open_ms.saturating_mul(10),
                ..defaults.breaker
            },
            routing: payd_domain::gateway::routing::RoutingPolicy {
                drain_target_ms: self.drain_target_ms,
                fallback_speedup_min: self.fallback_speedup_min,
            },
            ..defaults
        };
        Ok((clients, engine))
    }
}

/// `payd processor-sim`.
#[derive(Debug, Args)]
pub(crate) struct SimArgs {
    /// Which processor to play: sets the default port and fee.
    #[arg(long, env = "PAYD_SIM_ROLE", value_enum, default_value = "default")]
    role: payd_processor_sim::Role,
    /// Address to listen on (default: 127.0.0.1:8001 for `default`, :8002 for `fallback`).
    #[arg(long, env = "PAYD_SIM_LISTEN")]
    listen: Option<SocketAddr>,
    /// Fee per payment as a fraction of its amount, e.g. 0.05 (default: 0.05 / 0.15 by role).
    #[arg(long, env = "PAYD_SIM_FEE")]
    fee: Option<String>,
    /// Admin token expected in `X-Rinha-Token`.
    #[arg(
        long,
        env = "PAYD_SIM_TOKEN",
        default_value = "123",
        hide_env_values = true
    )]
    token: String,
    /// Delay applied before booking each payment, in ms (changeable at runtime).
    #[arg(long, env = "PAYD_SIM_DELAY_MS", default_value_t = 0)]
    delay_ms: u64,
    /// Start in failure mode (every payment answers 500).
    #[arg(long, env = "PAYD_SIM_FAILING")]
    failing: bool,
    /// The health endpoint answers once per this interval, for all callers, in ms.
    #[arg(long, env = "PAYD_SIM_HEALTH_INTERVAL_MS", default_value_t = 5_000)]
    health_interval_ms: u64,
    /// Payments processed at once beyond which new ones get 429.
    #[arg(long, env = "PAYD_SIM_MAX_IN_FLIGHT", default_value_t = 1_000)]
    max_in_flight: usize,
}

impl SimArgs {
    pub(crate) fn config(&self) -> anyhow::Result<payd_processor_sim::SimConfig> {
        let mut config = payd_processor_sim::SimConfig::for_role(self.role);
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(fee) = &self.fee {
            config.fee_bps = payd_processor_sim::parse_fee(fee)
                .map_err(|error| anyhow::anyhow!("invalid --fee {fee:?}: {error}"))?;
        }
        anyhow::ensure!(
            self.max_in_flight >= 1,
            "--max-in-flight must be at least 1"
        );
        config.token = self.token.clone();
        config.delay_ms = self.delay_ms;
        config.failing = self.failing;
        config.health_interval_ms = self.health_interval_ms;
        config.max_in_flight = self.max_in_flight;
        Ok(config)
    }
}

#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    /// PostgreSQL to use instead of the embedded store: `postgres://user:password@host:port/db`.
    /// Any number of payd processes may share one database.
    #[arg(long, env = "PAYD_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Directory of the embedded SQLite store (created if missing); unused with
    /// --database-url.
    #[arg(long, env = "PAYD_DATA_DIR", default_value = "./payd-data")]
    data_dir: PathBuf,
    /// `strict`: fsync every group commit (survives power loss). `relaxed`: no fsync at
    /// commit (survives a process crash; may lose the last milliseconds on power loss).
    /// SQLite only: on PostgreSQL a commit is as durable as the server's
    /// `synchronous_commit` makes it.
    #[arg(long, env = "PAYD_DURABILITY", default_value = "strict")]
    durability: Durability,
    /// MCC → category map, as `MCC=CATEGORY` pairs; codes not listed are CASH.
    #[arg(long, env = "PAYD_MCC_MAP", default_value = MccMap::DEFAULT_TEXT)]
    mcc_map: String,
    /// Most commands a writer applies in one transaction (group commit).
    #[arg(long, env = "PAYD_BATCH_MAX")]
    batch_max: Option<usize>,
    /// Capacity of the writers' command queue; a full queue makes requests wait.
    #[arg(long, env = "PAYD_QUEUE_CAPACITY", default_value_t = 8192)]
    queue_capacity: usize,
    /// Read-only connections for balance and journal reads (SQLite).
    #[arg(long, env = "PAYD_READERS", default_value_t = 4)]
    readers: usize,
    /// Connections to PostgreSQL: the writers' and the readers' (PostgreSQL).
    #[arg(long, env = "PAYD_PG_POOL_SIZE", default_value_t = 16)]
    pg_pool_size: usize,
    /// Request writer tasks, each one transaction at a time on a connection of its own;
    /// one more takes the gateway's bookkeeping and the sweeps (PostgreSQL).
    #[arg(long, env = "PAYD_PG_WRITERS", default_value_t = 2)]
    pg_writers: usize,
    /// `statement_timeout` of every PostgreSQL connection, in ms (0: none).
    #[arg(long, env = "PAYD_PG_STATEMENT_TIMEOUT_MS", default_value_t = 5_000)]
    pg_statement_timeout_ms: u64,
    /// This process's instance id, recorded as the owner of the payment leases it takes.
    /// On PostgreSQL a process restarted under the same id takes over its own leases at
    /// once (a stable id per replica, e.g. the pod name, speeds up recovery); any other
    /// lease only once it expires. Two live processes must never share one. Default: a
    /// fresh random id at every start.
    #[arg(long, env = "PAYD_INSTANCE_ID")]
    instance_id: Option<String>,
}

/// `payd audit`.
#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// The PostgreSQL database to audit (read-only, one snapshot).
    #[arg(long, env = "PAYD_DATABASE_URL", hide_env_values = true)]
    pub(crate) database_url: Option<String>,
    /// Directory of the embedded SQLite store to audit (never created or changed); unused
    /// with --database-url.
    #[arg(long, env = "PAYD_DATA_DIR", default_value = "./payd-data")]
    pub(crate) data_dir: PathBuf,
}

impl StoreArgs {
    /// [`StoreArgs::config`] for a role that shares its store with other processes
    /// (`payd api`, `payd worker`): PostgreSQL only, as the embedded store belongs to the
    /// one process that opened it.
    pub(crate) fn shared_config(
        &self,
        role: &str,
        clock: Arc<dyn payd_ports::Clock>,
    ) -> anyhow::Result<store::StoreConfig> {
        anyhow::ensure!(
            self.database_url.is_some(),
            "payd {role} needs --database-url (PostgreSQL): the API and the workers share \
             one database; on the embedded store run `payd serve`, which does both"
        );
        self.config(clock)
    }

    /// Validates the flags into the selected store's configuration; fails fast on bad
    /// values.
    pub(crate) fn config(
        &self,
        clock: Arc<dyn payd_ports::Clock>,
    ) -> anyhow::Result<store::StoreConfig> {
        anyhow::ensure!(
            self.queue_capacity >= 1,
            "--queue-capacity must be at least 1"
        );
        let mcc_map = MccMap::parse(&self.mcc_map).context("invalid --mcc-map")?;
        let instance = match &self.instance_id {
            Some(id) => {
                anyhow::ensure!(
                    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()),
                    "--instance-id must be 1 to 128 printable ASCII characters without spaces"
                );
                id.clone()
            }
            None => format!("payd-{}", uuid::Uuid::new_v4().simple()),
        };
        if let Some(url) = &self.database_url {
            anyhow::ensure!(self.pg_writers >= 1, "--pg-writers must be at least 1");
            anyhow::ensure!(
                self.pg_pool_size >= self.pg_writers + 3,
                "--pg-pool-size must be at least --pg-writers + 3 (the writers' connections, the background writer's and two for reads)"
            );
            let mut config = payd_postgres::PgConfig::new(url.clone(), instance);
            config.pool_size = self.pg_pool_size;
            config.writers = self.pg_writers;
            config.statement_timeout_ms = self.pg_statement_timeout_ms;
            config.batch_max = self
                .batch_max
                .unwrap_or(payd_postgres::PgConfig::BATCH_MAX_DEFAULT);
            anyhow::ensure!(config.batch_max >= 1, "--batch-max must be at least 1");
            config.queue_capacity = self.queue_capacity;
            config.mcc_map = mcc_map;
            config.clock = clock;
            return Ok(store::StoreConfig::Postgres(config));
        }
        anyhow::ensure!(self.readers >= 1, "--readers must be at least 1");
        let mut config = SqliteConfig::new(&self.data_dir);
        config.durability = self.durability;
        config.mcc_map = mcc_map;
        config.batch_max = self.batch_max.unwrap_or(SqliteConfig::BATCH_MAX_DEFAULT);
        anyhow::ensure!(config.batch_max >= 1, "--batch-max must be at least 1");
        config.queue_capacity = self.queue_capacity;
        config.readers = self.readers;
        config.clock = clock;
        config.instance = instance;
        Ok(store::StoreConfig::Sqlite(config))
    }
}
