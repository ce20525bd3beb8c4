//! The HTTP adapter behind `payd_ports::WebhookSender`: one pooled keep-alive client that
//! POSTs signed events to webhook URLs.
//!
//! Redirects are not followed (a 3xx is an answer like any non-2xx: retried), no proxy is
//! used, every request has a timeout, and at most [`RESPONSE_READ_MAX`] bytes of an answer
//! are read (so that a small answer lets the connection be reused, and a huge one cannot
//! make us buffer it). `https` URLs use rustls with Mozilla's roots (`crate::tls_config`).

use std::time::Duration;

use async_trait::async_trait;
use payd_domain::webhook::{EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use payd_ports::{SendOutcome, WebhookRequest, WebhookSender};

use crate::BuildError;

/// Most bytes of a receiver's answer read before the connection is dropped.
pub const RESPONSE_READ_MAX: usize = 16 * 1024;

/// Timeouts of webhook requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpWebhookConfig {
    /// Timeout of one request (connect, send, answer), in ms.
    pub timeout_ms: u64,
    /// Timeout of establishing a connection, in ms.
    pub connect_timeout_ms: u64,
}

impl Default for HttpWebhookConfig {
    fn default() -> HttpWebhookConfig {
        HttpWebhookConfig {
            timeout_ms: 10_000,
            connect_timeout_ms: 2_000,
        }
    }
}

/// The `WebhookSender` over HTTP.
#[derive(Debug)]
pub struct HttpWebhookSender {
    client: reqwest::Client,
    timeout: Duration,
}

impl HttpWebhookSender {
    /// Builds the client.
    pub fn new(config: &HttpWebhookConfig) -> Result<HttpWebhookSender, BuildError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("payd-webhooks/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .tls_backend_preconfigured(crate::tls_config())
            .build()
            .map_err(|error| BuildError(error.to_string()))?;
        Ok(HttpWebhookSender {
            client,
            timeout: Duration::from_millis(config.timeout_ms),
        })
    }
}

#[async_trait]
impl WebhookSender for HttpWebhookSender {
    async fn send(&self, request: &WebhookRequest) -> SendOutcome {
        let answer = self
            .client
            .post(&request.url)
            .header("content-type", "application/json")
            .header(EVENT_ID_HEADER, &request.event_id)
            .header(TIMESTAMP_HEADER, &request.timestamp)
            .header(SIGNATURE_HEADER, &request.signature)
            .body(request.body.clone())
            .timeout(self.timeout)
            .send()
            .await;
        let mut response = match answer {
            Ok(response) => response,
            Err(error) => return SendOutcome::Transport(describe(&error)),
        };
        let status = response.status().as_u16();
        // Drain a small answer so the connection goes back to the pool; give up on a big
        // or slow one (the status is what counts).
        let mut read = 0;
        while read < RESPONSE_READ_MAX {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) | Err(_) => break,
            }
        }
        SendOutcome::Status(status)
    }
}

/// A short description of a transport error, with its innermost cause.
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_builder() {
        "invalid request"
    } else {
        "request failed"
    };
    let mut cause: &dyn std::error::Error = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    format!("{kind}: {cause}")
}
