//! The transactional outbox and the work transport it feeds.
//!
//! A commit that creates work also writes a message to the outbox ([`OutboxStore`]); a
//! relay hands the oldest messages to a [`Publisher`] (RabbitMQ) and removes them only once
//! the broker has confirmed them. The broker can be down for any time: the outbox holds the
//! work meanwhile. A message may be published more than once (the relay's commit failed
//! after the broker's confirm), never lost: consumers are idempotent.

use async_trait::async_trait;

use crate::LedgerError;

/// The queue that announces accepted gateway payments (body: the correlation id).
pub const PAYMENTS_QUEUE: &str = "payd.payments";

/// The queue that announces accepted transfers (body: the transfer id).
pub const TRANSFERS_QUEUE: &str = "payd.transfers";

/// The transfer pipeline's second queue: transfers whose accounts' locks are held (body:
/// the transfer id, the grant's owner, then each account's token and the account, all
/// separated by spaces). Written by the pipeline's first stage, not through the outbox: a
/// lost message only leaves its transfer to the settler's poll.
pub const SETTLE_QUEUE: &str = "payd.transfers.settle";

/// One message held by the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxMessage {
    /// Its place in the outbox (oldest first).
    pub id: i64,
    /// The queue it goes to.
    pub queue: String,
    /// What it says.
    pub body: String,
    /// When the commit that wrote it happened, in ms since the epoch.
    pub created_ms: i64,
}

/// Why a publish did not happen (the messages stay in the outbox).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PublishError(pub String);

/// Where the relay publishes: the work transport.
#[async_trait]
pub trait Publisher: Send + Sync + 'static {
    /// Publishes every message, persistently, and returns once the broker has confirmed
    /// each one; an error if any was refused or not confirmed in time.
    async fn publish(&self, messages: &[OutboxMessage]) -> Result<(), PublishError>;
}

/// Why one relay pass did not publish.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The outbox could not be read or its rows removed.
    #[error("outbox: {0}")]
    Store(#[from] LedgerError),
    /// The broker did not take the messages.
    #[error("publish: {0}")]
    Publish(#[from] PublishError),
}

/// How much the outbox holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxBacklog {
    /// Messages not yet published.
    pub pending: u64,
    /// When the oldest of them was written, in ms since the epoch.
    pub oldest_ms: Option<i64>,
}

/// The outbox of a store that has one.
#[async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Takes up to `limit` of the oldest messages that no other relay is publishing, hands
    /// them to `publisher`, and removes them in one commit once it has returned `Ok`; what
    /// it could not publish stays. Returns how many were published.
    async fn relay_outbox(
        &self,
        limit: u32,
        publisher: &dyn Publisher,
    ) -> Result<usize, RelayError>;

    /// What the outbox holds now.
    async fn outbox_backlog(&self) -> Result<OutboxBacklog, LedgerError>;
}
