//! Webhook delivery: the outbox's events POSTed, signed, to every registered webhook.
//!
//! [`WebhookDeliverer`] loops: lease due deliveries from the store (which first schedules
//! new events for each webhook), send each through the [`WebhookSender`] port with at most
//! `concurrency` requests in flight, then record the attempt: a 2xx is delivered; anything
//! else (another status, a transport error, a timeout) is retried on the domain's
//! [`RetryPolicy`] (capped, jittered exponential backoff) until an attempt fails
//! `give_up_after_ms` after the delivery was scheduled, which marks it failed. Every
//! attempt is recorded.
//!
//! Delivery is at least once: a lease outlives the request's timeout, so a deliverer that
//! dies mid-call leaves the delivery due again when its lease ends; receivers deduplicate
//! by event id. Nothing is ordered across events.
//!
//! Metrics: `payd_webhook_attempts_total{result}` (counter: `delivered`, `retrying`,
//! `gave_up`), `payd_webhook_attempt_seconds` (histogram).

use std::sync::Arc;
use std::time::Duration;

use payd_domain::timestamp::format_ms;
use payd_domain::webhook::{Retry, RetryPolicy, sign};
use payd_ports::{
    Attempt, AttemptOutcome, Delivery, EventView, LedgerError, SendOutcome, WebhookRequest,
    WebhookSender, WebhookStore,
};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::Clock;
use crate::jitter::Jitter;

/// Bounds and intervals of the deliverer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WebhookDelivererConfig {
    /// Most requests in flight (over all webhooks).
    pub concurrency: u32,
    /// Most deliveries leased per store command.
    pub lease_batch: u32,
    /// Longest sleep between two looks for due work (new events are not signalled: the
    /// store is polled; [`WebhookDeliverer::wake`] cuts a sleep short).
    pub poll_ms: u64,
    /// Timeout of one request, in ms; the sender has its own, this one bounds the call
    /// through the port whatever the sender does.
    pub request_timeout_ms: u64,
    /// How long a lease lasts past the request's timeout, in ms: time to record the
    /// attempt. A deliverer that dies mid-call leaves the delivery due after
    /// `request_timeout_ms + lease_margin_ms`.
    pub lease_margin_ms: u64,
    /// Retries of failed attempts.
    pub retry: RetryPolicy,
    /// Wait after a store error, in ms.
    pub error_backoff_ms: u64,
}

impl Default for WebhookDelivererConfig {
    fn default() -> WebhookDelivererConfig {
        WebhookDelivererConfig {
            concurrency: 32,
            lease_batch: 64,
            poll_ms: 200,
            request_timeout_ms: 10_000,
            lease_margin_ms: 30_000,
            retry: RetryPolicy::default(),
            error_backoff_ms: 500,
        }
    }
}

impl WebhookDelivererConfig {
    fn lease_ms(&self) -> i64 {
        i64::try_from(self.request_timeout_ms.saturating_add(self.lease_margin_ms))
            .unwrap_or(i64::MAX)
    }
}

/// The JSON body of an event, as `GET /events` lists it:
/// `{"id":"evt_N","type":"...","subject":"...","data":{...},"createdAt":"..."}`.
pub fn event_body(event: &EventView) -> Vec<u8> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Body<'a> {
        id: String,
        #[serde(rename = "type")]
        kind: &'static str,
        subject: &'a str,
        data: &'a RawValue,
        created_at: String,
    }
    let fallback;
    let data: &RawValue = match serde_json::from_str(&event.payload) {
        Ok(raw) => raw,
        // Stored payloads are JSON; should one not be, send it as a string rather than
        // never deliver the event.
        Err(_) => {
            fallback = serde_json::value::to_raw_value(&event.payload).unwrap_or_default();
            &fallback
        }
    };
    serde_json::to_vec(&Body {
        id: event_id(event.seq),
        kind: event.kind.as_str(),
        subject: &event.subject,
        data,
        created_at: format_ms(event.created_at_ms),
    })
    .unwrap_or_default()
}

/// The public id of event `seq`.
pub fn event_id(seq: i64) -> String {
    format!("evt_{seq}")
}

/// The deliverer. Cheap to wake; one per process.
pub struct WebhookDeliverer {
    store: Arc<dyn WebhookStore>,
    sender: Arc<dyn WebhookSender>,
    clock: Arc<dyn Clock>,
    config: WebhookDelivererConfig,
    wake: Notify,
    /// Randomness for the backoff's jitter.
    jitter: Jitter,
}

impl std::fmt::Debug for WebhookDeliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookDeliverer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl WebhookDeliverer {
    /// A deliverer over these ports.
    pub fn new(
        store: Arc<dyn WebhookStore>,
        sender: Arc<dyn WebhookSender>,
        clock: Arc<dyn Clock>,
        config: WebhookDelivererConfig,
    ) -> Arc<WebhookDeliverer> {
        let jitter = Jitter::seeded(clock.now_ms());
        Arc::new(WebhookDeliverer {
            store,
            sender,
            clock,
            config,
            wake: Notify::new(),
            jitter,
        })
    }

    /// Cuts the current sleep short (a webhook was registered, events were written).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Leases what is due now and delivers it, `concurrency` at a time, until nothing is
    /// due; how many attempts were made. For tests and tools; [`WebhookDeliverer::run`]
    /// is the service loop.
    pub async fn deliver_due(self: &Arc<Self>) -> Result<usize, LedgerError> {
        let mut made = 0;
        loop {
            let leased = self
                .store
                .lease_deliveries(
                    self.clock.now_ms(),
                    self.config.concurrency.max(1),
                    self.config.lease_ms(),
                )
                .await?;
            made += leased.deliveries.len();
            let mut calls = JoinSet::new();
            for delivery in leased.deliveries {
                calls.spawn(Arc::clone(self).attempt(delivery));
            }
            while calls.join_next().await.is_some() {}
            if !leased.more {
                return Ok(made);
            }
        }
    }

    /// Delivers until `shutdown` turns true, then lets the requests in flight finish and
    /// records them (each is bounded by the request timeout).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let concurrency = self.config.concurrency.max(1) as usize;
        let mut calls: JoinSet<()> = JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            while calls.try_join_next().is_some() {}
            let free = concurrency.saturating_sub(calls.len());
            if free == 0 {
                // Every slot is taken: wait for one to free up.
                tokio::select! {
                    _ = calls.join_next() => {}
                    _ = shutdown.wait_for(|stop| *stop) => break,
                }
                continue;
            }
            let limit = u32::try_from(free)
                .unwrap_or(u32::MAX)
                .min(self.config.lease_batch.max(1));
            let now_ms = self.clock.now_ms();
            let wait_ms = match self
                .store
                .lease_deliveries(now_ms, limit, self.config.lease_ms())
                .await
            {
                Ok(leased) => {
                    let leased_all = leased.deliveries.len() as u32 == limit;
                    for delivery in leased.deliveries {
                        calls.spawn(Arc::clone(&self).attempt(delivery));
                    }
                    if leased.more || leased_all {
                        0
                    } else {
                        let until_next_ms = leased.next_due_ms.map_or(u64::MAX, |at| {
                            u64::try_from(at.saturating_sub(now_ms)).unwrap_or(0)
                        });
                        until_next_ms.clamp(1, self.config.poll_ms.max(1))
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "Leasing webhook deliveries failed; backing off.");
                    self.config.error_backoff_ms
                }
            };
            if wait_ms > 0 {
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
                    _ = shutdown.wait_for(|stop| *stop) => break,
                }
            }
        }
        while calls.join_next().await.is_some() {}
    }

    /// One attempt: sign, send, decide, record.
    async fn attempt(self: Arc<Self>, delivery: Delivery) {
        let body = event_body(&delivery.event);
        let started_ms = self.clock.now_ms();
        let timestamp_s = started_ms.div_euclid(1_000);
        let request = WebhookRequest {
            url: delivery.url.clone(),
            event_id: event_id(delivery.event.seq),
            timestamp: timestamp_s.to_string(),
            signature: sign(&delivery.secret, timestamp_s, &body),
            body,
        };
        let started = Instant::now();
        let timeout = Duration::from_millis(self.config.request_timeout_ms.max(1));
        let sent = tokio::time::timeout(timeout, self.sender.send(&request))
            .await
            .unwrap_or_else(|_| {
                SendOutcome::Transport(format!(
                    "timed out after {} ms",
                    self.config.request_timeout_ms
                ))
            });
        let elapsed = started.elapsed();
        metrics::histogram!("payd_webhook_attempt_seconds").record(elapsed.as_secs_f64());
        let ended_ms = self.clock.now_ms();
        let failed = |status: Option<u16>, error: String| {
            let retry = self.config.retry.after_failure(
                delivery.scheduled_at_ms,
                delivery.attempt,
                ended_ms,
                self.jitter.next_u32(),
            );
            AttemptOutcome::Failed {
                status,
                error,
                retry_at_ms: match retry {
                    Retry::At(at) => Some(at),
                    Retry::GiveUp => None,
                },
            }
        };
        let outcome = match sent {
            SendOutcome::Status(status) if (200..300).contains(&status) => {
                AttemptOutcome::Delivered { status }
            }
            SendOutcome::Status(status) => failed(Some(status), format!("HTTP {status}")),
            SendOutcome::Transport(error) => failed(None, error),
        };
        let result = match &outcome {
            AttemptOutcome::Delivered { .. } => "delivered",
            AttemptOutcome::Failed {
                retry_at_ms: Some(_),
                ..
            } => "retrying",
            AttemptOutcome::Failed {
                retry_at_ms: None, ..
            } => "gave_up",
        };
        metrics::counter!("payd_webhook_attempts_total", "result" => result).increment(1);
        match &outcome {
            AttemptOutcome::Failed {
                retry_at_ms: None,
                error,
                ..
            } => tracing::warn!(
                webhook = %delivery.webhook.as_str(),
                event = %request.event_id,
                attempts = delivery.attempt,
                %error,
                "Webhook delivery failed for good."
            ),
            AttemptOutcome::Failed {
                retry_at_ms: Some(at),
                error,
                ..
            } => tracing::debug!(
                webhook = %delivery.webhook.as_str(),
                event = %request.event_id,
                attempt = delivery.attempt,
                retry_at_ms = at,
                %error,
                "Webhook delivery failed; will retry."
            ),
            AttemptOutcome::Delivered { .. } => {}
        }
        let attempt = Attempt {
            webhook: delivery.webhook,
            event_seq: delivery.event.seq,
            attempt: delivery.attempt,
            at_ms: started_ms,
            duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            outcome,
        };
        // A few tries: if the store stays unavailable the lease runs out and the delivery is
        // attempted again (at least once).
        for wait_ms in [0, 100, 1_000] {
            if wait_ms > 0 {
                tokio::time::sleep(Duration::from_millis(wait_ms)).await;
            }
            match self.store.record_attempt(attempt.clone()).await {
                Ok(_) => return,
                Err(error) => {
                    tracing::warn!(%error, event = %request.event_id, "Recording a webhook attempt failed.");
                }
            }
        }
    }
}
