//! Requests in flight, by idempotency key: [`InFlightKeys`].
//!
//! While a request holds its key, a second request with the same key is refused (the API
//! answers `409 idempotency_request_in_flight`) instead of waiting behind the first and
//! replaying it: that would look the same to a patient client but hide a client bug (two
//! concurrent senders of one key). The key must be held across every process that shares
//! the store; [`LocalInFlight`] is enough for a store that one process owns (the embedded
//! one), a shared store keeps the claim as a row.
//!
//! This is an early answer, not the guard of exactly-once: the store's stored responses
//! and unique keys are. A claim lost in a crash only lets a duplicate wait and replay.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::LedgerError;

/// Keys of the requests being processed now.
#[async_trait]
pub trait InFlightKeys: Send + Sync + 'static {
    /// Takes `key` for a request being processed now; `Ok(None)` when another request
    /// holds it. The key is released when the guard is dropped.
    async fn enter(&self, key: &str) -> Result<Option<InFlightGuard>, LedgerError>;
}

/// Holds a key while its request runs and releases it when dropped, also when the handler's
/// future is dropped because the client hung up.
pub struct InFlightGuard {
    release: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl InFlightGuard {
    /// A guard that runs `release` once, when dropped.
    pub fn new(release: impl FnOnce() + Send + Sync + 'static) -> InFlightGuard {
        InFlightGuard {
            release: Some(Box::new(release)),
        }
    }
}

impl std::fmt::Debug for InFlightGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlightGuard").finish_non_exhaustive()
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

/// The in-process set of keys: the whole truth when one process owns the store.
#[derive(Debug, Default)]
pub struct LocalInFlight(Arc<Mutex<HashSet<String>>>);

impl LocalInFlight {
    /// Takes `key`, or `None` if a request of this process holds it. Synchronous: a
    /// shared store's implementation uses it first, so that duplicates within one process
    /// never cost a round trip.
    pub fn try_enter(&self, key: &str) -> Option<InFlightGuard> {
        let mut keys = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !keys.insert(key.to_owned()) {
            return None;
        }
        let set = Arc::clone(&self.0);
        let key = key.to_owned();
        Some(InFlightGuard::new(move || {
            set.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&key);
        }))
    }
}

#[async_trait]
impl InFlightKeys for LocalInFlight {
    async fn enter(&self, key: &str) -> Result<Option<InFlightGuard>, LedgerError> {
        Ok(self.try_enter(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_request_per_key_at_a_time() {
        let keys = LocalInFlight::default();
        let first = keys.try_enter("k");
        assert!(first.is_some());
        assert!(keys.try_enter("k").is_none(), "held");
        assert!(keys.try_enter("other").is_some());
        drop(first);
        assert!(keys.try_enter("k").is_some(), "released on drop");
    }
}
