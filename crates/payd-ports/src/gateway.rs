//! The gateway's ports: where payments live ([`PaymentStore`]) and how processors are
//! called ([`ProcessorClient`]).
//!
//! The engine owns the decisions (`payd_domain::gateway`); these traits only persist and
//! transport them. Every state change goes through [`PaymentStore::apply_transitions`],
//! a compare-and-set on the payment's version, so two workers (or two nodes) can never both
//! move the same payment: the loser's transition is refused and it drops the payment.

use async_trait::async_trait;
use payd_domain::gateway::payment::PaymentState;
use payd_domain::gateway::{Outcome, Processor};
use payd_domain::{AccountId, Amount, Category, CorrelationId, ResourceId};

use crate::LedgerError;

/// A payment accepted at `POST /payments`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPayment {
    /// The client's correlation id, the idempotency key.
    pub id: CorrelationId,
    /// Strictly positive amount.
    pub amount: Amount,
    /// The `requestedAt` sent to processors on every attempt (ms since the epoch), fixed at
    /// intake; the summary filters on it.
    pub requested_at_ms: i64,
    /// For a pay-in: the wallet it is paid from, held at intake.
    pub payer: Option<Payer>,
}

/// The wallet a pay-in is paid from. Intake places a hold of the payment's amount in the
/// same commit as the payment (or refuses it with [`Refusal::InsufficientFunds`](crate::Refusal::InsufficientFunds),
/// queueing nothing); booking captures the hold, a definitive failure voids it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payer {
    /// The account paying.
    pub account: AccountId,
    /// The category it pays from.
    pub category: Category,
    /// The id of the hold to place.
    pub hold: ResourceId,
}

/// What intake did with a payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intake {
    /// Stored and queued now.
    Accepted,
    /// The same correlation id and amount were accepted before; nothing new was queued.
    Duplicate,
}

/// A payment as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentRecord {
    /// Correlation id.
    pub id: CorrelationId,
    /// Amount.
    pub amount: Amount,
    /// The fixed `requestedAt`, ms since the epoch.
    pub requested_at_ms: i64,
    /// Where it stands.
    pub state: PaymentState,
    /// Calls made to processors so far (submissions and status queries).
    pub attempts: u32,
    /// Incremented by every applied transition; the compare-and-set token.
    pub version: u64,
    /// For a pay-in, the hold that reserves its amount.
    pub hold: Option<ResourceId>,
}

/// A state change the engine decided, applied only if the payment is still at
/// `expected_version`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The payment.
    pub id: CorrelationId,
    /// The version the decision was based on.
    pub expected_version: u64,
    /// The new state.
    pub next: PaymentState,
    /// Whether this transition stands for a call to a processor (counts an attempt).
    pub counts_attempt: bool,
}

/// Booked payments at one processor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessorTotals {
    /// How many.
    pub requests: u64,
    /// Their sum.
    pub amount: Amount,
}

/// `GET /payments-summary`: booked payments per processor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PaymentSummary {
    /// Booked at the default processor.
    pub default: ProcessorTotals,
    /// Booked at the fallback processor.
    pub fallback: ProcessorTotals,
}

/// Durable storage of gateway payments and their work queue.
#[async_trait]
pub trait PaymentStore: Send + Sync + 'static {
    /// Stores a payment and queues it in one atomic, durable write (with its payer's hold,
    /// for a pay-in). A repeat of the same id, amount and payer account is a
    /// [`Intake::Duplicate`]; the same id with another amount or payer is
    /// [`Refusal::IdempotencyKeyReused`](crate::Refusal::IdempotencyKeyReused).
    async fn accept_payment(&self, payment: NewPayment) -> Result<Intake, LedgerError>;

    /// Reads one payment.
    async fn payment(&self, id: &CorrelationId) -> Result<Option<PaymentRecord>, LedgerError>;

    /// The payments among `ids` that exist, in no particular order. The default reads them
    /// one by one; a store that can do it in one query should.
    async fn payments_by_id(
        &self,
        ids: &[CorrelationId],
    ) -> Result<Vec<PaymentRecord>, LedgerError> {
        let mut records = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(record) = self.payment(id).await? {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// Booked totals per processor over payments whose `requested_at_ms` is within
    /// `[from_ms, to_ms]` (inclusive; `None` = unbounded). Must not scan every payment.
    async fn payments_summary(
        &self,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<PaymentSummary, LedgerError>;

    /// Deletes every gateway payment (test resets); how many were deleted.
    async fn purge_payments(&self) -> Result<u64, LedgerError>;

    /// Up to `limit` payments that need attention at `now_ms`: first those bound to a
    /// processor (processing with an expired lease, unknown and due), then queued ones that
    /// are due; each group most overdue first. Bound payments come first so that they are
    /// never starved by a large queue that cannot move (both processors down). A queued
    /// payment never sent yet (no attempt) counts only once due at `fresh_due_ms`
    /// (`<= now_ms`): with a work transport, its message brings it to one worker first, and
    /// the others' sweep takes it only when that message is late; retries and bound
    /// payments have no message, so they never wait for that grace. `fresh_due_ms = now_ms`
    /// for no grace.
    async fn due_payments(
        &self,
        now_ms: i64,
        fresh_due_ms: i64,
        limit: u32,
    ) -> Result<Vec<PaymentRecord>, LedgerError>;

    /// Payments left `processing` by an earlier run that this process may take over now,
    /// before their leases expire: on a store only one process uses, every one (at most
    /// `limit`); on a shared store only those leased under this process's own instance id
    /// (a previous run of the same instance, which cannot still be calling). Leases of
    /// other instances are taken over only once they expire, through
    /// [`PaymentStore::due_payments`].
    async fn orphaned_payments(&self, limit: u32) -> Result<Vec<PaymentRecord>, LedgerError>;

    /// How many payments are not final yet (the backlog).
    async fn pending_payments(&self) -> Result<u64, LedgerError>;

    /// Applies each transition whose payment is still at its expected version, atomically
    /// and durably; returns, per transition, whether it was applied. A transition to
    /// `processing` records this process's instance as the lease's owner. The version is
    /// the fencing token: a process whose lease was taken over (the payment moved on)
    /// cannot record an outcome over the new owner's.
    async fn apply_transitions(
        &self,
        transitions: Vec<Transition>,
    ) -> Result<Vec<bool>, LedgerError>;
}

/// What a processor is asked to book.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessorPayment {
    /// Correlation id (the processor's idempotency key).
    pub id: CorrelationId,
    /// Amount.
    pub amount: Amount,
    /// The fixed `requestedAt`, ms since the epoch.
    pub requested_at_ms: i64,
}

/// The answer to `GET /payments/{id}` at a processor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// `200`: booked there.
    Found,
    /// `404`: not booked there (yet).
    NotFound,
    /// No definite answer (error, timeout).
    Unavailable,
}

/// A processor's `GET /payments/service-health`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthReport {
    /// Whether it says it is failing.
    pub failing: bool,
    /// Its current minimum response time, in ms.
    pub min_response_ms: u64,
}

/// Why a health poll gave no report.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HealthError {
    /// `429`: polled too often.
    #[error("health endpoint rate limit")]
    RateLimited,
    /// Anything else.
    #[error("health endpoint unavailable: {0}")]
    Unavailable(String),
}

/// Calls to the external processors. Implementations bound in-flight calls per processor
/// and put a timeout on every call; they never retry by themselves (retrying is the engine's
/// decision, because it depends on the outcome's certainty).
#[async_trait]
pub trait ProcessorClient: Send + Sync + 'static {
    /// `POST /payments`; the outcome is explicit, never an error.
    async fn submit(&self, processor: Processor, payment: &ProcessorPayment) -> Outcome;

    /// `GET /payments/{id}`.
    async fn lookup(&self, processor: Processor, id: &CorrelationId) -> Lookup;

    /// `GET /payments/service-health`.
    async fn health(&self, processor: Processor) -> Result<HealthReport, HealthError>;
}
