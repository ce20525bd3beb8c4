//! [`AccountLocks`]: per-account locks held across processes, each grant fenced.
//!
//! The transfer pipeline takes both accounts' locks before it settles a transfer, so that
//! two workers do not race for one account. A lock is an optimisation, never the guard: it
//! expires (its holder may pause or die), so every write done under it carries the grant's
//! [`Fence`] tokens, and the store refuses a write whose token is older than one it already
//! recorded for that account ([`payd_domain::fence`]).

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use payd_domain::{AccountId, Fence};

/// Why the lock service could not answer (the caller goes on without it: slower, as
/// correct).
#[derive(Debug, thiserror::Error)]
#[error("account locks unavailable: {0}")]
pub struct LockError(pub String);

/// A grant of every account it was asked for, until it is released or its time is up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Who holds it: released only by that name.
    pub owner: String,
    /// One token per account, in account order.
    pub fences: Vec<Fence>,
}

/// Locks on accounts, shared by the processes of one deployment.
#[async_trait]
pub trait AccountLocks: Send + Sync + 'static {
    /// Takes the locks of every account in `accounts` for `ttl_ms`, all or none (acquired
    /// in account order), under the name `owner`; `None` if one of them is held.
    async fn acquire(
        &self,
        accounts: &[AccountId],
        owner: &str,
        ttl_ms: u64,
    ) -> Result<Option<Grant>, LockError>;

    /// Releases the grant's locks that are still its own (one that expired and went to
    /// another holder is left alone).
    async fn release(&self, grant: &Grant) -> Result<(), LockError>;
}

/// The names a process gives its grants: `instance/N`, a new `N` each time, so that a
/// release frees only the grant it names (never a later grant of the same process on the
/// same account). Spaces are replaced: a settle message separates its fields by spaces.
#[derive(Debug)]
pub struct GrantOwners {
    instance: String,
    next: AtomicU64,
}

impl GrantOwners {
    /// Names for the grants of the process `instance`.
    pub fn new(instance: &str) -> GrantOwners {
        GrantOwners {
            instance: instance.split_whitespace().collect::<Vec<_>>().join("_"),
            next: AtomicU64::new(0),
        }
    }

    /// A name no earlier grant of this process had.
    pub fn next(&self) -> String {
        format!(
            "{}/{}",
            self.instance,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}
