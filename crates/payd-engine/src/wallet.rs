//! The wallet's background work, driven by the store: settling pending transfers in
//! acceptance order, expiring holds whose time is up, and forgetting idempotency keys whose
//! retention ended. Everything it acts on is stored, so a restart loses nothing: the first
//! pass after start picks up whatever was pending or due.
//!
//! Metrics: `payd_transfers_settled_total` (counter: completed + rejected),
//! `payd_holds_expired_total` (counter).

use std::sync::Arc;
use std::time::Duration;

use payd_ports::{LedgerError, Sweep, WalletStore};
use tokio::sync::{Notify, watch};

use crate::Clock;

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

impl Default for WalletWorkerConfig {
    fn default() -> WalletWorkerConfig {
        WalletWorkerConfig {
            settle_batch: 4_096,
            settle_poll_ms: 250,
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
        })
    }

    /// Wakes the transfer settler (a transfer was accepted).
    pub fn wake(&self) {
        self.transfers.notify_one();
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
            let wait_ms = match self.settle_all().await {
                Ok(0) => self.config.settle_poll_ms,
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
