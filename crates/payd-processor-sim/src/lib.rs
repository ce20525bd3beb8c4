//! A simulated payment processor: the processors' API of the payment-gateway spec
//! (`shared/specs/payment-gateway.md`), for developing and testing against, and for the
//! gateway's own tests and benchmarks. `payd processor-sim` runs it.
//!
//! # Layout
//!
//! * `config`: what an instance starts with, [`SimConfig`] ([`SimConfig::for_role`] gives the
//!   spec's default and fallback processors) and [`parse_fee`].
//! * `payments`: `POST /payments` (overload check, validation, delay, failure mode,
//!   booking) and `GET /payments/{correlationId}`.
//! * `health`: `GET /payments/service-health`, rate-limited for all callers together.
//! * `admin`: the `X-Rinha-Token`-guarded summary, configuration and purge endpoints.
//! * `state`: what the handlers share: payments, run-time settings, the in-flight
//!   semaphore, the health rate limiter.
//! * `store`: the booked payments, indexed by id and by `requestedAt`.
//! * `fee`: fees in basis points, rounding, and the exact decimal text of totals.
//! * `timestamp`: the strict ISO-8601 UTC millisecond grammar.
//! * `error`: every error code and status, in one table.
//!
//! # Behaviour worth knowing
//!
//! * **State is in memory.** The simulator stands in for an external processor, not for
//!   our ledger: a restart loses every booked payment.
//! * **The delay runs before booking, detached from the caller.** A caller that times out
//!   or disconnects does not cancel its payment: it is booked when the delay ends, so the
//!   outcome of a timed-out request is genuinely unknown, as with the real processor.
//! * **Overload** is more than `max_in_flight` payments between acceptance and booking
//!   (delays included): the extra ones get 429 at once and nothing is booked.
//! * **Money is exact.** Amounts are read from the JSON text with
//!   [`payd_domain::Amount::parse_positive`], fees are integer basis points, every fee is
//!   rounded half-up to the cent per payment, and totals are written as JSON numbers with
//!   two decimals. No `f64` anywhere.
//! * **Errors** are JSON `{"code", "message"}` with stable snake_case codes. The only 500 is
//!   the simulated failure mode (`simulated_failure`).

mod admin;
mod config;
mod error;
mod fee;
mod health;
mod payments;
mod state;
mod store;
mod timestamp;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};

pub use crate::config::{Role, SimConfig};
pub use crate::fee::parse_fee;

use crate::error::{Code, SimError};
use crate::state::Sim;

/// Largest request body, in bytes. Every body of this API is well under 1 KiB.
const BODY_LIMIT_BYTES: usize = 16 * 1024;

/// The whole simulator as a router, with fresh state. Each call is an independent
/// processor (tests build one per case).
pub fn router(config: &SimConfig) -> Router {
    let sim = Arc::new(Sim::new(config));
    let admin_routes = Router::new()
        .route("/admin/payments-summary", get(admin::summary))
        .route("/admin/configurations/delay", put(admin::set_delay))
        .route("/admin/configurations/failure", put(admin::set_failure))
        .route("/admin/configurations/token", put(admin::set_token))
        .route("/admin/purge-payments", post(admin::purge))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&sim),
            admin::require_token,
        ));
    Router::new()
        .route("/payments", post(payments::create))
        // A static segment wins over the parameter below, so this is never read as an id.
        .route("/payments/service-health", get(health::check))
        .route("/payments/{correlation_id}", get(payments::fetch))
        .merge(admin_routes)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .with_state(sim)
}

async fn not_found() -> SimError {
    SimError::new(Code::NotFound, "no such route")
}

async fn method_not_allowed() -> SimError {
    SimError::new(
        Code::MethodNotAllowed,
        "this route does not accept this method",
    )
}

/// Binds `config.listen`, prints `processor-sim listening on http://<addr>` to stdout (the
/// actual address, so port 0 is usable), and serves until `shutdown` completes. Requests in
/// progress, delays included, are finished before it returns.
pub async fn run(
    config: SimConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let address = listener.local_addr()?;
    let app = router(&config);
    println!("processor-sim listening on http://{address}");
    tracing::info!(
        %address,
        fee_bps = config.fee_bps,
        delay_ms = config.delay_ms,
        failing = config.failing,
        "Processor simulator started."
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
