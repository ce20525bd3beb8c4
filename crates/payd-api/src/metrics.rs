//! Prometheus metrics: the global recorder and the per-route HTTP middleware.
//!
//! The middleware is on the hot path (~40k req/s), so it does the minimum: two clock reads,
//! one counter and one histogram update, labels borrowed from `'static` strings where it can.
//! The route label is axum's [`MatchedPath`] (`/accounts/{id}`), never the raw path, so the
//! label set stays bounded whatever clients send.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use metrics::SharedString;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tower::{Layer, Service};

/// Latency buckets in seconds, 50µs..5s: the card route must answer in well under 100 ms
/// and payment intake in about a millisecond, so the resolution is finest below 10 ms
/// (the 2 ms and 10 ms bounds are the intake and transfer targets of the benchmarks).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.000_75, 0.001, 0.001_5, 0.002, 0.003, 0.005, 0.007_5,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Batch-size buckets, powers of two from 1 to 4096 (the store's group commits).
pub const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

/// How often histogram and idle-metric upkeep runs when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the global Prometheus recorder once and returns its handle; later calls (tests,
/// a second router) get the same handle.
///
/// Histograms get explicit buckets (the exporter would otherwise render summaries, which
/// cannot be aggregated across instances): metrics whose name ends in `_seconds` get
/// [`LATENCY_BUCKETS`], those ending in `_batch_size` get [`BATCH_BUCKETS`].
///
/// If another recorder was installed first (by an embedding program), ours is not global:
/// the handle then renders only what was recorded through it, and a warning is logged.
pub fn install_metrics_recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = builder().build_recorder();
            let handle = recorder.handle();
            if let Err(error) = metrics::set_global_recorder(recorder) {
                tracing::warn!(%error, "Another metrics recorder is installed; ours is not global.");
            }
            spawn_upkeep(handle.clone());
            handle
        })
        .clone()
}

fn builder() -> PrometheusBuilder {
    let with_buckets = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Suffix("_batch_size".to_owned()), BATCH_BUCKETS)
        });
    match with_buckets {
        Ok(builder) => builder,
        // Only an empty bucket list errs; ours are constants, so this is unreachable, but a
        // metrics setup problem must never take the service down.
        Err(error) => {
            tracing::error!(%error, "Invalid histogram buckets; using summaries.");
            PrometheusBuilder::new()
        }
    }
}

/// Histogram samples accumulate until drained: a scrape drains them, and so does upkeep.
/// Without a scraper they would grow without bound, so a small thread runs upkeep. A plain
/// thread, because this may be called outside any tokio runtime.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("payd-metrics-upkeep".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                handle.run_upkeep();
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "Could not start the metrics upkeep thread.");
    }
}

/// Counts one card decision by answer code.
pub(crate) fn record_authorization(code: &'static str) {
    metrics::counter!("payd_authorizations_total", "code" => code).increment(1);
}

/// The layer that records `payd_http_requests_total{method,route,status}` and
/// `payd_http_request_duration_seconds{method,route}`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct HttpMetricsLayer;

impl<S> Layer<S> for HttpMetricsLayer {
    type Service = HttpMetrics<S>;

    fn layer(&self, inner: S) -> HttpMetrics<S> {
        HttpMetrics { inner }
    }
}

/// See [`HttpMetricsLayer`].
#[derive(Clone, Debug)]
pub(crate) struct HttpMetrics<S> {
    inner: S,
}

impl<S> Service<Request> for HttpMetrics<S>
where
    S: Service<Request, Response = Response> + Send,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let start = Instant::now();
        let method = method_label(request.method());
        let route: SharedString = match request.extensions().get::<MatchedPath>() {
            Some(path) => path.as_str().to_owned().into(),
            None => SharedString::const_str("unmatched"),
        };
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            if let Ok(response) = &result {
                let seconds = start.elapsed().as_secs_f64();
                let status = status_label(response.status());
                metrics::counter!(
                    "payd_http_requests_total",
                    "method" => method, "route" => route.clone(), "status" => status
                )
                .increment(1);
                metrics::histogram!(
                    "payd_http_request_duration_seconds",
                    "method" => method, "route" => route
                )
                .record(seconds);
            }
            result
        })
    }
}

/// A `'static` label for the method; unusual methods share one label to bound cardinality.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}

/// A label for the status, without allocating for the ones this API answers.
fn status_label(status: StatusCode) -> SharedString {
    let text = match status.as_u16() {
        200 => "200",
        201 => "201",
        204 => "204",
        400 => "400",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        415 => "415",
        422 => "422",
        500 => "500",
        503 => "503",
        other => return other.to_string().into(),
    };
    SharedString::const_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_sorted_and_in_range() {
        assert!(LATENCY_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        assert!(BATCH_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(LATENCY_BUCKETS.first(), Some(&0.000_05));
        assert_eq!(LATENCY_BUCKETS.last(), Some(&5.0));
        assert_eq!(BATCH_BUCKETS.last(), Some(&4096.0));
    }

    #[test]
    fn labels() {
        assert_eq!(method_label(&Method::POST), "POST");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "OTHER");
        assert_eq!(status_label(StatusCode::OK), SharedString::const_str("200"));
        assert_eq!(
            status_label(StatusCode::IM_A_TEAPOT),
            SharedString::from("418".to_owned())
        );
    }

    #[test]
    fn install_is_idempotent() {
        let first = install_metrics_recorder();
        let second = install_metrics_recorder();
        metrics::counter!("payd_test_install_total").increment(1);
        assert!(first.render().contains("payd_test_install_total"));
        assert!(second.render().contains("payd_test_install_total"));
    }
}
