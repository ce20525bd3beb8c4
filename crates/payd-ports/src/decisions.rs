//! [`DecisionCache`]: recent card decisions, kept outside the store so that a replay of a
//! transaction id is answered without a database round trip.
//!
//! The store stays the guard: it records each decision under its id, in the commit that
//! decides it, and answers every replay the cache cannot. A cache entry is written only
//! after that commit, so it never holds a decision the store does not; an entry lost (the
//! cache restarted, evicted or unreachable) costs a round trip, never a wrong answer.

use async_trait::async_trait;
use payd_domain::{PriorAuthorization, TransactionId};

/// Recent decisions by transaction id. Best effort: a failure is a miss.
#[async_trait]
pub trait DecisionCache: Send + Sync + 'static {
    /// What was decided for `id`, if the cache still has it.
    async fn get(&self, id: &TransactionId) -> Option<PriorAuthorization>;

    /// Remembers the committed decision `prior` for `id`.
    async fn put(&self, id: &TransactionId, prior: &PriorAuthorization);
}
