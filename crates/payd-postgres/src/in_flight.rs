//! Requests in flight across processes: a claim is a row of `request_claims`
//! ([`PgInFlight`]).
//!
//! A request takes its key with one statement (`INSERT ... ON CONFLICT DO UPDATE ... WHERE
//! expired`): the row is taken, or taken over when the claim it finds has expired (left
//! behind by a process that died). The claim is released when the request answers. The
//! claims pool commits without waiting for the WAL flush (`synchronous_commit = off`): a
//! claim lost in a server crash only lets a duplicate through to the store, where the
//! stored response and the unique keys still apply it once. Duplicates within one process
//! are caught in memory first, without a round trip.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use deadpool_postgres::Pool;
use payd_ports::{Clock, InFlightGuard, InFlightKeys, LedgerError, LocalInFlight, StoreFailure};

/// How long a claim holds without its request answering; past it the key may be taken
/// over (a request lasts at most its statement timeouts, seconds).
pub const CLAIM_TTL_MS: i64 = 30_000;

/// Requests in flight, held in `request_claims`. Cheap to clone.
#[derive(Clone)]
pub struct PgInFlight {
    pool: Pool,
    local: Arc<LocalInFlight>,
    instance: Arc<str>,
    counter: Arc<AtomicU64>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for PgInFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgInFlight")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl PgInFlight {
    pub(crate) fn new(pool: Pool, instance: &str, clock: Arc<dyn Clock>) -> PgInFlight {
        PgInFlight {
            pool,
            local: Arc::new(LocalInFlight::default()),
            instance: Arc::from(instance),
            counter: Arc::new(AtomicU64::new(0)),
            clock,
        }
    }
}

fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> LedgerError {
    StoreFailure::new("claiming a request in flight", error).into()
}

#[async_trait]
impl InFlightKeys for PgInFlight {
    async fn enter(&self, key: &str) -> Result<Option<InFlightGuard>, LedgerError> {
        let Some(local) = self.local.try_enter(key) else {
            return Ok(None);
        };
        // One owner per claim, so releasing an old claim never removes a newer one.
        let owner = format!(
            "{}/{}",
            self.instance,
            self.counter.fetch_add(1, Ordering::Relaxed)
        );
        let now_ms = self.clock.now_ms();
        let client = self.pool.get().await.map_err(unavailable)?;
        let taken = client
            .query_opt(
                "INSERT INTO request_claims (key, owner, expires_at_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (key) DO UPDATE SET owner = excluded.owner,
                                                 expires_at_ms = excluded.expires_at_ms
                  WHERE request_claims.expires_at_ms <= $4
                 RETURNING 1",
                &[&key, &owner, &now_ms.saturating_add(CLAIM_TTL_MS), &now_ms],
            )
            .await
            .map_err(unavailable)?;
        drop(client);
        if taken.is_none() {
            return Ok(None);
        }
        let pool = self.pool.clone();
        let key = key.to_owned();
        Ok(Some(InFlightGuard::new(move || {
            drop(local);
            // Released in the background: the answer does not wait for it. Outside a
            // runtime (never, in payd) the claim simply expires.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let released = async {
                        let client = pool.get().await.map_err(|e| e.to_string())?;
                        client
                            .execute(
                                "DELETE FROM request_claims WHERE key = $1 AND owner = $2",
                                &[&key, &owner],
                            )
                            .await
                            .map_err(|e| e.to_string())
                    };
                    if let Err(error) = released.await {
                        tracing::debug!(target: "payd_postgres", %error, "a claim was left to expire");
                    }
                });
            }
        })))
    }
}
