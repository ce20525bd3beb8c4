//! The admin endpoints: summary, run-time configuration, purge. Every one requires the
//! current `X-Rinha-Token` ([`require_token`], applied as a route layer so that a request
//! without it is refused before its body is read).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{Code, SimError, json_response};
use crate::fee::{format_bps, format_cents};
use crate::payments::json_number;
use crate::state::Sim;
use crate::timestamp;

/// The header the admin endpoints check.
const TOKEN_HEADER: &str = "x-rinha-token";

/// Largest delay an admin may set, in milliseconds: a minute is far beyond any client
/// timeout, and a cap keeps a typo from parking payments for hours.
const DELAY_MS_MAX: u64 = 60_000;

/// Longest token accepted, in bytes.
const TOKEN_LEN_MAX: usize = 256;

/// Route layer: 401 unless `X-Rinha-Token` equals the current token.
pub(crate) async fn require_token(
    State(sim): State<Arc<Sim>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(TOKEN_HEADER)
        .map(|value| value.as_bytes());
    match presented {
        Some(token) if sim.token_matches(token) => next.run(request).await,
        Some(_) => SimError::new(Code::Unauthorized, "wrong X-Rinha-Token").into_response(),
        None => SimError::new(Code::Unauthorized, "the X-Rinha-Token header is required")
            .into_response(),
    }
}

#[derive(Deserialize)]
pub(crate) struct SummaryQuery {
    from: Option<String>,
    to: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SummaryView {
    total_amount: Box<RawValue>,
    total_requests: u64,
    total_fee: Box<RawValue>,
    fee_per_transaction: Box<RawValue>,
}

/// A `from`/`to` bound: absent or empty is unbounded.
fn bound(name: &str, value: Option<&str>) -> Result<Option<i64>, SimError> {
    match value {
        None | Some("") => Ok(None),
        Some(text) => timestamp::parse(text)
            .map(|t| Some(t.unix_ms))
            .map_err(|reason| {
                SimError::new(Code::InvalidTimestamp, format!("query `{name}`: {reason}"))
            }),
    }
}

/// `GET /admin/payments-summary?from=&to=`: totals over booked payments whose
/// `requestedAt` is in `[from, to]`, both inclusive.
pub(crate) async fn summary(
    State(sim): State<Arc<Sim>>,
    query: Result<Query<SummaryQuery>, QueryRejection>,
) -> Result<Response, SimError> {
    let Query(query) =
        query.map_err(|rejection| SimError::new(Code::InvalidQuery, rejection.body_text()))?;
    let from_ms = bound("from", query.from.as_deref())?;
    let to_ms = bound("to", query.to.as_deref())?;
    let totals = sim.payments().summary(from_ms, to_ms, sim.fee_bps);
    let view = SummaryView {
        total_amount: json_number(format_cents(totals.total_cents))?,
        total_requests: totals.total_requests,
        total_fee: json_number(format_cents(totals.total_fee_cents))?,
        fee_per_transaction: json_number(format_bps(sim.fee_bps))?,
    };
    Ok(json_response(StatusCode::OK, &view))
}

/// Reads a small admin JSON body.
fn admin_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, SimError> {
    let bytes = body.map_err(|rejection| SimError::from_body(&rejection))?;
    serde_json::from_slice(&bytes).map_err(|error| SimError::from_json(&error))
}

#[derive(Deserialize)]
struct DelayBody {
    delay: u64,
}

/// `PUT /admin/configurations/delay {"delay": ms}`, 0 to 60 000.
pub(crate) async fn set_delay(
    State(sim): State<Arc<Sim>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, SimError> {
    let DelayBody { delay } = admin_body(body)?;
    if delay > DELAY_MS_MAX {
        return Err(SimError::invalid_field(
            "delay",
            format!("must be 0 to {DELAY_MS_MAX} milliseconds"),
        ));
    }
    sim.set_delay_ms(delay);
    tracing::info!(delay_ms = delay, "Delay configured.");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct FailureBody {
    failure: bool,
}

/// `PUT /admin/configurations/failure {"failure": bool}`.
pub(crate) async fn set_failure(
    State(sim): State<Arc<Sim>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, SimError> {
    let FailureBody { failure } = admin_body(body)?;
    sim.set_failing(failure);
    tracing::info!(failing = failure, "Failure mode configured.");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct TokenBody {
    token: String,
}

/// `PUT /admin/configurations/token {"token": "..."}`. The new token must be something a
/// client can send back in a header (1 to 256 visible ASCII characters); anything else
/// would lock every admin out.
pub(crate) async fn set_token(
    State(sim): State<Arc<Sim>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, SimError> {
    let TokenBody { token } = admin_body(body)?;
    let sendable = token.bytes().all(|b| b.is_ascii_graphic());
    if token.is_empty() || token.len() > TOKEN_LEN_MAX || !sendable {
        return Err(SimError::invalid_field(
            "token",
            format!("must be 1 to {TOKEN_LEN_MAX} visible ASCII characters"),
        ));
    }
    sim.set_token(token);
    tracing::info!("Admin token changed.");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct Message {
    message: &'static str,
}

/// `POST /admin/purge-payments`: forgets every booked payment.
pub(crate) async fn purge(State(sim): State<Arc<Sim>>) -> Response {
    sim.payments().purge();
    tracing::info!("Payments purged.");
    json_response(
        StatusCode::OK,
        &Message {
            message: "All payments purged.",
        },
    )
}
