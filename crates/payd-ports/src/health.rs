//! [`HealthBoard`]: where the processes of one deployment share what the processors' health
//! endpoints say.
//!
//! A processor's `GET /payments/service-health` may be called once per 5 s by all of its
//! callers together. So one process at a time (the holder of that processor's lease) polls
//! it and publishes the report; every other process reads the published report instead of
//! calling. The lease expires unless renewed, so when its holder dies another process takes
//! over. A process alone on its store ([`SoleBoard`]) always holds every lease.

use async_trait::async_trait;
use payd_domain::gateway::Processor;

use crate::{HealthReport, LedgerError};

/// A report as the lease holder published it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthReading {
    /// What the endpoint said.
    pub report: HealthReport,
    /// When the holder received it (ms since the epoch, the holder's clock).
    pub polled_at_ms: i64,
}

/// The shared health of the processors.
#[async_trait]
pub trait HealthBoard: Send + Sync + 'static {
    /// Takes `processor`'s poller lease for `instance` for `lease_ms`, if it is free, has
    /// expired or is already `instance`'s (then it is renewed). Whether `instance` holds it
    /// now. The lease's clock is the board's own (the database's), so processes' clocks
    /// need not agree.
    async fn lead(
        &self,
        processor: Processor,
        instance: &str,
        lease_ms: i64,
    ) -> Result<bool, LedgerError>;

    /// Publishes `reading`, if `instance` still holds the lease (a holder whose lease was
    /// taken over publishes nothing).
    async fn publish(
        &self,
        processor: Processor,
        instance: &str,
        reading: HealthReading,
    ) -> Result<(), LedgerError>;

    /// The latest published reading of `processor`.
    async fn latest(&self, processor: Processor) -> Result<Option<HealthReading>, LedgerError>;
}

/// Where the processes of one deployment tell each other that a processor's circuit
/// breaker opened: one process's failed calls then stop every process's calls, instead of
/// each process paying its own run of failures. Best effort by design: a lost
/// announcement only means the other processes find out by their own calls, as without it.
#[async_trait]
pub trait BreakerBus: Send + Sync + 'static {
    /// Tells the other processes that `instance`'s breaker for `processor` just opened on
    /// its own calls.
    async fn announce(&self, processor: Processor, instance: &str) -> Result<(), LedgerError>;
}

/// The board of a process that shares its store with no other: it holds every lease, and
/// keeps nothing (its own poller's reports go straight to its gateway).
#[derive(Clone, Copy, Debug, Default)]
pub struct SoleBoard;

#[async_trait]
impl HealthBoard for SoleBoard {
    async fn lead(&self, _: Processor, _: &str, _: i64) -> Result<bool, LedgerError> {
        Ok(true)
    }

    async fn publish(&self, _: Processor, _: &str, _: HealthReading) -> Result<(), LedgerError> {
        Ok(())
    }

    async fn latest(&self, _: Processor) -> Result<Option<HealthReading>, LedgerError> {
        Ok(None)
    }
}
