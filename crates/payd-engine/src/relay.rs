//! The outbox relay: publishes what the outbox holds to the work transport, oldest first,
//! with the broker's confirms, and removes it only after them (`OutboxStore::relay_outbox`).
//! Any number of relays may run (one per worker): they never take the same rows. While the
//! broker is down the relay backs off and the outbox grows; intake is not affected.
//!
//! Metrics: `payd_outbox_published_total` (counter), `payd_outbox_relay_errors_total`
//! (counter), `payd_outbox_pending` (gauge: messages not published yet) and
//! `payd_outbox_lag_seconds` (gauge: age of the oldest of them), both refreshed every
//! second.

use std::sync::Arc;
use std::time::Duration;

use payd_domain::gateway::backoff::Backoff;
use payd_ports::{OutboxStore, Publisher};
use tokio::sync::watch;

use crate::Clock;

/// Bounds and intervals of the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutboxRelayConfig {
    /// Messages published per pass (one transaction, one wait for the confirms).
    pub batch_max: u32,
    /// Pause after a pass that found less than a full batch, in ms: how late a message can
    /// be published after its commit, at one cheap query per pause.
    pub poll_ms: u64,
    /// First pause after a failed pass, in ms; doubled per failure up to `backoff_cap_ms`.
    pub backoff_ms: u64,
    /// Longest pause after failed passes, in ms.
    pub backoff_cap_ms: u64,
    /// Interval of the backlog gauges, in ms.
    pub gauge_interval_ms: u64,
}

impl Default for OutboxRelayConfig {
    fn default() -> OutboxRelayConfig {
        OutboxRelayConfig {
            batch_max: 512,
            poll_ms: 5,
            backoff_ms: 100,
            backoff_cap_ms: 2_000,
            gauge_interval_ms: 1_000,
        }
    }
}

/// The relay; [`OutboxRelay::run`] until shutdown.
pub struct OutboxRelay {
    store: Arc<dyn OutboxStore>,
    publisher: Arc<dyn Publisher>,
    clock: Arc<dyn Clock>,
    config: OutboxRelayConfig,
}

impl OutboxRelay {
    pub fn new(
        store: Arc<dyn OutboxStore>,
        publisher: Arc<dyn Publisher>,
        clock: Arc<dyn Clock>,
        config: OutboxRelayConfig,
    ) -> OutboxRelay {
        OutboxRelay {
            store,
            publisher,
            clock,
            config,
        }
    }

    /// Relays until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut failures = 0_u32;
        let mut gauges_due_ms = 0_i64;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let now_ms = self.clock.now_ms();
            if now_ms >= gauges_due_ms {
                gauges_due_ms =
                    now_ms + i64::try_from(self.config.gauge_interval_ms).unwrap_or(1_000);
                self.refresh_gauges(now_ms).await;
            }
            let pause_ms = match self
                .store
                .relay_outbox(self.config.batch_max, &*self.publisher)
                .await
            {
                Ok(count) => {
                    if failures > 0 {
                        tracing::info!(failures, "Outbox relay publishing again.");
                        failures = 0;
                    }
                    metrics::counter!("payd_outbox_published_total").increment(count as u64);
                    if count as u32 >= self.config.batch_max {
                        0
                    } else {
                        self.config.poll_ms
                    }
                }
                Err(error) => {
                    metrics::counter!("payd_outbox_relay_errors_total").increment(1);
                    if failures == 0 {
                        tracing::warn!(%error, "Outbox relay cannot publish; the outbox keeps the work until it can.");
                    }
                    failures = failures.saturating_add(1);
                    backoff_ms(self.config, failures)
                }
            };
            if pause_ms > 0 {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(pause_ms)) => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
            }
        }
    }

    async fn refresh_gauges(&self, now_ms: i64) {
        match self.store.outbox_backlog().await {
            Ok(backlog) => {
                metrics::gauge!("payd_outbox_pending").set(backlog.pending as f64);
                let lag_ms = backlog
                    .oldest_ms
                    .map_or(0, |t| now_ms.saturating_sub(t).max(0));
                metrics::gauge!("payd_outbox_lag_seconds").set(lag_ms as f64 / 1_000.0);
            }
            Err(error) => tracing::debug!(%error, "Could not read the outbox's backlog."),
        }
    }
}

/// The pause after `failures` failed passes in a row: doubling from the base, capped.
fn backoff_ms(config: OutboxRelayConfig, failures: u32) -> u64 {
    let backoff = Backoff {
        base_ms: config.backoff_ms,
        cap_ms: config.backoff_cap_ms,
        jitter_percent: 0,
    };
    backoff.delay_ms(failures.saturating_sub(1), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_cap() {
        let config = OutboxRelayConfig::default();
        let pauses: Vec<u64> = (1..=7).map(|f| backoff_ms(config, f)).collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1_600, 2_000, 2_000]);
        assert_eq!(backoff_ms(config, u32::MAX), 2_000);
    }
}
