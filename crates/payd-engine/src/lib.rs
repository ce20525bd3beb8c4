//! payd's engine: orchestration over the ports only (no SQL, no HTTP here).
//!
//! # Layout
//! - [`Clock`] (from `payd-ports`): the only source of time (a tokio-driven wall clock, so
//!   tests can pause and advance it).
//! - [`health`]: [`ProcessorHealth`], what the engine knows of each processor (circuit
//!   breaker, the health endpoint's last report, latencies of real calls), and the health
//!   poller, which calls each processor's rate-limited health endpoint at most once per
//!   interval for every process sharing its [`SharedHealth`] board (the lease holder calls,
//!   the others read what it published).
//! - [`gateway`]: [`Gateway`], the worker loop: lease due payments, route free ones with
//!   the domain's policy, call processors within per-processor in-flight bounds, record
//!   outcomes, and resolve unknown outcomes at the processor they are bound to.
//! - [`inbox`]: the payments a message of the work transport (RabbitMQ) announced to this
//!   worker ([`Gateway::offer`]), each acknowledged once its lease committed.
//! - [`relay`]: [`OutboxRelay`], which publishes the outbox to the work transport with
//!   confirms and deletes what the broker confirmed.
//! - [`config`]: [`GatewayConfig`], every threshold and bound, with defaults.
//! - `jitter`: the randomness handed to the domain's backoff policies (gateway, webhooks).
//! - [`pipeline`]: [`TransferPipeline`], the design notes' two-stage transfer pipeline:
//!   stage A takes both accounts' locks (Redis, fenced), stage B settles under them.
//! - [`wallet`]: [`WalletWorker`]: settles pending transfers in acceptance order, expires
//!   holds, purges idempotency keys past their retention.
//! - [`webhooks`]: [`WebhookDeliverer`]: POSTs outbox events, signed, to registered
//!   webhooks through the `WebhookSender` port; bounded concurrency and timeouts, retries
//!   with capped jittered backoff for at least a day, every attempt recorded.

pub mod config;
pub mod gateway;
pub mod health;
pub mod inbox;
mod jitter;
pub mod pipeline;
pub mod relay;
pub mod wallet;
pub mod webhooks;

pub use config::GatewayConfig;
pub use gateway::Gateway;
pub use health::{ProcessorHealth, SharedHealth};
pub use payd_ports::{Clock, ManualClock, TokioClock};
pub use pipeline::{PipelineConfig, TransferPipeline};
pub use relay::{OutboxRelay, OutboxRelayConfig};
pub use wallet::{WalletWorker, WalletWorkerConfig};
pub use webhooks::{WebhookDeliverer, WebhookDelivererConfig};

/// Locks `mutex`, poisoned or not. The engine's locks guard state that a panic cannot leave
/// half-updated in a way that matters (each holder changes it in one step), so a poisoned
/// lock is still usable.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
