//! The webhook ports: [`WebhookStore`] (registered endpoints and the delivery bookkeeping)
//! and [`WebhookSender`] (one signed HTTP POST).
//!
//! # Delivery model
//! Every live webhook has a cursor into the outbox: the last event already scheduled for
//! it. A webhook starts at the newest event at its registration, so it receives only events
//! created after it was registered. [`WebhookStore::lease_deliveries`] first schedules the
//! events past each cursor (one pending delivery per webhook and event) and then leases the
//! deliveries that are due: each leased delivery has its attempt counter bumped and its next
//! attempt pushed `lease_ms` ahead, so that a deliverer that dies mid-call leaves it to be
//! retried once the lease runs out (at least once). [`WebhookStore::record_attempt`] then
//! logs the attempt and moves the delivery to delivered, to its next attempt, or to failed.
//!
//! Receivers must deduplicate by event id: a delivery can be repeated (lost answer,
//! expired lease), and deliveries of different events are not ordered.

use async_trait::async_trait;
use payd_domain::ResourceId;

use crate::{EventView, LedgerError};

/// Most live webhooks: every event is delivered to each, so this bounds the fan-out.
pub const WEBHOOKS_MAX: i64 = 100;

/// Most deliveries one lease schedules (over all webhooks), so that a backlog of events
/// (a webhook far behind) is taken in bounded steps.
pub const SCHEDULE_MAX: u32 = 2_048;

/// Most deliveries one lease hands out.
pub const LEASE_MAX: u32 = 1_000;

/// Most attempts one listing returns.
pub const ATTEMPTS_PAGE_MAX: u32 = 1_000;

/// A webhook to register.
#[derive(Clone, PartialEq, Eq)]
pub struct NewWebhook {
    /// Its id (the API generates one when the client gives none).
    pub id: ResourceId,
    /// Where events are POSTed (`http` or `https`, validated by the API).
    pub url: String,
    /// The HMAC key of its signatures.
    pub secret: String,
}

impl std::fmt::Debug for NewWebhook {
    // Never print the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewWebhook")
            .field("id", &self.id)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// A registered webhook, without its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookView {
    /// Its id.
    pub id: ResourceId,
    /// Where events are POSTed.
    pub url: String,
    /// Registration time, ms since the epoch.
    pub created_at_ms: i64,
    /// The newest event that existed at registration: it receives events after this one.
    pub after_seq: i64,
}

/// One delivery to attempt now, as leased by [`WebhookStore::lease_deliveries`].
#[derive(Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The webhook.
    pub webhook: ResourceId,
    /// Its URL.
    pub url: String,
    /// Its signing secret.
    pub secret: String,
    /// The event to deliver.
    pub event: EventView,
    /// The number of this attempt (1 = the first).
    pub attempt: u32,
    /// When the delivery was scheduled, ms since the epoch (the retry window starts here).
    pub scheduled_at_ms: i64,
}

impl std::fmt::Debug for Delivery {
    // Never print the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("webhook", &self.webhook)
            .field("url", &self.url)
            .field("event", &self.event.seq)
            .field("attempt", &self.attempt)
            .field("scheduled_at_ms", &self.scheduled_at_ms)
            .finish_non_exhaustive()
    }
}

/// The result of one lease.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leased {
    /// The deliveries to attempt now.
    pub deliveries: Vec<Delivery>,
    /// Whether more work is ready now (the lease stopped at its limit).
    pub more: bool,
    /// When the next pending delivery becomes due (ms since the epoch), if one is pending.
    pub next_due_ms: Option<i64>,
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The receiver answered 2xx: the delivery is done.
    Delivered {
        /// The HTTP status.
        status: u16,
    },
    /// Anything else; retried at `retry_at_ms`, or failed for good when it is `None`.
    Failed {
        /// The HTTP status, if the receiver answered at all.
        status: Option<u16>,
        /// What went wrong (`HTTP 500`, a transport error, a timeout).
        error: String,
        /// The next attempt (ms since the epoch); `None`: give up.
        retry_at_ms: Option<i64>,
    },
}

/// One finished attempt, to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// The webhook.
    pub webhook: ResourceId,
    /// The event.
    pub event_seq: i64,
    /// The attempt number given by the lease.
    pub attempt: u32,
    /// When the request started, ms since the epoch.
    pub at_ms: i64,
    /// How long it took, in ms.
    pub duration_ms: u64,
    /// How it ended.
    pub outcome: AttemptOutcome,
}

impl AttemptOutcome {
    /// What the attempt makes of its delivery.
    pub fn result(&self) -> AttemptResult {
        match self {
            AttemptOutcome::Delivered { .. } => AttemptResult::Delivered,
            AttemptOutcome::Failed {
                retry_at_ms: Some(_),
                ..
            } => AttemptResult::Retrying,
            AttemptOutcome::Failed {
                retry_at_ms: None, ..
            } => AttemptResult::GaveUp,
        }
    }

    /// The receiver's HTTP status, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            AttemptOutcome::Delivered { status } => Some(*status),
            AttemptOutcome::Failed { status, .. } => *status,
        }
    }

    /// What went wrong, if anything did.
    pub fn error(&self) -> Option<&str> {
        match self {
            AttemptOutcome::Delivered { .. } => None,
            AttemptOutcome::Failed { error, .. } => Some(error),
        }
    }

    /// When the delivery is tried next, if it is.
    pub fn retry_at_ms(&self) -> Option<i64> {
        match self {
            AttemptOutcome::Delivered { .. } => None,
            AttemptOutcome::Failed { retry_at_ms, .. } => *retry_at_ms,
        }
    }
}

/// What became of a recorded attempt's delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptResult {
    /// Delivered (2xx).
    Delivered,
    /// Failed, to be retried.
    Retrying,
    /// Failed, and the delivery gave up.
    GaveUp,
}

impl AttemptResult {
    /// The stored and wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            AttemptResult::Delivered => "delivered",
            AttemptResult::Retrying => "retrying",
            AttemptResult::GaveUp => "gave_up",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<AttemptResult> {
        [
            AttemptResult::Delivered,
            AttemptResult::Retrying,
            AttemptResult::GaveUp,
        ]
        .into_iter()
        .find(|result| result.as_str() == text)
    }
}

/// A recorded attempt, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptView {
    /// The event.
    pub event_seq: i64,
    /// The attempt number.
    pub attempt: u32,
    /// When it started, ms since the epoch.
    pub at_ms: i64,
    /// How long it took, in ms.
    pub duration_ms: u64,
    /// The HTTP status, if the receiver answered.
    pub status: Option<u16>,
    /// What went wrong, if it failed.
    pub error: Option<String>,
    /// What it meant for the delivery.
    pub result: AttemptResult,
}

/// Where one (webhook, event) delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for its first or next attempt (or in flight).
    Pending,
    /// A 2xx was received.
    Delivered,
    /// Retried for the whole window without success.
    Failed,
    /// Its webhook was deleted first.
    Cancelled,
}

impl DeliveryStatus {
    /// The stored and wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Delivered,
            DeliveryStatus::Failed,
            DeliveryStatus::Cancelled,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }
}

/// One (webhook, event) delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryView {
    /// The event.
    pub event_seq: i64,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts started so far.
    pub attempts: u32,
    /// The next attempt (or the end of the current lease) while pending.
    pub next_attempt_ms: Option<i64>,
    /// The last attempt's HTTP status, if any.
    pub last_status: Option<u16>,
    /// The last attempt's error, if it failed.
    pub last_error: Option<String>,
    /// When it was scheduled.
    pub scheduled_at_ms: i64,
    /// When a 2xx was received.
    pub delivered_at_ms: Option<i64>,
}

/// Registered webhooks and the delivery bookkeeping. Writes are durable before they answer.
/// Webhooks are registered ([`Mutation::CreateWebhook`]: they receive events created after
/// the registration; [`Refusal::ResourceExists`] if the id was ever used,
/// [`Refusal::Invalid`] past the limit of live webhooks) and deleted
/// ([`Mutation::DeleteWebhook`]: pending deliveries are cancelled) through
/// [`WalletStore::execute`].
///
/// [`Mutation::CreateWebhook`]: crate::Mutation::CreateWebhook
/// [`Mutation::DeleteWebhook`]: crate::Mutation::DeleteWebhook
/// [`Refusal::ResourceExists`]: crate::Refusal::ResourceExists
/// [`Refusal::Invalid`]: crate::Refusal::Invalid
/// [`WalletStore::execute`]: crate::WalletStore::execute
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Live webhooks, oldest first.
    async fn webhooks(&self) -> Result<Vec<WebhookView>, LedgerError>;

    /// A live webhook.
    async fn webhook(&self, id: &ResourceId) -> Result<Option<WebhookView>, LedgerError>;

    /// Schedules new events for every live webhook, then leases at most `limit` deliveries
    /// due at `now_ms` for `lease_ms` (see the module documentation).
    async fn lease_deliveries(
        &self,
        now_ms: i64,
        limit: u32,
        lease_ms: i64,
    ) -> Result<Leased, LedgerError>;

    /// Logs an attempt and updates its delivery, unless a later lease of the same delivery
    /// exists or it is no longer pending (then only the log is written and the answer is
    /// `false`).
    async fn record_attempt(&self, attempt: Attempt) -> Result<bool, LedgerError>;

    /// A webhook's latest attempts, newest first, at most `limit`.
    async fn delivery_attempts(
        &self,
        webhook: &ResourceId,
        limit: u32,
    ) -> Result<Vec<AttemptView>, LedgerError>;

    /// One delivery's state.
    async fn delivery(
        &self,
        webhook: &ResourceId,
        event_seq: i64,
    ) -> Result<Option<DeliveryView>, LedgerError>;
}

/// One signed POST to a webhook.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    /// The webhook's URL.
    pub url: String,
    /// `Payd-Event-Id`.
    pub event_id: String,
    /// `Payd-Timestamp` (unix seconds).
    pub timestamp: String,
    /// `Payd-Signature`.
    pub signature: String,
    /// The JSON body.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for WebhookRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookRequest")
            .field("url", &self.url)
            .field("event_id", &self.event_id)
            .finish_non_exhaustive()
    }
}

/// What the receiver answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// An HTTP status (2xx = delivered, anything else = retry).
    Status(u16),
    /// No answer: connection refused, timeout, TLS or protocol error.
    Transport(String),
}

/// Sends webhook requests: the HTTP adapter, bounded by its own per-request timeout.
#[async_trait]
pub trait WebhookSender: Send + Sync + 'static {
    /// POSTs `request` and reports the answer.
    async fn send(&self, request: &WebhookRequest) -> SendOutcome;
}
