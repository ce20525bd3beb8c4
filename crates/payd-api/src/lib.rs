//! payd's HTTP API: axum handlers over a [`Store`].
//!
//! # Layout
//! - [`router`] (this file): the routes and their layers; [`AppState`] is what it needs.
//! - [`error`]: the one error table, [`error::Code`] → (HTTP status, stable snake_case code),
//!   and [`error::ApiError`], the only way a handler fails.
//! - `extract`: body, path and query extractors whose rejections are `ApiError`s, so no axum
//!   default rejection text ever reaches a client; the 64 KiB body limit.
//! - `dto`: wire types and their pure, unit-tested translation to and from domain types
//!   (exact amount parsing from the raw JSON text; amounts written with two decimals).
//! - `routes`: the handlers, one module per resource (`card`, `accounts`, `merchants`,
//!   `payments`, `wallet` (holds, withdrawals, transfers, events), `webhooks`, `ops`);
//!   each is parse → call the store → encode.
//! - `idempotency`: the claim of a mutating request (`Idempotency-Key` or the client's
//!   resource id, with a fingerprint of the request), holding its key while it runs
//!   (concurrent duplicates → 409, through the [`InFlightKeys`] port), and the one
//!   renderer whose output the store keeps for replays.
//! - `response`: JSON responses from values or already encoded bytes.
//! - [`metrics`](mod@metrics): the Prometheus recorder ([`install_metrics_recorder`]) and
//!   the per-route HTTP metrics layer.
//! - `openapi`: the generated OpenAPI document ([`openapi()`]).
//! - [`AccountLock`]: card decisions under a per-account lock across instances (Redis),
//!   fenced by the store.

mod account_lock;
pub mod error;
pub mod metrics;

mod dto;
mod extract;
mod idempotency;
mod openapi;
mod response;
mod routes;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use metrics_exporter_prometheus::PrometheusHandle;
use payd_ports::{Clock, DecisionCache, InFlightKeys, Store};

pub use crate::account_lock::AccountLock;
pub use crate::error::{ApiError, Code};
pub use crate::extract::BODY_LIMIT;
pub use crate::metrics::install_metrics_recorder;
pub use crate::openapi::openapi;

use crate::routes::{Ctx, accounts, card, merchants, ops, payments, wallet, webhooks};

/// What the API needs from the process.
#[derive(Clone)]
pub struct AppState {
    /// The store: ledger, payments, wallet and webhooks.
    pub store: Arc<dyn Store>,
    /// Idempotency keys of requests being processed (held across every process sharing
    /// the store).
    pub in_flight: Arc<dyn InFlightKeys>,
    /// The time of intake (`requestedAt`), hold expiries and key retention.
    pub clock: Arc<dyn Clock>,
    /// Called after each accepted payment (wakes the gateway's worker, if this process
    /// runs one).
    pub on_payment_accepted: Arc<dyn Fn() + Send + Sync>,
    /// Called after each accepted transfer (wakes the transfer settler, if this process
    /// runs one).
    pub on_transfer_accepted: Arc<dyn Fn() + Send + Sync>,
    /// Wallet settings.
    pub wallet_config: WalletConfig,
    /// Who may call admin endpoints (`POST /purge-payments`).
    pub admin: AdminAccess,
    /// Renders `GET /metrics` (see [`install_metrics_recorder`]).
    pub metrics: PrometheusHandle,
    /// Recent card decisions, answering replays without the store (`None`: the store
    /// answers every one).
    pub decisions: Option<Arc<dyn DecisionCache>>,
    /// Per-account locks for card decisions across instances (`None`: the store's own
    /// serialization alone).
    pub account_lock: Option<Arc<AccountLock>>,
}

/// The API's wallet settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalletConfig {
    /// Lifetime of a hold without `expiresInMs`.
    pub hold_ttl_ms: u64,
    /// Longest lifetime a client may ask for.
    pub hold_ttl_max_ms: u64,
    /// How long an `Idempotency-Key` is remembered (resource ids: forever).
    pub idempotency_retention_ms: u64,
}

impl Default for WalletConfig {
    fn default() -> WalletConfig {
        WalletConfig {
            hold_ttl_ms: 7 * 24 * 3_600_000,
            hold_ttl_max_ms: 30 * 24 * 3_600_000,
            idempotency_retention_ms: 24 * 3_600_000,
        }
    }
}

/// Who may call the admin endpoints.
#[derive(Clone, PartialEq, Eq)]
pub enum AdminAccess {
    /// Anyone: `--dev` mode, for local development and tests only.
    Open,
    /// Whoever sends `Authorization: Bearer <token>`.
    Token(String),
    /// Nobody (no token configured): admin endpoints answer `admin_disabled`.
    Closed,
}

impl std::fmt::Debug for AdminAccess {
    // Never print the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminAccess::Open => f.write_str("Open"),
            AdminAccess::Token(_) => f.write_str("Token(<redacted>)"),
            AdminAccess::Closed => f.write_str("Closed"),
        }
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// The whole API with its layers: every route, the JSON 404/405 answers, the 64 KiB body
/// limit and the HTTP metrics.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/transactions", post(card::transactions))
        .route("/authorize", post(card::authorize))
        .route("/accounts", post(accounts::create))
        .route("/accounts/{id}", get(accounts::get))
        .route("/accounts/{id}/deposits", post(accounts::deposit))
        .route("/accounts/{id}/entries", get(accounts::entries))
        .route("/accounts/{id}/withdrawals", post(wallet::withdraw))
        .route("/accounts/{id}/holds", post(wallet::place_hold))
        .route("/holds/{id}", get(wallet::get_hold))
        .route("/holds/{id}/capture", post(wallet::capture_hold))
        .route("/holds/{id}/void", post(wallet::void_hold))
        .route("/transfers", post(wallet::submit_transfer))
        .route("/transfers/{id}", get(wallet::get_transfer))
        .route("/events", get(wallet::events))
        .route("/webhooks", post(webhooks::create).get(webhooks::list))
        .route(
            "/webhooks/{id}",
            get(webhooks::get).delete(webhooks::delete),
        )
        .route("/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route("/merchants", get(merchants::list))
        .route(
            "/merchants/{pattern}",
            put(merchants::put).delete(merchants::delete),
        )
        .route("/payments", post(payments::accept))
        .route("/payments/{correlationId}", get(payments::get))
        .route("/payments-summary", get(payments::summary))
        .route("/purge-payments", post(payments::purge))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        // Read by the `Bytes` extractor; over-limit bodies become `payload_too_large` (or
        // `07` on the card route) through our own rejection mapping.
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(metrics::HttpMetricsLayer);

    // Added after the layers on purpose: liveness must stay as cheap as axum allows.
    api.route("/health", get(ops::health))
        .with_state(ctx(state, openapi_json()))
}

/// The probes and the metrics alone (`/health`, `/ready`, `/metrics`), for a process that
/// serves no API (`payd worker`); other paths answer the JSON 404.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(metrics::HttpMetricsLayer)
        .route("/health", get(ops::health))
        // No `/openapi.json` here: nothing to serialize.
        .with_state(ctx(state, Bytes::new()))
}

/// The OpenAPI document, serialized once; on failure (a bug) the route answers an empty
/// object rather than taking the service down.
fn openapi_json() -> Bytes {
    openapi()
        .to_json()
        .map(Bytes::from)
        .unwrap_or_else(|error| {
            tracing::error!(%error, "Failed to encode the OpenAPI document.");
            Bytes::from_static(b"{}")
        })
}

/// The handlers' shared context.
fn ctx(state: AppState, openapi_json: Bytes) -> Arc<Ctx> {
    Arc::new(Ctx {
        store: state.store,
        in_flight: state.in_flight,
        clock: state.clock,
        on_payment_accepted: state.on_payment_accepted,
        on_transfer_accepted: state.on_transfer_accepted,
        wallet_config: state.wallet_config,
        admin: state.admin,
        metrics: state.metrics,
        decisions: state.decisions,
        account_lock: state.account_lock,
        openapi_json,
    })
}
