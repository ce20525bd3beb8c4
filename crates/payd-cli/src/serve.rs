//! A server process: `payd serve` (the API and the background engine together), `payd api`
//! (the API only) or `payd worker` (the engine only, with its probes and metrics), on the
//! selected store. A [`Plan`] says which halves run, with every setting already checked.
//!
//! Shutdown order matters for "durable before acknowledged": first stop accepting and let
//! in-flight requests finish (each waits for its group commit), then stop the engine (the
//! gateway's calls in flight finish and record their outcomes), then stop the writer, which
//! commits and answers whatever is still queued before it exits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::series;
use payd_api::{AccountLock, AdminAccess, AppState};
use payd_domain::{CorrelationId, ResourceId};
use payd_engine::{
    Gateway, GatewayConfig, OutboxRelay, OutboxRelayConfig, PipelineConfig, SharedHealth,
    TokioClock, TransferPipeline, WalletWorker, WalletWorkerConfig, WebhookDeliverer,
    WebhookDelivererConfig,
};
use payd_ports::{
    AccountLocks, BreakerBus, Clock, DecisionCache, HealthBoard, OutboxStore, PaymentStore,
    ProcessorClient, Store, WalletStore, WebhookStore,
};
use payd_processors::{HttpProcessors, HttpProcessorsConfig, HttpWebhookConfig, HttpWebhookSender};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::args::{
    AccountLockArg, AmqpArgs, ApiArgs, BackgroundArgs, EngineArgs, GatewayArgs, HttpArgs,
    IntakeArgs, RedisArgs, ServeArgs, WorkerArgs,
};
use crate::store::{Opened, StoreConfig};

/// What one process runs, with every setting checked before anything starts.
pub(crate) struct Plan {
    /// `serve`, `api` or `worker`, for the logs and the listening line.
    role: &'static str,
    listen: SocketAddr,
    shutdown_grace_ms: u64,
    http_threads: usize,
    clock: Arc<dyn Clock>,
    store: StoreConfig,
    /// The HTTP API; without it, only `/health`, `/ready` and `/metrics` are served.
    api: Option<ApiPlan>,
    /// The background engine.
    engine: Option<EnginePlan>,
    /// Redis, if given: the engine's shared health, the API's decision cache.
    redis: Option<RedisPlan>,
    /// RabbitMQ, if given: the API writes the outbox, the engine relays and consumes it.
    amqp: Option<payd_amqp::AmqpConfig>,
}

struct ApiPlan {
    wallet: payd_api::WalletConfig,
    admin: AdminAccess,
}

impl ApiPlan {
    fn new(http: &HttpArgs, intake: &IntakeArgs) -> anyhow::Result<ApiPlan> {
        Ok(ApiPlan {
            wallet: intake.config()?,
            admin: http.admin(),
        })
    }
}

struct EnginePlan {
    /// The engine runtime's worker threads, and the niceness added to them.
    threads: u16,
    nice: u8,
    processors: HttpProcessorsConfig,
    gateway: GatewayConfig,
    wallet: WalletWorkerConfig,
    /// The transfer pipeline on Redis locks, if asked for.
    pipeline: Option<PipelineConfig>,
    webhooks: WebhookDelivererConfig,
}

impl EnginePlan {
    fn new(
        engine: &EngineArgs,
        gateway: &GatewayArgs,
        background: &BackgroundArgs,
    ) -> anyhow::Result<EnginePlan> {
        let (processors, gateway) = gateway.config()?;
        Ok(EnginePlan {
            threads: engine.engine_threads,
            nice: engine.engine_nice,
            processors,
            gateway,
            wallet: background.worker_config()?,
            pipeline: background.pipeline_config(),
            webhooks: background.webhook_config()?,
        })
    }
}

impl EnginePlan {
    /// The transfer pipeline needs both brokers: its first stage locks on Redis and queues
    /// on RabbitMQ.
    fn check_pipeline(&self, amqp: bool, redis: bool) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.pipeline.is_none() || (amqp && redis),
            "--transfer-pipeline locks needs --amqp-url and --redis-url (the accounts are \
             locked in Redis and the locked transfers queued on RabbitMQ)"
        );
        Ok(())
    }
}

/// Redis, shared by this process's users of it.
struct RedisPlan {
    redis: Arc<payd_redis::Redis>,
    /// The decision cache's TTL, if the API caches decisions.
    decision_cache_ttl_ms: Option<u64>,
    /// The account locks' TTL, if card decisions take Redis locks.
    account_lock_ttl_ms: Option<u64>,
}

impl RedisPlan {
    fn new(args: &RedisArgs, store: &StoreConfig) -> anyhow::Result<Option<RedisPlan>> {
        let shared_store = matches!(store, StoreConfig::Postgres(_));
        Ok(args.open(shared_store)?.map(|redis| RedisPlan {
            redis: Arc::new(redis),
            decision_cache_ttl_ms: args.decision_cache.then_some(args.decision_cache_ttl_ms),
            account_lock_ttl_ms: (args.account_lock == AccountLockArg::Redis)
                .then_some(args.account_lock_ttl_ms),
        }))
    }
}

/// Where the processors' health is shared: Redis if given (the store's board behind it),
/// else the store's.
fn health_board(redis: Option<&RedisPlan>, store: Arc<dyn HealthBoard>) -> Arc<dyn HealthBoard> {
    match redis {
        Some(plan) => Arc::new(payd_redis::RedisBoard::new(plan.redis.clone(), store)),
        None => store,
    }
}

/// Card decisions under Redis account locks, if asked for.
fn account_lock(redis: Option<&RedisPlan>, instance: &str) -> Option<Arc<AccountLock>> {
    let plan = redis?;
    let ttl_ms = plan.account_lock_ttl_ms?;
    let locks = Arc::new(payd_redis::RedisLocks::new(plan.redis.clone()));
    Some(Arc::new(AccountLock::new(locks, ttl_ms, instance)))
}

/// Recent card decisions, on Redis if asked for.
fn decisions(redis: Option<&RedisPlan>) -> Option<Arc<dyn DecisionCache>> {
    let plan = redis?;
    Some(Arc::new(payd_redis::RedisDecisions::new(
        plan.redis.clone(),
        plan.decision_cache_ttl_ms?,
    )))
}

impl Plan {
    /// `payd serve`: both halves.
    pub(crate) fn serve(args: ServeArgs) -> anyhow::Result<Plan> {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
        let mut store = args.store.config(clock.clone())?;
        let mut engine = EnginePlan::new(&args.engine, &args.gateway, &args.background)?;
        let amqp = amqp_plan(&args.amqp, &mut store, Some(&mut engine))?;
        let redis = RedisPlan::new(&args.redis, &store)?;
        engine.check_pipeline(amqp.is_some(), redis.is_some())?;
        Ok(Plan {
            role: "serve",
            listen: args.listen,
            shutdown_grace_ms: args.http.shutdown_grace_ms,
            http_threads: args.http.http_threads,
            api: Some(ApiPlan::new(&args.http, &args.intake)?),
            engine: Some(engine),
            redis,
            amqp,
            store,
            clock,
        })
    }

    /// `payd api`: the HTTP API on a shared store; the workers do the background work.
    pub(crate) fn api(args: ApiArgs) -> anyhow::Result<Plan> {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
        let mut store = args.store.shared_config("api", clock.clone())?;
        let amqp = amqp_plan(&args.amqp, &mut store, None)?;
        Ok(Plan {
            role: "api",
            listen: args.listen,
            shutdown_grace_ms: args.http.shutdown_grace_ms,
            http_threads: args.http.http_threads,
            api: Some(ApiPlan::new(&args.http, &args.intake)?),
            engine: None,
            redis: RedisPlan::new(&args.redis, &store)?,
            amqp,
            store,
            clock,
        })
    }

    /// `payd worker`: the engine on a shared store, its probes and metrics on one thread.
    pub(crate) fn worker(args: WorkerArgs) -> anyhow::Result<Plan> {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
        let mut store = args.store.shared_config("worker", clock.clone())?;
        let mut engine = EnginePlan::new(&args.engine, &args.gateway, &args.background)?;
        let amqp = amqp_plan(&args.amqp, &mut store, Some(&mut engine))?;
        let redis = RedisPlan::new(&args.redis, &store)?;
        engine.check_pipeline(amqp.is_some(), redis.is_some())?;
        Ok(Plan {
            role: "worker",
            listen: args.listen,
            // Probes and scrapes only: nothing to wait for.
            shutdown_grace_ms: 1_000,
            http_threads: 1,
            api: None,
            engine: Some(engine),
            redis,
            amqp,
            store,
            clock,
        })
    }
}

/// RabbitMQ's part, if a URL is given: intake writes the outbox, and the gateway's sweep
/// leaves fresh payments to the worker their message goes to.
fn amqp_plan(
    args: &AmqpArgs,
    store: &mut StoreConfig,
    engine: Option<&mut EnginePlan>,
) -> anyhow::Result<Option<payd_amqp::AmqpConfig>> {
    let StoreConfig::Postgres(pg) = store else {
        return args.config(false).map(|_| None);
    };
    let Some((config, sweep_grace_ms)) = args.config(true)? else {
        return Ok(None);
    };
    pg.outbox = true;
    if let Some(engine) = engine {
        engine.gateway.sweep_grace_ms = sweep_grace_ms;
    }
    Ok(Some(config))
}

pub(crate) fn run(plan: Plan) -> anyhow::Result<()> {
    let mut http = tokio::runtime::Builder::new_multi_thread();
    if plan.http_threads > 0 {
        http.worker_threads(plan.http_threads);
    }
    let http = http.enable_all().thread_name("payd-http").build()?;
    // Background work runs on its own threads: a request's task never waits in a run queue
    // behind the gateway's processor calls, and with the engine's threads niced, the kernel
    // runs request handling first when both cores are busy (the gateway draining a backlog
    // while payments keep arriving). Background work only needs the cores' spare time.
    let engine = plan
        .engine
        .as_ref()
        .map(|engine| {
            let nice = engine.nice;
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(usize::from(engine.threads))
                .enable_all()
                .thread_name("payd-engine")
                .on_thread_start(move || lower_this_thread_priority(nice))
                .build()
        })
        .transpose()?;
    // The engine runtime is dropped here, outside any runtime, after `serve` has awaited
    // every engine task.
    let handle = engine.as_ref().map(|engine| engine.handle().clone());
    http.block_on(serve(plan, handle))
}

/// Sets the calling thread's niceness to the process's plus `nice`. On Linux a thread id
/// given to `setpriority` names that one thread, not the whole process. (Relative to the
/// main thread, not to this one: a thread inherits its creator's niceness, and the engine's
/// blocking threads are created by its already niced workers.)
#[cfg(target_os = "linux")]
fn lower_this_thread_priority(nice: u8) {
    if nice == 0 {
        return;
    }
    let main_thread = rustix::process::getpid();
    let process = rustix::process::getpriority_process(Some(main_thread)).unwrap_or(0);
    let thread = rustix::thread::gettid();
    if let Err(error) =
        rustix::process::setpriority_process(Some(thread), process.saturating_add(nice.into()))
    {
        tracing::warn!(%error, nice, "Cannot lower the priority of an engine thread.");
    }
}

/// Elsewhere `setpriority` would lower the whole process: the engine keeps its priority.
#[cfg(not(target_os = "linux"))]
fn lower_this_thread_priority(_nice: u8) {}

/// Serves `plan` until a shutdown signal; the engine's tasks, if it has one, on `runtime`.
async fn serve(plan: Plan, runtime: Option<tokio::runtime::Handle>) -> anyhow::Result<()> {
    let metrics = payd_api::install_metrics_recorder();
    if matches!(plan.store, StoreConfig::Postgres(_)) {
        series::postgres();
    }
    if plan.api.is_some() {
        series::api();
        if plan.redis.is_some() {
            series::api_redis();
        }
    }
    if plan.engine.is_some() {
        series::engine();
        if plan.redis.is_some() {
            series::engine_redis();
        }
        if plan.amqp.is_some() {
            series::amqp();
        }
    }
    let clock = plan.clock.clone();
    let described = plan.store.describe();
    let instance: Arc<str> = Arc::from(plan.store.instance());
    let opened = Opened::open(plan.store).await?;
    let store = opened.store();
    let listener = TcpListener::bind(plan.listen)
        .await
        .with_context(|| format!("binding {}", plan.listen))?;
    let local = listener.local_addr()?;

    let board = health_board(plan.redis.as_ref(), opened.health_board());
    let decisions = plan.api.as_ref().and(decisions(plan.redis.as_ref()));
    let account_lock = plan
        .api
        .as_ref()
        .and(account_lock(plan.redis.as_ref(), &instance));
    let engine = match plan.engine.zip(runtime) {
        Some((engine, runtime)) => {
            // With Redis, the gateways tell each other when a breaker opens.
            let breakers = plan
                .redis
                .as_ref()
                .map(|redis| Arc::new(payd_redis::RedisBreakers::new(redis.redis.clone())));
            let shared_health = SharedHealth {
                board,
                breakers: breakers.clone().map(|bus| bus as Arc<dyn BreakerBus>),
                instance,
            };
            let outbox = opened.outbox();
            let amqp = plan.amqp.clone().zip(outbox);
            let locks = plan.redis.as_ref().map(|redis| {
                Arc::new(payd_redis::RedisLocks::new(redis.redis.clone())) as Arc<dyn AccountLocks>
            });
            Some(Engine::start(
                &store,
                &clock,
                shared_health,
                engine,
                Transports {
                    amqp,
                    breakers,
                    locks,
                },
                &runtime,
            )?)
        }
        None => None,
    };
    let (wake_gateway, wake_settler): (Wake, Wake) = match &engine {
        Some(engine) => engine.wakers(),
        // The workers of other processes find the work in the store.
        None => (Arc::new(|| {}), Arc::new(|| {})),
    };
    let state = AppState {
        store: store.clone(),
        in_flight: opened.in_flight(),
        clock,
        on_payment_accepted: wake_gateway,
        on_transfer_accepted: wake_settler,
        wallet_config: plan.api.as_ref().map(|api| api.wallet).unwrap_or_default(),
        admin: plan
            .api
            .as_ref()
            .map_or(AdminAccess::Closed, |api| api.admin.clone()),
        metrics,
        decisions,
        account_lock,
    };
    let app = match plan.api {
        Some(_) => payd_api::router(state),
        None => payd_api::ops_router(state),
    };
    let role = plan.role;
    tracing::info!(role, address = %local, store = %described, "Payd is listening.");
    // Tests and scripts read this line to learn the port when listening on port 0.
    match role {
        "serve" => println!("payd listening on http://{local}"),
        _ => println!("payd {role} listening on http://{local}"),
    }

    let (stopped_tx, stopped_rx) = tokio::sync::watch::channel(false);
    let server =
        axum::serve(listener, app.into_make_service()).with_graceful_shutdown(async move {
            shutdown_signal().await;
            let _ = stopped_tx.send(true);
        });
    let grace = Duration::from_millis(plan.shutdown_grace_ms);
    let mut stopped = stopped_rx;
    tokio::select! {
        result = server => result.context("serving HTTP")?,
        // Once a signal arrived, give in-flight requests `grace` to finish.
        () = async {
            let _ = stopped.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!(grace_ms = plan.shutdown_grace_ms, "In-flight requests did not finish in time."),
    }
    if let Some(engine) = engine {
        tracing::info!(
            "HTTP stopped; stopping the gateway, the wallet worker and the webhook deliverer."
        );
        engine.stop().await;
    }
    tracing::info!("Draining the writers.");
    opened.shutdown().await?;
    tracing::info!("Payd stopped cleanly.");
    Ok(())
}

/// What intake calls after accepting work (see [`Engine::wakers`]).
type Wake = Arc<dyn Fn() + Send + Sync>;

/// What the engine shares with the other processes besides the store.
struct Transports {
    /// RabbitMQ, and the outbox the relay publishes.
    amqp: Option<(payd_amqp::AmqpConfig, Arc<dyn OutboxStore>)>,
    /// The breakers' announcements on Redis.
    breakers: Option<Arc<payd_redis::RedisBreakers>>,
    /// Account locks on Redis, for the transfer pipeline.
    locks: Option<Arc<dyn AccountLocks>>,
}

/// The background engine, running: the gateway, the wallet worker (transfer settling, hold
/// expiry, key purge) and the webhook deliverer, each a task on the engine's runtime.
struct Engine {
    gateway: Arc<Gateway>,
    wallet: Arc<WalletWorker>,
    /// Whether transfers go through the pipeline (then intake does not wake the settler,
    /// whose poll is only the safety net).
    pipelined: bool,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl Engine {
    fn start(
        store: &Arc<dyn Store>,
        clock: &Arc<dyn Clock>,
        shared_health: SharedHealth,
        plan: EnginePlan,
        transports: Transports,
        runtime: &tokio::runtime::Handle,
    ) -> anyhow::Result<Engine> {
        let instance = shared_health.instance.clone();
        let processors: Arc<dyn ProcessorClient> = Arc::new(HttpProcessors::new(&plan.processors)?);
        let gateway = Gateway::new(
            store.clone() as Arc<dyn PaymentStore>,
            processors,
            clock.clone(),
            plan.gateway,
            shared_health,
        );
        let wallet = WalletWorker::new(
            store.clone() as Arc<dyn WalletStore>,
            clock.clone(),
            plan.wallet,
        );
        let webhook_sender = HttpWebhookSender::new(&HttpWebhookConfig {
            timeout_ms: plan.webhooks.request_timeout_ms,
            ..HttpWebhookConfig::default()
        })?;
        let deliverer = WebhookDeliverer::new(
            store.clone() as Arc<dyn WebhookStore>,
            Arc::new(webhook_sender),
            clock.clone(),
            plan.webhooks,
        );
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        let mut pipelined = false;
        if let Some(bus) = transports.breakers {
            let peer = gateway.clone();
            let on_trip = move |processor| peer.on_peer_trip(processor);
            tasks.push((
                "breaker announcements",
                runtime.spawn(bus.listen(instance.clone(), on_trip, stopped.clone())),
            ));
        }
        if let Some((config, outbox)) = transports.amqp {
            // The transport first: the relay publishes through its connection, and its
            // consumers feed the gateway's inbox and the transfer settler.
            let amqp = payd_amqp::Amqp::new(config);
            let payments = gateway.clone();
            let mut consumers = vec![payd_amqp::Consumer {
                queue: payd_amqp::PAYMENTS_QUEUE,
                deliver: deliver_parsed(CorrelationId::parse, move |id, settle| {
                    payments.offer(id, settle);
                }),
            }];
            match plan.pipeline.zip(transports.locks) {
                Some((config, locks)) => {
                    let pipeline = TransferPipeline::new(
                        store.clone() as Arc<dyn WalletStore>,
                        locks,
                        amqp.clone(),
                        wallet.clone(),
                        config,
                        &instance,
                    );
                    let settler = pipeline.clone();
                    pipelined = true;
                    consumers.extend([
                        payd_amqp::Consumer {
                            queue: payd_amqp::TRANSFERS_QUEUE,
                            deliver: deliver_parsed(ResourceId::parse, move |id, settle| {
                                pipeline.lock(id, settle);
                            }),
                        },
                        payd_amqp::Consumer {
                            queue: payd_amqp::SETTLE_QUEUE,
                            deliver: deliver_parsed(
                                |body| payd_engine::pipeline::Locked::decode(body).ok_or(()),
                                move |locked, settle| settler.settle(locked, settle),
                            ),
                        },
                    ]);
                }
                None => {
                    let transfers = wallet.clone();
                    consumers.push(payd_amqp::Consumer {
                        queue: payd_amqp::TRANSFERS_QUEUE,
                        deliver: deliver_parsed(ResourceId::parse, move |id, settle| {
                            transfers.offer(id, settle);
                        }),
                    });
                }
            }
            tasks.push((
                "RabbitMQ connection",
                runtime.spawn(amqp.clone().run(consumers, stopped.clone())),
            ));
            let relay = OutboxRelay::new(outbox, amqp, clock.clone(), OutboxRelayConfig::default());
            tasks.push(("outbox relay", runtime.spawn(relay.run(stopped.clone()))));
        }
        tasks.extend([
            (
                "gateway",
                runtime.spawn(gateway.clone().run(stopped.clone())),
            ),
            (
                "wallet worker",
                runtime.spawn(wallet.clone().run(stopped.clone())),
            ),
            // Its requests in flight finish (each within its timeout) and their attempts
            // are recorded.
            ("webhook deliverer", runtime.spawn(deliverer.run(stopped))),
        ]);
        Ok(Engine {
            gateway,
            wallet,
            pipelined,
            stop,
            tasks,
        })
    }

    /// What intake calls after accepting a payment and a transfer: wakes this process's
    /// gateway and transfer settler.
    fn wakers(&self) -> (Wake, Wake) {
        let (gateway, wallet) = (self.gateway.clone(), self.wallet.clone());
        let settler: Wake = if self.pipelined {
            Arc::new(|| {})
        } else {
            Arc::new(move || wallet.wake())
        };
        (Arc::new(move || gateway.wake()), settler)
    }

    /// Stops every task and waits for it: the gateway's calls in flight finish and record
    /// their outcomes.
    async fn stop(self) {
        let _ = self.stop.send(true);
        for (name, task) in self.tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, task = name, "An engine task failed.");
            }
        }
    }
}

/// A consumer's callback: the body parsed as an id by `parse` and handed to `offer`; a
/// body that is not such an id is refused (and dead-lettered).
fn deliver_parsed<Id: 'static, E: 'static>(
    parse: fn(&str) -> Result<Id, E>,
    offer: impl Fn(Id, tokio::sync::oneshot::Sender<()>) + Send + Sync + 'static,
) -> payd_amqp::Deliver {
    Arc::new(move |body, settle| {
        match std::str::from_utf8(body)
            .ok()
            .and_then(|text| parse(text).ok())
        {
            Some(id) => {
                offer(id, settle);
                true
            }
            None => false,
        }
    })
}

/// Resolves on SIGTERM (what Kubernetes and process managers send) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "Cannot listen for SIGINT.");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "Cannot listen for SIGTERM.");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received; shutting down."),
        () = terminate => tracing::info!("SIGTERM received; shutting down."),
    }
}

/// `payd processor-sim`: serves the simulator until SIGTERM/SIGINT.
pub(crate) fn run_sim(config: payd_processor_sim::SimConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("payd-sim")
        .build()?;
    runtime.block_on(async move {
        let listen = config.listen;
        payd_processor_sim::run(config, shutdown_signal())
            .await
            .with_context(|| format!("running the processor simulator on {listen}"))
    })
}
