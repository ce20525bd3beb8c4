//! Probes, metrics, the OpenAPI document, and the JSON answers for unknown routes/methods.

use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::{Shared, json, json_bytes};
use crate::dto::StatusBody;
use crate::error::{ApiError, Code, ErrorBody};

/// The liveness body, a constant: `/health` is the HTTP ceiling in benchmarks, so it touches
/// nothing (no store, no serializer, no metrics layer).
const HEALTH_BODY: &[u8] = br#"{"status":"ok"}"#;

/// Liveness: the process serves HTTP.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tag = "ops",
    responses((status = 200, description = "Alive.", body = StatusBody)),
)]
pub(crate) async fn health() -> Response {
    json_bytes(StatusCode::OK, HEALTH_BODY)
}

/// Readiness: the store can take commands.
#[utoipa::path(
    get,
    path = "/ready",
    operation_id = "ready",
    tag = "ops",
    responses(
        (status = 200, description = "Ready.", body = StatusBody),
        (status = 503, description = "`not_ready`", body = ErrorBody),
    ),
)]
pub(crate) async fn ready(State(ctx): State<Shared>) -> Result<Response, ApiError> {
    if ctx.store.is_ready() {
        json(StatusCode::OK, &StatusBody { status: "ready" })
    } else {
        Err(ApiError::new(
            Code::NotReady,
            "the ledger store is not ready to take commands",
        ))
    }
}

/// Prometheus metrics, text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "ops",
    responses((status = 200, description = "Prometheus text format.", body = String, content_type = "text/plain")),
)]
pub(crate) async fn metrics(State(ctx): State<Shared>) -> Response {
    let mut response = ctx.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "ops",
    responses((status = 200, description = "The OpenAPI document.", body = Object)),
)]
pub(crate) async fn openapi(State(ctx): State<Shared>) -> Response {
    json_bytes(StatusCode::OK, ctx.openapi_json.clone())
}

/// Any path no route matches.
pub(crate) async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        Code::NotFound,
        format!("no route for {method} {}", uri.path()),
    )
}

/// A known path with a method it does not serve.
pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        Code::MethodNotAllowed,
        format!("{method} is not allowed on {}", uri.path()),
    )
}
