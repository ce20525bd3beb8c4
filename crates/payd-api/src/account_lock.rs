//! [`AccountLock`]: card decisions one at a time per account across API instances, on a
//! lock service beside the store (Redis, `--account-lock redis`: the design of note 001).
//!
//! Before the store decides a card transaction, the API takes the account's lock (waiting
//! up to [`AccountLock::WAIT_MS`] while another instance holds it); the store decides only
//! if the grant's fencing token is current (`LedgerStore::authorize_fenced`); then the lock
//! is released. The store's own serialization (PostgreSQL's row lock on the account) stays
//! underneath, so the lock is never needed for correctness: when it cannot be had (Redis
//! down, a wait too long, a grant refused as stale twice), the store decides alone.
//!
//! Metrics: `payd_account_lock_total{outcome}`: `granted`, `busy` (waited too long),
//! `unavailable` (Redis did not answer), `stale` (the store refused the grant).

use std::slice;
use std::sync::Arc;
use std::time::{Duration, Instant};

use payd_domain::AccountId;
use payd_ports::{AccountLocks, Grant, GrantOwners};

/// Per-account locks for card decisions.
pub struct AccountLock {
    locks: Arc<dyn AccountLocks>,
    ttl_ms: u64,
    owners: GrantOwners,
}

impl std::fmt::Debug for AccountLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountLock")
            .field("ttl_ms", &self.ttl_ms)
            .field("owners", &self.owners)
            .finish_non_exhaustive()
    }
}

fn counted(outcome: &'static str) {
    metrics::counter!("payd_account_lock_total", "outcome" => outcome).increment(1);
}

impl AccountLock {
    /// Longest wait for a lock another instance holds before the store decides alone, in
    /// ms: a decision must stay well under the 100 ms a card network waits.
    pub const WAIT_MS: u64 = 50;

    /// Locks of `locks`, each held at most `ttl_ms`, named after this process `instance`.
    pub fn new(locks: Arc<dyn AccountLocks>, ttl_ms: u64, instance: &str) -> AccountLock {
        AccountLock {
            locks,
            ttl_ms,
            owners: GrantOwners::new(instance),
        }
    }

    /// The account's lock; `None` if it cannot be had soon (the store then decides alone).
    pub(crate) async fn acquire(&self, account: &AccountId) -> Option<Grant> {
        let owner = self.owners.next();
        let started = Instant::now();
        let mut pause_ms = 1;
        loop {
            match self
                .locks
                .acquire(slice::from_ref(account), &owner, self.ttl_ms)
                .await
            {
                Ok(Some(grant)) => {
                    counted("granted");
                    return Some(grant);
                }
                Ok(None) if started.elapsed() < Duration::from_millis(AccountLock::WAIT_MS) => {
                    tokio::time::sleep(Duration::from_millis(pause_ms)).await;
                    pause_ms = (pause_ms * 2).min(8);
                }
                Ok(None) => {
                    counted("busy");
                    return None;
                }
                Err(error) => {
                    tracing::debug!(%error, "No account lock; the store decides alone.");
                    counted("unavailable");
                    return None;
                }
            }
        }
    }

    /// Releases a grant (if Redis does not answer, it expires by its TTL).
    pub(crate) async fn release(&self, grant: &Grant) {
        if let Err(error) = self.locks.release(grant).await {
            tracing::debug!(%error, "Releasing an account lock failed; it expires by its TTL.");
        }
    }

    /// Counts a grant the store refused as stale.
    pub(crate) fn stale(&self) {
        counted("stale");
    }
}
