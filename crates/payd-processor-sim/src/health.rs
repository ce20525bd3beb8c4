//! `GET /payments/service-health`.
//!
//! Rate-limited to one answer per `health_interval_ms` for all callers together, as in the
//! spec. The real processor may instead *hold* an extra call for a few seconds and then
//! answer; we refuse it at once with 429 and a `Retry-After`, so a caller that breaks the
//! limit learns it fast instead of having a poller stall.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;

use crate::error::{Code, SimError, json_response};
use crate::state::Sim;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Health {
    failing: bool,
    /// The configured delay: the least time a payment takes.
    min_response_time: u64,
}

/// `GET /payments/service-health`.
pub(crate) async fn check(State(sim): State<Arc<Sim>>) -> Result<Response, SimError> {
    sim.try_health_check().map_err(|wait| {
        SimError::new(
            Code::HealthRateLimited,
            format!(
                "service-health answers once per window for all callers; retry in {} ms",
                wait.as_millis()
            ),
        )
        .retry_after(wait)
    })?;
    let health = Health {
        failing: sim.failing(),
        min_response_time: sim.delay_ms(),
    };
    Ok(json_response(StatusCode::OK, &health))
}
