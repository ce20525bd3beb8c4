//! The wallet's background work, driven by the store: settling pending transfers in
//! acceptance order, expiring holds whose time is up, and forgetting idempotency keys whose
//! retention ended. Everything it acts on is stored, so a restart loses nothing: the first
//! pass after start picks up whatever was pending or due.
//!
//! A message of the work transport that announces a transfer ([`WalletWorker::offer`])
//! wakes the settler, and is acknowledged once the store says that transfer is no longer
//! pending: settled here, or by another worker's settler. The settler never depends on the
//! messages (it settles whatever is pending, oldest first), so a lost or late message only
//! delays a transfer to the next poll.
//!
//! Metrics: `payd_transfers_settled_total` (counter: completed + rejected),
//! `payd_holds_expired_total` (counter).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use payd_domain::ResourceId;
use payd_ports::{LedgerError, Sweep, WalletStore};
use tokio::sync::{Notify, watch};

use crate::Clock;
use crate::inbox::Settle;

/// How soon the settler looks again at announced transfers that were still pending after
/// its pass (settled meanwhile by another worker's commit, most likely).
const OFFER_RECHECK_MS: u64 = 20;

/// Bounds and intervals of the wallet worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalletWorkerConfig {
    /// Transfers settled per store command (one writer batch).
    pub settle_batch: u32,
    /// Longest wait between two settling passes without a wake-up (a safety net: a
    /// transfer accepted by another process, or a lost wake-up).
    pub settle_poll_ms: u64,
    /// Pause after a pass that settled something, before the next one: transfers accepted
    /// meanwhile settle together in one commit, which writes each account page and journal
    /// index page once for all of them. Through the store alone (payd-sqlite
    /// `tests/throughput.rs`) 20 ms raised throughput from ~22k to ~33k transfers/s but the
    /// intake p99 from ~9 to ~38 ms; over HTTP on 2 cores (`bench/transfers.sh`) the CPU is
    /// the limit and it bought nothing, so the default is 0 (settle as soon as there is work).
    pub settle_coalesce_ms: u64,
    /// Holds expired per store command.
    pub expiry_batch: u32,
    /// Longest wait between two expiry passes (holds placed meanwhile may be due sooner
    /// than the next known expiry; a capture checks expiry itself, so this only bounds how
    /// late the release shows in balances).
    pub expiry_poll_ms: u64,
    /// Interval of the idempotency-key purge.
    pub purge_interval_ms: u64,
    /// Wait after a store error.
    pub error_backoff_ms: u64,
}

impl WalletWorkerConfig {
    /// Default for [`WalletWorkerConfig::settle_poll_ms`].
    pub const SETTLE_POLL_MS_DEFAULT: u64 = 250;
}

impl Default for WalletWorkerConfig {
    fn default() -> WalletWorkerConfig {
        WalletWorkerConfig {
            settle_batch: 4_096,
            settle_poll_ms: WalletWorkerConfig::SETTLE_POLL_MS_DEFAULT,
            settle_coalesce_ms: 0,
            expiry_batch: 1_000,
            expiry_poll_ms: 1_000,
            purge_interval_ms: 60_000,
            error_backoff_ms: 500,
        }
    }
}

/// The wallet worker. [`WalletWorker::wake`] after accepting a transfer.
pub struct WalletWorker {
    store: Arc<dyn WalletStore>,
    clock: Arc<dyn Clock>,
    config: WalletWorkerConfig,
    transfers: Notify,
    /// Announced transfers whose messages wait for them to be settled; several handles
    /// for one transfer when its message was delivered again (after a reconnection).
    offers: Mutex<HashMap<ResourceId, Vec<Settle>>>,
}

impl std::fmt::Debug for WalletWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalletWorker")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl WalletWorker {
    /// A worker over `store`.
    pub fn new(
        store: Arc<dyn WalletStore>,
        clock: Arc<dyn Clock>,
        config: WalletWorkerConfig,
    ) -> Arc<WalletWorker> {
        Arc::new(WalletWorker {
            store,
            clock,
            config,
            transfers: Notify::new(),
            offers: Mutex::default(),
        })
    }

    /// Wakes the transfer settler (a transfer was accepted).
    pub fn wake(&self) {
        self.transfers.notify_one();
    }

    /// Hands the settler a transfer a message announced (the work transport's consumer
    /// calls this), and wakes it. `settle` is sent once the transfer is no longer pending;
    /// then the message may be acknowledged.
    pub fn offer(&self, id: ResourceId, settle: Settle) {
        let mut offers = crate::lock(&self.offers);
        let handles = offers.entry(id).or_default();
        // Handles of a session that ended are closed: nothing waits on them any more.
        handles.retain(|handle| !handle.is_closed());
        handles.push(settle);
        drop(offers);
        self.wake();
    }

    /// Settles the messages of the offered transfers that are no longer pending; the others
    /// wait for a later pass (how many: the result). On a read error every message waits.
    async fn settle_offers(&self) -> Result<usize, LedgerError> {
        let offers = std::mem::take(&mut *crate::lock(&self.offers));
        if offers.is_empty() {
            return Ok(0);
        }
        let ids: Vec<ResourceId> = offers.keys().cloned().collect();
        let pending: HashSet<ResourceId> = match self.store.pending_among(&ids).await {
            Ok(pending) => pending.into_iter().collect(),
            Err(error) => {
                self.give_back(offers);
                return Err(error);
            }
        };
        let mut waiting = HashMap::new();
        for (id, handles) in offers {
            if pending.contains(&id) {
                waiting.insert(id, handles);
            } else {
                for settle in handles {
                    let _ = settle.send(());
                }
            }
        }
        let count = waiting.len();
        self.give_back(waiting);
        Ok(count)
    }

    /// Puts offers taken for a pass back, beside any that arrived meanwhile.
    fn give_back(&self, taken: HashMap<ResourceId, Vec<Settle>>) {
        let mut offers = crate::lock(&self.offers);
        for (id, handles) in taken {
            offers.entry(id).or_default().extend(handles);
        }
    }

    /// Settles pending transfers until none is left; how many were settled.
    pub async fn settle_all(&self) -> Result<u64, LedgerError> {
        let mut settled = 0_u64;
        loop {
            let sweep = self
                .store
                .settle_transfers(self.config.settle_batch)
                .await?;
            settled += u64::from(sweep.done);
            metrics::counter!("payd_transfers_settled_total").increment(u64::from(sweep.done));
            if !sweep.more {
                return Ok(settled);
            }
        }
    }

    /// Expires every hold due now; the sweep of the last pass.
    pub async fn expire_due(&self) -> Result<Sweep, LedgerError> {
        loop {
            let sweep = self
                .store
                .expire_holds(self.clock.now_ms(), self.config.expiry_batch)
                .await?;
            metrics::counter!("payd_holds_expired_total").increment(u64::from(sweep.done));
            if !sweep.more {
                return Ok(sweep);
            }
        }
    }

    /// Runs the three loops until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        tokio::join!(
            self.clone().settle_loop(shutdown.clone()),
            self.clone().expiry_loop(shutdown.clone()),
            self.purge_loop(shutdown),
        );
    }

    async fn settle_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let settled = self.settle_all().await;
            // Announced transfers still pending are in another settler's commit, or wait
            // behind an earlier transfer of theirs: look again soon, not a poll later (after
            // a read error, once the store had time to recover).
            let recheck_ms = match settled {
                Ok(_) => match self.settle_offers().await {
                    Ok(0) => None,
                    Ok(_) => Some(OFFER_RECHECK_MS),
                    Err(error) => {
                        tracing::warn!(%error, "Reading announced transfers failed; their messages wait.");
                        Some(self.config.error_backoff_ms)
                    }
                },
                Err(_) => None,
            };
            let wait_ms = match settled {
                Ok(0) => recheck_ms.map_or(self.config.settle_poll_ms, |recheck_ms| {
                    self.config.settle_poll_ms.min(recheck_ms)
                }),
                Ok(_) => {
                    // Busy: let the next batch gather (a wake-up meanwhile is kept by the
                    // Notify's permit, so nothing waits longer than this pause).
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(self.config.settle_coalesce_ms)) => {}
                        _ = shutdown.wait_for(|stop| *stop) => return,
                    }
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, "Settling transfers failed; backing off.");
                    self.config.error_backoff_ms
                }
            };
            tokio::select! {
                () = self.transfers.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    async fn expiry_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let wait_ms = match self.expire_due().await {
                Ok(sweep) => {
                    let until_next_ms = sweep.next_due_ms.map_or(u64::MAX, |at| {
                        u64::try_from(at.saturating_sub(self.clock.now_ms())).unwrap_or(0)
                    });
                    until_next_ms.clamp(1, self.config.expiry_poll_ms)
                }
                Err(error) => {
                    tracing::warn!(%error, "Expiring holds failed; backing off.");
                    self.config.error_backoff_ms
                }
            };
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    async fn purge_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            loop {
                match self
                    .store
                    .purge_idempotency(self.clock.now_ms(), 10_000)
                    .await
                {
                    Ok(sweep) if sweep.more => {}
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(%error, "Purging idempotency keys failed.");
                        break;
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(self.config.purge_interval_ms)) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use async_trait::async_trait;
    use payd_ports::{Claim, Effect, EventView, HoldView, Mutation, Replied, TransferView};

    /// Pending transfer ids; `settle_transfers` settles them all unless `held` says another
    /// settler holds them (then it skips them, as `SKIP LOCKED` does).
    #[derive(Default)]
    struct Pending {
        ids: Mutex<HashSet<String>>,
        held: std::sync::atomic::AtomicBool,
    }

    fn refused() -> LedgerError {
        LedgerError::unavailable("not part of this test")
    }

    #[async_trait]
    impl WalletStore for Pending {
        async fn execute(
            &self,
            _: Mutation,
            _: Option<Claim>,
        ) -> Result<Replied<Effect>, LedgerError> {
            Err(refused())
        }

        async fn hold(&self, _: &ResourceId) -> Result<Option<HoldView>, LedgerError> {
            Err(refused())
        }

        async fn transfer(&self, _: &ResourceId) -> Result<Option<TransferView>, LedgerError> {
            Err(refused())
        }

        async fn pending_among(&self, ids: &[ResourceId]) -> Result<Vec<ResourceId>, LedgerError> {
            let pending = crate::lock(&self.ids);
            Ok(ids
                .iter()
                .filter(|id| pending.contains(id.as_str()))
                .cloned()
                .collect())
        }

        async fn expire_holds(&self, _: i64, _: u32) -> Result<Sweep, LedgerError> {
            Ok(Sweep::default())
        }

        async fn settle_transfers(&self, _: u32) -> Result<Sweep, LedgerError> {
            if self.held.load(std::sync::atomic::Ordering::SeqCst) {
                return Ok(Sweep::default());
            }
            let mut pending = crate::lock(&self.ids);
            let done = u32::try_from(pending.len()).unwrap_or(u32::MAX);
            pending.clear();
            Ok(Sweep {
                done,
                ..Sweep::default()
            })
        }

        async fn pending_turn(
            &self,
            _: &ResourceId,
        ) -> Result<Option<(payd_domain::Transfer, bool)>, LedgerError> {
            Err(refused())
        }

        async fn settle_fenced(
            &self,
            _: &ResourceId,
            _: &[payd_domain::Fence],
        ) -> Result<payd_ports::FencedSettle, LedgerError> {
            Err(refused())
        }

        async fn pending_transfers(&self) -> Result<u64, LedgerError> {
            Ok(crate::lock(&self.ids).len() as u64)
        }

        async fn purge_idempotency(&self, _: i64, _: u32) -> Result<Sweep, LedgerError> {
            Ok(Sweep::default())
        }

        async fn events(&self, _: i64, _: u32) -> Result<Vec<EventView>, LedgerError> {
            Ok(Vec::new())
        }
    }

    fn id(text: &str) -> ResourceId {
        ResourceId::parse(text).unwrap()
    }

    /// Goal: a transfer's message is acknowledged only once its transfer is no longer
    /// pending, whoever settled it, and soon after that even when the settler's own poll is
    /// ten minutes away; a message of a transfer already settled (or unknown) at once.
    #[tokio::test(start_paused = true)]
    async fn a_message_is_settled_once_its_transfer_is_no_longer_pending() {
        let store = Arc::new(Pending::default());
        let config = WalletWorkerConfig {
            settle_poll_ms: 600_000,
            ..WalletWorkerConfig::default()
        };
        let worker = WalletWorker::new(store.clone(), Arc::new(crate::TokioClock::new()), config);
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn(worker.clone().run(stopped));
        tokio::time::sleep(Duration::from_millis(10)).await;

        // Pending and held by another settler: not settled here, so the message waits.
        store.held.store(true, std::sync::atomic::Ordering::SeqCst);
        crate::lock(&store.ids).insert("t-1".to_owned());
        let (settle, mut settled) = tokio::sync::oneshot::channel();
        worker.offer(id("t-1"), settle);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            settled.try_recv().is_err(),
            "acknowledged while still pending"
        );

        // The other settler commits: acknowledged within a recheck, not a poll.
        crate::lock(&store.ids).clear();
        tokio::time::sleep(Duration::from_millis(OFFER_RECHECK_MS * 2)).await;
        assert_eq!(
            settled.try_recv(),
            Ok(()),
            "acknowledged once settled elsewhere"
        );

        // Settled by this worker, and already settled: both acknowledged at once.
        store.held.store(false, std::sync::atomic::Ordering::SeqCst);
        crate::lock(&store.ids).insert("t-2".to_owned());
        let (mine, mut mine_settled) = tokio::sync::oneshot::channel();
        let (old, mut old_settled) = tokio::sync::oneshot::channel();
        worker.offer(id("t-2"), mine);
        worker.offer(id("t-0"), old);
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(mine_settled.try_recv(), Ok(()));
        assert_eq!(old_settled.try_recv(), Ok(()));
        assert!(
            crate::lock(&store.ids).is_empty(),
            "t-2 settled by the woken pass"
        );

        // Delivered again after a reconnection: the dead session's handle is dropped, the
        // live one kept (and settled once the transfer is).
        store.held.store(true, std::sync::atomic::Ordering::SeqCst);
        crate::lock(&store.ids).insert("t-3".to_owned());
        let (stale, stale_wait) = tokio::sync::oneshot::channel::<()>();
        worker.offer(id("t-3"), stale);
        drop(stale_wait);
        let (live, mut live_settled) = tokio::sync::oneshot::channel();
        worker.offer(id("t-3"), live);
        assert_eq!(crate::lock(&worker.offers)[&id("t-3")].len(), 1);
        crate::lock(&store.ids).clear();
        tokio::time::sleep(Duration::from_millis(OFFER_RECHECK_MS * 2)).await;
        assert_eq!(live_settled.try_recv(), Ok(()));
        assert!(crate::lock(&worker.offers).is_empty());

        stop.send(true).unwrap();
        running.await.unwrap();
    }
}
