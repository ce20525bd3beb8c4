//! `payd serve`: the API and the background engine in one process, on the selected store.
//!
//! Shutdown order matters for "durable before acknowledged": first stop accepting and let
//! in-flight requests finish (each waits for its group commit), then stop the gateway (its
//! calls in flight finish and record their outcomes), then stop the writer, which commits and
//! answers whatever is still queued before its thread exits.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use payd_api::{AdminAccess, AppState};
use payd_engine::{Gateway, TokioClock, WalletWorker, WebhookDeliverer};
use payd_ports::{Clock, PaymentStore, ProcessorClient, WalletStore, WebhookStore};
use payd_processors::{HttpProcessors, HttpWebhookConfig, HttpWebhookSender};
use tokio::net::TcpListener;

use crate::ServeArgs;
use crate::store::Opened;

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut http = tokio::runtime::Builder::new_multi_thread();
    if args.http_threads > 0 {
        http.worker_threads(args.http_threads);
    }
    let http = http.enable_all().thread_name("payd-http").build()?;
    // Background work runs on its own threads: a request's task never waits in a run queue
    // behind the gateway's processor calls, and with the engine's threads niced, the kernel
    // runs request handling first when both cores are busy (the gateway draining a backlog
    // while payments keep arriving). Background work only needs the cores' spare time.
    let nice = args.engine_nice;
    let engine = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(args.engine_threads))
        .enable_all()
        .thread_name("payd-engine")
        .on_thread_start(move || lower_this_thread_priority(nice))
        .build()?;
    // The engine runtime is dropped here, outside any runtime, after `serve` has awaited
    // every engine task.
    http.block_on(serve(args, engine.handle().clone()))
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

async fn serve(args: ServeArgs, engine: tokio::runtime::Handle) -> anyhow::Result<()> {
    let metrics = payd_api::install_metrics_recorder();
    // Every setting is checked before anything starts.
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let config = args.store.config(clock.clone())?;
    let described = config.describe();
    let wallet_config = args.wallet.api_config()?;
    let wallet_worker_config = args.wallet.worker_config()?;
    let webhook_config = args.wallet.webhook_config()?;
    let (processors_config, gateway_config) = args.gateway.config()?;
    let opened = Opened::open(config).await?;
    let store = opened.store();
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let local = listener.local_addr()?;

    let processors: Arc<dyn ProcessorClient> = Arc::new(HttpProcessors::new(&processors_config)?);
    let gateway = Gateway::new(
        store.clone() as Arc<dyn PaymentStore>,
        processors,
        clock.clone(),
        gateway_config,
    );
    let (stop_gateway, gateway_stopped) = tokio::sync::watch::channel(false);
    let gateway_task = engine.spawn(gateway.clone().run(gateway_stopped));

    let admin = match (&args.admin_token, args.dev) {
        (Some(token), _) if !token.is_empty() => AdminAccess::Token(token.clone()),
        (_, true) => AdminAccess::Open,
        _ => AdminAccess::Closed,
    };
    let wallet_worker = WalletWorker::new(
        store.clone() as Arc<dyn WalletStore>,
        clock.clone(),
        wallet_worker_config,
    );
    let wallet_task = engine.spawn(wallet_worker.clone().run(stop_gateway.subscribe()));
    let webhook_sender = HttpWebhookSender::new(&HttpWebhookConfig {
        timeout_ms: webhook_config.request_timeout_ms,
        ..HttpWebhookConfig::default()
    })?;
    let deliverer = WebhookDeliverer::new(
        store.clone() as Arc<dyn WebhookStore>,
        Arc::new(webhook_sender),
        clock.clone(),
        webhook_config,
    );
    let webhook_task = engine.spawn(deliverer.run(stop_gateway.subscribe()));
    let wake = gateway.clone();
    let state = AppState {
        store: store.clone(),
        in_flight: opened.in_flight(),
        clock,
        on_payment_accepted: Arc::new(move || wake.wake()),
        on_transfer_accepted: Arc::new(move || wallet_worker.wake()),
        wallet_config,
        admin,
        metrics,
    };
    let app = payd_api::router(state);
    tracing::info!(address = %local, store = %described, "Payd is listening.");
    // Tests and scripts read this line to learn the port when listening on port 0.
    println!("payd listening on http://{local}");

    let (stopped_tx, stopped_rx) = tokio::sync::watch::channel(false);
    let server =
        axum::serve(listener, app.into_make_service()).with_graceful_shutdown(async move {
            shutdown_signal().await;
            let _ = stopped_tx.send(true);
        });
    let grace = Duration::from_millis(args.shutdown_grace_ms);
    let mut stopped = stopped_rx;
    tokio::select! {
        result = server => result.context("serving HTTP")?,
        // Once a signal arrived, give in-flight requests `grace` to finish.
        () = async {
            let _ = stopped.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!(grace_ms = args.shutdown_grace_ms, "In-flight requests did not finish in time."),
    }
    tracing::info!(
        "HTTP stopped; stopping the gateway, the wallet worker and the webhook deliverer."
    );
    let _ = stop_gateway.send(true);
    if let Err(error) = gateway_task.await {
        tracing::error!(%error, "The gateway task failed.");
    }
    if let Err(error) = wallet_task.await {
        tracing::error!(%error, "The wallet worker failed.");
    }
    // Requests in flight finish (each within its timeout) and their attempts are recorded.
    if let Err(error) = webhook_task.await {
        tracing::error!(%error, "The webhook deliverer failed.");
    }
    tracing::info!("Gateway stopped; draining the writers.");
    opened.shutdown().await?;
    tracing::info!("Payd stopped cleanly.");
    Ok(())
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
