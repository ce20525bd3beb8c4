//! The state one simulator instance shares between its handlers.
//!
//! Locks are `std::sync::Mutex`, not tokio's: every critical section is a few map operations
//! with no `.await` inside, so a blocking lock is both correct and cheaper. A poisoned lock
//! (a panic while held, which no code path here can cause) is recovered rather than
//! propagated: every section leaves the data consistent before anything that could panic.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::SimConfig;
use crate::store::Payments;

/// Shared by every handler of one router, behind an `Arc`.
#[derive(Debug)]
pub(crate) struct Sim {
    /// Booked payments.
    payments: Mutex<Payments>,
    /// Fixed at start: what the summary charges.
    pub(crate) fee_bps: u32,
    /// Admin-configurable. Atomics because they are read on every payment and written
    /// rarely; `Relaxed` is enough since each is an independent value, not a guard for
    /// other memory.
    delay_ms: AtomicU64,
    failing: AtomicBool,
    token: Mutex<String>,
    /// One permit per payment that may be in flight; an exhausted semaphore is overload.
    in_flight: Arc<Semaphore>,
    health: HealthLimiter,
}

impl Sim {
    pub(crate) fn new(config: &SimConfig) -> Sim {
        Sim {
            payments: Mutex::new(Payments::default()),
            fee_bps: config.fee_bps,
            delay_ms: AtomicU64::new(config.delay_ms),
            failing: AtomicBool::new(config.failing),
            token: Mutex::new(config.token.clone()),
            // `Semaphore::new` panics above MAX_PERMITS; nobody can have that many requests.
            in_flight: Arc::new(Semaphore::new(
                config.max_in_flight.min(Semaphore::MAX_PERMITS),
            )),
            health: HealthLimiter::new(Duration::from_millis(config.health_interval_ms)),
        }
    }

    /// The payments, locked. Never hold the guard across an `.await`.
    pub(crate) fn payments(&self) -> MutexGuard<'_, Payments> {
        self.payments.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn delay_ms(&self) -> u64 {
        self.delay_ms.load(Ordering::Relaxed)
    }

    pub(crate) fn set_delay_ms(&self, delay_ms: u64) {
        self.delay_ms.store(delay_ms, Ordering::Relaxed);
    }

    pub(crate) fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    pub(crate) fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::Relaxed);
    }

    pub(crate) fn token_matches(&self, presented: &[u8]) -> bool {
        self.token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_bytes()
            == presented
    }

    pub(crate) fn set_token(&self, token: String) {
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = token;
    }

    /// A slot for one payment in flight, or `None` when all are taken (overload).
    pub(crate) fn try_enter(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.in_flight).try_acquire_owned().ok()
    }

    /// Whether a health call may be answered now; if not, how long until it may.
    pub(crate) fn try_health_check(&self) -> Result<(), Duration> {
        self.health.try_acquire(Instant::now())
    }
}

/// One health answer per interval for all callers together. A call inside the window is
/// refused (the caller gets 429) and does not extend the window.
#[derive(Debug)]
struct HealthLimiter {
    interval: Duration,
    /// When the last answered call happened; `None` before the first.
    last_answered: Mutex<Option<Instant>>,
}

impl HealthLimiter {
    fn new(interval: Duration) -> HealthLimiter {
        HealthLimiter {
            interval,
            last_answered: Mutex::new(None),
        }
    }

    fn try_acquire(&self, now: Instant) -> Result<(), Duration> {
        let mut last = self
            .last_answered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(previous) = *last {
            let elapsed = now.saturating_duration_since(previous);
            if elapsed < self.interval {
                return Err(self.interval - elapsed);
            }
        }
        *last = Some(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_limiter_allows_one_call_per_interval() {
        let limiter = HealthLimiter::new(Duration::from_secs(5));
        let start = Instant::now();
        assert_eq!(limiter.try_acquire(start), Ok(()));
        assert_eq!(
            limiter.try_acquire(start + Duration::from_secs(1)),
            Err(Duration::from_secs(4))
        );
        // A refused call does not move the window.
        assert_eq!(limiter.try_acquire(start + Duration::from_secs(5)), Ok(()));
        assert!(limiter.try_acquire(start + Duration::from_secs(9)).is_err());
    }

    #[test]
    fn zero_interval_means_unlimited() {
        let limiter = HealthLimiter::new(Duration::ZERO);
        let now = Instant::now();
        assert_eq!(limiter.try_acquire(now), Ok(()));
        assert_eq!(limiter.try_acquire(now), Ok(()));
    }
}
