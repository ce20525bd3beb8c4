//! Handlers, one module per resource. Each handler is parse → call the store → encode,
//! with every failure an [`ApiError`](crate::error::ApiError) from the one table.

pub(crate) mod accounts;
pub(crate) mod card;
pub(crate) mod merchants;
pub(crate) mod ops;
pub(crate) mod payments;
pub(crate) mod wallet;
pub(crate) mod webhooks;

use std::sync::Arc;

use axum::body::Bytes;
use axum::response::Response;
use metrics_exporter_prometheus::PrometheusHandle;
use payd_domain::ResourceId;
use payd_ports::{Clock, DecisionCache, InFlightKeys, Store};

use crate::error::{ApiError, Code};
pub(crate) use crate::response::{json, json_bytes};

/// What handlers share: the [`crate::AppState`] plus things computed once at startup.
pub(crate) struct Ctx {
    pub(crate) store: Arc<dyn Store>,
    /// Idempotency keys of requests being processed.
    pub(crate) in_flight: Arc<dyn InFlightKeys>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) on_payment_accepted: Arc<dyn Fn() + Send + Sync>,
    pub(crate) on_transfer_accepted: Arc<dyn Fn() + Send + Sync>,
    pub(crate) wallet_config: crate::WalletConfig,
    pub(crate) admin: crate::AdminAccess,
    pub(crate) metrics: PrometheusHandle,
    /// Recent card decisions, if a cache is configured.
    pub(crate) decisions: Option<Arc<dyn DecisionCache>>,
    /// Per-account locks for card decisions, if configured.
    pub(crate) account_lock: Option<Arc<crate::AccountLock>>,
    /// `GET /openapi.json`, serialized once: the spec cannot change at runtime.
    pub(crate) openapi_json: Bytes,
}

/// The router state.
pub(crate) type Shared = Arc<Ctx>;

/// A UUIDv7 id of any id type: unique without coordination, and time-ordered so ids sort
/// by creation.
pub(crate) fn generated_id<T, E: std::fmt::Display>(
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, ApiError> {
    parse(&uuid::Uuid::now_v7().to_string())
        .map_err(|error| ApiError::new(Code::Internal, format!("generated id invalid: {error}")))
}

/// A UUIDv7 resource id (holds, transfers, withdrawals, webhooks).
pub(crate) fn generated_resource_id() -> Result<ResourceId, ApiError> {
    generated_id(ResourceId::parse)
}

/// Claims the request (idempotency: see `crate::idempotency`) and runs the mutation; the
/// response is the one renderer's, fresh or replayed.
pub(crate) async fn execute(
    ctx: &Shared,
    request: crate::idempotency::Request<'_>,
    mutation: payd_ports::Mutation,
) -> Result<Response, ApiError> {
    let (stored, replayed) = execute_stored(ctx, request, mutation).await?;
    crate::idempotency::to_response(stored, replayed)
}

/// [`execute`], answering the stored response and whether it is a replay (for handlers that
/// add headers derived from the body).
pub(crate) async fn execute_stored(
    ctx: &Shared,
    request: crate::idempotency::Request<'_>,
    mutation: payd_ports::Mutation,
) -> Result<(payd_ports::StoredResponse, bool), ApiError> {
    let claimed = crate::idempotency::claim(
        &*ctx.in_flight,
        ctx.wallet_config.idempotency_retention_ms,
        ctx.clock.now_ms(),
        request,
    )
    .await?;
    let (claim, _guard) = match claimed {
        Some((claim, guard)) => (Some(claim), Some(guard)),
        None => (None, None),
    };
    crate::idempotency::stored(ctx.store.execute(mutation, claim).await)
}
