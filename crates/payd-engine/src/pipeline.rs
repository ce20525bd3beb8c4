//! [`TransferPipeline`]: the design notes' two-stage transfer pipeline, on the work
//! transport (RabbitMQ) and account locks (Redis).
//!
//! - **Stage A** ([`TransferPipeline::lock`], fed by the transfers queue): waits until
//!   the transfer is its accounts' oldest pending one (not pending: the message is done),
//!   takes both accounts' locks (fenced, with a TTL; held: tries again after a short
//!   pause, the message kept unacknowledged), and publishes the transfer with its grant to the settle queue
//!   ([`payd_ports::SETTLE_QUEUE`], with the broker's confirm) before it acknowledges.
//! - **Stage B** ([`TransferPipeline::settle`], fed by the settle queue): settles the
//!   transfer in the store under the grant ([`WalletStore::settle_fenced`]: refused if a
//!   token is stale, deferred if an earlier transfer of its accounts is pending), releases
//!   the locks, acknowledges. A transfer that must wait, or whose grant was stale, goes
//!   back to stage A as a new message.
//!
//! The locks keep workers from racing for one account; they are never the guarantee. A
//! holder that paused past its TTL finds its write refused by the store's fencing check;
//! the order per account is the store's (the oldest pending transfer of an account goes
//! first); and the settler's poll ([`crate::WalletWorker`]) still settles whatever is
//! pending, under the store's row locks alone. When Redis or RabbitMQ does not answer, a
//! transfer is handed to that settler at once: slower, as correct.
//!
//! Metrics: `payd_transfer_pipeline_total{stage="lock"|"settle",outcome}`,
//! `payd_fencing_rejections_total` (stale grants the store refused).

use std::sync::Arc;
use std::time::Duration;

use payd_domain::gateway::backoff::Backoff;
use payd_domain::{AccountId, Fence, ResourceId};
use payd_ports::{
    AccountLocks, FencedSettle, Grant, GrantOwners, OutboxMessage, Publisher, SETTLE_QUEUE,
    TRANSFERS_QUEUE, WalletStore,
};

use tokio::sync::Notify;

use crate::WalletWorker;
use crate::inbox::Settle;
use crate::jitter::Jitter;

/// Pauses of stage A while its transfer waits its turn or its locks: 1 ms, doubled up to
/// 128 ms, half of it jitter (so that two waiters on one account do not look in step). A
/// settle in this process ends the pause early; one elsewhere is seen at the next look.
/// Each look is a read, and up to a prefetch's worth of transfers may be waiting: with a
/// 16 ms cap, 64 connections on 1,000 accounts (`bench/transfer-latency.sh`) kept
/// PostgreSQL busy answering them (settle p99 5.5 s in one run).
const BUSY: Backoff = Backoff {
    base_ms: 1,
    cap_ms: 128,
    jitter_percent: 50,
};

/// Settings of the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipelineConfig {
    /// How long a grant holds its locks unless released (the longest an account waits for
    /// a holder that died).
    pub lock_ttl_ms: u64,
    /// How long a transfer that must wait its turn (or whose grant was stale) pauses
    /// before going back to stage A.
    pub requeue_pause_ms: u64,
    /// Pause after a store or broker error.
    pub error_backoff_ms: u64,
}

impl PipelineConfig {
    /// Default for [`PipelineConfig::lock_ttl_ms`].
    pub const LOCK_TTL_MS_DEFAULT: u64 = 2_000;
}

impl Default for PipelineConfig {
    fn default() -> PipelineConfig {
        PipelineConfig {
            lock_ttl_ms: PipelineConfig::LOCK_TTL_MS_DEFAULT,
            requeue_pause_ms: 5,
            error_backoff_ms: 500,
        }
    }
}

/// A transfer and the grant it is settled under, as the settle queue carries them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Locked {
    /// The transfer.
    pub id: ResourceId,
    /// The grant of both its accounts' locks.
    pub grant: Grant,
}

impl Locked {
    /// `id owner token account token account`: ids and owners hold no spaces.
    pub fn encode(&self) -> String {
        let mut body = format!("{} {}", self.id.as_str(), self.grant.owner);
        for fence in &self.grant.fences {
            body.push_str(&format!(" {} {}", fence.token, fence.account.as_str()));
        }
        body
    }

    /// The message [`Locked::encode`] wrote; `None` if it is not one.
    pub fn decode(body: &str) -> Option<Locked> {
        let mut parts = body.split(' ');
        let id = ResourceId::parse(parts.next()?).ok()?;
        let owner = parts.next().filter(|owner| !owner.is_empty())?.to_owned();
        let mut fences = Vec::new();
        while let Some(token) = parts.next() {
            fences.push(Fence {
                token: token.parse().ok()?,
                account: AccountId::parse(parts.next()?).ok()?,
            });
        }
        if fences.is_empty() {
            return None;
        }
        Some(Locked {
            id,
            grant: Grant { owner, fences },
        })
    }
}

/// The two stages, for one process.
pub struct TransferPipeline {
    store: Arc<dyn WalletStore>,
    locks: Arc<dyn AccountLocks>,
    publisher: Arc<dyn Publisher>,
    /// Where a transfer goes when Redis or RabbitMQ does not answer.
    settler: Arc<WalletWorker>,
    config: PipelineConfig,
    owners: GrantOwners,
    jitter: Jitter,
    /// Told after each settle attempt of stage B: waiters of stage A look again.
    settled: Notify,
}

impl std::fmt::Debug for TransferPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransferPipeline")
            .field("config", &self.config)
            .field("owners", &self.owners)
            .finish_non_exhaustive()
    }
}

fn counted(stage: &'static str, outcome: &'static str) {
    metrics::counter!("payd_transfer_pipeline_total", "stage" => stage, "outcome" => outcome)
        .increment(1);
}

impl TransferPipeline {
    /// A pipeline for the process `instance` (its grants are named after it).
    pub fn new(
        store: Arc<dyn WalletStore>,
        locks: Arc<dyn AccountLocks>,
        publisher: Arc<dyn Publisher>,
        settler: Arc<WalletWorker>,
        config: PipelineConfig,
        instance: &str,
    ) -> Arc<TransferPipeline> {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |since| {
                i64::try_from(since.as_nanos() % (1 << 62)).unwrap_or(1)
            });
        Arc::new(TransferPipeline {
            store,
            locks,
            publisher,
            settler,
            config,
            owners: GrantOwners::new(instance),
            jitter: Jitter::seeded(seed),
            settled: Notify::new(),
        })
    }

    async fn pause(&self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    /// Stage A for the transfer `id` (a delivery of the transfers queue): `settle` is
    /// sent once the transfer is in the settle queue (or needs nothing more).
    pub fn lock(self: &Arc<Self>, id: ResourceId, settle: Settle) {
        let pipeline = self.clone();
        tokio::spawn(async move { pipeline.stage_a(id, settle).await });
    }

    async fn stage_a(&self, id: ResourceId, settle: Settle) {
        let mut pauses = 0_u32;
        loop {
            if settle.is_closed() {
                return; // The session ended: the broker delivers it again elsewhere.
            }
            let turn = match self.store.pending_turn(&id).await {
                Ok(turn) => turn,
                Err(error) => {
                    tracing::warn!(%error, %id, "Reading a transfer for its locks failed; retrying.");
                    self.pause(self.config.error_backoff_ms).await;
                    continue;
                }
            };
            let Some((transfer, first)) = turn else {
                counted("lock", "not_pending");
                let _ = settle.send(());
                return;
            };
            if first {
                let accounts = [transfer.from, transfer.to];
                match self
                    .locks
                    .acquire(&accounts, &self.owners.next(), self.config.lock_ttl_ms)
                    .await
                {
                    Ok(Some(grant)) => {
                        return self.queue_locked(Locked { id, grant }, settle).await;
                    }
                    Ok(None) => counted("lock", "busy"),
                    Err(error) => {
                        tracing::debug!(%error, %id, "No account locks; the settler takes the transfer.");
                        counted("lock", "unlocked");
                        self.settler.offer(id, settle);
                        return;
                    }
                }
            }
            // An earlier transfer of its accounts goes first (or holds the locks): wait,
            // without taking any lock, until a settle here or the pause says look again.
            let pause = Duration::from_millis(BUSY.delay_ms(pauses, self.jitter.next_u32()));
            let settled = self.settled.notified();
            tokio::select! {
                () = settled => {}
                () = tokio::time::sleep(pause) => {}
            }
            pauses = pauses.saturating_add(1);
        }
    }

    /// The end of stage A: the locked transfer in the settle queue, then its message done.
    async fn queue_locked(&self, locked: Locked, settle: Settle) {
        match self.send(SETTLE_QUEUE, locked.encode()).await {
            Ok(()) => {
                counted("lock", "granted");
                let _ = settle.send(());
            }
            Err(error) => {
                tracing::debug!(%error, id = %locked.id, "The settle queue did not confirm; the settler takes the transfer.");
                counted("lock", "unpublished");
                self.release(&locked.grant).await;
                self.settler.offer(locked.id, settle);
            }
        }
    }

    /// Stage B for a delivery of the settle queue: `settle` is sent once the transfer is
    /// settled, or back in stage A.
    pub fn settle(self: &Arc<Self>, locked: Locked, settle: Settle) {
        let pipeline = self.clone();
        tokio::spawn(async move { pipeline.stage_b(locked, settle).await });
    }

    async fn stage_b(&self, locked: Locked, settle: Settle) {
        let Locked { id, grant } = locked;
        let outcome = self.store.settle_fenced(&id, &grant.fences).await;
        self.release(&grant).await;
        // Transfers of these accounts waiting in stage A here may go now.
        self.settled.notify_waiters();
        let again = match outcome {
            Ok(FencedSettle::Settled(_)) => {
                counted("settle", "settled");
                false
            }
            Ok(FencedSettle::NotPending) => {
                counted("settle", "not_pending");
                false
            }
            Ok(FencedSettle::Waiting) => {
                counted("settle", "waiting");
                true
            }
            Ok(FencedSettle::Stale) => {
                counted("settle", "stale");
                metrics::counter!("payd_fencing_rejections_total").increment(1);
                tracing::info!(%id, owner = grant.owner, "A stale lock grant's write was refused; the transfer goes back to stage A.");
                true
            }
            Err(error) => {
                // Returned to the queue (the handle dropped), after a pause: the grant may
                // still be current when it comes back.
                tracing::warn!(%error, %id, "Settling a locked transfer failed; it will be delivered again.");
                self.pause(self.config.error_backoff_ms).await;
                return;
            }
        };
        if !again {
            let _ = settle.send(());
            return;
        }
        // Its turn comes after the earlier transfer, which needs the locks just released.
        self.pause(self.config.requeue_pause_ms).await;
        match self.send(TRANSFERS_QUEUE, id.as_str().to_owned()).await {
            Ok(()) => {
                let _ = settle.send(());
            }
            Err(_) => self.settler.offer(id, settle),
        }
    }

    async fn send(&self, queue: &str, body: String) -> Result<(), payd_ports::PublishError> {
        self.publisher
            .publish(&[OutboxMessage {
                id: 0,
                queue: queue.to_owned(),
                body,
                created_ms: 0,
            }])
            .await
    }

    /// Releases a grant's locks; if Redis does not answer they expire by themselves.
    async fn release(&self, grant: &Grant) {
        if let Err(error) = self.locks.release(grant).await {
            tracing::debug!(%error, "Releasing account locks failed; they expire by their TTL.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locked() -> Locked {
        Locked {
            id: ResourceId::parse("t-1").unwrap(),
            grant: Grant {
                owner: "worker-a/7".to_owned(),
                fences: vec![
                    Fence {
                        account: AccountId::parse("acc:1").unwrap(),
                        token: 1_733_500_000_000_001,
                    },
                    Fence {
                        account: AccountId::parse("b.x").unwrap(),
                        token: 2,
                    },
                ],
            },
        }
    }

    /// Goal: a settle message carries the transfer and its grant exactly, and anything
    /// else is not mistaken for one (it is dead-lettered).
    #[test]
    fn settle_messages_round_trip_and_damage_is_refused() {
        let locked = locked();
        assert_eq!(
            locked.encode(),
            "t-1 worker-a/7 1733500000000001 acc:1 2 b.x"
        );
        assert_eq!(Locked::decode(&locked.encode()), Some(locked));
        for damaged in [
            "",
            "t-1",
            "t-1 owner",
            "t-1 owner 5",
            "t-1 owner x acc",
            "t-1 owner 5 acc 6",
            "bad id owner 5 acc",
            "t-1  5 acc",
        ] {
            assert_eq!(Locked::decode(damaged), None, "{damaged:?}");
        }
    }
}
