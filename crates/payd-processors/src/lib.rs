//! The HTTP client to the external payment processors: the adapter behind
//! `payd_ports::ProcessorClient`.
//!
//! # Layout
//! - `lib.rs`: [`HttpProcessors`] (one pooled keep-alive client and one in-flight bound per
//!   processor, a timeout on every call) and its [`HttpProcessorsConfig`].
//! - [`webhook`]: [`HttpWebhookSender`], the `payd_ports::WebhookSender` adapter: signed
//!   event POSTs to webhook URLs, no redirects, a timeout on every request.
//! - `tls_config`: the one TLS setup of both clients: rustls on aws-lc-rs with Mozilla's
//!   roots compiled in (`webpki-roots`), TLS 1.2 and 1.3.
//! - [`wire`]: the pure half: request bodies and the mapping from an HTTP answer (or its
//!   absence) to an explicit outcome, unit-tested without a network.
//!
//! Certainty is the point of this crate. A call that reached no server (connection refused)
//! is `Rejected`: nothing can have been booked. A call that timed out or lost its connection
//! after the request may have been sent is `Unknown`: the processor applies its delay before
//! booking, so it may still book it seconds later.

pub mod webhook;
pub mod wire;

/// The TLS configuration of every outbound client: rustls on aws-lc-rs with Mozilla's root
/// certificates (compiled in, so a minimal container needs no CA bundle).
pub(crate) fn tls_config() -> rustls::ClientConfig {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    // The provider supports the safe defaults; this cannot fail, but a failure would
    // only cost TLS, so fall back to the builder's own defaults rather than panic.
    .unwrap_or_else(|_| {
        rustls::ClientConfig::builder_with_protocol_versions(rustls::DEFAULT_VERSIONS)
    })
    .with_root_certificates(roots)
    .with_no_client_auth()
}

pub use webhook::{HttpWebhookConfig, HttpWebhookSender};

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use payd_domain::CorrelationId;
use payd_domain::gateway::{Outcome, Processor};
use payd_ports::{HealthError, HealthReport, Lookup, ProcessorClient, ProcessorPayment};
use tokio::sync::Semaphore;

/// Where the processors are and how patiently to call them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpProcessorsConfig {
    /// Base URL of the default processor, e.g. `http://127.0.0.1:8001`.
    pub default_url: String,
    /// Base URL of the fallback processor.
    pub fallback_url: String,
    /// Timeout of a payment submission, in ms. Past it the outcome is unknown.
    pub submit_timeout_ms: u64,
    /// Timeout of status and health queries, in ms.
    pub query_timeout_ms: u64,
    /// Timeout of establishing a connection, in ms.
    pub connect_timeout_ms: u64,
    /// Most calls in flight per processor; further calls wait for a slot.
    pub in_flight_max: usize,
}

impl Default for HttpProcessorsConfig {
    fn default() -> HttpProcessorsConfig {
        HttpProcessorsConfig {
            default_url: "http://127.0.0.1:8001".to_owned(),
            fallback_url: "http://127.0.0.1:8002".to_owned(),
            submit_timeout_ms: 10_000,
            query_timeout_ms: 2_000,
            connect_timeout_ms: 500,
            in_flight_max: 256,
        }
    }
}

/// One processor's endpoint: its client (a keep-alive pool) and its in-flight bound.
#[derive(Debug)]
struct Endpoint {
    base_url: String,
    client: reqwest::Client,
    slots: Arc<Semaphore>,
}

/// The `ProcessorClient` over HTTP.
#[derive(Debug)]
pub struct HttpProcessors {
    default: Endpoint,
    fallback: Endpoint,
    submit_timeout: Duration,
    query_timeout: Duration,
}

/// A client could not be built (bad TLS backend or settings).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the processor HTTP client: {0}")]
pub struct BuildError(String);

impl HttpProcessors {
    /// Builds one client per processor.
    pub fn new(config: &HttpProcessorsConfig) -> Result<HttpProcessors, BuildError> {
        let endpoint = |url: &str| -> Result<Endpoint, BuildError> {
            let client = reqwest::Client::builder()
                .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
                .tcp_nodelay(true)
                // Below the common 60–75 s server keep-alive, so we drop idle connections
                // before the server does and never write onto a socket it just closed
                // (which would turn a clean call into an unknown outcome).
                .pool_idle_timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(config.in_flight_max)
                .no_proxy()
                .tls_backend_preconfigured(tls_config())
                .build()
                .map_err(|error| BuildError(error.to_string()))?;
            Ok(Endpoint {
                base_url: url.trim_end_matches('/').to_owned(),
                client,
                slots: Arc::new(Semaphore::new(config.in_flight_max.max(1))),
            })
        };
        Ok(HttpProcessors {
            default: endpoint(&config.default_url)?,
            fallback: endpoint(&config.fallback_url)?,
            submit_timeout: Duration::from_millis(config.submit_timeout_ms),
            query_timeout: Duration::from_millis(config.query_timeout_ms),
        })
    }

    fn endpoint(&self, processor: Processor) -> &Endpoint {
        match processor {
            Processor::Default => &self.default,
            Processor::Fallback => &self.fallback,
        }
    }
}

#[async_trait]
impl ProcessorClient for HttpProcessors {
    async fn submit(&self, processor: Processor, payment: &ProcessorPayment) -> Outcome {
        let endpoint = self.endpoint(processor);
        // The semaphore is never closed, so acquiring only fails if it were; then nothing
        // was sent.
        let Ok(_slot) = endpoint.slots.acquire().await else {
            return Outcome::Rejected;
        };
        let answer = endpoint
            .client
            .post(format!("{}/payments", endpoint.base_url))
            .header("content-type", "application/json")
            .body(wire::submit_body(payment))
            .timeout(self.submit_timeout)
            .send()
            .await;
        match answer {
            Ok(response) => wire::submit_outcome(response.status().as_u16()),
            Err(error) => {
                let outcome = wire::transport_outcome(error.is_connect(), error.is_timeout());
                tracing::debug!(%processor, %error, ?outcome, "Processor call failed.");
                outcome
            }
        }
    }

    async fn lookup(&self, processor: Processor, id: &CorrelationId) -> Lookup {
        let endpoint = self.endpoint(processor);
        let Ok(_slot) = endpoint.slots.acquire().await else {
            return Lookup::Unavailable;
        };
        let answer = endpoint
            .client
            .get(format!("{}/payments/{}", endpoint.base_url, id.as_str()))
            .timeout(self.query_timeout)
            .send()
            .await;
        match answer {
            Ok(response) => wire::lookup_outcome(response.status().as_u16()),
            Err(_) => Lookup::Unavailable,
        }
    }

    async fn health(&self, processor: Processor) -> Result<HealthReport, HealthError> {
        let endpoint = self.endpoint(processor);
        let response = endpoint
            .client
            .get(format!("{}/payments/service-health", endpoint.base_url))
            .timeout(self.query_timeout)
            .send()
            .await
            .map_err(|error| HealthError::Unavailable(error.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|error| HealthError::Unavailable(error.to_string()))?;
        wire::health_report(status, &body)
    }
}
